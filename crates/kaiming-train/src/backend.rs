//! Compute backends the trainer can run on, and the device it picks on each.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// A burn backend. Every name parses, so a recipe written for a GPU machine reads anywhere;
/// the GPU ones run only where their cargo feature is compiled in.
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
    /// Any GPU that wgpu reaches (Vulkan, Metal, DX12), through WGSL shaders; also Mesa's
    /// software Vulkan device on machines without a GPU.
    Wgpu,
    /// wgpu pinned to Vulkan, with SPIR-V shaders.
    Vulkan,
    /// wgpu pinned to Metal, with MSL shaders.
    Metal,
    /// NVIDIA GPUs through CUDA (the driver is loaded at run time).
    Cuda,
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Backend; 6] = [
        Backend::Flex,
        Backend::Ndarray,
        Backend::Wgpu,
        Backend::Vulkan,
        Backend::Metal,
        Backend::Cuda,
    ];

    /// The cargo feature of `kaiming-train` that compiles this backend in (`None`: always).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Backend::Flex | Backend::Ndarray => None,
            Backend::Wgpu => Some("wgpu"),
            Backend::Vulkan => Some("vulkan"),
            Backend::Metal => Some("metal"),
            Backend::Cuda => Some("cuda"),
        }
    }

    /// Whether this binary can run on the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Flex | Backend::Ndarray => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Metal => cfg!(feature = "metal"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends compiled into this binary, as a comma-separated list for messages.
    pub fn compiled_list() -> String {
        Backend::ALL
            .iter()
            .filter(|b| b.is_compiled())
            .map(Backend::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the backend computes on a GPU (so batches are assembled there too).
    pub fn is_gpu(self) -> bool {
        !matches!(self, Backend::Flex | Backend::Ndarray)
    }

    /// Fails, naming the feature to build with, when the backend is not compiled in.
    pub fn ensure_compiled(self) -> Result<()> {
        match self.is_compiled() {
            true => Ok(()),
            false => Err(self.not_compiled()),
        }
    }

    /// The error of a backend this binary lacks, naming the feature that builds it in.
    fn not_compiled(self) -> anyhow::Error {
        let feature = self.feature().unwrap_or("?");
        anyhow::anyhow!(
            "backend '{self}' is not compiled into this binary; build with `--features \
             {feature}` (e.g. cargo run --release --features {feature} --bin train -- …); \
             compiled: {}",
            Backend::compiled_list()
        )
    }

    /// The device to compute on (without autodiff): the `index`-th GPU of the backend, or its
    /// default adapter when `index` is `None`.
    pub fn device(self, index: Option<usize>) -> Result<Device> {
        self.ensure_compiled()?;
        if !self.is_gpu() && index.is_some_and(|i| i > 0) {
            bail!("--device selects a GPU; backend '{self}' has only device 0");
        }
        Ok(match self {
            Backend::Flex => Device::flex(),
            // Deprecated in burn 0.22 in favour of flex, still offered for comparison.
            #[allow(deprecated)]
            Backend::Ndarray => Device::ndarray(),
            // Every backend has an arm in every build, so a new one cannot be forgotten here.
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => gpu::wgpu(index, burn::tensor::DeviceType::Wgpu, Device::wgpu)?,
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => gpu::wgpu(index, burn::tensor::DeviceType::Vulkan, Device::vulkan)?,
            #[cfg(feature = "metal")]
            Backend::Metal => gpu::wgpu(index, burn::tensor::DeviceType::Metal, Device::metal)?,
            #[cfg(feature = "cuda")]
            Backend::Cuda => Device::cuda(index.unwrap_or(0)),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => return Err(self.not_compiled()),
            #[cfg(not(feature = "vulkan"))]
            Backend::Vulkan => return Err(self.not_compiled()),
            #[cfg(not(feature = "metal"))]
            Backend::Metal => return Err(self.not_compiled()),
            #[cfg(not(feature = "cuda"))]
            Backend::Cuda => return Err(self.not_compiled()),
        })
        .and_then(|device| {
            if self.is_gpu() {
                self.open(device)
            } else {
                Ok(device)
            }
        })
    }

    /// Runs one tiny computation on `device`. A missing driver or adapter makes burn panic
    /// deep inside its runtime; this turns that into an error naming the backend.
    fn open(self, device: Device) -> Result<Device> {
        let result = kaiming_resnet::quiet::catch_quietly(|| {
            Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>()
        });
        match result {
            Ok(4.0) => Ok(device),
            Ok(sum) => bail!("backend '{self}': the device computed 1+1+1+1 = {sum}"),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no reason given");
                let hint = match self {
                    Backend::Cuda => "an NVIDIA GPU with its driver is needed",
                    _ => {
                        "a GPU driver for wgpu is needed (on Linux without a GPU, Mesa's software \
                          Vulkan device: apt-get install mesa-vulkan-drivers)"
                    }
                };
                bail!("backend '{self}': cannot open a device ({reason}); {hint}")
            }
        }
    }
}

/// What the device is, for logs and `summary.json`: the adapter's own name and what kernels
/// are compiled for on GPUs (e.g. `NVIDIA H100 PCIe (ptx_sm90)`); on CPUs the processor, the
/// backend and its threads (e.g. `Intel(R) Xeon(R) Platinum 8488C (flex, 2 threads)`).
pub fn describe(device: &Device) -> String {
    let device = device.clone().without_autodiff();
    #[cfg(any(
        feature = "wgpu",
        feature = "vulkan",
        feature = "metal",
        feature = "cuda"
    ))]
    if let Some(identity) = device.identity() {
        return format!("{} ({})", identity.name, identity.fingerprint);
    }
    let backend = format!("{device:?}").to_lowercase();
    let backend = if backend.contains("ndarray") {
        "ndarray"
    } else {
        "flex"
    };
    format!(
        "{} ({backend}, {} threads)",
        cpu_name(),
        rayon::current_num_threads()
    )
}

/// The processor's marketing name where the OS says it (Linux), else the architecture.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("{} CPU", std::env::consts::ARCH))
}

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
mod gpu {
    use anyhow::{Result, bail};
    use burn::tensor::{Device, DeviceKind, DeviceType};

    /// The default adapter, or the `index`-th adapter wgpu lists for `kind`.
    pub fn wgpu(
        index: Option<usize>,
        kind: DeviceType,
        default: fn(DeviceKind) -> Device,
    ) -> Result<Device> {
        let Some(index) = index else {
            return Ok(default(DeviceKind::DefaultDevice));
        };
        let devices = Device::enumerate(kind).into_vec();
        match devices.into_iter().nth(index) {
            Some(device) => Ok(device),
            None => bail!("--device {index}: this machine has no such GPU adapter"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Cuda => "cuda",
        })
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let backend = Backend::ALL
            .into_iter()
            .find(|b| b.to_string() == s)
            .ok_or_else(|| {
                format!("unknown backend '{s}'; valid: flex, ndarray, wgpu, vulkan, metal, cuda")
            })?;
        backend.ensure_compiled().map_err(|e| e.to_string())?;
        Ok(backend)
    }
}
