//! Where the kernels apply: which devices, which CPUs, and the switches that send everything
//! back to burn's own implementations (for comparisons and for users who want burn's path).

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::{OnceLock, RwLock};

use burn::backend::DispatchDevice;
use burn::tensor::Device;

/// The environment variable that turns every kernel off for the whole process: `burn` sends
/// every operation to burn's own implementation; unset (or `kernels`) uses the kernels where
/// they apply. Anything else is refused at first use, naming the variable.
pub const KERNELS_VARIABLE: &str = "KAIMING_KERNELS";

/// The environment variable that picks the convolution engine's algorithm: `auto` (the
/// default: by the measured rules of `conv::blocked_pays` and `conv::direct_pays`), `gemm`
/// (im2col GEMMs everywhere), `direct` (the direct kernels wherever they apply) or `blocked`
/// (the channel-blocked direct kernels wherever they apply, GEMMs elsewhere).
pub const CONV_ALGORITHM_VARIABLE: &str = "KAIMING_CONV";

/// The environment variable that picks the instruction set of the direct convolution kernels:
/// `auto` (the default: AVX-512 where the CPU has it, else AVX2), `avx512` or `avx2` (refused,
/// naming the variable, on a CPU without it), `avx512-emulated` (AVX-512's kernels on portable
/// 16-float vectors, on any x86-64 CPU), or `none` (as on a CPU without either: aarch64, older
/// x86 — the engine stays out and burn's convolutions run). Forcing `avx2` tests that path on
/// an AVX-512 machine, `avx512-emulated` the AVX-512 path's logic on a machine without it, and
/// `none` the fallback on any machine.
pub const CONV_ISA_VARIABLE: &str = "KAIMING_CONV_ISA";

thread_local! {
    static BURN_PATH: Cell<bool> = const { Cell::new(false) };
    static CONV_CHOICE: Cell<Option<ConvChoice>> = const { Cell::new(None) };
}

/// How the convolution engine computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvAlgorithm {
    /// By the measured rules (`benches/README.md`): channel-blocked kernels for the 3×3
    /// layers whose channels fill whole register tiles, direct kernels for other narrow
    /// stride-1 layers, GEMMs over chunks of the batch for the rest.
    #[default]
    Auto,
    /// im2col GEMMs over chunks of the batch, everywhere.
    Gemm,
    /// The direct kernels wherever they apply (stride 1, no dilation, square odd kernels).
    Direct,
    /// The channel-blocked direct kernels wherever they apply (3×3, stride 1 or 2, channel
    /// counts in whole vectors), im2col GEMMs elsewhere.
    Blocked,
}

/// The vector instruction set of the direct convolution kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 16 floats per vector.
    Avx512,
    /// 8 floats per vector, with FMA.
    Avx2,
    /// AVX-512's kernels (16 floats per vector, its register tiles and routing rules) computed
    /// lane by lane on plain arrays: their index arithmetic — tiles, spanning rows, stride 2,
    /// skipped borders — checked on any x86-64 CPU. For tests; several times slower.
    Avx512Emulated,
}

impl Isa {
    /// Whether this CPU has the instruction set.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
                Isa::Avx512Emulated => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The widest instruction set this CPU has, if any (never the emulated one).
    fn best() -> Option<Self> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.supported())
    }
}

/// The instruction set asked of the direct kernels: the widest the CPU has, one forced, or none
/// (the fallback of CPUs without AVX2 and FMA, forced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsaChoice {
    /// AVX-512 where the CPU has it, else AVX2.
    #[default]
    Auto,
    /// AVX-512 (refused on a CPU without it).
    Avx512,
    /// AVX2 with FMA (refused on a CPU without it); on an AVX-512 machine, tests that path.
    Avx2,
    /// AVX-512's kernels on portable vectors ([`Isa::Avx512Emulated`]), on any x86-64 CPU.
    #[serde(rename = "avx512-emulated")]
    Avx512Emulated,
    /// None, as on a CPU without AVX2 and FMA (aarch64's NEON, older x86): the convolution
    /// engine stays out of the way and burn's convolutions run. On an x86 machine, tests that
    /// fallback.
    None,
}

