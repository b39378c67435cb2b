//! LSUV: after the pass every convolution's and the classifier's output variance on the batch is
//! 1 within the tolerance, with and without batch norm; the pass is deterministic; a layer with a
//! constant output is reported, never divided by.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{Branch, LsuvConfig, Model, ModelConfig, ModelName, Norm};

fn batch(device: &Device) -> Tensor<4> {
    device.seed(11);
    Tensor::random([16, 3, 32, 32], Distribution::Normal(0.0, 1.0), device)
}

fn model(config: ModelConfig, scheme: Scheme, device: &Device) -> Model {
    config
        .init_with(device, &InitPlan::new(scheme), 7)
        .unwrap()
        .0
}

fn variance(t: Tensor<4>) -> f64 {
    let v: Vec<f32> = t.into_data().try_into_vec::<f32>().unwrap();
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    v.iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / v.len() as f64
}

#[test]
fn a_plain_net_from_xavier_gets_unit_variance_at_every_layer() {
    let _generator = common::generator();
    let device = Device::flex();
    let x = batch(&device);
    // Xavier on an 8-layer plain ReLU net: the signal halves its variance per layer.
    let config = ModelConfig::new(ModelName::PlainCnn)
        .with_depth(8)
        .with_norm(Norm::None);
    let before = model(config, Scheme::xavier(), &device);
    let (after, report) = LsuvConfig::new().apply(before, x.clone()).unwrap();
    assert_eq!(report.layers.len(), 8, "{report}");
    let Model::PlainCnn(net) = &after else {
        panic!("a plain net")
    };
    // Recomputed here with burn's own layers, not the pass's measurements.
    let mut signal = x;
    for (index, layer) in net.layers.iter().enumerate() {
        let output = layer.conv.forward(signal);
        let var = variance(output.clone());
        assert!(
            (var - 1.0).abs() <= 0.1 + 1e-3,
            "layer {index}: output variance {var}\n{report}"
        );
        let bias = layer.conv.bias.as_ref().unwrap().val();
        assert!(
            bias.into_data()
                .try_into_vec::<f32>()
                .unwrap()
                .iter()
                .all(|&b| b == 0.0),
            "layer {index}: biases start at zero"
        );
        signal = relu(output);
    }
    // Xavier's layers needed scales above 1, growing with depth.
    assert!(report.layers[4].scale > 1.0, "{report}");
}

#[test]
fn with_batch_norm_a_second_pass_has_nothing_left_to_do_and_the_pass_is_deterministic() {
    let _generator = common::generator();
    let device = Device::flex();
    let x = batch(&device);
    let config = ModelConfig::new(ModelName::CifarResNet(8)).with_norm(Norm::Batch);
    let lsuv = LsuvConfig::new().with_tolerance(0.05);
    let (once, report) = lsuv
        .apply(
            model(
                config.clone(),
                "orthogonal".parse::<Scheme>().unwrap(),
                &device,
            ),
            x.clone(),
        )
        .unwrap();
    // Stem, 3 blocks of 2 convolutions, one projection-free shortcut each, the classifier.
    assert_eq!(report.layers.len(), 1 + 6 + 1, "{report}");
    for layer in &report.layers {
        assert!(
            !layer.dead && (layer.variance - 1.0).abs() <= 0.05,
            "{report}"
        );
    }
    let (_, again) = lsuv.apply(once, x.clone()).unwrap();
    for layer in &again.layers {
        assert_eq!(layer.iterations, 0, "{again}");
    }
    let (_, repeated) = lsuv
        .apply(
            model(config, "orthogonal".parse::<Scheme>().unwrap(), &device),
            x,
        )
        .unwrap();
    assert_eq!(repeated, report);
}

/// Whether any parameter holds a NaN or an infinity.
struct NonFinite(bool);

impl ModuleVisitor for NonFinite {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param.val().into_data().try_into_vec::<f32>().unwrap();
        self.0 |= values.iter().any(|v| !v.is_finite());
    }
}

