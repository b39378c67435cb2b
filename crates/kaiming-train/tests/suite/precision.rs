//! Mixed precision on the CPU backend, which computes in f16 and bf16 too: the master weights
//! stay f32, the half-precision logits track the f32 ones, the loss falls, and an overflowing
//! f16 step is skipped with the loss scale halved.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use kaiming_cifar::Batch;
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{Model, ModelConfig, ModelName};
use kaiming_train::config::OptimizerSettings;
use kaiming_train::precision::{LossScaler, Precision};
use kaiming_train::schedule::Schedule;
use kaiming_train::trainer::{Trainer, TrainerParts, sgd};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn device() -> Device {
    Device::flex().autodiff()
}

fn model(device: &Device) -> Model {
    ModelConfig::new(ModelName::CifarResNet(20))
        .init_with(device, &InitPlan::new(Scheme::he()), 0)
        .unwrap()
        .0
}

/// A fixed batch of 16 random images and labels.
fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 16;
    let pixels: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let labels: Vec<i64> = (0..n).map(|_| rng.random_range(0..10)).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [n, 3, 32, 32]), device),
        Tensor::from_data(TensorData::new(labels, [n]), device),
    )
}

/// The dtypes of the trainable parameters (batch norm's running statistics are buffers).
struct Dtypes(Vec<DType>);

impl ModuleVisitor for Dtypes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.0.push(param.val().dtype());
        }
    }
}

#[test]
fn half_precision_logits_track_f32() {
    let _generator = common::generator();
    let device = device();
    let (images, _) = batch(&device);
    let reference = model(&device)
        .forward(images.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for precision in [Precision::Bf16, Precision::F16] {
        let logits = precision.forward(&model(&device), images.clone());
        assert_eq!(
            logits.dtype(),
            DType::F32,
            "{precision}: logits come back in f32"
        );
        let logits = logits.into_data().try_to_vec::<f32>().unwrap();
        let (diff, norm) = logits
            .iter()
            .zip(&reference)
            .fold((0.0, 0.0), |(d, n), (a, b)| {
                (d + (a - b).powi(2), n + b.powi(2))
            });
        let error = (diff / norm).sqrt();
        // bf16 keeps 8 significant bits, f16 11: errors of a few 1e-3 are rounding, not bugs.
        assert!(
            error > 0.0,
            "{precision}: identical to f32, so not computed in {precision}"
        );
        assert!(
            error < 5e-2,
            "{precision}: logits differ from f32 by {error:.2e}"
        );
    }
}

#[test]
fn half_precision_training_keeps_f32_master_weights_and_lowers_the_loss() {
    let _generator = common::generator();
    let device = device();
    let (images, labels) = batch(&device);
    for precision in [Precision::Bf16, Precision::F16] {
        let mut trainer = Trainer::new(TrainerParts {
            model: model(&device),
            optimizer: sgd(&OptimizerSettings {
                weight_decay: 0.0,
                ..OptimizerSettings::default()
            }),
            schedule: Schedule::constant(0.05),
            precision,
        });
        let mut losses = Vec::new();
        for _ in 0..6 {
            let stats = trainer.step(Batch {
                images: images.clone(),
                labels: labels.clone(),
            });
            assert!(stats.updated, "{precision}: no overflow at this loss scale");
            losses.push(stats.loss);
        }
        let model = trainer.model();
        let mut dtypes = Dtypes(Vec::new());
        model.visit(&mut dtypes);
        assert!(!dtypes.0.is_empty());
        assert!(
            dtypes.0.iter().all(|&d| d == DType::F32),
            "{precision}: master weights {:?}",
            dtypes.0
        );
        assert!(
            losses[5] < 0.8 * losses[0],
            "{precision}: fitting one batch, the loss went {losses:?}"
        );
    }
}

#[test]
fn an_overflowing_f16_step_is_skipped_and_the_scale_halved() {
    let _generator = common::generator();
    let device = device();
    let (images, labels) = batch(&device);
    let model = model(&device);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(Precision::F16.forward(&model, images), labels);
    let mut scaler = LossScaler {
        scale: 3e38,
        clean_steps: 5,
    };
    assert!(scaler.backward(loss, &model).is_none());
    assert_eq!((scaler.scale, scaler.clean_steps), (1.5e38, 0));
}
