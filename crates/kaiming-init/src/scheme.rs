//! Initialisation schemes, their short names, and the distribution each gives a weight.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::fan::{FanMode, Fans};
use crate::nonlinearity::Nonlinearity;

/// Standard deviation of N(0, 1) truncated to [−2, 2]. Truncated draws are scaled by its
/// inverse so their variance is the target one, as Keras' and JAX's `variance_scaling` do.
pub const TRUNCATED_NORMAL_STD: f64 = 0.879_625_661_034_239_8;

/// The shape of the distribution weights are drawn from; all have mean zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// N(0, σ²).
    Normal,
    /// U(−√3σ, √3σ), which has standard deviation σ.
    Uniform,
    /// N(0, σ′²) cut at ±2σ′ with σ′ = σ / [`TRUNCATED_NORMAL_STD`], so the std is σ.
    TruncatedNormal,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Normal => "normal",
            Distribution::Uniform => "uniform",
            Distribution::TruncatedNormal => "truncated_normal",
        })
    }
}

/// A weight initialisation scheme.
///
/// Every scheme has a short, stable name used on command lines and in config files; `Display`
/// prints it, `FromStr` parses it, and serde writes it as that string.
///
/// | name | scheme | Var(W) |
/// |---|---|---|
/// | `he` | He normal, fan_in, ReLU | 2 / fan_in |
/// | `he-uniform` | He uniform, fan_in, ReLU | 2 / fan_in, bound √(6 / fan_in) |
/// | `he-fan-out` | He normal, fan_out, ReLU (torchvision's ResNet init) | 2 / fan_out |
/// | `he-trunc` | He truncated normal, fan_in, ReLU | 2 / fan_in |
/// | `xavier` | Glorot normal | 2 / (fan_in + fan_out) |
/// | `xavier-uniform` | Glorot uniform | 2 / (fan_in + fan_out) |
/// | `lecun` | LeCun normal | 1 / fan_in |
/// | `orthogonal` | (semi-)orthogonal, gain 1 | — |
/// | `torch-default` | PyTorch's `Linear`/`Conv` default, U(±1/√fan_in) for weight and bias | 1 / (3 fan_in) |
/// | `zeros`, `ones`, `constant(V)` | every element V | 0 |
///
/// The general form is `FAMILY[-DISTRIBUTION][-MODE][:NONLINEARITY]`, e.g.
/// `he-uniform-fan-avg:leaky_relu(0.2)` or `xavier:tanh` (gain 5/3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scheme {
    /// He et al. 2015: Var(W) = gain² / fan, gain from the nonlinearity (√2 for ReLU).
    He {
        /// Distribution of the draws.
        distribution: Distribution,
        /// Fan the variance is divided by.
        mode: FanMode,
        /// Activation after the layer.
        nonlinearity: Nonlinearity,
    },
    /// Glorot & Bengio 2010: Var(W) = gain² · 2 / (fan_in + fan_out).
    Xavier {
        /// Distribution of the draws.
        distribution: Distribution,
        /// Activation after the layer, for the gain (linear: 1).
        nonlinearity: Nonlinearity,
    },
    /// LeCun et al. 1998: Var(W) = 1 / fan_in.
    LeCun {
        /// Distribution of the draws.
        distribution: Distribution,
    },
    /// Saxe et al. 2014: a random (semi-)orthogonal matrix times the gain, with the weight
    /// flattened to `[dim 0, rest]` as PyTorch's `orthogonal_` does.
    Orthogonal {
        /// Activation after the layer, for the gain (linear: 1).
        nonlinearity: Nonlinearity,
    },
    /// PyTorch's default for `nn.Linear` and `nn.ConvNd`: weight and bias U(±1/√fan_in)
    /// (`kaiming_uniform_(a=√5)` for the weight).
    TorchDefault,
    /// Every element set to the value, weights and biases alike.
    Constant(f64),
}

/// How one tensor is filled, resolved from a scheme and the layer's fans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Independent draws with the given standard deviation.
    Random {
        /// Distribution of the draws.
        distribution: Distribution,
        /// Standard deviation of the result (truncated draws included).
        std: f64,
    },
    /// A (semi-)orthogonal matrix scaled by the gain.
    Orthogonal {
        /// Scale of the orthogonal matrix.
        gain: f64,
    },
    /// Every element the same value.
    Constant(f64),
}

