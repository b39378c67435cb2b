//! The `norm` option shared by every family, and the conv + norm building helpers that apply it
//! the same way everywhere.

use std::fmt;
use std::str::FromStr;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::branch::add_bias;
use crate::error::ModelError;
use crate::observe;

/// Normalisation after each convolution.
///
/// Without normalisation the initialisation alone decides whether a deep net trains at all; with
/// batch norm it matters much less. Both are buildable so that difference can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Batch normalisation after every convolution (the papers' and torchvision's choice).
    #[default]
    Batch,
    /// No normalisation. Convolutions then carry a bias, which batch norm's β would otherwise
    /// provide.
    None,
}

impl Norm {
    /// Every option, in the order `--help` lists them.
    pub const ALL: [Norm; 2] = [Norm::Batch, Norm::None];

    /// Whether a convolution followed by this norm needs its own bias: only when nothing else
    /// adds a per-channel offset.
    pub fn conv_bias(self) -> bool {
        self == Norm::None
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::Batch => "batch",
            Norm::None => "none",
        })
    }
}

impl FromStr for Norm {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "batch" | "bn" => Ok(Norm::Batch),
            "none" => Ok(Norm::None),
            _ => Err(ModelError::UnknownOption {
                option: "norm",
                value: s.to_string(),
                valid: "batch, none".to_string(),
            }),
        }
    }
}

/// A `k`×`k` convolution with "same"-style padding `k / 2`, so only the stride changes the
/// spatial size (`⌊(n + 2⌊k/2⌋ − k) / s⌋ + 1`, as in torchvision).
///
/// The weights keep burn's layer default; the model's initialisation plan replaces them.
pub(crate) fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    norm: Norm,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(norm.conv_bias())
        .init(device)
}

/// The norm layer for `channels`, or nothing when normalisation is off.
pub(crate) fn norm_layer(channels: usize, norm: Norm, device: &Device) -> Option<BatchNorm> {
    match norm {
        Norm::Batch => Some(BatchNormConfig::new(channels).init(device)),
        Norm::None => None,
    }
}

/// Applies an optional norm layer: burn's `BatchNorm`, through the fused flex kernels where
/// they apply (`kaiming_kernels::batch_norm`).
fn apply_norm(bn: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    match bn {
        Some(bn) => kaiming_kernels::batch_norm(bn, x),
        None => x,
    }
}

/// `relu(apply_norm(bn, x))`, with the ReLU fused into the norm where its kernel is
/// (`kaiming_kernels::batch_norm_relu`).
fn norm_relu(bn: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    match bn {
        Some(bn) => kaiming_kernels::batch_norm_relu(bn, x),
        None => relu(x),
    }
}

/// `conv` on `x`, then `bias` (Fixup's scalar between a convolution and its ReLU), the norm and,
/// if `relu`, a ReLU: every convolution of the zoo with what follows it. A batch norm right
/// after the convolution is folded into it in evaluation, and in training takes the statistics
/// the convolution gathers as it writes (`kaiming_kernels::conv2d_batch_norm`), unless an
/// observer (LSUV) must see the convolution's own output.
pub(crate) fn conv_norm(
    conv: &Conv2d,
    bias: &Option<Param<Tensor<1>>>,
    bn: &Option<BatchNorm>,
    x: Tensor<4>,
    relu: bool,
) -> Tensor<4> {
    if let (Some(bn), None, false) = (bn, bias, observe::observing()) {
        return kaiming_kernels::conv2d_batch_norm(conv, bn, x, relu);
    }
    let out = add_bias(bias, observe::conv2d(conv, x));
    match relu {
        true => norm_relu(bn, out),
        false => apply_norm(bn, out),
    }
}
