//! The training step driven on a synthetic in-memory dataset, with no file anywhere: the loss
//! falls, and the step's statistics are those of the batch.

use crate::common;

use burn::tensor::Device;
use kaiming_cifar::{CifarDataset, IMAGE_BYTES, Loader, LoaderConfig, Normalization};
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{ModelConfig, ModelName, Norm};
use kaiming_train::config::OptimizerSettings;
use kaiming_train::feed::Feed;
use kaiming_train::schedule::Schedule;
use kaiming_train::trainer::{Trainer, TrainerParts, sgd};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Two classes a small net can tell apart: dark noisy images (class 0) and bright ones
/// (class 1), 128 of each.
fn two_class_dataset() -> CifarDataset {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 256;
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    let images = labels
        .iter()
        .flat_map(|&label| {
            let base = if label == 0 { 60 } else { 180 };
            (0..IMAGE_BYTES)
                .map(|_| (base + rng.random_range(0..40)) as u8)
                .collect::<Vec<_>>()
        })
        .collect();
    CifarDataset::from_parts(images, labels, vec!["dark".into(), "bright".into()]).unwrap()
}

/// A 4-layer plain net of width 8 for the two classes, He-initialised.
fn small_plain_net(device: &Device) -> kaiming_resnet::Model {
    ModelConfig::new(ModelName::PlainCnn)
        .with_depth(4)
        .with_width(8)
        .with_norm(Norm::None)
        .with_num_classes(2)
        .init_with(device, &InitPlan::new(Scheme::he()), 0)
        .unwrap()
        .0
}

#[test]
fn the_trainer_fits_a_synthetic_dataset_without_files() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    let data = two_class_dataset();
    let loader = Loader::new(
        data.clone(),
        Normalization::from_dataset(&data).unwrap(),
        LoaderConfig::train(32, 0),
    )
    .unwrap();
    let feed = Feed::new(loader, &device, false);
    let model = small_plain_net(&device);
    let mut trainer = Trainer::new(TrainerParts {
        model,
        optimizer: sgd(&OptimizerSettings {
            lr: 0.02,
            weight_decay: 0.0,
            ..OptimizerSettings::default()
        }),
        schedule: Schedule::constant(0.02),
        precision: Default::default(),
    });

    let mut epoch_losses = Vec::new();
    for epoch in 0..3 {
        let batches = feed.epoch(epoch);
        let mut sum = 0.0;
        for index in 0..feed.batches_per_epoch() {
            let stats = trainer.step(batches.batch(index).unwrap());
            assert_eq!(stats.images, 32);
            assert!(stats.updated && stats.correct <= 32);
            assert_eq!(stats.lr, 0.02);
            sum += stats.loss;
        }
        epoch_losses.push(sum / feed.batches_per_epoch() as f64);
    }
    assert_eq!(trainer.steps_done(), 3 * 8);
    assert!(
        epoch_losses[2] < 0.5 * epoch_losses[0],
        "the loss did not fall: {epoch_losses:?}"
    );
    let tally = trainer.evaluate(&feed);
    assert_eq!(tally.images, 256);
    assert!(tally.accuracy() > 0.9, "accuracy {}", tally.accuracy());
}

/// With label smoothing α the step's loss is (1 − α)·CE + α·mean over the classes of
/// −log softmax, on the same logits; evaluations stay plain cross-entropy.
#[test]
fn label_smoothing_mixes_the_uniform_target_into_the_loss() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    let data = two_class_dataset();
    let loader = Loader::new(
        data.clone(),
        Normalization::from_dataset(&data).unwrap(),
        LoaderConfig::eval(32),
    )
    .unwrap();
    let feed = Feed::new(loader, &device, false);
    let model = small_plain_net(&device);
    let batch = || feed.epoch(0).batch(0).unwrap();
    let logits = model.forward(batch().images);
    let log_p = burn::tensor::activation::log_softmax(logits, 1);
    let labels = batch().labels;
    let n = labels.dims()[0];
    let picked = log_p.clone().gather(1, labels.reshape([n, 1]));
    let ce = -picked.mean().into_scalar::<f64>();
    let uniform = -log_p.mean().into_scalar::<f64>();
    let alpha = 0.2;
    let parts = || TrainerParts {
        model: model.clone(),
        optimizer: sgd(&OptimizerSettings::default()),
        schedule: Schedule::constant(0.01),
        precision: Default::default(),
    };
    let plain = Trainer::new(parts()).step(batch());
    let smoothed = Trainer::new(parts())
        .with_label_smoothing(alpha)
        .step(batch());
    assert!((plain.loss - ce).abs() < 1e-5, "{} vs {ce}", plain.loss);
    let expected = (1.0 - alpha) * ce + alpha * uniform;
    assert!(
        (smoothed.loss - expected).abs() < 1e-5,
        "{} vs {expected}",
        smoothed.loss
    );
    let evaluated = Trainer::new(parts())
        .with_label_smoothing(alpha)
        .evaluate(&feed);
    let reference = Trainer::new(parts()).evaluate(&feed);
    assert_eq!(evaluated.mean_loss(), reference.mean_loss());
}
