//! Errors of the init crate.

use thiserror::Error;

/// The names that [`crate::Scheme`] parses, listed in every parse error.
pub const SCHEME_NAMES: &str = "he, he-uniform, he-fan-out, he-trunc, xavier, xavier-uniform, \
    lecun, lecun-uniform, orthogonal, torch-default, zeros, ones, constant(V); \
    variance-scaling schemes also take -normal/-uniform/-trunc, He takes -fan-in/-fan-out/-fan-avg, \
    and he, xavier and orthogonal take a nonlinearity after a colon, e.g. he-uniform:leaky_relu(0.2)";

/// A scheme, nonlinearity or layer name that does not parse.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseError {
    /// Not a scheme name.
    #[error("unknown init scheme '{0}'; valid: {SCHEME_NAMES}")]
    Scheme(String),
    /// Not a nonlinearity name.
    #[error(
        "unknown nonlinearity '{0}'; valid: linear, sigmoid, tanh, relu, leaky_relu, \
         leaky_relu(SLOPE), selu, gelu, silu"
    )]
    Nonlinearity(String),
}

/// A plan that cannot be applied to a parameter.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InitError {
    /// A rule gave a random scheme to a parameter that has no fans (a norm layer's γ or β).
    #[error(
        "scheme '{scheme}' needs fans but '{path}' is a {layer} parameter; \
         use a constant (zeros, ones, constant(V)) for it"
    )]
    NoFans {
        /// Dotted path of the parameter.
        path: String,
        /// The layer type holding it.
        layer: String,
        /// The scheme the rule asked for.
        scheme: String,
    },
}

/// Why a scheme has no exact `burn::nn::Initializer` equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NotExpressible {
    /// burn's Kaiming initializers take fan_in or fan_out only.
    #[error("burn's Initializer has no fan_avg mode for Kaiming")]
    FanAvg,
    /// burn draws from normal and uniform distributions only.
    #[error("burn's Initializer has no truncated normal")]
    TruncatedNormal,
}
