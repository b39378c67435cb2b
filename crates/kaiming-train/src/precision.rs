//! Mixed precision: f16 or bf16 arithmetic with f32 master weights.
//!
//! The parameters stay in f32. Each forward pass casts them to the half type *inside* the
//! autodiff graph, so the gradients flow back through the casts and arrive on the f32 master
//! parameters, which the optimizer updates in f32 — small updates are not rounded away. The
//! logits are cast back to f32 before the loss. Batch norm runs in the half type like every
//! other layer; its running statistics are buffers that burn shares between a module and its
//! copies, so they are stored in the half type from the first step on.
//!
//! f16 has five exponent bits: gradients below about 6e-8 flush to zero. [`LossScaler`]
//! multiplies the loss by a large factor before the backward pass and divides the gradients
//! by it afterwards, halving the factor and skipping the step when a gradient overflows and
//! doubling it after a run of clean steps, as PyTorch's `GradScaler` does. bf16 has f32's
//! exponent range and needs no scaling.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Tensor};
use kaiming_resnet::Model;
use serde::{Deserialize, Serialize};

/// The float type of the forward and backward arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// f16 arithmetic, f32 master weights, dynamic loss scaling.
    F16,
    /// bf16 arithmetic, f32 master weights.
    Bf16,
}

impl Precision {
    /// The arithmetic type.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }

    /// Fails, naming the precision and the device, when the device cannot compute in it.
    pub fn ensure_supported(self, device: &Device) -> Result<()> {
        if !device.supports_dtype(self.dtype()) {
            bail!(
                "--precision {self}: the device {} has no {self} arithmetic; use --precision f32",
                crate::backend::describe(device)
            );
        }
        Ok(())
    }

    /// The model's logits, in f32, computed in this precision.
    pub fn forward(self, model: &Model, images: Tensor<4>) -> Tensor<2> {
        match self {
            Precision::F32 => model.forward(images),
            half => {
                let dtype = half.dtype();
                let working = model.clone().map(&mut Cast { dtype });
                working.forward(images.cast(dtype)).cast(FloatDType::F32)
            }
        }
    }
}

/// Casts every float parameter and buffer of a module to `dtype`.
struct Cast {
    dtype: FloatDType,
}

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.dtype;
        param.map(|tensor| tensor.cast(dtype))
    }
}

/// Scales the loss of f16 runs so small gradients survive the backward pass; the default
/// does not scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current factor; 1 disables scaling.
    pub scale: f32,
    /// Steps since the factor last changed.
    pub clean_steps: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler::new(Precision::F32)
    }
}

impl LossScaler {
    /// PyTorch's `GradScaler` defaults: start at 2¹⁶, double after 2000 clean steps.
    const INITIAL: f32 = 65536.0;
    const GROWTH_INTERVAL: usize = 2000;

    /// The scaler a precision needs: dynamic for f16, none otherwise.
    pub fn new(precision: Precision) -> Self {
        LossScaler {
            scale: if precision == Precision::F16 {
                Self::INITIAL
            } else {
                1.0
            },
            clean_steps: 0,
        }
    }

    /// Gradients of `loss` for `model`'s parameters, unscaled; `None` when a gradient overflowed
    /// (the step must be skipped; the factor has been halved).
    pub fn backward(&mut self, loss: Tensor<1>, model: &Model) -> Option<GradientsParams> {
        if self.scale == 1.0 {
            return Some(GradientsParams::from_grads(loss.backward(), model));
        }
        let grads = GradientsParams::from_grads(loss.mul_scalar(self.scale).backward(), model);
        let mut unscale = Unscale {
            grads,
            factor: 1.0 / self.scale,
            magnitude: None,
        };
        model.visit(&mut unscale);
        let finite = unscale
            .magnitude
            .is_none_or(|m| m.into_scalar::<f64>().is_finite());
        if finite {
            self.clean_steps += 1;
            if self.clean_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
            Some(unscale.grads)
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.clean_steps = 0;
            None
        }
    }
}

/// Divides every gradient by the loss scale and sums their magnitudes, to detect overflow with
/// one read from the device.
struct Unscale {
    grads: GradientsParams,
    factor: f32,
    magnitude: Option<Tensor<1>>,
}

impl ModuleVisitor for Unscale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let grad = grad.mul_scalar(self.factor);
        let size = grad.clone().abs().sum();
        self.magnitude = Some(match self.magnitude.take() {
            Some(total) => total + size,
            None => size,
        });
        self.grads.register(param.id, grad);
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision '{s}'; valid: f32, f16, bf16")),
        }
    }
}
