//! CPU kernels for burn's `flex` backend, where profiling showed burn's generic
//! implementations spending most of a ResNet step, registered through burn's backend
//! extension so autodiff, the `Dispatch` backend and every other backend keep working. Anywhere
//! a kernel does not apply (another backend, f16/bf16, a frozen layer, a grouped convolution,
//! a CPU without AVX2) these functions call burn's own module.
//!
//! - [`conv2d`]: the convolution engine — forward, input gradient and weight gradient, in
//!   training and in evaluation. Direct kernels (AVX-512 or AVX2, picked at run time) for the
//!   3×3 layers at stride 1 and 2: vectorised over output channels wherever the channels fill
//!   whole register tiles, over positions for other stride-1 layers with long enough rows;
//!   GEMMs over chunks of the batch for the rest; working buffers reused across calls,
//!   outputs written without being cleared first (see the `conv` module). In evaluation a
//!   batch norm is folded into the convolution before it ([`conv2d_batch_norm`]).
//! - [`batch_norm`] and [`batch_norm_relu`]: batch norm (and the ReLU after it). In training
//!   burn runs it on flex as generic tensor operations: two full layout copies (`swap_dims` +
//!   `reshape`) for the per-channel statistics and about twenty passes over the activation,
//!   each into a fresh buffer; here it takes two passes forward and two backward, the ReLU
//!   included, and one forward where the convolution before it gathered the statistics
//!   ([`conv2d_batch_norm`]). In evaluation it is one pass.
//! - [`add_relu`]: the closing `relu(branch + shortcut)` of a residual block in one pass each
//!   way.
//!
//! [`with_burn_path`] and `KAIMING_KERNELS=burn` send everything back to burn, for comparisons;
//! [`with_conv_choice`], `KAIMING_CONV=gemm|direct|blocked` and `KAIMING_CONV_ISA=avx2|avx512|avx512-emulated` force
//! the convolution engine's algorithm and instruction set; [`configure`] sets all three for the
//! process (a training run's `[kernels]` settings), over the environment.
//! [`set_write_checks`] (or `KAIMING_CHECK_WRITES=1`) makes every kernel's output start as a
//! tagged NaN and panics if one survives: the tests' guard against a missed write.

mod batch_norm;
mod conv;
mod flex;
mod moments;
mod residual;
mod routing;
mod scratch;
mod unfilled;

use burn::backend::Dispatch;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};

use routing::{kernels_enabled, on_flex, on_flex_autodiff};

pub use batch_norm::{FusedBatchNormBackend, InferenceBatchNormBackend};
pub use conv::{ConvEngineBackend, InferenceConvBackend, conv2d, engine_options};
pub use residual::{FusedAddReluBackend, add_relu};
pub use routing::{
    CONV_ALGORITHM_VARIABLE, CONV_ISA_VARIABLE, ConvAlgorithm, ConvChoice, Isa, IsaChoice,
    KERNELS_VARIABLE, KernelChoice, configure, current, from_environment, with_burn_path,
    with_conv_choice,
};
pub use unfilled::{CHECK_WRITES_VARIABLE, set_write_checks};

/// The checks of the kernels' internals against their definitions (the direct and blocked
/// kernels against an f64 convolution on every instruction set, the moments, the im2col ranges,
/// the write checks), run by the crate's test suite (`tests/suite/internals.rs`) and by Miri.
/// They live in the library, not in unit tests, so the suite reuses the library's one optimised
/// build instead of compiling the crate a second time with `cfg(test)`. Not an API.
#[doc(hidden)]
pub mod self_checks {
    pub use crate::conv::{direct_checks::*, im2col_checks::*};
    pub use crate::moments::checks::*;
    pub use crate::unfilled::checks::*;
}

/// `bn.forward(x)`, computed by the fused flex kernels when training on flex in f32, and in
/// evaluation (flex without autodiff, f32) as one pass over `x`.
///
/// The output, the gradients and the running statistics it leaves in `bn` equal burn's up to
/// floating-point rounding (see the tests for the bounds).
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    match (fused_applies(bn, &x), inference_applies(bn, &x)) {
        (true, _) => fused(bn, x, false),
        (false, true) => inference(bn, x, false),
        (false, false) => bn.forward(x),
    }
}

/// `relu(bn.forward(x))`, as one fused operation where [`batch_norm`] would be fused: the
/// ReLU costs no extra pass over the activation, forward or backward.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    match (fused_applies(bn, &x), inference_applies(bn, &x)) {
        (true, _) => fused(bn, x, true),
        (false, true) => inference(bn, x, true),
        (false, false) => relu(bn.forward(x)),
    }
}

