//! The first layers, before any residual block.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::norm::{Norm, conv, conv_norm, norm_layer};

/// Which stem a ResNet starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// 7×7 stride-2 convolution and 3×3 stride-2 max-pool: 224×224 images become 56×56 maps.
    ImageNet,
    /// One 3×3 stride-1 convolution, no pool: a 32×32 image would otherwise be 8×8 before the first
    /// block and 1×1 long before the last (the CIFAR ResNets of §4.2 start this way).
    Cifar,
}

impl StemKind {
    /// Every option.
    pub const ALL: [StemKind; 2] = [StemKind::ImageNet, StemKind::Cifar];

    /// Builds the stem from `in_channels` to `out_channels`.
    pub fn init(
        self,
        in_channels: usize,
        out_channels: usize,
        norm: Norm,
        device: &Device,
    ) -> Stem {
        let (kernel, stride, pool) = match self {
            StemKind::ImageNet => {
                let pool = MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init();
                (7, 2, Some(pool))
            }
            StemKind::Cifar => (3, 1, None),
        };
        Stem {
            conv: conv(in_channels, out_channels, kernel, stride, norm, device),
            bn: norm_layer(out_channels, norm, device),
            pool,
        }
    }
}

impl fmt::Display for StemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StemKind::ImageNet => "imagenet",
            StemKind::Cifar => "cifar",
        })
    }
}

impl FromStr for StemKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "imagenet" => Ok(StemKind::ImageNet),
            "cifar" => Ok(StemKind::Cifar),
            _ => Err(ModelError::UnknownOption {
                option: "stem",
                value: s.to_string(),
                valid: "imagenet, cifar".to_string(),
            }),
        }
    }
}

/// conv → norm → relu (→ max-pool).
#[derive(Module, Debug)]
pub struct Stem {
    /// The first convolution.
    pub conv: Conv2d,
    /// Its norm.
    pub bn: Option<BatchNorm>,
    /// The ImageNet stem's max-pool.
    pub pool: Option<MaxPool2d>,
}

impl Stem {
    /// Runs the stem.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv_norm(&self.conv, &None, &self.bn, x, true);
        match &self.pool {
            Some(pool) => pool.forward(x),
            None => x,
        }
    }
}
