//! A training step of ResNet-20, ResNet-56 and ResNet-50 (CIFAR stem) through `kaiming-kernels`
//! (the convolution engine, the fused batch norm and residual closing) against the same step on
//! burn's own flex operations (`kaiming_kernels::with_burn_path`): the loss and the evaluation
//! logits within 1e-4 relative, and the gradient no further from burn's than burn's own is
//! from itself when the input is scaled by 1 + 1e-6 or 1 − 1e-6, whichever moves it more.
//!
//! Why that yardstick for the gradient and not 1e-4: the two paths sum in different orders,
//! so pre-activations agree only to about 1e-7, and a ReLU whose input lies that close to zero
//! passes on one path and blocks on the other. Each flip moves one element of a gradient by its
//! own size, and the change spreads to every layer below. Scaling the input by 1 + 1e-6 (which
//! the batch norms undo up to rounding) makes burn flip its own ReLUs the same way: measured,
//! 1.17e-2 of the gradient's norm in ResNet-50's stem weight against burn itself, and 1.26e-2
//! between the kernels and burn. A kernel with a missing tap or image is off by far more.
//! Both scalings, because one draw of flips is a small sample for a small tensor: on an
//! AVX2-only CPU a 32-element β of ResNet-20 was off by 1.13 times three times what the first
//! scaling alone moved it, on the kernels before and after the AVX2 weight-gradient change.
//! The per-convolution tests in `kaiming-kernels` compare at 1e-4, where no ReLU intervenes.

use crate::common;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use kaiming_init::InitPlan;
use kaiming_resnet::{Model, ModelConfig, ModelName, StemKind};

/// Every trainable parameter's gradient, by path.
struct Collect<'a> {
    grads: &'a Gradients,
    scope: Vec<String>,
    found: BTreeMap<String, TensorData>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.scope.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.scope.join(".");
        if path.ends_with("running_mean") || path.ends_with("running_var") {
            return;
        }
        let grad = param.val().grad(self.grads).expect("a gradient").to_data();
        self.found.insert(path, grad);
    }
}

/// Parameter gradients by path.
type Grads = BTreeMap<String, TensorData>;

/// One step's loss and gradients.
fn step(model: &Model, x: Tensor<4>, targets: Tensor<1, Int>) -> (f32, Grads) {
    let device = x.device();
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(x), targets);
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut collect = Collect {
        grads: &grads,
        scope: Vec::new(),
        found: BTreeMap::new(),
    };
    model.visit(&mut collect);
    (value, collect.found)
}

