//! The training-time signal monitor, driven in memory: it diagnoses Xavier's vanishing signal
//! on the deep plain net and not He's, its dead fraction and update ratio equal a computation
//! by hand, and monitoring leaves training unchanged to the bit.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use kaiming_cifar::Batch;
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{Model, ModelConfig, ModelName, Norm};
use kaiming_train::config::{MonitorSettings, OptimizerSettings};
use kaiming_train::monitor::{Monitor, MonitorRow, Quantity, Signal, SignalKind};
use kaiming_train::schedule::Schedule;
use kaiming_train::trainer::{Trainer, TrainerParts, sgd};

fn device() -> Device {
    Device::flex().autodiff()
}

/// `n` N(0, 1) images with labels 0..10 in turn.
fn batch(n: usize, seed: u64, device: &Device) -> Batch {
    device.seed(seed);
    Batch {
        images: Tensor::random([n, 3, 32, 32], Distribution::Normal(0.0, 1.0), device),
        labels: Tensor::from_data(
            TensorData::new((0..n as i64).map(|i| i % 10).collect(), [n]),
            device,
        ),
    }
}

fn plain(depth: usize, width: usize, norm: Norm, scheme: Scheme, device: &Device) -> Model {
    ModelConfig::new(ModelName::PlainCnn)
        .with_depth(depth)
        .with_width(width)
        .with_norm(norm)
        .init_with(device, &InitPlan::new(scheme), 0)
        .unwrap()
        .0
}

fn trainer(model: Model, lr: f64, weight_decay: f64) -> Trainer {
    Trainer::new(TrainerParts {
        model,
        optimizer: sgd(&OptimizerSettings {
            lr,
            momentum: 0.0,
            weight_decay,
            ..OptimizerSettings::default()
        }),
        schedule: Schedule::constant(lr),
        precision: Default::default(),
    })
}

/// `steps` monitored steps on `data`; the rows and the diagnoses.
fn monitored(
    trainer: &mut Trainer,
    monitor: &Monitor,
    data: &Batch,
    steps: usize,
) -> (Vec<MonitorRow>, Vec<Signal>) {
    let (mut rows, mut signals) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let mut watch = monitor.watch(trainer.model(), step);
        let stats = trainer.step_observed(data.clone(), &mut watch);
        assert!(stats.updated, "step {step}: the loss is {}", stats.loss);
        let step_rows = watch.finish(trainer.model());
        monitor.diagnose(&step_rows, &mut signals);
        rows.extend(step_rows);
    }
    (rows, signals)
}

#[test]
fn on_the_30_layer_plain_net_xavier_is_diagnosed_as_vanishing_and_he_is_not() {
    let _generator = common::generator();
    let device = device();
    let data = batch(32, 1, &device);
    let settings = MonitorSettings {
        every: 1,
        ..MonitorSettings::default()
    };
    let mut vanishing = Vec::new();
    for scheme in [Scheme::xavier(), Scheme::he()] {
        let model = plain(30, 16, Norm::None, scheme, &device);
        let monitor = Monitor::new(settings, batch(32, 2, &device));
        let (rows, signals) = monitored(&mut trainer(model, 0.01, 0.0), &monitor, &data, 3);
        assert_eq!(
            rows.iter()
                .filter(|r| r.quantity == Quantity::ActivationStd)
                .count(),
            3 * 29,
            "every traced layer at every step"
        );
        vanishing.push(
            signals
                .iter()
                .filter(|s| s.kind == SignalKind::Vanishing)
                .count(),
        );
    }
    let (xavier, he) = (vanishing[0], vanishing[1]);
    assert!(xavier >= 5, "Xavier: {xavier} vanishing layers diagnosed");
    assert_eq!(he, 0, "He: {he} vanishing layers diagnosed");
}

/// All values of a tensor.
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .without_autodiff()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// The conv weights and every bias (the convs' and the classifier's) with their gradients for
/// `loss`, by hand: (path, weight, gradient).
struct ConvWeights<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    found: Vec<(String, Vec<f32>, Vec<f32>)>,
}

