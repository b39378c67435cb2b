//! The two residual blocks of He et al. 2016 and the enum that lets a stage hold either.
//!
//! Each block reads like its diagram: conv → norm → relu → conv → norm → (+ shortcut) → relu.
//! Without a shortcut the same block is the "plain" layer pair of the paper's plain baselines.
//! With a [`Branch`] other than the standard one, Fixup's scalar biases and the branch's
//! multiplier join the diagram where the paper's code puts them (see [`crate::branch`]).

use std::fmt;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::branch::{Branch, add_bias, apply_scale, scalar};
use crate::norm::{Norm, conv, conv_norm, norm_layer};
use crate::shortcut::{Shortcut, ShortcutKind};

/// Which block a network is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34 and the CIFAR ResNets).
    Basic,
    /// 1×1 reduce, 3×3, 1×1 expand by [`Bottleneck::EXPANSION`] (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    /// Output channels of a block of this kind with base `width`.
    pub fn out_channels(self, width: usize) -> usize {
        match self {
            BlockKind::Basic => width,
            BlockKind::Bottleneck => width * Bottleneck::EXPANSION,
        }
    }

    /// Weight layers on the residual branch (Fixup's m).
    pub fn weight_layers(self) -> usize {
        match self {
            BlockKind::Basic => 2,
            BlockKind::Bottleneck => 3,
        }
    }

    /// The field name of the norm closing the residual branch: the γ that
    /// `zero_init_residual` sets to zero.
    pub fn last_norm(self) -> &'static str {
        match self {
            BlockKind::Basic => "bn2",
            BlockKind::Bottleneck => "bn3",
        }
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockKind::Basic => "basic",
            BlockKind::Bottleneck => "bottleneck",
        })
    }
}

/// Settings of one block of either kind.
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Basic or bottleneck.
    pub kind: BlockKind,
    /// Channels coming in.
    pub in_channels: usize,
    /// Base width: the output channels of a basic block, the inner width of a bottleneck.
    pub width: usize,
    /// Stride of the block's (first) 3×3 convolution and of its shortcut.
    #[config(default = 1)]
    pub stride: usize,
    /// Normalisation after each convolution.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
    /// How the shortcut crosses a change of shape.
    #[config(default = "ShortcutKind::B")]
    pub shortcut: ShortcutKind,
    /// With `false` the block has no shortcut at all: the plain twin.
    #[config(default = true)]
    pub residual: bool,
    /// How the residual branch joins the shortcut (ignored without one).
    #[config(default = "Branch::Standard")]
    pub branch: Branch,
}

impl BlockConfig {
    /// Channels going out.
    pub fn out_channels(&self) -> usize {
        self.kind.out_channels(self.width)
    }

    /// Builds the block with burn's layer defaults; the model's initialisation plan replaces
    /// them (see the crate docs).
    pub fn init(&self, device: &Device) -> Block {
        match self.kind {
            BlockKind::Basic => Block::Basic(BasicBlock::new(self, device)),
            BlockKind::Bottleneck => Block::Bottleneck(Bottleneck::new(self, device)),
        }
    }

    /// The branch as built: the standard one in a plain block, which has no shortcut to join.
    fn branch(&self) -> Branch {
        if self.residual {
            self.branch
        } else {
            Branch::Standard
        }
    }

    /// One of Fixup's scalar biases (0), where the branch has them.
    fn bias(&self, device: &Device) -> Option<Param<Tensor<1>>> {
        scalar(self.branch().biases(), 0.0, device)
    }

    /// The branch multiplier, where the branch has one.
    fn scale(&self, device: &Device) -> Option<Param<Tensor<1>>> {
        let value = self.branch().scale();
        scalar(value.is_some(), value.unwrap_or_default(), device)
    }

    fn shortcut(&self, device: &Device) -> Option<Shortcut> {
        self.residual.then(|| {
            Shortcut::new(
                self.shortcut,
                self.in_channels,
                self.out_channels(),
                self.stride,
                self.norm,
                device,
            )
        })
    }
}

/// A block of either kind, so one stage type serves every ResNet.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "burn's Module derive cannot box a variant; the padding costs bytes per block, once"
)]
pub enum Block {
    /// Two 3×3 convolutions.
    Basic(BasicBlock),
    /// 1×1 → 3×3 → 1×1.
    Bottleneck(Bottleneck),
}

impl Block {
    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(block) => block.forward(x),
            Block::Bottleneck(block) => block.forward(x),
        }
    }
}

/// Adds the shortcut (if any) to the residual branch and applies the closing relu. A shortcut
/// that downsamples — a projection, or option A's subsample-and-pad — reads the input with the
/// branch's first bias added, as Fixup's code does (`downsample(x + bias1a)` in both its CIFAR
/// and its ImageNet ResNets; `bias1a` is absent, or 0 at init, otherwise); an identity reads `x`.
fn close(
    branch: Tensor<4>,
    shortcut: &Option<Shortcut>,
    x: Tensor<4>,
    bias1a: &Option<Param<Tensor<1>>>,
) -> Tensor<4> {
    match shortcut {
        Some(shortcut @ (Shortcut::Projection(_) | Shortcut::Pad(_))) => {
            kaiming_kernels::add_relu(branch, shortcut.forward(add_bias(bias1a, x)))
        }
        Some(shortcut) => kaiming_kernels::add_relu(branch, shortcut.forward(x)),
        None => relu(branch),
    }
}

