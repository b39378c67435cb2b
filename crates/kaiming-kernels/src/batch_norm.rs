//! The fused batch norm as a burn backend extension: implemented on flex, differentiated by a
//! hand-written backward step on `Autodiff`, and routed from `Dispatch` by the
//! `#[backend_extension]` macro.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape};
use burn_flex::FlexTensor;

use crate::flex::{contiguous, f32s, tensor, untracked};
use kernels::{Affine, Layout};

mod kernels;

/// Batch norm in training mode, optionally followed by a ReLU, as one fused operation, and the
/// batch statistics it normalises with.
///
/// Only flex implements it (and `Autodiff` over flex); [`crate::batch_norm`] and
/// [`crate::conv2d_batch_norm`] call it only there, and burn's `BatchNorm::forward` everywhere
/// else.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBatchNormBackend: Backend {
    /// The per-channel mean and biased variance of `x` (`[batch, channels, ...]`): what burn's
    /// `batch_norm_train` normalises with. Outside the autodiff graph: the backward of
    /// [`fused_batch_norm_train`](Self::fused_batch_norm_train) accounts for them.
    fn batch_norm_statistics(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Normalises `x` (`[batch, channels, ...]`) with its own per-channel statistics `mean`
    /// and `variance` (from [`batch_norm_statistics`](Self::batch_norm_statistics), or gathered
    /// by the convolution that wrote `x`, `crate::ConvEngineBackend::engine_conv2d_statistics`),
    /// applies `gamma` and `beta`, then a ReLU if `relu`: burn's `batch_norm_train` output. Its
    /// gradient with respect to `x` includes the statistics' dependence on `x`, so they take
    /// none of their own.
    #[allow(clippy::too_many_arguments)] // burn's `batch_norm` inputs and the ReLU switch
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// The gradients of [`fused_batch_norm_train`](Self::fused_batch_norm_train) with respect
    /// to `x`, `gamma` and `beta`, given the gradient of its output and the statistics it
    /// normalised with.
    #[allow(clippy::too_many_arguments)] // the forward's inputs, statistics and settings
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Batch norm in evaluation mode (the running statistics), optionally followed by a ReLU, as
/// one pass. Only flex implements it, without autodiff: evaluation runs on the plain device.
#[backend_extension(Flex)]
pub trait InferenceBatchNormBackend: Backend {
    /// `(x − mean) / sqrt(variance + epsilon) · gamma + beta`, then a ReLU if `relu`.
    #[allow(clippy::too_many_arguments)] // burn's `batch_norm` inputs and the ReLU switch
    fn batch_norm_inference(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;
}

impl InferenceBatchNormBackend for Flex {
    fn batch_norm_inference(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> FlexTensor {
        if [&x, &gamma, &beta, &mean, &variance]
            .iter()
            .any(|t| t.dtype() != DType::F32)
        {
            let output =
                <Flex as ModuleOps<Flex>>::batch_norm(x, gamma, beta, mean, variance, epsilon);
            return match relu {
                true => Flex::relu(output),
                false => output,
            };
        }
        let shape = x.shape();
        let layout = Layout::of(&shape);
        let x = contiguous(x);
        let [gamma, beta, mean, variance] = [gamma, beta, mean, variance].map(contiguous);
        let inv_std = kernels::inverse_std(f32s(&variance), epsilon);
        let affine = Affine::new(f32s(&gamma), f32s(&beta), f32s(&mean), &inv_std, relu);
        tensor(affine.apply(f32s(&x), layout), shape)
    }
}

impl FusedBatchNormBackend for Flex {
    fn batch_norm_statistics(x: FlexTensor) -> (FlexTensor, FlexTensor) {
        let shape = x.shape();
        let layout = Layout::of(&shape);
        if x.dtype() != DType::F32 {
            // Burn's training-mode norm with γ = 1 and β = 0 computes them.
            let channels = Shape::new([layout.channels]);
            let ones = Flex::float_ones(channels.clone(), &x.device(), x.dtype().into());
            let zeros = Flex::float_zeros(channels, &x.device(), x.dtype().into());
            let result = <Flex as ModuleOps<Flex>>::batch_norm_train(x, ones, zeros, 0.0);
            return (result.mean, result.variance);
        }
        let x = contiguous(x);
        let (mean, variance) = kernels::statistics(f32s(&x), layout);
        let channels = Shape::new([layout.channels]);
        (tensor(mean, channels.clone()), tensor(variance, channels))
    }

    fn fused_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> FlexTensor {
        // Training normalises with the batch's statistics, given here: the arithmetic is
        // evaluation's.
        Flex::batch_norm_inference(x, gamma, beta, mean, variance, epsilon, relu)
    }

    fn fused_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        relu: bool,
        output_grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let inputs = [&x, &gamma, &beta, &mean, &variance, &output_grad];
        if inputs.iter().any(|t| t.dtype() != DType::F32) {
            let output_grad = match relu {
                true => {
                    let output = <Flex as ModuleOps<Flex>>::batch_norm(
                        x.clone(),
                        gamma.clone(),
                        beta,
                        mean.clone(),
                        variance.clone(),
                        epsilon,
                    );
                    Flex::relu_backward(output, output_grad)
                }
                false => output_grad,
            };
            let result = <Flex as ModuleOps<Flex>>::batch_norm_train_backward(
                x,
                gamma,
                mean,
                variance,
                epsilon,
                output_grad,
            );
            return (result.x_grad, result.gamma_grad, result.beta_grad);
        }
        let shape = x.shape();
        let layout = Layout::of(&shape);
        let (x, grad) = (contiguous(x), contiguous(output_grad));
        let [gamma, beta, mean, variance] = [gamma, beta, mean, variance].map(contiguous);
        let (gamma, mean) = (f32s(&gamma), f32s(&mean));
        let inv_std = kernels::inverse_std(f32s(&variance), epsilon);
        let affine = Affine::new(gamma, f32s(&beta), mean, &inv_std, relu);

        let grads = kernels::backward(
            f32s(&x),
            f32s(&grad),
            layout,
            &affine,
            gamma,
            mean,
            &inv_std,
        );
        let channels = Shape::new([layout.channels]);
        (
            tensor(grads.x, shape),
            tensor(grads.gamma, channels.clone()),
            tensor(grads.beta, channels),
        )
    }
}

/// What the backward step keeps from the forward: `x` and `gamma` as checkpointed nodes, and
/// `beta` (to recompute the ReLU mask) and the batch statistics as tensors.
#[derive(Debug, Clone)]
struct State<B: Backend> {
    x: NodeId,
    gamma: NodeId,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    relu: bool,
}

/// The backward step: gradients for `x`, `gamma` and `beta` from the fused kernels.
#[derive(Debug)]
struct FusedBatchNormStep;

impl<B: FusedBatchNormBackend> Backward<B, 3> for FusedBatchNormStep {
    type State = State<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(state.x);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(state.gamma);

        let (x_grad, gamma_grad, beta_grad) = B::fused_batch_norm_train_backward(
            x,
            gamma,
            state.beta,
            state.mean,
            state.variance,
            state.epsilon,
            state.relu,
            output_grad,
        );
        for (node, grad) in [
            (node_x, x_grad),
            (node_gamma, gamma_grad),
            (node_beta, beta_grad),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: FusedBatchNormBackend, C: CheckpointStrategy> FusedBatchNormBackend for Autodiff<B, C> {
    /// Computed on the inner backend, outside the graph.
    fn batch_norm_statistics(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (mean, variance) = B::batch_norm_statistics(x.into_primitive());
        (untracked(mean), untracked(variance))
    }

    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        let (mean, variance) = (mean.into_primitive(), variance.into_primitive());
        match FusedBatchNormStep
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_node = prep.checkpoint(&x);
                let gamma_node = prep.checkpoint(&gamma);
                let beta = beta.into_primitive();
                let output = B::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.clone(),
                    mean.clone(),
                    variance.clone(),
                    epsilon,
                    relu,
                );
                let state = State {
                    x: x_node,
                    gamma: gamma_node,
                    beta,
                    mean,
                    variance,
                    epsilon,
                    relu,
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_batch_norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                mean,
                variance,
                epsilon,
                relu,
            )),
        }
    }

    /// Computed on the inner backend, without recording a graph: like burn's own batch norm,
    /// the backward pass is not itself differentiable.
    fn fused_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x_grad, gamma_grad, beta_grad) = B::fused_batch_norm_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            epsilon,
            relu,
            output_grad.into_primitive(),
        );
        (
            untracked(x_grad),
            untracked(gamma_grad),
            untracked(beta_grad),
        )
    }
}
