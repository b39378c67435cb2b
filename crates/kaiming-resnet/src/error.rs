//! Errors for user-supplied model names and settings.

use thiserror::Error;

/// Why a model name or setting was refused. Every message names the valid choices, so it can be
/// shown to a command-line user as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// The model name is not one this crate builds.
    #[error("unknown model `{name}`; valid models: {valid}")]
    UnknownModel {
        /// The name given.
        name: String,
        /// Every valid name, comma-separated.
        valid: String,
    },
    /// A depth the family does not define.
    #[error("no {family} of depth {depth}; valid depths: {valid}")]
    BadDepth {
        /// The family, e.g. `CIFAR ResNet`.
        family: &'static str,
        /// The depth given.
        depth: usize,
        /// What would be accepted.
        valid: String,
    },
    /// An option value that does not parse (`norm`, `stem`, `shortcut`).
    #[error("unknown {option} `{value}`; valid: {valid}")]
    UnknownOption {
        /// The option's name.
        option: &'static str,
        /// The value given.
        value: String,
        /// The valid values, comma-separated.
        valid: String,
    },
    /// A configuration whose parts do not fit together.
    #[error("invalid model configuration: {0}")]
    Invalid(String),
}
