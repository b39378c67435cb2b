//! Compute backends the trainer can run on.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A burn backend; CPU ones are always compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust CPU backend, multithreaded: the fastest CPU backend on the machines we
    /// measured (about 19× ndarray for ResNet-20 training).
    #[default]
    Flex,
    /// burn's ndarray backend: slower (its convolution backward is a naive loop), kept for
    /// users who compare with it.
    Ndarray,
}

impl Backend {
    /// Every backend compiled into this binary.
    pub const ALL: [Backend; 2] = [Backend::Flex, Backend::Ndarray];

    /// The device to compute on (without autodiff).
    pub fn device(self) -> Device {
        match self {
            Backend::Flex => Device::flex(),
            // Deprecated in burn 0.22 in favour of flex, still offered for comparison.
            #[allow(deprecated)]
            Backend::Ndarray => Device::ndarray(),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
        })
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" | "vulkan" | "metal" | "cuda" => Err(format!(
                "backend '{s}' is not compiled into this binary; valid: flex, ndarray"
            )),
            _ => Err(format!("unknown backend '{s}'; valid: flex, ndarray")),
        }
    }
}