impl ModuleVisitor for ConvWeights<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 4 || (D == 1 && self.path.last().is_some_and(|name| name == "bias")) {
            let grad = self.grads.get::<D>(param.id).unwrap();
            self.found
                .push((self.path[1..].join("."), values(param.val()), values(grad)));
        }
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn the_dead_fraction_and_the_update_ratio_equal_a_hand_computation() {
    let _generator = common::generator();
    let device = device();
    let model = plain(4, 4, Norm::None, Scheme::he(), &device);
    // Constant images: inside each plane a channel sees one value, so about half of them are
    // dead wherever the padding does not reach.
    let data = Batch {
        images: Tensor::ones([4, 3, 32, 32], &device),
        labels: Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3], [4]), &device),
    };
    let lr = 0.1;

    // By hand, from the model before the step.
    let (logits, trace) = model.forward_trace(data.images.clone());
    let dead_by_hand: Vec<(String, f64)> = trace
        .iter()
        .map(|(name, output)| {
            let [n, c, h, w] = output.dims();
            let v = values(output.clone());
            let dead = (0..c)
                .filter(|&ch| {
                    (0..n).all(|i| {
                        v[(i * c + ch) * h * w..(i * c + ch + 1) * h * w]
                            .iter()
                            .all(|&x| x <= 0.0)
                    })
                })
                .count();
            (name.clone(), dead as f64 / c as f64)
        })
        .collect();
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, data.labels.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut by_hand = ConvWeights {
        grads: &grads,
        path: Vec::new(),
        found: Vec::new(),
    };
    model.visit(&mut by_hand);

    // The monitor, over one plain SGD step (no momentum, no decay: Δw = lr·g).
    let monitor = Monitor::new(
        MonitorSettings {
            every: 1,
            ..MonitorSettings::default()
        },
        data.clone(),
    );
    let (rows, _) = monitored(&mut trainer(model, lr, 0.0), &monitor, &data, 1);
    let row = |layer: &str, quantity: Quantity| {
        rows.iter()
            .find(|r| r.layer == layer && r.quantity == quantity)
            .unwrap_or_else(|| panic!("no {quantity} of {layer}"))
            .value
    };

    assert!(
        dead_by_hand.iter().any(|(_, d)| *d > 0.0 && *d < 1.0),
        "the batch should kill some channels but not all: {dead_by_hand:?}"
    );
    for (layer, dead) in &dead_by_hand {
        assert_eq!(row(layer, Quantity::DeadFraction), *dead, "{layer}");
    }
    let biases = by_hand
        .found
        .iter()
        .filter(|(path, ..)| path.ends_with(".bias"));
    assert_eq!(
        (by_hand.found.len(), biases.count()),
        (7, 4),
        "three convs with their biases and the classifier's bias: {:?}",
        by_hand
            .found
            .iter()
            .map(|(path, ..)| path)
            .collect::<Vec<_>>()
    );
    for (path, weight, grad) in &by_hand.found {
        // The biases start at zero, where ‖Δw‖/‖w‖ has no finite value to compare.
        if norm(weight) > 0.0 {
            let expected = lr * norm(grad) / norm(weight);
            let ratio = row(path, Quantity::UpdateRatio);
            assert!(
                (ratio - expected).abs() <= 1e-3 * expected,
                "{path}: the monitor's update ratio {ratio:.6e}, by hand {expected:.6e}"
            );
        }
        assert!(norm(grad) > 0.0, "{path}: no gradient to compare");
        let grad_norm = row(path, Quantity::GradientNorm);
        assert!(
            (grad_norm - norm(grad)).abs() <= 1e-5 * norm(grad),
            "{path}"
        );
        let weight_norm = row(path, Quantity::WeightNorm);
        assert!(
            (weight_norm - norm(weight)).abs() <= 1e-5 * norm(weight),
            "{path}"
        );
    }
}

#[test]
fn monitoring_leaves_training_unchanged_to_the_bit() {
    let _generator = common::generator();
    let device = device();
    let data = batch(16, 3, &device);
    let run = |monitor: Option<&Monitor>| {
        let model = plain(6, 8, Norm::Batch, Scheme::he(), &device);
        let mut trainer = trainer(model, 0.05, 5e-4);
        let mut losses = Vec::new();
        for step in 0..4 {
            let stats = match monitor {
                Some(monitor) => {
                    let mut watch = monitor.watch(trainer.model(), step);
                    let stats = trainer.step_observed(data.clone(), &mut watch);
                    watch.finish(trainer.model());
                    stats
                }
                None => trainer.step(data.clone()),
            };
            losses.push(stats.loss);
        }
        let logits = values(trainer.model().valid().forward(data.images.clone().inner()));
        (losses, logits)
    };
    let monitor = Monitor::new(
        MonitorSettings {
            every: 1,
            ..MonitorSettings::default()
        },
        batch(16, 4, &device),
    );
    let plain_run = run(None);
    let watched = run(Some(&monitor));
    assert_eq!(plain_run.0, watched.0, "the losses differ");
    assert_eq!(
        plain_run.1, watched.1,
        "evaluation (running batch-norm statistics) differs"
    );
}
