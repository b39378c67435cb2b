//! How a residual branch joins its shortcut: as in the paper, or through learnable scalars that
//! let deep ResNets train without normalisation.
//!
//! He initialisation keeps a plain ReLU net's signal constant through depth, but in a residual
//! net without normalisation every block adds a branch of the input's own variance, so the
//! signal's variance doubles per block and ResNet-110 overflows. Two published remedies start
//! every branch at zero, so each block begins as its shortcut:
//!
//! - **SkipInit** (De & Smith, NeurIPS 2020): one learnable scalar α per branch, `x + α·F(x)`,
//!   α = 0 at init (ReZero's `resweight` is the same scalar in the same place).
//! - **Fixup** (Zhang, Dauphin & Ma, ICLR 2019): the branch's last convolution and the
//!   classifier start at zero, the branch's other convolutions start from He scaled by
//!   L^(−1/(2m−2)) (L branches of m weight layers), and scalar biases (init 0) sit before each
//!   convolution, each activation and the classifier, with one multiplier (init 1) per branch.
//!   The scaling lives in [`ResNetConfig::init_plan`](crate::ResNetConfig::init_plan); the
//!   scalars live in the blocks, under the names of the paper's code (`bias1a`, `bias1b`,
//!   `bias2a`, `bias2b`, `bias3a`, `bias3b`, `scale`, and `fc_bias` before the classifier).

use std::fmt;
use std::str::FromStr;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// How each residual branch is scaled and biased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Branch {
    /// `x + F(x)`, as He et al. 2016.
    #[default]
    Standard,
    /// `x + α·F(x)` with a learnable α = 0 at init (De & Smith 2020).
    SkipInit,
    /// Fixup's scalar biases and multiplier, with its initialisation (Zhang et al. 2019).
    Fixup,
}

impl Branch {
    /// Every option, in the order `--help` lists them.
    pub const ALL: [Branch; 3] = [Branch::Standard, Branch::SkipInit, Branch::Fixup];

    /// Fixup's scalar biases, one per place.
    pub(crate) fn biases(self) -> bool {
        self == Branch::Fixup
    }

    /// The branch multiplier and its initial value: Fixup's `scale` (1) or SkipInit's α (0).
    pub(crate) fn scale(self) -> Option<f64> {
        match self {
            Branch::Standard => None,
            Branch::SkipInit => Some(0.0),
            Branch::Fixup => Some(1.0),
        }
    }

    /// Learnable scalars per block of `weight_layers` convolutions.
    pub fn scalars_per_block(self, weight_layers: usize) -> usize {
        let biases = if self.biases() { 2 * weight_layers } else { 0 };
        biases + usize::from(self.scale().is_some())
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Branch::Standard => "standard",
            Branch::SkipInit => "skipinit",
            Branch::Fixup => "fixup",
        })
    }
}

impl FromStr for Branch {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Branch::ALL
            .into_iter()
            .find(|branch| branch.to_string() == s)
            .ok_or_else(|| ModelError::UnknownOption {
                option: "residual",
                value: s.to_string(),
                valid: "standard, skipinit, fixup".to_string(),
            })
    }
}

/// A learnable scalar starting at `value`, where `present`.
pub(crate) fn scalar(present: bool, value: f64, device: &Device) -> Option<Param<Tensor<1>>> {
    present.then(|| Param::from_tensor(Tensor::<1>::full([1], value, device)))
}

/// `x + bias` (broadcast over every element), or `x` without one.
pub(crate) fn add_bias<const D: usize>(bias: &Option<Param<Tensor<1>>>, x: Tensor<D>) -> Tensor<D> {
    match bias {
        Some(bias) => x + bias.val().reshape([1; D]),
        None => x,
    }
}

/// `scale · x`, or `x` without one.
pub(crate) fn apply_scale(scale: &Option<Param<Tensor<1>>>, x: Tensor<4>) -> Tensor<4> {
    match scale {
        Some(scale) => x * scale.val().reshape([1, 1, 1, 1]),
        None => x,
    }
}