impl Fill {
    /// The half-width of the support for uniform draws, the cut-off for truncated ones.
    pub fn bound(&self) -> Option<f64> {
        match *self {
            Fill::Random {
                distribution: Distribution::Uniform,
                std,
            } => Some(3f64.sqrt() * std),
            Fill::Random {
                distribution: Distribution::TruncatedNormal,
                std,
            } => Some(2.0 * std / TRUNCATED_NORMAL_STD),
            _ => None,
        }
    }

    /// The fill with every value multiplied by `factor`.
    pub fn scaled(self, factor: f64) -> Fill {
        match self {
            Fill::Random { distribution, std } => Fill::Random {
                distribution,
                std: std * factor,
            },
            Fill::Orthogonal { gain } => Fill::Orthogonal {
                gain: gain * factor,
            },
            Fill::Constant(value) => Fill::Constant(value * factor),
        }
    }

    /// The standard deviation of the values, where it is set by the fill.
    pub fn std(&self) -> Option<f64> {
        match *self {
            Fill::Random { std, .. } => Some(std),
            Fill::Constant(_) => Some(0.0),
            Fill::Orthogonal { .. } => None,
        }
    }
}

impl Default for Scheme {
    /// He normal, fan_in, ReLU: Var(W) = 2 / fan_in.
    fn default() -> Self {
        Scheme::he()
    }
}

impl Scheme {
    /// He normal, fan_in, ReLU: the paper's default, Var(W) = 2 / fan_in.
    pub fn he() -> Self {
        Scheme::He {
            distribution: Distribution::Normal,
            mode: FanMode::FanIn,
            nonlinearity: Nonlinearity::Relu,
        }
    }

    /// Glorot normal with gain 1.
    pub fn xavier() -> Self {
        Scheme::Xavier {
            distribution: Distribution::Normal,
            nonlinearity: Nonlinearity::Linear,
        }
    }

    /// Every element zero.
    pub fn zeros() -> Self {
        Scheme::Constant(0.0)
    }

    /// The named schemes a user is offered (`--init` values), in a stable order.
    pub fn presets() -> Vec<Scheme> {
        [
            "he",
            "he-uniform",
            "he-fan-out",
            "he-trunc",
            "xavier",
            "xavier-uniform",
            "lecun",
            "lecun-uniform",
            "orthogonal",
            "torch-default",
            "zeros",
        ]
        .iter()
        .map(|name| name.parse().expect("preset names parse"))
        .collect()
    }

    /// How a weight with these fans is filled.
    pub fn weight_fill(&self, fans: Fans) -> Fill {
        let variance_scaling = |scale: f64, mode: FanMode, distribution| Fill::Random {
            distribution,
            std: (scale / fans.select(mode)).sqrt(),
        };
        match *self {
            Scheme::He {
                distribution,
                mode,
                nonlinearity,
            } => variance_scaling(nonlinearity.gain().powi(2), mode, distribution),
            Scheme::Xavier {
                distribution,
                nonlinearity,
            } => variance_scaling(nonlinearity.gain().powi(2), FanMode::FanAvg, distribution),
            Scheme::LeCun { distribution } => variance_scaling(1.0, FanMode::FanIn, distribution),
            Scheme::Orthogonal { nonlinearity } => Fill::Orthogonal {
                gain: nonlinearity.gain(),
            },
            Scheme::TorchDefault => {
                variance_scaling(1.0 / 3.0, FanMode::FanIn, Distribution::Uniform)
            }
            Scheme::Constant(value) => Fill::Constant(value),
        }
    }

