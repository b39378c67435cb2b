//! The convolution engine: every 2-D convolution of the ResNets and plain nets on flex in f32
//! — forward, input gradient and weight gradient, training and evaluation — by direct kernels
//! for the 3×3 layers (`blocked`, vectorised over output channels, at stride 1 and 2 wherever
//! the channels fill whole register tiles; `direct`, vectorised over positions, for the other
//! stride-1 layers with long enough rows: channels that are not whole vectors, or a lone
//! vector of them on rows shorter than its tile) and as GEMMs over chunks of the batch for the
//! rest (`blocked_pays`, `direct_pays`).
//!
//! Burn's flex backend runs one GEMM per image and 512-position tile (16 columns wide at
//! ResNet-18's last stage), the input gradient as a transposed convolution with scalar inner
//! loops, and the weight gradient as a convolution with batch and channels swapped (9-column
//! GEMMs for a 3×3 kernel). Here each is one GEMM per chunk of images with about two thousand
//! columns (`geometry`), im2col and col2im are copies of contiguous runs (`im2col`), working
//! matrices are reused across calls (`crate::scratch`) and outputs are written without being
//! cleared first (`crate::unfilled`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::{ActivationOps, ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Shape, Tensor};
use burn_flex::FlexTensor;

use crate::batch_norm::FusedBatchNormBackend;
use crate::flex::{contiguous, f32s, tensor, untracked};
use crate::moments::ImageMoments;
use crate::routing::{ConvAlgorithm, Isa, conv_choice, cpu_suits_engine, kernels_enabled, on_flex};
use epilogue::Epilogue;
use geometry::Geometry;

mod blocked;
mod direct;
pub(crate) use direct::checks as direct_checks;
mod epilogue;
mod forward;
mod geometry;
mod im2col;
pub(crate) use im2col::checks as im2col_checks;
mod input_grad;
mod matmul;
mod planes;
mod vector;
mod weight_grad;

/// `conv.forward(x)`, computed by the engine where [`engine_options`] says it applies, and by
/// `conv.forward` itself everywhere else. Outputs and gradients equal burn's up to
/// floating-point rounding (the tests bound it at 1e-4 relative).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(options) = engine_options(conv, &x) else {
        return conv.forward(x);
    };
    let output = Tensor::<4>::from_dispatch(Dispatch::engine_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        options,
    ));
    match &conv.bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            output + bias.val().reshape([1, channels, 1, 1])
        }
        None => output,
    }
}

/// The options [`conv2d`] runs `conv` on `x` with where the engine applies; `None` where it
/// defers to burn: another backend, f16/bf16, a grouped convolution, asymmetric or `Same`
/// padding, a frozen weight while training, a CPU without AVX2, or the kernels switched off
/// (`KAIMING_KERNELS=burn`, [`crate::with_burn_path`]).
pub fn engine_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return None;
    };
    let device = x.device();
    let weight = conv.weight.val();
    let applies = top == bottom
        && left == right
        && conv.groups == 1
        && on_flex(&device)
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && (!device.is_autodiff() || weight.is_require_grad())
        && kernels_enabled()
        && cpu_suits_engine();
    applies.then(|| ConvOptions::new(conv.stride, [top, left], conv.dilation, 1))
}

