//! The training step: the one place where a batch becomes an update of the model.
//!
//! `train`, `train sweep`, `train bench` and the tests all step through [`Trainer::step`], so a
//! metric, a monitor or a device is added here once. The trainer takes its parts from outside —
//! the model, the optimizer, the schedule, the precision — and is fed batches by whoever drives
//! it (the run loop with a CIFAR-10 feed, or a test with a synthetic in-memory dataset).

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use kaiming_cifar::Batch;
use kaiming_resnet::Model;

use crate::config::OptimizerSettings;
use crate::feed::Feed;
use crate::metrics::Tally;
use crate::precision::{LossScaler, Precision};
use crate::schedule::Schedule;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// 0-based index of the step (the schedule's argument).
    pub step: usize,
    /// Mean cross-entropy of the batch, before the update; not finite when the run diverged.
    pub loss: f64,
    /// Images of the batch classified correctly, before the update.
    pub correct: usize,
    /// Images in the batch.
    pub images: usize,
    /// Learning rate of the step.
    pub lr: f64,
    /// Whether the optimizer updated the model: not when the loss is not finite, nor when f16
    /// gradients overflowed (the step is skipped, as PyTorch's GradScaler does).
    pub updated: bool,
}

/// The phases of a step, reported to a [`StepObserver`] as each ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forward pass and loss (its value read back).
    Forward,
    /// Backward pass.
    Backward,
    /// Optimizer update.
    Update,
}

/// Watches a step from inside: `train bench` times the phases through it, the signal monitor
/// reads the gradients.
pub trait StepObserver {
    /// Called as `phase` ends, with the device the step runs on.
    fn ended(&mut self, _phase: Phase, _device: &Device) {}

    /// The gradients of the step (unscaled), before the optimizer applies them to `model`.
    fn gradients(&mut self, _model: &Model, _grads: &GradientsParams) {}
}

impl StepObserver for () {}

/// The parts of a trainer.
pub struct TrainerParts {
    /// The model, on an autodiff device.
    pub model: Model,
    /// Its optimizer.
    pub optimizer: ModuleOptimizer,
    /// Learning rate per step.
    pub schedule: Schedule,
    /// Arithmetic of the passes.
    pub precision: Precision,
}

/// A model with its optimizer, stepping through batches.
pub struct Trainer {
    /// Where the shares of a batch go (data parallelism): the model's own device first. One
    /// entry (or none) is the plain step.
    replicas: Vec<Device>,
    model: Model,
    optimizer: ModuleOptimizer,
    schedule: Schedule,
    precision: Precision,
    scaler: LossScaler,
    loss: CrossEntropyLoss,
    device: Device,
    step: usize,
}

impl Trainer {
    /// A trainer at step 0.
    pub fn new(parts: TrainerParts) -> Self {
        let device = model_device(&parts.model);
        Trainer {
            loss: CrossEntropyLossConfig::new().init(&device),
            scaler: LossScaler::new(parts.precision),
            model: parts.model,
            optimizer: parts.optimizer,
            schedule: parts.schedule,
            precision: parts.precision,
            replicas: vec![device.clone()],
            device,
            step: 0,
        }
    }

    /// Splits every batch across `replicas` model replicas, one per device (the same device
    /// again for replicas on a CPU), the first on the model's device: each replica computes its
    /// share's gradient, burn's gradient accumulator sums them onto the model, and one optimizer
    /// step applies them — PyTorch's DistributedDataParallel without SyncBatchNorm. Batch norm
    /// normalises each share with its own statistics; the running statistics are those of the
    /// first replica, which every replica starts each step from (DDP's `broadcast_buffers`).
    ///
    /// f16's loss scaling is per replica in DDP and is not offered here: replicas compute in
    /// f32 or bf16.
    pub fn with_replicas(mut self, devices: Vec<Device>) -> anyhow::Result<Self> {
        anyhow::ensure!(!devices.is_empty(), "at least one replica");
        anyhow::ensure!(
            devices.len() == 1 || self.precision != Precision::F16,
            "--precision f16 with {} replicas: loss scaling is per replica; use f32 or bf16",
            devices.len()
        );
        self.replicas = devices;
        Ok(self)
    }

    /// Trains on cross-entropy with label smoothing `alpha` (0: none). Evaluations report the
    /// plain cross-entropy.
    pub fn with_label_smoothing(mut self, alpha: f64) -> Self {
        let config =
            CrossEntropyLossConfig::new().with_smoothing((alpha > 0.0).then_some(alpha as f32));
        self.loss = config.init(&self.device);
        self
    }

    /// How many replicas share a batch.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// One optimizer step on `batch`.
    pub fn step(&mut self, batch: Batch) -> StepStats {
        self.step_observed(batch, &mut ())
    }

