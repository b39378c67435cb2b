//! Nonlinearities and the gain each needs to keep the signal's second moment constant.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

/// GELU's gain, 1/√E[gelu(z)²] for z ~ N(0, 1), with the exact (erf) GELU.
///
/// PyTorch's `calculate_gain` has no entry for GELU. We use the moment-matched gain: the factor
/// that makes E[(g·f(z))²] = 1 for a unit-variance pre-activation, the same argument that gives
/// √2 for ReLU. E[gelu(z)²] = 0.425221482570298… was computed by adaptive quadrature at 30
/// significant digits (mpmath `quad` over (−∞, 0] ∪ [0, ∞)); the test
/// `gelu_and_silu_gains_match_quadrature` recomputes it by Simpson's rule to 1e-9.
pub const GELU_GAIN: f64 = 1.533_530_441_195_535;

/// SiLU's (swish's) gain, 1/√E[silu(z)²] for z ~ N(0, 1); E[silu(z)²] = 0.355775519817352…,
/// computed as for [`GELU_GAIN`].
pub const SILU_GAIN: f64 = 1.676_532_470_331_091;

/// The activation that follows a layer, which decides the gain of its initialisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlinearity {
    /// Identity (and every linear layer without an activation): gain 1.
    Linear,
    /// Logistic sigmoid: gain 1, as in PyTorch.
    Sigmoid,
    /// Hyperbolic tangent: gain 5/3, as in PyTorch.
    Tanh,
    /// ReLU: gain √2, since E[relu(z)²] = Var(z)/2.
    Relu,
    /// Leaky ReLU with the given negative slope: gain √(2/(1+s²)).
    LeakyRelu {
        /// Slope for negative inputs (PyTorch's default is 0.01).
        negative_slope: f64,
    },
    /// SELU: gain 3/4, as in PyTorch (which chose it for self-normalising nets).
    Selu,
    /// GELU (exact, erf-based): moment-matched gain [`GELU_GAIN`].
    Gelu,
    /// SiLU / swish: moment-matched gain [`SILU_GAIN`].
    Silu,
}

impl Nonlinearity {
    /// The recommended gain: PyTorch's `torch.nn.init.calculate_gain` where PyTorch defines it,
    /// the moment-matched gain for GELU and SiLU.
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => std::f64::consts::SQRT_2,
            Nonlinearity::LeakyRelu { negative_slope } => {
                (2.0 / (1.0 + negative_slope * negative_slope)).sqrt()
            }
            Nonlinearity::Selu => 0.75,
            Nonlinearity::Gelu => GELU_GAIN,
            Nonlinearity::Silu => SILU_GAIN,
        }
    }
}

impl fmt::Display for Nonlinearity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nonlinearity::Linear => f.write_str("linear"),
            Nonlinearity::Sigmoid => f.write_str("sigmoid"),
            Nonlinearity::Tanh => f.write_str("tanh"),
            Nonlinearity::Relu => f.write_str("relu"),
            Nonlinearity::LeakyRelu { negative_slope } => {
                write!(f, "leaky_relu({negative_slope})")
            }
            Nonlinearity::Selu => f.write_str("selu"),
            Nonlinearity::Gelu => f.write_str("gelu"),
            Nonlinearity::Silu => f.write_str("silu"),
        }
    }
}

impl FromStr for Nonlinearity {
    type Err = ParseError;

    /// Parses `linear`, `sigmoid`, `tanh`, `relu`, `leaky_relu` (slope 0.01),
    /// `leaky_relu(0.2)`, `selu`, `gelu`, `silu`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseError::Nonlinearity(s.to_string());
        Ok(match s {
            "linear" | "identity" => Nonlinearity::Linear,
            "sigmoid" => Nonlinearity::Sigmoid,
            "tanh" => Nonlinearity::Tanh,
            "relu" => Nonlinearity::Relu,
            "leaky_relu" => Nonlinearity::LeakyRelu {
                negative_slope: 0.01,
            },
            "selu" => Nonlinearity::Selu,
            "gelu" => Nonlinearity::Gelu,
            "silu" | "swish" => Nonlinearity::Silu,
            _ => {
                let slope = s
                    .strip_prefix("leaky_relu(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .ok_or_else(invalid)?;
                let negative_slope: f64 = slope.parse().map_err(|_| invalid())?;
                if !negative_slope.is_finite() {
                    return Err(invalid());
                }
                Nonlinearity::LeakyRelu { negative_slope }
            }
        })
    }
}