/// The Euclidean norm of `values`, in f64.
fn norm(values: impl Iterator<Item = f32>) -> f64 {
    values
        .map(|v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// `‖a − b‖ / ‖b‖` over one tensor.
fn relative_error(a: &TensorData, b: &TensorData) -> f64 {
    let (a, b) = (floats(a), floats(b));
    assert_eq!(a.len(), b.len());
    norm(a.iter().zip(&b).map(|(a, b)| a - b)) / norm(b.iter().copied()).max(f64::MIN_POSITIVE)
}

fn floats(data: &TensorData) -> Vec<f32> {
    data.clone().try_into_vec::<f32>().expect("f32 values")
}

/// `‖a − b‖ / ‖b‖` over every parameter's gradient together.
fn gradient_error(a: &Grads, b: &Grads) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let values = |grads: &Grads| -> Vec<f32> { grads.values().flat_map(floats).collect() };
    let (a, b) = (values(a), values(b));
    norm(a.iter().zip(&b).map(|(a, b)| a - b)) / norm(b.iter().copied())
}

/// Each parameter's gradient against burn's on its own, so a wrong gradient in a small tensor
/// (a batch norm's β, the classifier's bias) cannot hide in the norm of the large ones. Each
/// is held to the yardstick of the module doc, taken for that parameter and for the whole
/// gradient, whichever is larger: a ReLU flip moves a parameter's gradient by a share of its
/// own norm, as the perturbation shows, and no more than it moves the whole.
fn assert_each_gradient(config: &ModelConfig, ours: &Grads, burns: &Grads, perturbed: &[Grads]) {
    let whole = largest(perturbed.iter().map(|p| gradient_error(p, burns)));
    let mut worst = (0.0, String::new());
    for (path, burn) in burns {
        let error = relative_error(&ours[path], burn);
        let own = largest(perturbed.iter().map(|p| relative_error(&p[path], burn)));
        let yardstick = own.max(whole);
        let bound = 1e-4f64.max(3.0 * yardstick);
        assert!(
            error <= bound,
            "{config}: the gradient of {path} is off by {error:e} of its norm, over {bound:e} \
             (burn against itself: {yardstick:e})"
        );
        if error / bound > worst.0 {
            worst = (error / bound, path.clone());
        }
    }
    eprintln!(
        "{config}: every parameter's gradient within its bound, the closest {} at {:.2} of it",
        worst.1, worst.0
    );
}

/// The largest of `values`.
fn largest(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// `len` values of N(0, 1) from `seed`, drawn here (xorshift and Box–Muller) rather than from
/// the device's generator, which every test of the binary running beside this one draws from.
fn normal(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn compare(config: ModelConfig, batch: usize) {
    let device = Device::flex().autodiff();
    let (model, _) = config
        .init_with(&device, &InitPlan::torchvision(), 7)
        .unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(normal(batch * 3 * 32 * 32, 7), [batch, 3, 32, 32]),
        &device,
    );
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..batch as i64).map(|i| i % 10).collect(), [batch]),
        &device,
    );

    let (loss, grads) = step(&model, x.clone(), targets.clone());
    let burn = |x: Tensor<4>| kaiming_kernels::with_burn_path(|| step(&model, x, targets.clone()));
    let (burn_loss, burn_grads) = burn(x.clone());
    let perturbed_grads = [1.0 + 1e-6, 1.0 - 1e-6].map(|scale| burn(x.clone().mul_scalar(scale)).1);
    assert!(
        ((loss - burn_loss) / burn_loss).abs() < 1e-4,
        "{config}: loss {loss} against burn's {burn_loss}"
    );
    let error = gradient_error(&grads, &burn_grads);
    let yardstick = largest(
        perturbed_grads
            .iter()
            .map(|p| gradient_error(p, &burn_grads)),
    );
    assert!(
        error <= 1e-4f64.max(2.0 * yardstick),
        "{config}: gradient off by {error:e} of its norm; burn against itself: {yardstick:e}"
    );
    assert_each_gradient(&config, &grads, &burn_grads, &perturbed_grads);

    // Evaluation, on flex without autodiff.
    let inference = Device::flex();
    let model = model.valid().to_device(&inference);
    let x = x.inner().to_device(&inference);
    let ours = model.forward(x.clone()).to_data();
    let burns = kaiming_kernels::with_burn_path(|| model.forward(x)).to_data();
    let error = relative_error(&ours, &burns);
    assert!(error < 1e-4, "{config}: evaluation logits off by {error:e}");
}

fn named(name: &str) -> ModelConfig {
    ModelConfig::new(name.parse::<ModelName>().unwrap())
}

/// Weights and images come from fixed seeds, not the device's generator: the suite's other
/// tests draw from it in parallel, and which draws this test got decided its verdict (ResNet-56's
/// gradient was once off by 1.2e-3 of its norm against a yardstick of 7e-5, and passed on
/// rerun). ResNet-56 for depth: 55 layers
/// whose ReLUs the two paths' rounding can flip, where an error that grows with depth would
/// outrun the yardstick.
#[test]
fn resnet20_resnet56_and_resnet50_steps_through_the_kernels_equal_burns() {
    let _generator = common::generator();
    compare(named("resnet20"), 16);
    compare(named("resnet56"), 8);
    compare(named("resnet50").with_stem(StemKind::Cifar), 4);
}