/// The engine's convolution (no bias, one group, symmetric padding) and its two gradients.
///
/// Only flex implements it (and `Autodiff` over flex); [`conv2d`] and
/// [`crate::conv2d_batch_norm`] call it only there. Inputs it does not cover (another dtype) go
/// to burn's own flex operations.
#[backend_extension(Flex, Autodiff)]
pub trait ConvEngineBackend: Backend {
    /// Burn's `conv2d` of `x` with `weight`, without bias.
    fn engine_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// [`engine_conv2d`](Self::engine_conv2d), with the per-channel mean and biased variance
    /// of its output (what a training-mode batch norm after it normalises with, see
    /// `crate::FusedBatchNormBackend::batch_norm_statistics`), gathered from each image as it
    /// is written. The statistics are outside the autodiff graph.
    fn engine_conv2d_statistics(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of [`engine_conv2d`](Self::engine_conv2d) with respect to `x` (whose
    /// shape it takes from `x`), given the gradient of its output.
    fn engine_conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient of [`engine_conv2d`](Self::engine_conv2d) with respect to `weight`,
    /// given the gradient of its output.
    fn engine_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// Which kernels compute a convolution's forward pass and its two gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernels {
    Gemm,
    Direct(Isa),
    Blocked(Isa),
}

/// The three computations of a convolution, each with its own rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    Forward,
    InputGrad,
    WeightGrad,
}

/// The kernels for `pass` of `g`, by the choice in force on this thread
/// (`crate::with_conv_choice`, the environment, or the measured rules of [`blocked_pays`] and
/// [`direct_pays`]).
fn kernels_for(g: &Geometry, pass: Pass) -> Kernels {
    let (algorithm, Some(isa)) = conv_choice() else {
        return Kernels::Gemm;
    };
    match algorithm {
        ConvAlgorithm::Direct if direct::covers(g) => Kernels::Direct(isa),
        ConvAlgorithm::Blocked if blocked::covers(g, pass, isa) => Kernels::Blocked(isa),
        ConvAlgorithm::Auto if blocked::covers(g, pass, isa) && blocked_pays(g, pass, isa) => {
            Kernels::Blocked(isa)
        }
        ConvAlgorithm::Auto if direct::covers(g) && direct_pays(g, pass) => Kernels::Direct(isa),
        _ => Kernels::Gemm,
    }
}

/// Where the channel-blocked kernels beat the others, measured per pass and instruction set
/// with `cargo bench --bench conv` (`benches/README.md`): every layer they cover on whole
/// register tiles (3×3, from 16 channels, up to ResNet-18's 512, the 4×4 stage's rows two at a
/// time on AVX-512). A lone vector of output channels (16 channels on AVX-512) takes them on
/// rows that hold its wider tile (ResNet-20's 16-channel layer, forward and input gradient:
/// 3.4 ms against the direct kernels' 3.6); on shorter rows it goes to the direct kernels, and
/// other rows shorter than a position tile to GEMMs. On AVX2 the weight gradient of rows of 4
/// goes to GEMMs too: its tiles, swept twice over a 4×4 image, spend more on their ends than
/// on its 16 positions (ResNet-18's 512-channel layer: 76.9 ms against 66.6, where 8×8 rows
/// take 52.1 against 64.9).
fn blocked_pays(g: &Geometry, pass: Pass, isa: Isa) -> bool {
    let short_weight_grad =
        matches!((pass, isa), (Pass::WeightGrad, Isa::Avx2)) && g.out_width <= 4;
    // As for the direct kernels: images are spread over threads.
    g.batch >= rayon::current_num_threads()
        && blocked::whole_tiles(g, pass, isa)
        && !short_weight_grad
}

/// Where the direct kernels beat im2col + GEMM, measured per pass with `cargo bench --bench
/// conv` (`benches/README.md`). Narrow rows waste part of each register tile on padding
/// columns, and GEMMs over many images win there unless the layer is narrow too: the forward
/// pass and input gradient take the direct kernels up to 128 channels on rows of 16 or more
/// outputs and up to 64 on rows of 8; the weight gradient, whose tiles sweep the whole image
/// once per channel pair, up to 64 channels on rows of 16 or more.
fn direct_pays(g: &Geometry, pass: Pass) -> bool {
    let widest = g.channels_in.max(g.channels_out);
    let row = g.out_width;
    // The direct kernels spread images over threads; a smaller batch leaves threads idle,
    // where the GEMM path spreads one product over all of them.
    g.batch >= rayon::current_num_threads()
        && match pass {
            Pass::Forward | Pass::InputGrad => {
                (row >= 16 && widest <= 128) || (row >= 8 && widest <= 64)
            }
            Pass::WeightGrad => row >= 16 && widest <= 64,
        }
}

/// Whether the engine covers these flex tensors (burn's operations take the rest).
fn engine_covers(tensors: &[&FlexTensor], options: &ConvOptions<2>) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
        && options.groups == 1
        && !options.is_asymmetric()
}