impl IsaChoice {
    /// The instruction set this choice names, if it names one.
    fn named(self) -> Option<Isa> {
        match self {
            IsaChoice::Avx512 => Some(Isa::Avx512),
            IsaChoice::Avx2 => Some(Isa::Avx2),
            IsaChoice::Avx512Emulated => Some(Isa::Avx512Emulated),
            IsaChoice::Auto | IsaChoice::None => None,
        }
    }

    /// The instruction set the direct kernels use under this choice on this CPU (`None`: the
    /// engine stays out, as on a CPU without AVX2 and FMA).
    pub fn resolve(self) -> Option<Isa> {
        match self {
            IsaChoice::Auto => Isa::best(),
            IsaChoice::None => None,
            named => named.named(),
        }
    }
}

impl From<Isa> for IsaChoice {
    fn from(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 => IsaChoice::Avx512,
            Isa::Avx2 => IsaChoice::Avx2,
            Isa::Avx512Emulated => IsaChoice::Avx512Emulated,
        }
    }
}

/// Parses and prints the names the settings and the environment use.
macro_rules! named {
    ($type:ty, $what:literal, $($variant:path => $name:literal),+) => {
        impl FromStr for $type {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($name => Ok($variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " '{}' (expected one of:", $(" ", $name),+, ")"),
                        other
                    )),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($variant => $name,)+
                })
            }
        }
    };
}

named!(ConvAlgorithm, "convolution algorithm",
    ConvAlgorithm::Auto => "auto", ConvAlgorithm::Gemm => "gemm", ConvAlgorithm::Direct => "direct",
    ConvAlgorithm::Blocked => "blocked");
named!(IsaChoice, "instruction set",
    IsaChoice::Auto => "auto", IsaChoice::Avx512 => "avx512", IsaChoice::Avx2 => "avx2",
    IsaChoice::Avx512Emulated => "avx512-emulated", IsaChoice::None => "none");
named!(Isa, "instruction set", Isa::Avx512 => "avx512", Isa::Avx2 => "avx2",
    Isa::Avx512Emulated => "avx512-emulated");

/// What the kernels do in this process: a training run sets it from its settings
/// ([`configure`]) and records it; otherwise the environment decides ([`from_environment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelChoice {
    /// Send every operation to burn's own implementation instead.
    pub burn: bool,
    /// The convolution engine's algorithm and instruction set.
    pub conv: ConvChoice,
}

impl KernelChoice {
    /// Refuses an instruction set this CPU lacks, naming it.
    pub fn validate(&self) -> Result<(), String> {
        match self.conv.isa.named() {
            Some(isa) if !isa.supported() => Err(format!("this CPU has no {isa}")),
            _ => Ok(()),
        }
    }

    /// The instruction set the direct kernels use under this choice on this CPU (`None`: no
    /// direct kernels here).
    pub fn isa_used(&self) -> Option<Isa> {
        self.conv.isa.resolve()
    }
}

/// The choice made by [`KERNELS_VARIABLE`], [`CONV_ALGORITHM_VARIABLE`] and
/// [`CONV_ISA_VARIABLE`]; an unknown value, or an instruction set the CPU lacks, is an error
/// naming the variable.
pub fn from_environment() -> Result<KernelChoice, String> {
    crate::unfilled::write_checks_from_environment()?;
    let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let burn = match read(KERNELS_VARIABLE).as_deref() {
        None | Some("kernels") => false,
        Some("burn") => true,
        Some(other) => {
            return Err(format!(
                "{KERNELS_VARIABLE}={other:?}: expected `kernels` or `burn`"
            ));
        }
    };
    let algorithm = match read(CONV_ALGORITHM_VARIABLE) {
        None => ConvAlgorithm::Auto,
        Some(text) => text
            .parse()
            .map_err(|error| format!("{CONV_ALGORITHM_VARIABLE}={text:?}: {error}"))?,
    };
    let isa: IsaChoice = match read(CONV_ISA_VARIABLE) {
        None => IsaChoice::Auto,
        Some(text) => text
            .parse()
            .map_err(|error| format!("{CONV_ISA_VARIABLE}={text:?}: {error}"))?,
    };
    let choice = KernelChoice {
        burn,
        conv: ConvChoice { algorithm, isa },
    };
    choice
        .validate()
        .map_err(|error| format!("{CONV_ISA_VARIABLE}: {error}"))?;
    Ok(choice)
}

