//! `relu(branch + shortcut)`, the end of every residual block, as one operation.
//!
//! Burn runs it as an add and a ReLU, each a pass into a fresh buffer forward, and two more
//! passes backward (the ReLU's mask, then the add's gradient for each input). Fused, it is one
//! pass each way, and both inputs receive the same gradient tensor.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::relu;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::flex::{contiguous, f32s, tensor, untracked};
use crate::routing::{kernels_enabled, on_flex};
use crate::unfilled;

/// Elements per parallel task: large enough to amortise the task, small enough to share.
const TASK: usize = 1 << 14;

/// `relu(branch + shortcut)`, fused on flex in f32 (training and evaluation) for inputs of the
/// same shape; burn's two operations everywhere else. Equal to burn's to the bit: the same
/// one addition per element, and burn's ReLU (NaN passes through, as in PyTorch).
pub fn add_relu<const D: usize>(branch: Tensor<D>, shortcut: Tensor<D>) -> Tensor<D> {
    let applies = kernels_enabled()
        && on_flex(&branch.device())
        && branch.dtype() == DType::F32
        && shortcut.dtype() == DType::F32
        && branch.dims() == shortcut.dims();
    match applies {
        true => Tensor::from_dispatch(Dispatch::fused_add_relu(
            branch.into_dispatch(),
            shortcut.into_dispatch(),
        )),
        false => relu(branch + shortcut),
    }
}

/// The fused residual closing and its gradient. Only flex implements it (and `Autodiff` over
/// flex); [`add_relu`] calls it only there.
#[backend_extension(Flex, Autodiff)]
pub trait FusedAddReluBackend: Backend {
    /// `relu(a + b)` for `a` and `b` of the same shape.
    fn fused_add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The gradient reaching both inputs: `output_grad` where `output` is positive, else 0.
    fn fused_add_relu_backward(
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedAddReluBackend for Flex {
    fn fused_add_relu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        if a.dtype() != DType::F32 || b.dtype() != DType::F32 || a.shape() != b.shape() {
            return Flex::relu(Flex::float_add(a, b));
        }
        let shape = a.shape();
        let (a, b) = (contiguous(a), contiguous(b));
        let (a, b) = (f32s(&a), f32s(&b));
        let mut output = unfilled::buffer(a.len());
        output
            .par_chunks_mut(TASK)
            .zip(a.par_chunks(TASK).zip(b.par_chunks(TASK)))
            .for_each(|(output, (a, b))| {
                for ((output, a), b) in output.iter_mut().zip(a).zip(b) {
                    let sum = a + b;
                    output.write(if sum.is_nan() || sum > 0.0 { sum } else { 0.0 });
                }
            });
        // SAFETY: every element was written above.
        tensor(unsafe { unfilled::assume_init(output) }, shape)
    }

    fn fused_add_relu_backward(output: FlexTensor, output_grad: FlexTensor) -> FlexTensor {
        let f32_inputs = output.dtype() == DType::F32 && output_grad.dtype() == DType::F32;
        if !f32_inputs || output.shape() != output_grad.shape() {
            return Flex::relu_backward(output, output_grad);
        }
        let shape = output.shape();
        let (output, output_grad) = (contiguous(output), contiguous(output_grad));
        let (output, output_grad) = (f32s(&output), f32s(&output_grad));
        let mut grad = unfilled::buffer(output.len());
        grad.par_chunks_mut(TASK)
            .zip(output.par_chunks(TASK).zip(output_grad.par_chunks(TASK)))
            .for_each(|(grad, (output, output_grad))| {
                for ((grad, output), output_grad) in grad.iter_mut().zip(output).zip(output_grad) {
                    // Burn's mask: zero where the output is at most zero (NaN keeps its
                    // gradient). As bits, not a branch: the compiler made `if` a branch per
                    // element, on a sign that is a coin toss, and the mispredictions made this
                    // pass 6 % of a ResNet-20 step; the mask keeps it branch-free and vectorised.
                    let blocked = *output <= 0.0;
                    let keep = u32::from(blocked).wrapping_sub(1);
                    grad.write(f32::from_bits(output_grad.to_bits() & keep));
                }
            });
        // SAFETY: every element was written above.
        tensor(unsafe { unfilled::assume_init(grad) }, shape)
    }
}

/// The backward step; its state is the output, whose sign is the ReLU's mask.
#[derive(Debug)]
struct AddReluStep;

impl<B: FusedAddReluBackend> Backward<B, 2> for AddReluStep {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_a, node_b] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let grad = B::fused_add_relu_backward(ops.state, output_grad);
        match (node_a, node_b) {
            (Some(a), Some(b)) => {
                grads.register::<B>(a.id, grad.clone());
                grads.register::<B>(b.id, grad);
            }
            (Some(node), None) | (None, Some(node)) => grads.register::<B>(node.id, grad),
            (None, None) => {}
        }
    }
}

impl<B: FusedAddReluBackend, C: CheckpointStrategy> FusedAddReluBackend for Autodiff<B, C> {
    fn fused_add_relu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        match AddReluStep
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::fused_add_relu(a.into_primitive(), b.into_primitive());
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_add_relu(a.into_primitive(), b.into_primitive()))
            }
        }
    }

    /// Computed on the inner backend without recording a graph (not itself differentiable).
    fn fused_add_relu_backward(
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        untracked(B::fused_add_relu_backward(
            output.into_primitive(),
            output_grad.into_primitive(),
        ))
    }
}