    /// How the bias of a layer with these fans is filled: zero for every scheme except
    /// PyTorch's default (U(±1/√fan_in)) and constants (the constant).
    pub fn bias_fill(&self, fans: Fans) -> Fill {
        match *self {
            Scheme::TorchDefault => Fill::Random {
                distribution: Distribution::Uniform,
                std: (1.0 / (3.0 * fans.fan_in as f64)).sqrt(),
            },
            Scheme::Constant(value) => Fill::Constant(value),
            _ => Fill::Constant(0.0),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let distribution_suffix = |distribution| match distribution {
            Distribution::Normal => "",
            Distribution::Uniform => "-uniform",
            Distribution::TruncatedNormal => "-trunc",
        };
        match *self {
            Scheme::He {
                distribution,
                mode,
                nonlinearity,
            } => {
                let mode = match mode {
                    FanMode::FanIn => "",
                    FanMode::FanOut => "-fan-out",
                    FanMode::FanAvg => "-fan-avg",
                };
                write!(f, "he{}{mode}", distribution_suffix(distribution))?;
                if nonlinearity != Nonlinearity::Relu {
                    write!(f, ":{nonlinearity}")?;
                }
                Ok(())
            }
            Scheme::Xavier {
                distribution,
                nonlinearity,
            } => {
                write!(f, "xavier{}", distribution_suffix(distribution))?;
                if nonlinearity != Nonlinearity::Linear {
                    write!(f, ":{nonlinearity}")?;
                }
                Ok(())
            }
            Scheme::LeCun { distribution } => {
                write!(f, "lecun{}", distribution_suffix(distribution))
            }
            Scheme::Orthogonal { nonlinearity } => {
                f.write_str("orthogonal")?;
                if nonlinearity != Nonlinearity::Linear {
                    write!(f, ":{nonlinearity}")?;
                }
                Ok(())
            }
            Scheme::TorchDefault => f.write_str("torch-default"),
            Scheme::Constant(0.0) => f.write_str("zeros"),
            Scheme::Constant(1.0) => f.write_str("ones"),
            Scheme::Constant(value) => write!(f, "constant({value})"),
        }
    }
}

impl FromStr for Scheme {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseError::Scheme(s.to_string());
        let (base, nonlinearity) = match s.split_once(':') {
            Some((base, nonlinearity)) => (base, Some(nonlinearity.parse::<Nonlinearity>()?)),
            None => (s, None),
        };

        match base {
            "torch-default" if nonlinearity.is_none() => return Ok(Scheme::TorchDefault),
            "zeros" if nonlinearity.is_none() => return Ok(Scheme::Constant(0.0)),
            "ones" if nonlinearity.is_none() => return Ok(Scheme::Constant(1.0)),
            _ => {}
        }
        if let Some(value) = base
            .strip_prefix("constant(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let value: f64 = value.parse().map_err(|_| invalid())?;
            return match (value.is_finite(), nonlinearity) {
                (true, None) => Ok(Scheme::Constant(value)),
                _ => Err(invalid()),
            };
        }

        let (family, mut rest) = ["he", "xavier", "lecun", "orthogonal"]
            .into_iter()
            .find_map(|family| base.strip_prefix(family).map(|rest| (family, rest)))
            .ok_or_else(invalid)?;
        let mut take = |suffixes: &[(&str, u8)]| {
            suffixes.iter().find_map(|&(suffix, tag)| {
                rest.strip_prefix(suffix).map(|after| {
                    rest = after;
                    tag
                })
            })
        };
        let distribution = match take(&[("-normal", 0), ("-uniform", 1), ("-trunc", 2)]) {
            None | Some(0) => Distribution::Normal,
            Some(1) => Distribution::Uniform,
            _ => Distribution::TruncatedNormal,
        };
        let mode = take(&[("-fan-in", 0), ("-fan-out", 1), ("-fan-avg", 2)]);
        if !rest.is_empty() {
            return Err(invalid());
        }

        match family {
            "he" => Ok(Scheme::He {
                distribution,
                mode: match mode {
                    None | Some(0) => FanMode::FanIn,
                    Some(1) => FanMode::FanOut,
                    _ => FanMode::FanAvg,
                },
                nonlinearity: nonlinearity.unwrap_or(Nonlinearity::Relu),
            }),
            "xavier" if mode.is_none() => Ok(Scheme::Xavier {
                distribution,
                nonlinearity: nonlinearity.unwrap_or(Nonlinearity::Linear),
            }),
            "lecun" if mode.is_none() && nonlinearity.is_none() => {
                Ok(Scheme::LeCun { distribution })
            }
            "orthogonal" if mode.is_none() && base == "orthogonal" => Ok(Scheme::Orthogonal {
                nonlinearity: nonlinearity.unwrap_or(Nonlinearity::Linear),
            }),
            _ => Err(invalid()),
        }
    }
}

impl TryFrom<String> for Scheme {
    type Error = ParseError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Scheme> for String {
    fn from(scheme: Scheme) -> Self {
        scheme.to_string()
    }
}
