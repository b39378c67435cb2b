//! Layer kinds and their fans, computed from burn's own weight layouts.
//!
//! burn stores weights differently from PyTorch, so PyTorch's
//! `_calculate_fan_in_and_fan_out` cannot be applied to the shape blindly:
//!
//! | layer | burn weight layout | fan_in | fan_out |
//! |---|---|---|---|
//! | `Linear` | `[d_input, d_output]` | `d_input` | `d_output` |
//! | `Conv1d/2d/3d` | `[c_out, c_in/groups, k…]` | `c_in/groups · ∏k` | `c_out · ∏k` |
//! | `ConvTranspose1d/2d/3d` | `[c_in, c_out/groups, k…]` | `c_out/groups · ∏k` | `c_in · ∏k` |
//!
//! **Grouped convolutions use PyTorch's fan_out, `c_out · ∏k`**, not burn's own
//! `c_out/groups · ∏k` (what `burn::nn::Initializer` receives from `Conv2dConfig`), so that
//! `he-fan-out` gives the same standard deviation as `kaiming_normal_(mode='fan_out')` on the
//! same layer in PyTorch. Transposed convolutions have the same layout as PyTorch's, and their
//! fans are PyTorch's too (which reads dimension 1 as the input side).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which fan a variance-scaling scheme divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass (He et al. 2015's default).
    FanIn,
    /// Preserve the variance of gradients in the backward pass (torchvision's ResNet choice).
    FanOut,
    /// The average of both, a compromise between the two passes (Glorot & Bengio 2010).
    FanAvg,
}

impl fmt::Display for FanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FanMode::FanIn => "fan_in",
            FanMode::FanOut => "fan_out",
            FanMode::FanAvg => "fan_avg",
        })
    }
}

/// The layer types whose parameters the init crate knows how to initialise.
///
/// Recognised from the container type burn's `ModuleMapper` reports (`Struct:Conv2d`, …), so a
/// user's own layer that wraps a burn `Conv2d` is still recognised through its inner field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LayerKind {
    /// `burn::nn::Linear`.
    Linear,
    /// `burn::nn::conv::Conv1d`, `Conv2d` or `Conv3d`.
    Conv,
    /// `burn::nn::conv::ConvTranspose1d`, `ConvTranspose2d` or `ConvTranspose3d`.
    ConvTranspose,
    /// `burn::nn::BatchNorm`.
    BatchNorm,
    /// `burn::nn::LayerNorm`.
    LayerNorm,
    /// `burn::nn::GroupNorm`.
    GroupNorm,
    /// `burn::nn::InstanceNorm`.
    InstanceNorm,
    /// `burn::nn::RmsNorm`.
    RmsNorm,
}

impl LayerKind {
    /// The kind for burn's container type name, e.g. `Struct:Conv2d` → `Conv`.
    pub fn from_container_type(container_type: &str) -> Option<Self> {
        let name = container_type.strip_prefix("Struct:")?;
        Some(match name {
            "Linear" => LayerKind::Linear,
            "Conv1d" | "Conv2d" | "Conv3d" => LayerKind::Conv,
            "ConvTranspose1d" | "ConvTranspose2d" | "ConvTranspose3d" => LayerKind::ConvTranspose,
            "BatchNorm" => LayerKind::BatchNorm,
            "LayerNorm" => LayerKind::LayerNorm,
            "GroupNorm" => LayerKind::GroupNorm,
            "InstanceNorm" => LayerKind::InstanceNorm,
            "RmsNorm" => LayerKind::RmsNorm,
            _ => return None,
        })
    }

    /// Whether this is a normalisation layer (γ = 1, β = 0 by default).
    pub fn is_norm(self) -> bool {
        !matches!(
            self,
            LayerKind::Linear | LayerKind::Conv | LayerKind::ConvTranspose
        )
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Linear => "Linear",
            LayerKind::Conv => "Conv",
            LayerKind::ConvTranspose => "ConvTranspose",
            LayerKind::BatchNorm => "BatchNorm",
            LayerKind::LayerNorm => "LayerNorm",
            LayerKind::GroupNorm => "GroupNorm",
            LayerKind::InstanceNorm => "InstanceNorm",
            LayerKind::RmsNorm => "RmsNorm",
        })
    }
}

/// The number of inputs and outputs each weight connects, as the variance formulas use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fans {
    /// Inputs feeding one output unit.
    pub fan_in: usize,
    /// Outputs one input unit feeds (PyTorch's convention, see the module docs).
    pub fan_out: usize,
}

impl Fans {
    /// Fans of a weight of the given layer kind and burn shape; `None` for norm layers or a
    /// shape of the wrong rank (a user layer we do not understand is left alone).
    pub fn of(kind: LayerKind, shape: &[usize]) -> Option<Fans> {
        match kind {
            LayerKind::Linear if shape.len() == 2 => Some(Fans {
                fan_in: shape[0],
                fan_out: shape[1],
            }),
            LayerKind::Conv | LayerKind::ConvTranspose if shape.len() >= 3 => {
                // Both layouts put the "per output unit" dimension second (see the module
                // docs), so one formula serves convolutions and transposed convolutions.
                let receptive_field: usize = shape[2..].iter().product();
                Some(Fans {
                    fan_in: shape[1] * receptive_field,
                    fan_out: shape[0] * receptive_field,
                })
            }
            _ => None,
        }
    }

    /// The fan a mode selects; fan_avg is (fan_in + fan_out) / 2.
    pub fn select(self, mode: FanMode) -> f64 {
        match mode {
            FanMode::FanIn => self.fan_in as f64,
            FanMode::FanOut => self.fan_out as f64,
            FanMode::FanAvg => (self.fan_in + self.fan_out) as f64 / 2.0,
        }
    }
}