/// The geometry of a convolution whose gradient is computed from `output_grad`, which must
/// have the convolution's output shape.
fn gradient_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Geometry {
    let g = Geometry::new(&x.shape(), &weight.shape(), options);
    assert_eq!(
        output_grad.shape(),
        g.output_shape(),
        "conv2d output gradient"
    );
    g
}

impl ConvEngineBackend for Flex {
    fn engine_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !engine_covers(&[&x, &weight], &options) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options);
        }
        engine_forward(x, weight, &options, Epilogue::NONE)
    }

    fn engine_conv2d_statistics(
        x: FlexTensor,
        weight: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        if !engine_covers(&[&x, &weight], &options) {
            let output = <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options);
            let (mean, variance) = Flex::batch_norm_statistics(output.clone());
            return (output, mean, variance);
        }
        let g = Geometry::new(&x.shape(), &weight.shape(), &options);
        let moments = ImageMoments::new(g.batch, g.channels_out, g.out_positions());
        let epilogue = Epilogue {
            moments: Some(&moments),
            ..Epilogue::NONE
        };
        let output = engine_forward(x, weight, &options, epilogue);
        let (mean, variance) = moments.statistics();
        let channels = Shape::new([g.channels_out]);
        (
            output,
            tensor(mean, channels.clone()),
            tensor(variance, channels),
        )
    }

    fn engine_conv2d_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !engine_covers(&[&x, &weight, &output_grad], &options) {
            return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, output_grad, options);
        }
        let g = gradient_geometry(&x, &weight, &output_grad, &options);
        let (weight, output_grad) = (contiguous(weight), contiguous(output_grad));
        let (weight, output_grad) = (f32s(&weight), f32s(&output_grad));
        let x_grad = match kernels_for(&g, Pass::InputGrad) {
            Kernels::Direct(isa) => direct::input_grad(weight, output_grad, &g, isa),
            Kernels::Blocked(isa) => blocked::input_grad(weight, output_grad, &g, isa),
            Kernels::Gemm => input_grad::input_grad(weight, output_grad, &g),
        };
        tensor(x_grad, x.shape())
    }

    fn engine_conv2d_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !engine_covers(&[&x, &weight, &output_grad], &options) {
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        }
        let g = gradient_geometry(&x, &weight, &output_grad, &options);
        let (x, output_grad) = (contiguous(x), contiguous(output_grad));
        let (x, output_grad) = (f32s(&x), f32s(&output_grad));
        let weight_grad = match kernels_for(&g, Pass::WeightGrad) {
            Kernels::Direct(isa) => direct::weight_grad(x, output_grad, &g, isa),
            Kernels::Blocked(isa) => blocked::weight_grad(x, output_grad, &g, isa),
            Kernels::Gemm => weight_grad::weight_grad(x, output_grad, &g),
        };
        tensor(weight_grad, weight.shape())
    }
}

/// The engine's forward pass on covered flex tensors, each output written through `epilogue`.
fn engine_forward(
    x: FlexTensor,
    weight: FlexTensor,
    options: &ConvOptions<2>,
    epilogue: Epilogue,
) -> FlexTensor {
    let g = Geometry::new(&x.shape(), &weight.shape(), options);
    let (x, weight) = (contiguous(x), contiguous(weight));
    let (x, weight) = (f32s(&x), f32s(&weight));
    let output = match kernels_for(&g, Pass::Forward) {
        Kernels::Direct(isa) => direct::forward(x, weight, &g, isa, epilogue),
        Kernels::Blocked(isa) => blocked::forward(x, weight, &g, isa, epilogue),
        Kernels::Gemm => forward::forward(x, weight, &g, epilogue),
    };
    if let (true, Some(moments)) = (g.is_empty(), epilogue.moments) {
        // The kernels return zeros for an empty convolution without visiting an image.
        let per_image = g.channels_out * g.out_positions();
        for index in 0..g.batch {
            moments.record(index, &output[index * per_image..][..per_image]);
        }
    }
    tensor(output, g.output_shape())
}

