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

thread_local! {
    static BURN_PATH: Cell<bool> = const { Cell::new(false) };
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

/// Whether this CPU runs the convolution engine's GEMMs on wide vector units (AVX2 with FMA,
/// or AVX-512, picked at run time by the `gemm` crate). Elsewhere (aarch64, old x86) burn's
/// own convolutions are as fast and the engine stays out of the way.
pub(crate) fn cpu_suits_engine() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
