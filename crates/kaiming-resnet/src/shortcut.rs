//! Shortcut connections of residual blocks: identity, the paper's parameter-free option A and the
//! projection of option B.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Identity};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor, s};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::norm::{Norm, conv, conv_norm, norm_layer};

/// How a residual block crosses a change of shape (He et al. 2016, §3.3). Where the shape does not
/// change, every option uses the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShortcutKind {
    /// Identity with stride-2 subsampling and zero-padded extra channels: no parameters, so a
    /// plain twin has exactly as many parameters. The paper's choice for its CIFAR-10 nets.
    A,
    /// A 1×1 convolution (+ norm) with the block's stride: torchvision's `downsample`.
    B,
}

impl fmt::Display for ShortcutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShortcutKind::A => "A",
            ShortcutKind::B => "B",
        })
    }
}

impl FromStr for ShortcutKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" | "a" => Ok(ShortcutKind::A),
            "B" | "b" => Ok(ShortcutKind::B),
            _ => Err(ModelError::UnknownOption {
                option: "shortcut",
                value: s.to_string(),
                valid: "A, B".to_string(),
            }),
        }
    }
}

/// The shortcut branch of a residual block.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "burn's Module derive cannot box a variant; the padding costs bytes per block, once"
)]
pub enum Shortcut {
    /// The input itself: shapes match.
    Identity(Identity),
    /// Option A: subsample and zero-pad channels.
    Pad(PadShortcut),
    /// Option B: 1×1 projection.
    Projection(Projection),
}

impl Shortcut {
    /// The shortcut from `in_channels` to `out_channels` at `stride`: the identity when the shape
    /// is unchanged, otherwise what `kind` says.
    ///
    /// # Panics
    /// For option A with fewer output than input channels, which zero-padding cannot produce.
    pub fn new(
        kind: ShortcutKind,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        norm: Norm,
        device: &Device,
    ) -> Self {
        if stride == 1 && in_channels == out_channels {
            return Shortcut::Identity(Identity::new());
        }
        match kind {
            ShortcutKind::A => Shortcut::Pad(PadShortcut::new(in_channels, out_channels, stride)),
            ShortcutKind::B => Shortcut::Projection(Projection::new(
                in_channels,
                out_channels,
                stride,
                norm,
                device,
            )),
        }
    }

    /// Maps the block input to the shape of the residual branch's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Shortcut::Identity(identity) => identity.forward(x),
            Shortcut::Pad(pad) => pad.forward(x),
            Shortcut::Projection(projection) => projection.forward(x),
        }
    }
}

/// Option A: keeps every `stride`-th pixel from the first one and appends `extra_channels` zero
/// channels, so the input occupies the first channels of the output.
///
/// The subsampled grid is the one a 3×3, padding-1 convolution with the same stride visits, so the
/// spatial sizes agree for odd inputs too.
#[derive(Module, Debug)]
pub struct PadShortcut {
    /// Spatial subsampling factor.
    pub stride: usize,
    /// Zero channels appended after the input's.
    pub extra_channels: usize,
}

impl PadShortcut {
    /// A shortcut from `in_channels` to `out_channels` channels.
    ///
    /// # Panics
    /// If `out_channels < in_channels` or `stride` is zero.
    pub fn new(in_channels: usize, out_channels: usize, stride: usize) -> Self {
        assert!(
            out_channels >= in_channels,
            "option A shortcut cannot reduce channels ({in_channels} -> {out_channels})"
        );
        assert!(stride > 0, "stride must be positive");
        PadShortcut {
            stride,
            extra_channels: out_channels - in_channels,
        }
    }

    /// `[b, c, h, w]` → `[b, c + extra, ⌈h/stride⌉, ⌈w/stride⌉]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let step = self.stride as isize;
        let x = if self.stride > 1 {
            x.slice(s![.., .., ..;step, ..;step])
        } else {
            x
        };
        if self.extra_channels == 0 {
            return x;
        }
        x.pad(
            [(0, self.extra_channels), (0, 0), (0, 0)],
            PadMode::Constant(0.0),
        )
    }
}

/// Option B: 1×1 convolution with the block's stride, then the norm.
#[derive(Module, Debug)]
pub struct Projection {
    /// The 1×1 convolution.
    pub conv: Conv2d,
    /// Its norm, absent with `Norm::None`.
    pub bn: Option<BatchNorm>,
}

impl Projection {
    /// A projection from `in_channels` to `out_channels` at `stride`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        norm: Norm,
        device: &Device,
    ) -> Self {
        Projection {
            conv: conv(in_channels, out_channels, 1, stride, norm, device),
            bn: norm_layer(out_channels, norm, device),
        }
    }

    /// Projects `x` to the branch's shape.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm(&self.conv, &None, &self.bn, x, false)
    }
}