/// `bn.forward(conv.forward(x))`, then a ReLU if `relu`. In evaluation on flex (no autodiff,
/// f32, where [`conv2d`] takes the engine and [`batch_norm`] its one-pass kernel) the norm is
/// folded into the convolution: weights scaled by `γ/√(σ² + ε)` per output channel, and the
/// bias `β − μ·γ/√(σ² + ε)` (plus the convolution's own, scaled) and the ReLU applied as the
/// convolution writes each output, so the activation is written once instead of read and
/// written again by the norm. Within 1e-5 of the unfolded result (the tests). In training,
/// where both take the fused kernels and the convolution has no bias, the convolution gathers
/// the norm's batch statistics as it writes each image, so the norm reads its input once, to
/// normalise it, instead of once more for the statistics. Elsewhere it is [`conv2d`] then
/// [`batch_norm`] or [`batch_norm_relu`].
pub fn conv2d_batch_norm(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let training = conv.bias.is_none() && fused_applies(bn, &x);
    let options = match training || inference_applies(bn, &x) {
        true => engine_options(conv, &x),
        false => None,
    };
    let Some(options) = options else {
        let output = conv2d(conv, x);
        return match relu {
            true => batch_norm_relu(bn, output),
            false => batch_norm(bn, output),
        };
    };
    if training {
        let (output, mean, variance) = Dispatch::engine_conv2d_statistics(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            options,
        );
        let (mean, variance) = (Tensor::from_dispatch(mean), Tensor::from_dispatch(variance));
        return normalise(bn, Tensor::from_dispatch(output), mean, variance, relu);
    }
    let device = x.device();
    let channels = conv.weight.dims()[0];
    let variance = bn.running_var.value().to_device(&device);
    let mean = bn.running_mean.value().to_device(&device);
    let scale = bn.gamma.val() / variance.add_scalar(bn.epsilon).sqrt();
    let weight = conv.weight.val() * scale.clone().reshape([channels, 1, 1, 1]);
    let shift = match &conv.bias {
        Some(bias) => bias.val() - mean,
        None => -mean,
    };
    let bias = bn.beta.val() + shift * scale;
    Tensor::from_dispatch(Dispatch::engine_conv2d_bias(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        relu,
        options,
    ))
}

/// Burn's evaluation-mode batch norm (running statistics), then a ReLU if `relu`, in one pass.
fn inference<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    let device = x.device();
    let output = Dispatch::batch_norm_inference(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.running_mean.value().to_device(&device).into_dispatch(),
        bn.running_var.value().to_device(&device).into_dispatch(),
        bn.epsilon,
        relu,
    );
    Tensor::from_dispatch(output)
}

/// Whether `bn.forward(x)` takes burn's evaluation path (running statistics) on flex without
/// autodiff in f32, where the one-pass kernel replaces it. Evaluation on an autodiff device
/// (a frozen layer inside a training graph) stays burn's.
pub fn inference_applies<const D: usize>(bn: &BatchNorm, x: &Tensor<D>) -> bool {
    let device = x.device();
    kernels_enabled() && !device.is_autodiff() && on_flex(&device) && all_f32(bn, x)
}

/// Whether `x` and the layer's affine parameters are f32, the kernels' only type.
fn all_f32<const D: usize>(bn: &BatchNorm, x: &Tensor<D>) -> bool {
    [x.dtype(), bn.gamma.val().dtype(), bn.beta.val().dtype()]
        .iter()
        .all(|&dtype| dtype == DType::F32)
}

/// The fused training-mode batch norm, with burn's update of the running statistics.
fn fused<const D: usize>(bn: &BatchNorm, x: Tensor<D>, relu: bool) -> Tensor<D> {
    let (mean, variance) = Dispatch::batch_norm_statistics(x.clone().into_dispatch());
    let (mean, variance) = (Tensor::from_dispatch(mean), Tensor::from_dispatch(variance));
    normalise(bn, x, mean, variance, relu)
}

/// The fused training-mode batch norm of `x` with its batch statistics `mean` and `variance`,
/// which also move the running statistics exactly as in burn's `BatchNorm::forward`.
fn normalise<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    mean: Tensor<1>,
    variance: Tensor<1>,
    relu: bool,
) -> Tensor<D> {
    let device = x.device();
    let output = Dispatch::fused_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        mean.clone().into_dispatch(),
        variance.clone().into_dispatch(),
        bn.epsilon,
        relu,
    );

    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean
        .mul_scalar(1.0 - momentum)
        .add(mean.detach().mul_scalar(momentum));
    let running_var = running_var
        .mul_scalar(1.0 - momentum)
        .add(variance.detach().mul_scalar(momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());

    Tensor::from_dispatch(output)
}

/// Whether `bn.forward(x)` would take burn's training path on a flex device in f32 (the only
/// case the fused kernels implement), with the kernels not switched off.
pub fn fused_applies<const D: usize>(bn: &BatchNorm, x: &Tensor<D>) -> bool {
    kernels_enabled() && on_flex_autodiff(&x.device()) && bn.training.is_enabled() && all_f32(bn, x)
}