/// The engine's convolution with a per-channel bias and an optional ReLU applied as it writes
/// each output: evaluation's convolution with its batch norm folded in
/// ([`crate::conv2d_batch_norm`]). Only flex implements it, without autodiff.
#[backend_extension(Flex)]
pub trait InferenceConvBackend: Backend {
    /// `conv2d(x, weight) + bias` (`bias` `[C_out]`), then a ReLU if `relu`.
    fn engine_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

impl InferenceConvBackend for Flex {
    fn engine_conv2d_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !engine_covers(&[&x, &weight, &bias], &options) {
            let output = <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), options);
            return match relu {
                true => Flex::relu(output),
                false => output,
            };
        }
        let bias = contiguous(bias);
        let epilogue = Epilogue {
            bias: Some(f32s(&bias)),
            relu,
            moments: None,
        };
        engine_forward(x, weight, &options, epilogue)
    }
}

/// What the backward step keeps: `x` and `weight` as checkpointed nodes, and the options.
#[derive(Debug, Clone)]
struct State {
    x: NodeId,
    weight: NodeId,
    options: ConvOptions<2>,
}

/// The backward step: the engine's input and weight gradients, each only where needed (the
/// first layer's input needs none).
#[derive(Debug)]
struct EngineConvStep;

impl<B: ConvEngineBackend> Backward<B, 2> for EngineConvStep {
    type State = State;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let State { x, weight, options } = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight);

        if let Some(node) = node_x {
            let x_grad = B::engine_conv2d_input_grad(
                x.clone(),
                weight.clone(),
                output_grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, x_grad);
        }
        if let Some(node) = node_weight {
            let weight_grad = B::engine_conv2d_weight_grad(x, weight, output_grad, options);
            grads.register::<B>(node.id, weight_grad);
        }
    }
}

/// `forward` of `x` and `weight` on the inner backend, recorded as the engine's convolution:
/// the output it returns joins the graph ([`EngineConvStep`]), what it returns besides stays
/// outside.
fn tracked<B: ConvEngineBackend, C: CheckpointStrategy, T>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    options: ConvOptions<2>,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, ConvOptions<2>) -> (FloatTensor<B>, T),
) -> (FloatTensor<Autodiff<B, C>>, T) {
    match EngineConvStep
        .prepare::<C>([x.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = State {
                x: prep.checkpoint(&x),
                weight: prep.checkpoint(&weight),
                options: options.clone(),
            };
            let (output, rest) = forward(x.into_primitive(), weight.into_primitive(), options);
            (prep.finish(state, output), rest)
        }
        OpsKind::UnTracked(prep) => {
            let (output, rest) = forward(x.into_primitive(), weight.into_primitive(), options);
            (prep.finish(output), rest)
        }
    }
}

impl<B: ConvEngineBackend, C: CheckpointStrategy> ConvEngineBackend for Autodiff<B, C> {
    fn engine_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let forward = |x, weight, options| (B::engine_conv2d(x, weight, options), ());
        tracked::<B, C, _>(x, weight, options, forward).0
    }

    fn engine_conv2d_statistics(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let forward = |x, weight, options| {
            let (output, mean, variance) = B::engine_conv2d_statistics(x, weight, options);
            (output, (mean, variance))
        };
        let (output, (mean, variance)) = tracked::<B, C, _>(x, weight, options, forward);
        (output, untracked(mean), untracked(variance))
    }

    /// Computed on the inner backend without recording a graph (not itself differentiable).
    fn engine_conv2d_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        untracked(B::engine_conv2d_input_grad(
            x.into_primitive(),
            weight.into_primitive(),
            output_grad.into_primitive(),
            options,
        ))
    }

    /// Computed on the inner backend without recording a graph (not itself differentiable).
    fn engine_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        untracked(B::engine_conv2d_weight_grad(
            x.into_primitive(),
            weight.into_primitive(),
            output_grad.into_primitive(),
            options,
        ))
    }
}
