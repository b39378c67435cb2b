//! Where the kernels apply: which devices, which CPUs, and the switches that send everything
//! back to burn's own implementations (for comparisons and for users who want burn's path).

use std::cell::Cell;
use std::sync::OnceLock;

use burn::backend::DispatchDevice;
use burn::tensor::Device;

/// The environment variable that turns every kernel off for the whole process: `burn` sends
/// every operation to burn's own implementation; unset (or `kernels`) uses the kernels where
/// they apply. Anything else is refused at first use, naming the variable.
pub const KERNELS_VARIABLE: &str = "KAIMING_KERNELS";

/// The environment variable that picks the convolution engine's algorithm: `auto` (the
/// default: by the measured rules of `conv::direct_pays`), `gemm` (im2col GEMMs everywhere) or
/// `direct` (the direct kernels wherever they apply).
pub const CONV_ALGORITHM_VARIABLE: &str = "KAIMING_CONV";

/// The environment variable that picks the instruction set of the direct convolution kernels:
/// `auto` (the default: AVX-512 where the CPU has it, else AVX2), `avx512` or `avx2` (refused,
/// naming the variable, on a CPU without it). Forcing `avx2` tests that path on an AVX-512
/// machine.
pub const CONV_ISA_VARIABLE: &str = "KAIMING_CONV_ISA";

thread_local! {
    static BURN_PATH: Cell<bool> = const { Cell::new(false) };
    static CONV_CHOICE: Cell<Option<ConvChoice>> = const { Cell::new(None) };
}

/// How the convolution engine computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// By the measured rules (`benches/README.md`): direct kernels for the narrow stride-1
    /// layers, GEMMs over chunks of the batch for the rest.
    Auto,
    /// im2col GEMMs over chunks of the batch, everywhere.
    Gemm,
    /// The direct kernels wherever they apply (stride 1, no dilation, square odd kernels).
    Direct,
}

/// The vector instruction set of the direct convolution kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 16 floats per vector.
    Avx512,
    /// 8 floats per vector, with FMA.
    Avx2,
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
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The widest instruction set this CPU has, if any.
    fn best() -> Option<Self> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.supported())
    }
}

/// An algorithm and, optionally, a forced instruction set for the convolution engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvChoice {
    /// Which algorithm.
    pub algorithm: ConvAlgorithm,
    /// The direct kernels' instruction set; `None` for the widest the CPU has.
    pub isa: Option<Isa>,
}

/// Runs `work` with the convolution engine making `choice` on this thread (the benchmarks and
/// tests compare the algorithms and instruction sets this way). Panics if `choice.isa` is one
/// this CPU lacks.
pub fn with_conv_choice<R>(choice: ConvChoice, work: impl FnOnce() -> R) -> R {
    if let Some(isa) = choice.isa {
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

/// The engine's choice on this thread: [`with_conv_choice`]'s, else the environment's
/// ([`CONV_ALGORITHM_VARIABLE`], [`CONV_ISA_VARIABLE`]), with the instruction set resolved to
/// one this CPU has (`None`: no direct kernels here).
pub(crate) fn conv_choice() -> (ConvAlgorithm, Option<Isa>) {
    static FROM_ENVIRONMENT: OnceLock<ConvChoice> = OnceLock::new();
    let choice = CONV_CHOICE.with(Cell::get).unwrap_or_else(|| {
        *FROM_ENVIRONMENT.get_or_init(|| {
            let read = |name: &str| std::env::var(name).unwrap_or_default();
            let algorithm = match read(CONV_ALGORITHM_VARIABLE).as_str() {
                "" | "auto" => ConvAlgorithm::Auto,
                "gemm" => ConvAlgorithm::Gemm,
                "direct" => ConvAlgorithm::Direct,
                other => panic!(
                    "{CONV_ALGORITHM_VARIABLE}={other:?}: expected `auto`, `gemm` or `direct`"
                ),
            };
            let isa = match read(CONV_ISA_VARIABLE).as_str() {
                "" | "auto" => None,
                "avx512" => Some(Isa::Avx512),
                "avx2" => Some(Isa::Avx2),
                other => {
                    panic!("{CONV_ISA_VARIABLE}={other:?}: expected `auto`, `avx512` or `avx2`")
                }
            };
            if let Some(isa) = isa {
                assert!(
                    isa.supported(),
                    "{CONV_ISA_VARIABLE}: this CPU has no {isa:?}"
                );
            }
            ConvChoice { algorithm, isa }
        })
    });
    (choice.algorithm, choice.isa.or_else(Isa::best))
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

/// Whether the kernels may run: not switched off by [`KERNELS_VARIABLE`] or
/// [`with_burn_path`].
pub(crate) fn kernels_enabled() -> bool {
    static FROM_ENVIRONMENT: OnceLock<bool> = OnceLock::new();
    let enabled = *FROM_ENVIRONMENT.get_or_init(|| match std::env::var(KERNELS_VARIABLE) {
        Err(_) => true,
        Ok(value) => match value.as_str() {
            "" | "kernels" => true,
            "burn" => false,
            other => panic!("{KERNELS_VARIABLE}={other:?}: expected `kernels` or `burn`"),
        },
    });
    enabled && !BURN_PATH.with(Cell::get)
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

/// Whether this CPU runs the convolution engine on wide vector units (AVX2 with FMA, or
/// AVX-512: the direct kernels, and the `gemm` crate's, which it picks at run time). Elsewhere
/// (aarch64, old x86) the engine stays out of the way and burn's convolutions run.
pub(crate) fn cpu_suits_engine() -> bool {
    Isa::best().is_some()
}