    /// One optimizer step on `batch`, reporting its phases to `observer`.
    ///
    /// The batch is split into one share per replica ([`Trainer::with_replicas`]); the plain
    /// step is the case of one share, the whole batch on the model itself. Every share's forward
    /// pass runs first (the loss is read back once per share), then, if the mean loss is finite,
    /// every share's backward pass, weighted by its size; the gradients add up onto the model and
    /// one optimizer step applies them.
    pub fn step_observed(&mut self, batch: Batch, observer: &mut impl StepObserver) -> StepStats {
        let images = batch.labels.dims()[0];
        let lr = self.schedule.lr(self.step);
        let shares = self.shares(batch);
        let mut forwards = Vec::with_capacity(shares.len());
        let mut loss = 0.0;
        for (replica, share_images, share_labels) in shares {
            let logits = self.precision.forward(&replica, share_images);
            let share_loss = self.loss.forward(logits.clone(), share_labels.clone());
            let weight = share_labels.dims()[0] as f64 / images as f64;
            loss += weight * share_loss.clone().into_scalar::<f64>();
            forwards.push((replica, logits, share_labels, share_loss, weight));
        }
        observer.ended(Phase::Forward, &self.device);
        let mut stats = StepStats {
            step: self.step,
            loss,
            correct: 0,
            images,
            lr,
            updated: false,
        };
        if !loss.is_finite() {
            return stats;
        }
        let mut accumulator = GradientsAccumulator::<Model>::new();
        let mut overflowed = false;
        let replicated = forwards.len() > 1;
        for (replica, logits, labels, share_loss, weight) in forwards {
            stats.correct += count_correct(logits, labels);
            // The whole batch on one replica is not reweighted, so the plain step computes
            // exactly the loss it reports.
            let share_loss = if weight < 1.0 {
                share_loss.mul_scalar(weight)
            } else {
                share_loss
            };
            match self.scaler.backward(share_loss, &replica) {
                // A replica's gradients come to the model's device; the plain step's are there.
                Some(grads) if replicated => {
                    accumulator.accumulate(&self.model, grads.to_device(&self.device, &self.model))
                }
                Some(grads) => accumulator.accumulate(&self.model, grads),
                None => overflowed = true,
            }
        }
        observer.ended(Phase::Backward, &self.device);
        if !overflowed {
            let grads = accumulator.grads();
            observer.gradients(&self.model, &grads);
            self.model = self.optimizer.step(lr, self.model.clone(), grads);
            stats.updated = true;
        }
        observer.ended(Phase::Update, &self.device);
        self.step += 1;
        stats
    }

    /// The batch's shares: one per replica (at most one per image), each on its replica's
    /// device. The first replica is the model itself; the others are copies with batch-norm
    /// buffers of their own and the same parameter ids, so their gradients add up.
    fn shares(&self, batch: Batch) -> Vec<(Model, Tensor<4>, Tensor<1, Int>)> {
        let images = batch.labels.dims()[0];
        let count = self.replicas.len().clamp(1, images.max(1));
        if count == 1 {
            return vec![(self.model.clone(), batch.images, batch.labels)];
        }
        let mut start = 0;
        self.replicas
            .iter()
            .take(count)
            .enumerate()
            .map(|(index, device)| {
                let len = images / count + usize::from(index < images % count);
                let range = start..start + len;
                start += len;
                let replica = match index {
                    0 => self.model.clone(),
                    _ => self.model.valid().train().fork(device),
                };
                let share_images = batch
                    .images
                    .clone()
                    .slice([range.clone()])
                    .to_device(device);
                let share_labels = batch.labels.clone().slice([range]).to_device(device);
                (replica, share_images, share_labels)
            })
            .collect()
    }

    /// Loss and accuracy of the model in evaluation mode over every batch of `feed`.
    pub fn evaluate(&self, feed: &Feed) -> Tally {
        evaluate(&self.model.valid(), feed, self.precision)
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The optimizer and its state.
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optimizer
    }

    /// The arithmetic of the passes.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The f16 loss scaler's state.
    pub fn scaler(&self) -> LossScaler {
        self.scaler
    }

    /// Puts the trainer where a checkpoint left it.
    pub fn restore(
        &mut self,
        model: Model,
        optimizer: ModuleOptimizer,
        step: usize,
        scaler: LossScaler,
    ) {
        self.model = model;
        self.optimizer = optimizer;
        self.step = step;
        self.scaler = scaler;
    }

    /// Learning rate of the step with this 0-based index.
    pub fn lr(&self, step: usize) -> f64 {
        self.schedule.lr(step)
    }
}

/// Loss and accuracy of `model` (in evaluation mode: off the autodiff device) over every batch
/// of `feed`, computed in `precision`.
pub fn evaluate(model: &Model, feed: &Feed, precision: Precision) -> Tally {
    let device = model_device(model);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    let data = feed.epoch(0);
    for index in 0..feed.batches_per_epoch() {
        let batch = data.batch(index).expect("index in range");
        let images = batch.labels.dims()[0];
        let logits = precision.forward(model, batch.images);
        let loss = loss_fn
            .forward(logits.clone(), batch.labels.clone())
            .into_scalar::<f64>();
        tally.add(loss, count_correct(logits, batch.labels), images, 0.0);
    }
    tally.seconds = started.elapsed().as_secs_f64();
    tally
}

/// SGD with momentum (no dampening, as PyTorch and the papers) and L2 weight decay.
pub fn sgd(settings: &OptimizerSettings) -> ModuleOptimizer {
    let momentum = (settings.momentum > 0.0).then_some(MomentumConfig {
        momentum: settings.momentum,
        dampening: 0.0,
        nesterov: settings.nesterov,
    });
    let weight_decay = (settings.weight_decay > 0.0).then_some(WeightDecayConfig {
        penalty: settings.weight_decay as f32,
    });
    SgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay(weight_decay)
        .init()
}

fn model_device(model: &Model) -> Device {
    model
        .devices()
        .into_iter()
        .next()
        .expect("a model with parameters has a device")
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predictions = logits.argmax(1).flatten::<1>(0, 1);
    predictions.equal(labels).int().sum().into_scalar::<i64>() as usize
}
