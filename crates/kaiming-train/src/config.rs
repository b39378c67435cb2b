//! Run settings: flags, TOML recipes, defaults, and the fully resolved `config.toml` of a run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use kaiming_init::Scheme;
use kaiming_resnet::{ModelConfig, ModelName, Norm, StemKind};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::precision::Precision;
use crate::schedule::{Schedule, ScheduleKind};

/// Every setting of a training run, as given on the command line or in a `--config` TOML file.
///
/// All are optional here: a flag wins over the file, the file over the defaults (shown in
/// `--help`). The file uses the same names with underscores (`batch_size = 128`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// Init scheme of every conv and linear weight (biases zero, BN γ = 1, β = 0): he,
    /// he-uniform, he-fan-out, he-trunc, xavier, xavier-uniform, lecun, orthogonal,
    /// torch-default, … [default: he]
    #[arg(long)]
    pub init: Option<Scheme>,
    /// Model: resnet18…resnet152, resnet20…resnet1202, plain20…plain1202,
    /// plain-resnet18…plain-resnet152, plaincnn [default: resnet18]
    #[arg(long)]
    pub model: Option<ModelName>,
    /// Weight layers of plaincnn [default: 30]
    #[arg(long)]
    pub depth: Option<usize>,
    /// First-stage width of plaincnn [default: 16]
    #[arg(long)]
    pub width: Option<usize>,
    /// Stem of resnet18…152 and plain-resnet*: cifar (3×3 conv) or imagenet (7×7/2 + pool)
    /// [default: cifar]
    #[arg(long)]
    pub stem: Option<StemKind>,
    /// Normalisation: batch or none [default: batch]
    #[arg(long)]
    pub norm: Option<Norm>,
    /// Start every residual branch at zero: last BN γ of each block = 0 (Goyal et al. 2017)
    /// [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub zero_init_residual: Option<bool>,
    /// Epochs to train [default: 30]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per optimizer step [default: 128]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [default: 0.1]
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum, without dampening as in PyTorch [default: 0.9]
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Nesterov momentum [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub nesterov: Option<bool>,
    /// L2 weight decay, on every parameter as in the papers [default: 5e-4]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule: constant, cosine, multistep [default: cosine]
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// Epochs at which multistep multiplies the rate by --gamma, e.g. 91,136 [default: none]
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<f64>>,
    /// Factor applied at each milestone [default: 0.1]
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Epochs of linear warm-up before the schedule (fractions allowed) [default: 0]
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Seed of weights, data order and augmentation [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// CIFAR-10 folder (cifar-10-batches-bin); else CIFAR10_DIR, ./datasets, burn's cache, or a
    /// download [default: search]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Train on the first N training images only, for quick runs [default: all]
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N images of the evaluation split only [default: all]
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// Hold out N training images as validation and evaluate on them instead of the test set
    /// (the paper's 45k/5k split is 5000) [default: 0]
    #[arg(long)]
    pub val_split: Option<usize>,
    /// Compute backend: flex, ndarray (CPU); wgpu, vulkan, metal, cuda (GPU, each where its
    /// cargo feature is compiled in) [default: flex]
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Arithmetic of the forward and backward passes: f32, or f16/bf16 with f32 master weights
    /// (f16 with dynamic loss scaling), where the device supports it [default: f32]
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Write a train row to metrics.csv every N steps [default: 50]
    #[arg(long)]
    pub log_every: Option<usize>,
}

/// The resolved settings of a run: what `config.toml` in the run folder holds, so that
/// `--config runs/NAME/config.toml` repeats the run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Weight init scheme.
    pub init: Scheme,
    /// Model name.
    pub model: ModelName,
    /// Weight layers of plaincnn.
    pub depth: usize,
    /// First-stage width of plaincnn.
    pub width: usize,
    /// Stem of the torchvision-layout nets.
    pub stem: StemKind,
    /// Normalisation.
    pub norm: Norm,
    /// Zero-init the last BN γ of each residual branch.
    pub zero_init_residual: bool,
    /// Epochs to train.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// Multistep milestones, in epochs.
    pub milestones: Vec<f64>,
    /// Multistep factor.
    pub gamma: f64,
    /// Warm-up, in epochs.
    pub warmup_epochs: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// Data folder given by flag or file; `None` searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Training images used; `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Evaluation images used; `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_limit: Option<usize>,
    /// Validation images held out of training; 0 evaluates on the test set.
    pub val_split: usize,
    /// Compute backend.
    pub backend: Backend,
    /// Arithmetic precision (absent in runs made before it existed: f32).
    #[serde(default)]
    pub precision: Precision,
    /// Steps per train row in metrics.csv.
    pub log_every: usize,
}

