//! A 2-D convolution whose weight gradient is one GEMM over the batch.
//!
//! Burn computes a convolution's weight gradient as another convolution, with batch and
//! channels swapped: the output gradient plays the kernel, so a 3×3 layer's result has 9
//! positions per channel pair, and flex runs one GEMM per input channel whose output is 9
//! columns wide — the edge case of its micro-kernels (45 % of a ResNet-18 step on flex). Here
//! it is `dW[C_out, C_in·kh·kw] = dY[C_out, N·H·W] · im2col(x)ᵀ`, as in PyTorch, with both
//! output dimensions large. The forward pass and the input gradient stay burn's.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;

use crate::flex::{contiguous, f32s, on_flex_autodiff, tensor, untracked};
use weight_grad::Geometry;

mod weight_grad;

/// `conv.forward(x)`, with the weight gradient computed as one GEMM over the batch where that
/// applies: training on flex, f32, one group, symmetric explicit padding (every convolution of
/// the ResNets). Elsewhere it is `conv.forward(x)` itself.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(options) = batched_options(conv, &x) else {
        return conv.forward(x);
    };
    let weight = conv.weight.val();
    let output = Tensor::<4>::from_dispatch(Dispatch::batched_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
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

/// The options [`conv2d`] runs `conv` on `x` with, where it takes the batched path; `None`
/// where it defers to `conv.forward`.
pub fn batched_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return None;
    };
    let applies = top == bottom
        && left == right
        && conv.groups == 1
        && on_flex_autodiff(&x.device())
        && x.dtype() == DType::F32
        && conv.weight.val().dtype() == DType::F32;
    applies.then(|| ConvOptions::new(conv.stride, [top, left], conv.dilation, 1))
}

/// A convolution (no bias, one group) whose weight gradient is one GEMM over the batch.
///
/// Only flex implements it (and `Autodiff` over flex); [`conv2d`] calls it only there.
#[backend_extension(Flex, Autodiff)]
pub trait BatchedConvBackend: Backend {
    /// Burn's `conv2d` of `x` with `weight`, without bias.
    fn batched_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient of [`batched_conv2d`](Self::batched_conv2d) with respect to `weight`,
    /// given the gradient of its output.
    fn batched_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

impl BatchedConvBackend for Flex {
    fn batched_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options)
    }

    fn batched_conv2d_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let f32_inputs = [&x, &weight, &output_grad]
            .iter()
            .all(|t| t.dtype() == DType::F32);
        if !f32_inputs || options.groups != 1 || options.is_asymmetric() {
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(
                x,
                weight,
                output_grad,
                options,
            );
        }
        let geometry = Geometry::new(&x.shape(), &weight.shape(), &output_grad.shape(), &options);
        let (x, output_grad) = (contiguous(x), contiguous(output_grad));
        let values = weight_grad::compute(f32s(&x), f32s(&output_grad), &geometry);
        tensor(values, weight.shape())
    }
}

/// What the backward step keeps: `x` and `weight` as checkpointed nodes, and the options.
#[derive(Debug, Clone)]
struct State {
    x: NodeId,
    weight: NodeId,
    options: ConvOptions<2>,
}

/// The backward step: burn's input gradient, the batched weight gradient.
#[derive(Debug)]
struct BatchedConvStep;

impl<B: BatchedConvBackend> Backward<B, 2> for BatchedConvStep {
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
            let x_grad = B::conv2d_x_backward(
                x.clone(),
                weight.clone(),
                output_grad.clone(),
                options.clone(),
            );
            grads.register::<B>(node.id, x_grad);
        }
        if let Some(node) = node_weight {
            let weight_grad = B::batched_conv2d_weight_grad(x, weight, output_grad, options);
            grads.register::<B>(node.id, weight_grad);
        }
    }
}

impl<B: BatchedConvBackend, C: CheckpointStrategy> BatchedConvBackend for Autodiff<B, C> {
    fn batched_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match BatchedConvStep
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
                let output =
                    B::batched_conv2d(x.into_primitive(), weight.into_primitive(), options);
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::batched_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    /// Computed on the inner backend without recording a graph (not itself differentiable).
    fn batched_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        untracked(B::batched_conv2d_weight_grad(
            x.into_primitive(),
            weight.into_primitive(),
            output_grad.into_primitive(),
            options,
        ))
    }
}
