//! The signals of one batch through a model: every traced layer's output and the gradient of
//! the loss with respect to it. `train probe` reads them at initialisation, the training-time
//! monitor every few steps.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};
use kaiming_resnet::Model;

/// One traced layer.
#[derive(Debug, Clone)]
pub struct LayerSignal {
    /// The model's name for the layer or block output.
    pub name: String,
    /// Its output over the batch (off the autodiff graph).
    pub output: Tensor<4>,
    /// ∂loss/∂output, where the loss depends on it.
    pub gradient: Option<Tensor<4>>,
}

/// Runs `images` through `model` (on an autodiff device) and back from the cross-entropy
/// against `labels`, returning every traced layer's output and gradient in forward order.
///
/// A zero leaf is added to every traced output: its gradient is the output's gradient, and the
/// sum leaves the forward pass unchanged.
pub fn trace(model: &Model, images: Tensor<4>, labels: Tensor<1, Int>) -> Vec<LayerSignal> {
    let device = images.device();
    let mut probes: Vec<(String, Tensor<4>, Tensor<4>)> = Vec::new();
    let logits = model.forward_hooked(images, &mut |name: &str, x: Tensor<4>| {
        let probe = Tensor::<4>::zeros(x.dims(), &device).require_grad();
        let x = x + probe.clone();
        probes.push((name.to_string(), x.clone(), probe));
        x
    });
    let grads = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, labels)
        .backward();
    probes
        .into_iter()
        .map(|(name, output, probe)| LayerSignal {
            name,
            gradient: probe.grad(&grads),
            output: output.without_autodiff(),
        })
        .collect()
}

/// The standard deviation of all elements (population, as the papers' Var).
pub fn std_of<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    let mean = tensor.clone().mean();
    (tensor - mean.unsqueeze()).powi_scalar(2).mean().sqrt()
}