impl RunArgs {
    /// Reads a TOML recipe, naming the file and the line of a syntax or type error.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start].lines().count().max(1));
            match line {
                Some(line) => anyhow::anyhow!("{}:{line}: {}", path.display(), error.message()),
                None => anyhow::anyhow!("{}: {}", path.display(), error.message()),
            }
        })
    }

    /// These settings, with `base` filling the ones not given here.
    pub fn or(self, base: RunArgs) -> RunArgs {
        RunArgs {
            init: self.init.or(base.init),
            model: self.model.or(base.model),
            depth: self.depth.or(base.depth),
            width: self.width.or(base.width),
            stem: self.stem.or(base.stem),
            norm: self.norm.or(base.norm),
            zero_init_residual: self.zero_init_residual.or(base.zero_init_residual),
            epochs: self.epochs.or(base.epochs),
            batch_size: self.batch_size.or(base.batch_size),
            lr: self.lr.or(base.lr),
            momentum: self.momentum.or(base.momentum),
            nesterov: self.nesterov.or(base.nesterov),
            weight_decay: self.weight_decay.or(base.weight_decay),
            schedule: self.schedule.or(base.schedule),
            milestones: self.milestones.or(base.milestones),
            gamma: self.gamma.or(base.gamma),
            warmup_epochs: self.warmup_epochs.or(base.warmup_epochs),
            seed: self.seed.or(base.seed),
            data_dir: self.data_dir.or(base.data_dir),
            train_limit: self.train_limit.or(base.train_limit),
            eval_limit: self.eval_limit.or(base.eval_limit),
            val_split: self.val_split.or(base.val_split),
            backend: self.backend.or(base.backend),
            precision: self.precision.or(base.precision),
            log_every: self.log_every.or(base.log_every),
        }
    }

    /// The complete, checked settings, defaults filling what is not given.
    pub fn resolve(self) -> Result<RunConfig> {
        let config = RunConfig {
            init: self.init.unwrap_or_default(),
            model: self.model.unwrap_or(ModelName::ResNet(18)),
            depth: self.depth.unwrap_or(30),
            width: self.width.unwrap_or(16),
            stem: self.stem.unwrap_or(StemKind::Cifar),
            norm: self.norm.unwrap_or_default(),
            zero_init_residual: self.zero_init_residual.unwrap_or(false),
            epochs: self.epochs.unwrap_or(30),
            batch_size: self.batch_size.unwrap_or(128),
            lr: self.lr.unwrap_or(0.1),
            momentum: self.momentum.unwrap_or(0.9),
            nesterov: self.nesterov.unwrap_or(false),
            weight_decay: self.weight_decay.unwrap_or(5e-4),
            schedule: self.schedule.unwrap_or(ScheduleKind::Cosine),
            milestones: self.milestones.unwrap_or_default(),
            gamma: self.gamma.unwrap_or(0.1),
            warmup_epochs: self.warmup_epochs.unwrap_or(0.0),
            seed: self.seed.unwrap_or(0),
            data_dir: self.data_dir,
            train_limit: self.train_limit,
            eval_limit: self.eval_limit,
            val_split: self.val_split.unwrap_or(0),
            backend: self.backend.unwrap_or_default(),
            precision: self.precision.unwrap_or_default(),
            log_every: self.log_every.unwrap_or(50),
        };
        config.validate()?;
        Ok(config)
    }
}

impl RunConfig {
    /// Rejects impossible values with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.epochs > 0, "--epochs must be at least 1 (got 0)");
        ensure!(
            self.batch_size > 0,
            "--batch-size must be at least 1 (got 0)"
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "--lr must be a positive number (got {})",
            self.lr
        );
        ensure!(
            (0.0..1.0).contains(&self.momentum),
            "--momentum must be in [0, 1) (got {})",
            self.momentum
        );
        ensure!(
            !self.nesterov || self.momentum > 0.0,
            "--nesterov needs a positive --momentum"
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "--weight-decay must be ≥ 0 (got {})",
            self.weight_decay
        );
        ensure!(
            self.gamma.is_finite() && self.gamma > 0.0,
            "--gamma must be positive (got {})",
            self.gamma
        );
        ensure!(
            self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0,
            "--warmup-epochs must be ≥ 0 (got {})",
            self.warmup_epochs
        );
        ensure!(self.log_every > 0, "--log-every must be at least 1 (got 0)");
        self.backend.ensure_compiled()?;
        if self.train_limit == Some(0) || self.eval_limit == Some(0) {
            bail!("--train-limit and --eval-limit must be at least 1");
        }
        for pair in self.milestones.windows(2) {
            ensure!(
                pair[0] < pair[1],
                "--milestones must increase (got {} then {})",
                pair[0],
                pair[1]
            );
        }
        // Milestones matter to multistep only; a recipe's milestones may outlast a shortened run.
        if let Some(bad) = self
            .milestones
            .iter()
            .filter(|_| self.schedule == ScheduleKind::Multistep)
            .find(|&&m| !(m > 0.0 && m <= self.epochs as f64))
        {
            bail!(
                "--milestones must lie in (0, epochs = {}] (got {bad})",
                self.epochs
            );
        }
        if self.schedule == ScheduleKind::Multistep && self.milestones.is_empty() {
            bail!("--schedule multistep needs --milestones");
        }
        self.model_config()
            .validate()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(())
    }

    /// The model this run trains, with 10 classes.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig::new(self.model)
            .with_norm(self.norm)
            .with_stem(self.stem)
            .with_depth(self.depth)
            .with_width(self.width)
            .with_zero_init_residual(self.zero_init_residual)
    }

    /// The learning-rate schedule for `steps_per_epoch` steps per epoch.
    pub fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        let steps = |epochs: f64| (epochs * steps_per_epoch as f64).round() as usize;
        Schedule {
            base_lr: self.lr,
            kind: self.schedule,
            milestones: self.milestones.iter().map(|&m| steps(m)).collect(),
            gamma: self.gamma,
            warmup_steps: steps(self.warmup_epochs),
            total_steps: self.epochs * steps_per_epoch,
        }
    }

    /// The settings as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("run settings serialise to TOML")
    }
}
