//! A training step of ResNet-20 and ResNet-50 (CIFAR stem) through `kaiming-kernels` (the
//! convolution engine and the fused batch norm) against the same step on burn's own flex
//! operations (`kaiming_kernels::with_burn_path`): the loss and every parameter gradient agree
//! within 1e-4 of the largest value of that tensor; evaluation agrees likewise.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor, TensorData};
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

/// One step's loss and gradients.
fn step(model: &Model, x: Tensor<4>, targets: Tensor<1, Int>) -> (f32, BTreeMap<String, TensorData>) {
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

/// `max |a − b| / max |b|` over one tensor.
fn relative_error(a: &TensorData, b: &TensorData) -> f32 {
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(&b).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

fn compare(config: ModelConfig, batch: usize) {
    let device = Device::flex().autodiff();
    device.seed(7);
    let model = config.init(&device);
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..batch as i64).map(|i| i % 10).collect(), [batch]),
        &device,
    );

    let (loss, grads) = step(&model, x.clone(), targets.clone());
    let (burn_loss, burn_grads) =
        kaiming_kernels::with_burn_path(|| step(&model, x.clone(), targets.clone()));
    assert!(
        ((loss - burn_loss) / burn_loss).abs() < 1e-4,
        "{config}: loss {loss} against burn's {burn_loss}"
    );
    assert_eq!(grads.len(), burn_grads.len());
    let worst = grads
        .iter()
        .map(|(path, grad)| (relative_error(grad, &burn_grads[path]), path))
        .fold((0f32, ""), |worst, (error, path)| match error > worst.0 {
            true => (error, path.as_str()),
            false => worst,
        });
    assert!(worst.0 < 1e-4, "{config}: gradient of {} off by {:e}", worst.1, worst.0);

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

#[test]
fn resnet20_step_through_the_kernels_equals_burns() {
    compare(named("resnet20"), 8);
}

#[test]
fn resnet50_step_through_the_kernels_equals_burns() {
    compare(named("resnet50").with_stem(StemKind::Cifar), 2);
}