/// conv3×3(stride) → norm → relu → conv3×3 → norm → + shortcut → relu.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First 3×3 convolution; carries the stride.
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: Option<BatchNorm>,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// The norm closing the residual branch (zeroed by `zero_init_residual`).
    pub bn2: Option<BatchNorm>,
    /// The shortcut; `None` in a plain network.
    pub shortcut: Option<Shortcut>,
    /// Fixup: the scalar bias before `conv1` (and before a downsampling shortcut).
    pub bias1a: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before the first ReLU.
    pub bias1b: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before `conv2`.
    pub bias2a: Option<Param<Tensor<1>>>,
    /// The branch multiplier: Fixup's `scale` (1 at init) or SkipInit's α (0 at init).
    pub scale: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias after the multiplier, closing the branch.
    pub bias2b: Option<Param<Tensor<1>>>,
}

impl BasicBlock {
    fn new(config: &BlockConfig, device: &Device) -> Self {
        let (c_in, c_out, norm) = (config.in_channels, config.out_channels(), config.norm);
        BasicBlock {
            conv1: conv(c_in, c_out, 3, config.stride, norm, device),
            bn1: norm_layer(c_out, norm, device),
            conv2: conv(c_out, c_out, 3, 1, norm, device),
            bn2: norm_layer(c_out, norm, device),
            shortcut: config.shortcut(device),
            bias1a: config.bias(device),
            bias1b: config.bias(device),
            bias2a: config.bias(device),
            scale: config.scale(device),
            bias2b: config.bias(device),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let input = add_bias(&self.bias1a, x.clone());
        let out = conv_norm(&self.conv1, &self.bias1b, &self.bn1, input, true);
        let out = conv_norm(
            &self.conv2,
            &None,
            &self.bn2,
            add_bias(&self.bias2a, out),
            false,
        );
        let out = add_bias(&self.bias2b, apply_scale(&self.scale, out));
        close(out, &self.shortcut, x, &self.bias1a)
    }
}

/// conv1×1 → norm → relu → conv3×3(stride) → norm → relu → conv1×1 → norm → + shortcut → relu.
///
/// The stride sits on the 3×3 convolution ("ResNet v1.5", as torchvision), not on the first 1×1
/// as in the paper, which would discard three quarters of the input before looking at it.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduction to the base width.
    pub conv1: Conv2d,
    /// Its norm.
    pub bn1: Option<BatchNorm>,
    /// 3×3 convolution; carries the stride.
    pub conv2: Conv2d,
    /// Its norm.
    pub bn2: Option<BatchNorm>,
    /// 1×1 expansion to `EXPANSION` × width.
    pub conv3: Conv2d,
    /// The norm closing the residual branch (zeroed by `zero_init_residual`).
    pub bn3: Option<BatchNorm>,
    /// The shortcut; `None` in a plain network.
    pub shortcut: Option<Shortcut>,
    /// Fixup: the scalar bias before `conv1` (and before a downsampling shortcut).
    pub bias1a: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before the first ReLU.
    pub bias1b: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before `conv2`.
    pub bias2a: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before the second ReLU.
    pub bias2b: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias before `conv3`.
    pub bias3a: Option<Param<Tensor<1>>>,
    /// The branch multiplier: Fixup's `scale` (1 at init) or SkipInit's α (0 at init).
    pub scale: Option<Param<Tensor<1>>>,
    /// Fixup: the scalar bias after the multiplier, closing the branch.
    pub bias3b: Option<Param<Tensor<1>>>,
}

impl Bottleneck {
    /// Output channels per unit of base width.
    pub const EXPANSION: usize = 4;

    fn new(config: &BlockConfig, device: &Device) -> Self {
        let (c_in, width, norm) = (config.in_channels, config.width, config.norm);
        let c_out = config.out_channels();
        Bottleneck {
            conv1: conv(c_in, width, 1, 1, norm, device),
            bn1: norm_layer(width, norm, device),
            conv2: conv(width, width, 3, config.stride, norm, device),
            bn2: norm_layer(width, norm, device),
            conv3: conv(width, c_out, 1, 1, norm, device),
            bn3: norm_layer(c_out, norm, device),
            shortcut: config.shortcut(device),
            bias1a: config.bias(device),
            bias1b: config.bias(device),
            bias2a: config.bias(device),
            bias2b: config.bias(device),
            bias3a: config.bias(device),
            scale: config.scale(device),
            bias3b: config.bias(device),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let input = add_bias(&self.bias1a, x.clone());
        let out = conv_norm(&self.conv1, &self.bias1b, &self.bn1, input, true);
        let out = add_bias(&self.bias2a, out);
        let out = conv_norm(&self.conv2, &self.bias2b, &self.bn2, out, true);
        let out = conv_norm(
            &self.conv3,
            &None,
            &self.bn3,
            add_bias(&self.bias3a, out),
            false,
        );
        let out = add_bias(&self.bias3b, apply_scale(&self.scale, out));
        close(out, &self.shortcut, x, &self.bias1a)
    }
}