#[test]
fn constant_outputs_are_reported_and_never_divided_by() {
    let _generator = common::generator();
    let device = Device::flex();
    // Fixup starts every branch's last convolution and the classifier at zero.
    let config = ModelConfig::new(ModelName::CifarResNet(8))
        .with_norm(Norm::None)
        .with_branch(Branch::Fixup);
    let (after, report) = LsuvConfig::new()
        .apply(model(config, Scheme::he(), &device), batch(&device))
        .unwrap();
    let dead: Vec<&str> = report.dead().map(|layer| layer.path.as_str()).collect();
    assert!(
        dead.iter().any(|path| path.ends_with("conv2.weight")),
        "{report}"
    );
    assert!(
        dead.iter().any(|path| path.ends_with("fc.weight")),
        "{report}"
    );
    for layer in report.dead() {
        assert_eq!((layer.scale, layer.iterations), (1.0, 0), "{report}");
    }
    assert!(report.to_string().contains("constant output"), "{report}");
    let mut check = NonFinite(false);
    after.visit(&mut check);
    assert!(!check.0, "a parameter became NaN or infinite");
}

/// The sum of squares of every parameter named `weight` of a layer whose path ends with `path`.
fn weight_norm(model: &Model, path: &str) -> f64 {
    struct Find<'a> {
        path: &'a str,
        scope: Vec<String>,
        found: Option<f64>,
    }
    impl ModuleVisitor for Find<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.scope.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.scope.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.scope.join(".").ends_with(self.path) {
                let values = param.val().into_data().try_into_vec::<f32>().unwrap();
                self.found = Some(values.iter().map(|&v| f64::from(v).powi(2)).sum());
            }
        }
    }
    let mut find = Find {
        path,
        scope: Vec::new(),
        found: None,
    };
    model.visit(&mut find);
    find.found.unwrap_or_else(|| panic!("no parameter {path}"))
}

/// A layer whose output overflows on the batch (variance ∞ in f32) is reported and left as it
/// was: 1/√∞ = 0 used to zero its weight while the report said it was left alone.
#[test]
fn an_overflowing_layer_is_reported_and_left_as_it_was() {
    let _generator = common::generator();
    let device = Device::flex();
    let config = ModelConfig::new(ModelName::PlainCnn)
        .with_depth(4)
        .with_norm(Norm::None);
    let before = model(config, Scheme::he(), &device);
    let stem = "layers.0.conv.weight";
    let norm_before = weight_norm(&before, stem);
    let (after, report) = LsuvConfig::new()
        .apply(before, batch(&device) * 1e25)
        .unwrap();
    let first = &report.layers[0];
    assert!(first.overflowed && !first.dead, "{report}");
    assert_eq!((first.scale, first.iterations), (1.0, 0), "{report}");
    assert_eq!(weight_norm(&after, stem), norm_before, "{report}");
    assert!(report.to_string().contains("output overflowed"), "{report}");
}

/// A layer still outside the tolerance after the last rescaling is reported as such.
#[test]
fn a_layer_that_does_not_converge_is_reported() {
    let _generator = common::generator();
    let device = Device::flex();
    let config = ModelConfig::new(ModelName::PlainCnn)
        .with_depth(8)
        .with_norm(Norm::None);
    // A layer's output is linear in its weight, so one rescaling lands on 1 up to f32's
    // rounding, which a tolerance of 1e-12 does not forgive.
    let (_, report) = LsuvConfig::new()
        .with_tolerance(1e-12)
        .with_max_iterations(1)
        .apply(model(config, Scheme::xavier(), &device), batch(&device))
        .unwrap();
    let unconverged: Vec<_> = report.unconverged().collect();
    assert!(!unconverged.is_empty(), "{report}");
    for layer in &unconverged {
        assert!((layer.variance - 1.0).abs() > 1e-12, "{report}");
        assert_eq!(layer.iterations, 1, "{report}");
    }
    assert!(
        report.to_string().contains("not within the tolerance"),
        "{report}"
    );
}

#[test]
fn bad_settings_are_refused() {
    let _generator = common::generator();
    let device = Device::flex();
    let net = model(
        ModelConfig::new(ModelName::CifarResNet(8)),
        Scheme::he(),
        &device,
    );
    for lsuv in [
        LsuvConfig::new().with_tolerance(0.0),
        LsuvConfig::new().with_max_iterations(0),
    ] {
        assert!(lsuv.apply(net.clone(), batch(&device)).is_err());
    }
}