/// Makes `choice` the process's, over the environment's: every thread without its own
/// ([`with_conv_choice`], [`with_burn_path`]) follows it from here on.
pub fn configure(choice: KernelChoice) -> Result<(), String> {
    choice.validate()?;
    *PROCESS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(choice);
    Ok(())
}

/// The choice the kernels follow in this process (on threads without their own).
pub fn current() -> KernelChoice {
    process_choice()
}

/// The process's choice: [`configure`]'s, else the environment's (read once; a bad value
/// panics at the first kernel, naming the variable, for programs that never configure).
fn process_choice() -> KernelChoice {
    static FROM_ENVIRONMENT: OnceLock<KernelChoice> = OnceLock::new();
    let configured = *PROCESS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    configured.unwrap_or_else(|| {
        *FROM_ENVIRONMENT
            .get_or_init(|| from_environment().unwrap_or_else(|error| panic!("{error}")))
    })
}

static PROCESS: RwLock<Option<KernelChoice>> = RwLock::new(None);

/// An algorithm and, optionally, a forced instruction set for the convolution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvChoice {
    /// Which algorithm.
    pub algorithm: ConvAlgorithm,
    /// The direct kernels' instruction set (`Auto`: the widest the CPU has).
    pub isa: IsaChoice,
}

/// Runs `work` with the convolution engine making `choice` on this thread (the benchmarks and
/// tests compare the algorithms and instruction sets this way). Panics if `choice.isa` is one
/// this CPU lacks.
pub fn with_conv_choice<R>(choice: ConvChoice, work: impl FnOnce() -> R) -> R {
    if let Some(isa) = choice.isa.named() {
        assert!(isa.supported(), "this CPU has no {isa:?}");
    }
    struct Restore(Option<ConvChoice>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CONV_CHOICE.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(CONV_CHOICE.with(|cell| cell.replace(Some(choice))));
    work()
}

/// The engine's choice on this thread: [`with_conv_choice`]'s, else the process's
/// ([`configure`], or the environment), with the instruction set resolved to one this CPU has
/// (`None`: no direct kernels here).
pub(crate) fn conv_choice() -> (ConvAlgorithm, Option<Isa>) {
    let choice = CONV_CHOICE
        .with(Cell::get)
        .unwrap_or_else(|| process_choice().conv);
    (choice.algorithm, choice.isa.resolve())
}

/// Runs `work` with every kernel of this crate deferring to burn on this thread: the
/// reference to compare the kernels against, in the same process. Operations recorded inside
/// keep their choice for the backward pass.
pub fn with_burn_path<R>(work: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BURN_PATH.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(BURN_PATH.with(|cell| cell.replace(true)));
    work()
}

/// Whether the kernels may run: not switched off for the process ([`configure`],
/// [`KERNELS_VARIABLE`]) or on this thread ([`with_burn_path`]).
pub(crate) fn kernels_enabled() -> bool {
    !process_choice().burn && !BURN_PATH.with(Cell::get)
}

/// Whether `device` is flex, with or without autodiff.
pub(crate) fn on_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Whether `device` is flex with autodiff.
pub(crate) fn on_flex_autodiff(device: &Device) -> bool {
    device.is_autodiff() && on_flex(device)
}

/// Whether the convolution engine runs here: on wide vector units (AVX2 with FMA, or AVX-512:
/// the direct kernels, and the `gemm` crate's, which it picks at run time) that this CPU has and
/// the choice in force on this thread allows. Elsewhere (aarch64, old x86, or
/// [`IsaChoice::None`]) the engine stays out of the way and burn's convolutions run.
pub(crate) fn cpu_suits_engine() -> bool {
    conv_choice().1.is_some()
}
