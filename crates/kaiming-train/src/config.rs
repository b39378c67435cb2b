//! Run settings: flags, TOML recipes, defaults, and the fully resolved `config.toml` of a run.
//!
//! The settings come in sections — model, optimizer, schedule, data, monitor — plus a few that
//! concern the whole run (init, seed, backend, precision, logging). Each section exists twice:
//! as `…Args`, every field optional (flags, a `--config` recipe), and as `…Settings`, every field
//! resolved. The defaults are stated once, in the `Default` impls of the `…Settings` types;
//! `--help` shows them from there ([`help_defaults`]). A recipe and `config.toml` share one
//! format, so `--config runs/NAME/config.toml` repeats a run exactly:
//!
//! ```toml
//! init = "he"
//! seed = 0
//! [model]
//! name = "resnet20"
//! [optimizer]
//! lr = 0.1
//! [schedule]
//! kind = "multistep"
//! milestones = [91.0, 136.0]
//! [data]
//! batch_size = 128
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Result, bail, ensure};
use clap::Args;
use kaiming_init::Scheme;
use kaiming_resnet::{Branch, LsuvConfig, ModelConfig, ModelName, Norm, StemKind};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::monitor::MonitorSettings;
use crate::precision::Precision;
use crate::schedule::{Schedule, ScheduleKind};

/// Every setting of a training run, as given on the command line or in a `--config` TOML file.
///
/// All are optional here: a flag wins over the file, the file over the defaults (shown in
/// `--help`).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// Init scheme of every conv and linear weight (biases zero, BN γ = 1, β = 0): he,
    /// he-uniform, he-fan-out, he-trunc, xavier, xavier-uniform, lecun, orthogonal,
    /// torch-default, …
    #[arg(long)]
    pub init: Option<Scheme>,
    /// Seed of weights, data order and augmentation
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute backend: flex, ndarray (CPU); wgpu, vulkan, metal, cuda (GPU, each where its
    /// cargo feature is compiled in)
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Arithmetic of the forward and backward passes: f32, or f16/bf16 with f32 master weights
    /// (f16 with dynamic loss scaling), where the device supports it
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Write a train row to metrics.csv every N steps
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Data parallelism: split every batch across N model replicas (--batch-size stays the
    /// global batch), on N GPUs with --devices, or N replicas on the CPU; batch norm keeps
    /// per-replica statistics, as PyTorch's DDP without SyncBatchNorm
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// The network.
    #[command(flatten)]
    #[serde(default)]
    pub model: ModelArgs,
    /// SGD.
    #[command(flatten)]
    #[serde(default)]
    pub optimizer: OptimizerArgs,
    /// Length and learning-rate schedule.
    #[command(flatten)]
    #[serde(default)]
    pub schedule: ScheduleArgs,
    /// Images and batches.
    #[command(flatten)]
    #[serde(default)]
    pub data: DataArgs,
    /// The training-time signal monitor.
    #[command(flatten)]
    #[serde(default)]
    pub monitor: MonitorArgs,
}

/// The `[monitor]` section, every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Signal monitor")]
pub struct MonitorArgs {
    /// Measure per-layer activations, dead ReLUs, gradients and update ratios on a fixed batch
    /// every N steps (monitor.csv, TensorBoard, diagnoses in summary.json); 0 turns it off
    #[arg(long = "monitor-every", id = "monitor_every", value_name = "N")]
    pub every: Option<usize>,
    /// Images in the monitor's fixed batch (the first training images, unaugmented)
    #[arg(
        long = "monitor-batch-size",
        id = "monitor_batch_size",
        value_name = "N"
    )]
    pub batch_size: Option<usize>,
    /// Diagnose vanishing when a layer's activation std falls below this fraction of the first
    /// layer's, or its gradient std below this fraction of the last layer's
    #[arg(long)]
    pub vanishing_below: Option<f64>,
    /// Diagnose exploding above this multiple
    #[arg(long)]
    pub exploding_above: Option<f64>,
    /// Diagnose dead ReLUs when more than this fraction of a layer's channels are dead
    #[arg(long)]
    pub dead_above: Option<f64>,
    /// Diagnose an update ratio ‖Δw‖/‖w‖ below this
    #[arg(long)]
    pub update_ratio_min: Option<f64>,
    /// Diagnose an update ratio above this
    #[arg(long)]
    pub update_ratio_max: Option<f64>,
}

/// The `[model]` section, every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Model: resnet18…resnet152, resnetN and plainN for any CIFAR depth N = 6n+2 (8, 14,
    /// 20…1202), plain-resnet18…plain-resnet152, plaincnn
    #[arg(id = "model", long = "model", value_name = "MODEL")]
    pub name: Option<ModelName>,
    /// Weight layers of plaincnn
    #[arg(long)]
    pub depth: Option<usize>,
    /// First-stage width of plaincnn
    #[arg(long)]
    pub width: Option<usize>,
    /// Stem of resnet18…152 and plain-resnet*: cifar (3×3 conv) or imagenet (7×7/2 + pool)
    #[arg(long)]
    pub stem: Option<StemKind>,
    /// Normalisation: batch or none
    #[arg(long)]
    pub norm: Option<Norm>,
    /// Start every residual branch at zero: last BN γ of each block = 0 (Goyal et al. 2017)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub zero_init_residual: Option<bool>,
    /// Residual branches for deep nets without batch norm: standard (x + F(x)), skipinit
    /// (x + α·F(x), α = 0 at init; De & Smith 2020) or fixup (zero-init last layers, scaled He,
    /// scalar biases; Zhang et al. 2019, needs --norm none)
    #[arg(long = "residual", value_name = "BRANCH")]
    pub residual: Option<Branch>,
    /// After --init, rescale each conv/linear layer from the input on until its output variance
    /// on the first training batch is 1 (LSUV; Mishkin & Matas 2016); biases start at zero
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub lsuv: Option<bool>,
    /// LSUV: how far from 1 a layer's output variance may stay
    #[arg(long)]
    pub lsuv_tolerance: Option<f64>,
    /// LSUV: rescalings per layer at most
    #[arg(long)]
    pub lsuv_max_iterations: Option<usize>,
    /// Start from these weights (a torchvision state dict, .pth or .safetensors, or a `train
    /// export`) instead of --init; what the file does not provide (a head with another class
    /// count) gets --init
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
}

/// The `[optimizer]` section, every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Optimizer (SGD)")]
pub struct OptimizerArgs {
    /// Peak learning rate
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum, without dampening as in PyTorch
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Nesterov momentum
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub nesterov: Option<bool>,
    /// L2 weight decay, on every parameter as in the papers
    #[arg(long)]
    pub weight_decay: Option<f64>,
}

/// The `[schedule]` section, every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Schedule")]
pub struct ScheduleArgs {
    /// Epochs to train
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning-rate schedule: constant, cosine, multistep
    #[arg(id = "schedule", long = "schedule", value_name = "SCHEDULE")]
    pub kind: Option<ScheduleKind>,
    /// Epochs at which multistep multiplies the rate by --gamma, e.g. 91,136
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<f64>>,
    /// Factor applied at each milestone
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Epochs of linear warm-up before the schedule (fractions allowed)
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
}

/// The `[data]` section, every field optional.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// CIFAR-10 folder (cifar-10-batches-bin); else CIFAR10_DIR, ./datasets, burn's cache, or a
    /// download
    #[arg(id = "data_dir", long = "data-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Images per optimizer step
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Train on the first N training images only, for quick runs
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N images of the evaluation split only
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// Hold out N training images as validation and evaluate on them instead of the test set
    /// (the paper's 45k/5k split is 5000)
    #[arg(long)]
    pub val_split: Option<usize>,
}

/// The resolved settings of a run: what `config.toml` in the run folder holds, so that
/// `--config runs/NAME/config.toml` repeats the run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Weight init scheme.
    pub init: Scheme,
    /// Seed of everything random.
    pub seed: u64,
    /// Compute backend.
    pub backend: Backend,
    /// Arithmetic precision (absent in runs made before it existed: f32).
    #[serde(default)]
    pub precision: Precision,
    /// Steps per train row in metrics.csv.
    pub log_every: usize,
    /// Model replicas sharing each batch (absent in runs made before they existed: 1).
    #[serde(default = "one")]
    pub replicas: usize,
    /// The network.
    pub model: ModelSettings,
    /// SGD.
    pub optimizer: OptimizerSettings,
    /// Length and learning-rate schedule.
    pub schedule: ScheduleSettings,
    /// Images and batches.
    pub data: DataSettings,
    /// The signal monitor (absent in runs made before it existed: the defaults).
    #[serde(default)]
    pub monitor: MonitorSettings,
}

/// The `[model]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Model name.
    pub name: ModelName,
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
    /// How residual branches join their shortcuts (absent in runs made before it existed:
    /// standard).
    #[serde(default)]
    pub residual: Branch,
    /// Whether LSUV follows the init (absent in runs made before it existed: no).
    #[serde(default)]
    pub lsuv: bool,
    /// LSUV's tolerance on each layer's output variance.
    #[serde(default = "lsuv_tolerance")]
    pub lsuv_tolerance: f64,
    /// LSUV's rescalings per layer at most.
    #[serde(default = "lsuv_max_iterations")]
    pub lsuv_max_iterations: usize,
    /// Weights the run starts from; `None` starts from `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
}

/// The `[optimizer]` section: SGD with momentum and L2 weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// Peak learning rate.
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
}

/// The `[schedule]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Epochs to train.
    pub epochs: usize,
    /// Shape of the learning rate over the run.
    pub kind: ScheduleKind,
    /// Multistep milestones, in epochs.
    pub milestones: Vec<f64>,
    /// Multistep factor.
    pub gamma: f64,
    /// Warm-up, in epochs.
    pub warmup_epochs: f64,
}

/// The `[data]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Data folder given by flag or file; `None` searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Images per step.
    pub batch_size: usize,
    /// Training images used; `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Evaluation images used; `None` is all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_limit: Option<usize>,
    /// Validation images held out of training; 0 evaluates on the test set.
    pub val_split: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            init: Scheme::default(),
            seed: 0,
            backend: Backend::default(),
            precision: Precision::default(),
            log_every: 50,
            replicas: 1,
            model: ModelSettings::default(),
            optimizer: OptimizerSettings::default(),
            schedule: ScheduleSettings::default(),
            data: DataSettings::default(),
            monitor: MonitorSettings::default(),
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            name: ModelName::ResNet(18),
            depth: 30,
            width: 16,
            stem: StemKind::Cifar,
            norm: Norm::default(),
            zero_init_residual: false,
            residual: Branch::Standard,
            lsuv: false,
            lsuv_tolerance: lsuv_tolerance(),
            lsuv_max_iterations: lsuv_max_iterations(),
            weights: None,
        }
    }
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        OptimizerSettings {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            epochs: 30,
            kind: ScheduleKind::Cosine,
            milestones: Vec::new(),
            gamma: 0.1,
            warmup_epochs: 0.0,
        }
    }
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            dir: None,
            batch_size: 128,
            train_limit: None,
            eval_limit: None,
            val_split: 0,
        }
    }
}

fn lsuv_tolerance() -> f64 {
    LsuvConfig::new().tolerance
}

fn lsuv_max_iterations() -> usize {
    LsuvConfig::new().max_iterations
}

fn one() -> usize {
    1
}

/// The default each run flag shows in `--help`, by argument id, read from the `Default` impls
/// above so that the help and the behaviour cannot disagree.
pub fn help_defaults() -> Vec<(&'static str, String)> {
    let d = RunConfig::default();
    let list = |v: &[f64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        }
    };
    let limit = |v: Option<usize>| v.map_or("all".to_string(), |n| n.to_string());
    vec![
        ("init", d.init.to_string()),
        ("seed", d.seed.to_string()),
        ("backend", d.backend.to_string()),
        ("precision", d.precision.to_string()),
        ("log_every", d.log_every.to_string()),
        ("replicas", d.replicas.to_string()),
        ("model", d.model.name.to_string()),
        ("depth", d.model.depth.to_string()),
        ("width", d.model.width.to_string()),
        ("stem", d.model.stem.to_string()),
        ("norm", d.model.norm.to_string()),
        ("zero_init_residual", d.model.zero_init_residual.to_string()),
        ("residual", d.model.residual.to_string()),
        ("lsuv", d.model.lsuv.to_string()),
        ("lsuv_tolerance", d.model.lsuv_tolerance.to_string()),
        (
            "lsuv_max_iterations",
            d.model.lsuv_max_iterations.to_string(),
        ),
        (
            "weights",
            d.model
                .weights
                .map_or("none: --init".to_string(), |p| p.display().to_string()),
        ),
        ("lr", d.optimizer.lr.to_string()),
        ("momentum", d.optimizer.momentum.to_string()),
        ("nesterov", d.optimizer.nesterov.to_string()),
        ("weight_decay", d.optimizer.weight_decay.to_string()),
        ("epochs", d.schedule.epochs.to_string()),
        ("schedule", d.schedule.kind.to_string()),
        ("milestones", list(&d.schedule.milestones)),
        ("gamma", d.schedule.gamma.to_string()),
        ("warmup_epochs", d.schedule.warmup_epochs.to_string()),
        (
            "data_dir",
            d.data
                .dir
                .map_or("search".to_string(), |p| p.display().to_string()),
        ),
        ("batch_size", d.data.batch_size.to_string()),
        ("train_limit", limit(d.data.train_limit)),
        ("eval_limit", limit(d.data.eval_limit)),
        ("val_split", d.data.val_split.to_string()),
        ("monitor_every", d.monitor.every.to_string()),
        ("monitor_batch_size", d.monitor.batch_size.to_string()),
        ("vanishing_below", d.monitor.vanishing_below.to_string()),
        ("exploding_above", d.monitor.exploding_above.to_string()),
        ("dead_above", d.monitor.dead_above.to_string()),
        ("update_ratio_min", d.monitor.update_ratio_min.to_string()),
        ("update_ratio_max", d.monitor.update_ratio_max.to_string()),
    ]
}

/// Parses TOML into `T`, naming `origin` and the line of a syntax or type error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| {
            text.get(..span.start)
                .unwrap_or(text)
                .lines()
                .count()
                .max(1)
        });
        match line {
            Some(line) => anyhow::anyhow!("{}:{line}: {}", origin.display(), error.message()),
            None => anyhow::anyhow!("{}: {}", origin.display(), error.message()),
        }
    })
}

/// Reads a TOML file into `T`, naming the file on every error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))?;
    parse_toml(text, path)
}

impl RunArgs {
    /// Reads a TOML recipe, naming the file and the line of a syntax or type error.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_toml(path)
    }

    /// These settings, with `base` filling the ones not given here.
    pub fn or(self, base: RunArgs) -> RunArgs {
        RunArgs {
            init: self.init.or(base.init),
            seed: self.seed.or(base.seed),
            backend: self.backend.or(base.backend),
            precision: self.precision.or(base.precision),
            log_every: self.log_every.or(base.log_every),
            replicas: self.replicas.or(base.replicas),
            model: ModelArgs {
                name: self.model.name.or(base.model.name),
                depth: self.model.depth.or(base.model.depth),
                width: self.model.width.or(base.model.width),
                stem: self.model.stem.or(base.model.stem),
                norm: self.model.norm.or(base.model.norm),
                zero_init_residual: self
                    .model
                    .zero_init_residual
                    .or(base.model.zero_init_residual),
                residual: self.model.residual.or(base.model.residual),
                lsuv: self.model.lsuv.or(base.model.lsuv),
                lsuv_tolerance: self.model.lsuv_tolerance.or(base.model.lsuv_tolerance),
                lsuv_max_iterations: self
                    .model
                    .lsuv_max_iterations
                    .or(base.model.lsuv_max_iterations),
                weights: self.model.weights.or(base.model.weights),
            },
            optimizer: OptimizerArgs {
                lr: self.optimizer.lr.or(base.optimizer.lr),
                momentum: self.optimizer.momentum.or(base.optimizer.momentum),
                nesterov: self.optimizer.nesterov.or(base.optimizer.nesterov),
                weight_decay: self.optimizer.weight_decay.or(base.optimizer.weight_decay),
            },
            schedule: ScheduleArgs {
                epochs: self.schedule.epochs.or(base.schedule.epochs),
                kind: self.schedule.kind.or(base.schedule.kind),
                milestones: self.schedule.milestones.or(base.schedule.milestones),
                gamma: self.schedule.gamma.or(base.schedule.gamma),
                warmup_epochs: self.schedule.warmup_epochs.or(base.schedule.warmup_epochs),
            },
            data: DataArgs {
                dir: self.data.dir.or(base.data.dir),
                batch_size: self.data.batch_size.or(base.data.batch_size),
                train_limit: self.data.train_limit.or(base.data.train_limit),
                eval_limit: self.data.eval_limit.or(base.data.eval_limit),
                val_split: self.data.val_split.or(base.data.val_split),
            },
            monitor: MonitorArgs {
                every: self.monitor.every.or(base.monitor.every),
                batch_size: self.monitor.batch_size.or(base.monitor.batch_size),
                vanishing_below: self
                    .monitor
                    .vanishing_below
                    .or(base.monitor.vanishing_below),
                exploding_above: self
                    .monitor
                    .exploding_above
                    .or(base.monitor.exploding_above),
                dead_above: self.monitor.dead_above.or(base.monitor.dead_above),
                update_ratio_min: self
                    .monitor
                    .update_ratio_min
                    .or(base.monitor.update_ratio_min),
                update_ratio_max: self
                    .monitor
                    .update_ratio_max
                    .or(base.monitor.update_ratio_max),
            },
        }
    }

    /// The complete, checked settings, the defaults filling what is not given.
    pub fn resolve(self) -> Result<RunConfig> {
        let d = RunConfig::default();
        let (m, o, s, data, w) = (
            self.model,
            self.optimizer,
            self.schedule,
            self.data,
            self.monitor,
        );
        let config = RunConfig {
            init: self.init.unwrap_or(d.init),
            seed: self.seed.unwrap_or(d.seed),
            backend: self.backend.unwrap_or(d.backend),
            precision: self.precision.unwrap_or(d.precision),
            log_every: self.log_every.unwrap_or(d.log_every),
            replicas: self.replicas.unwrap_or(d.replicas),
            model: ModelSettings {
                name: m.name.unwrap_or(d.model.name),
                depth: m.depth.unwrap_or(d.model.depth),
                width: m.width.unwrap_or(d.model.width),
                stem: m.stem.unwrap_or(d.model.stem),
                norm: m.norm.unwrap_or(d.model.norm),
                zero_init_residual: m.zero_init_residual.unwrap_or(d.model.zero_init_residual),
                residual: m.residual.unwrap_or(d.model.residual),
                lsuv: m.lsuv.unwrap_or(d.model.lsuv),
                lsuv_tolerance: m.lsuv_tolerance.unwrap_or(d.model.lsuv_tolerance),
                lsuv_max_iterations: m.lsuv_max_iterations.unwrap_or(d.model.lsuv_max_iterations),
                weights: m.weights.or(d.model.weights),
            },
            optimizer: OptimizerSettings {
                lr: o.lr.unwrap_or(d.optimizer.lr),
                momentum: o.momentum.unwrap_or(d.optimizer.momentum),
                nesterov: o.nesterov.unwrap_or(d.optimizer.nesterov),
                weight_decay: o.weight_decay.unwrap_or(d.optimizer.weight_decay),
            },
            schedule: ScheduleSettings {
                epochs: s.epochs.unwrap_or(d.schedule.epochs),
                kind: s.kind.unwrap_or(d.schedule.kind),
                milestones: s.milestones.unwrap_or(d.schedule.milestones),
                gamma: s.gamma.unwrap_or(d.schedule.gamma),
                warmup_epochs: s.warmup_epochs.unwrap_or(d.schedule.warmup_epochs),
            },
            data: DataSettings {
                dir: data.dir.or(d.data.dir),
                batch_size: data.batch_size.unwrap_or(d.data.batch_size),
                train_limit: data.train_limit.or(d.data.train_limit),
                eval_limit: data.eval_limit.or(d.data.eval_limit),
                val_split: data.val_split.unwrap_or(d.data.val_split),
            },
            monitor: MonitorSettings {
                every: w.every.unwrap_or(d.monitor.every),
                batch_size: w.batch_size.unwrap_or(d.monitor.batch_size),
                vanishing_below: w.vanishing_below.unwrap_or(d.monitor.vanishing_below),
                exploding_above: w.exploding_above.unwrap_or(d.monitor.exploding_above),
                dead_above: w.dead_above.unwrap_or(d.monitor.dead_above),
                update_ratio_min: w.update_ratio_min.unwrap_or(d.monitor.update_ratio_min),
                update_ratio_max: w.update_ratio_max.unwrap_or(d.monitor.update_ratio_max),
            },
        };
        config.validate()?;
        Ok(config)
    }
}

impl RunConfig {
    /// Reads and checks a run's `config.toml`.
    pub fn read(path: &Path) -> Result<Self> {
        let config: RunConfig = read_toml(path)?;
        config
            .validate()
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        Ok(config)
    }

    /// Rejects impossible values with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let (o, s, d) = (&self.optimizer, &self.schedule, &self.data);
        ensure!(s.epochs > 0, "--epochs must be at least 1 (got 0)");
        ensure!(d.batch_size > 0, "--batch-size must be at least 1 (got 0)");
        ensure!(
            o.lr.is_finite() && o.lr > 0.0,
            "--lr must be a positive number (got {})",
            o.lr
        );
        ensure!(
            (0.0..1.0).contains(&o.momentum),
            "--momentum must be in [0, 1) (got {})",
            o.momentum
        );
        ensure!(
            !o.nesterov || o.momentum > 0.0,
            "--nesterov needs a positive --momentum"
        );
        ensure!(
            o.weight_decay.is_finite() && o.weight_decay >= 0.0,
            "--weight-decay must be ≥ 0 (got {})",
            o.weight_decay
        );
        ensure!(
            s.gamma.is_finite() && s.gamma > 0.0,
            "--gamma must be positive (got {})",
            s.gamma
        );
        ensure!(
            s.warmup_epochs.is_finite() && s.warmup_epochs >= 0.0,
            "--warmup-epochs must be ≥ 0 (got {})",
            s.warmup_epochs
        );
        ensure!(self.log_every > 0, "--log-every must be at least 1 (got 0)");
        ensure!(self.replicas > 0, "--replicas must be at least 1 (got 0)");
        ensure!(
            self.replicas <= d.batch_size,
            "--replicas {} is more than the --batch-size {}: every replica needs an image",
            self.replicas,
            d.batch_size
        );
        self.backend.ensure_compiled()?;
        if d.train_limit == Some(0) || d.eval_limit == Some(0) {
            bail!("--train-limit and --eval-limit must be at least 1");
        }
        for pair in s.milestones.windows(2) {
            ensure!(
                pair[0] < pair[1],
                "--milestones must increase (got {} then {})",
                pair[0],
                pair[1]
            );
        }
        // Milestones matter to multistep only; a recipe's milestones may outlast a shortened run.
        if s.kind == ScheduleKind::Multistep {
            if let Some(bad) = s
                .milestones
                .iter()
                .find(|&&m| !(m > 0.0 && m <= s.epochs as f64))
            {
                bail!(
                    "--milestones must lie in (0, epochs = {}] (got {bad})",
                    s.epochs
                );
            }
            if s.milestones.is_empty() {
                bail!("--schedule multistep needs --milestones");
            }
        }
        self.monitor.validate()?;
        self.model_config()
            .validate()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let m = &self.model;
        ensure!(
            m.lsuv_tolerance > 0.0 && m.lsuv_tolerance < 1.0,
            "--lsuv-tolerance must lie in (0, 1) (got {})",
            m.lsuv_tolerance
        );
        ensure!(
            m.lsuv_max_iterations > 0,
            "--lsuv-max-iterations must be at least 1 (got 0)"
        );
        Ok(())
    }

    /// The model this run trains, with 10 classes.
    pub fn model_config(&self) -> ModelConfig {
        let m = &self.model;
        ModelConfig::new(m.name)
            .with_norm(m.norm)
            .with_stem(m.stem)
            .with_depth(m.depth)
            .with_width(m.width)
            .with_zero_init_residual(m.zero_init_residual)
            .with_branch(m.residual)
    }

    /// The LSUV pass that follows the init, where the run asks for one.
    pub fn lsuv(&self) -> Option<LsuvConfig> {
        let m = &self.model;
        m.lsuv.then(|| {
            LsuvConfig::new()
                .with_tolerance(m.lsuv_tolerance)
                .with_max_iterations(m.lsuv_max_iterations)
        })
    }

    /// The learning-rate schedule for `steps_per_epoch` steps per epoch.
    pub fn schedule(&self, steps_per_epoch: usize) -> Schedule {
        let s = &self.schedule;
        let steps = |epochs: f64| (epochs * steps_per_epoch as f64).round() as usize;
        Schedule {
            base_lr: self.optimizer.lr,
            kind: s.kind,
            milestones: s.milestones.iter().map(|&m| steps(m)).collect(),
            gamma: s.gamma,
            warmup_steps: steps(s.warmup_epochs),
            total_steps: s.epochs * steps_per_epoch,
        }
    }

    /// `<model>-<init>-s<seed>`: what a run is, as a file name. A sweep names its runs so (a
    /// restarted sweep finds them again); a single run adds the time.
    pub fn label(&self) -> String {
        let init = self.init.to_string().replace([':', '(', ')'], "_");
        format!("{}-{init}-s{}", self.model.name, self.seed)
    }

    /// The settings as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("run settings serialise to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_toml_round_trips_and_reads_as_a_recipe() {
        let mut config = RunArgs::default().resolve().unwrap();
        config.schedule.kind = ScheduleKind::Multistep;
        config.schedule.milestones = vec![10.0, 20.0];
        config.data.train_limit = Some(100);
        let text = config.to_toml();
        let back: RunConfig = parse_toml(&text, Path::new("config.toml")).unwrap();
        assert_eq!(back, config);
        let recipe: RunArgs = parse_toml(&text, Path::new("config.toml")).unwrap();
        assert_eq!(recipe.resolve().unwrap(), config);
    }

    /// The files under `dir`, recursively, that `accept` takes.
    fn files(dir: &Path, accept: &dyn Fn(&Path) -> bool, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                files(&path, accept, found);
            } else if accept(&path) {
                found.push(path);
            }
        }
    }

    #[test]
    fn the_shipped_recipes_and_published_runs_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut recipes = Vec::new();
        files(
            &root.join("configs"),
            &|p| p.extension().is_some_and(|e| e == "toml"),
            &mut recipes,
        );
        assert!(recipes.len() >= 5, "{recipes:?}");
        for recipe in recipes {
            let args = RunArgs::from_file(&recipe).unwrap();
            args.resolve()
                .unwrap_or_else(|e| panic!("{}: {e}", recipe.display()));
        }
        let mut runs = Vec::new();
        files(
            &root.join("docs/results"),
            &|p| p.file_name().is_some_and(|n| n == "config.toml"),
            &mut runs,
        );
        assert!(!runs.is_empty());
        for run in runs {
            RunConfig::read(&run).unwrap();
        }
    }

    #[test]
    fn flags_win_over_the_recipe_and_the_recipe_over_the_defaults() {
        let recipe: RunArgs = parse_toml(
            "seed = 4\n[optimizer]\nlr = 0.5\nmomentum = 0.5\n",
            Path::new("r.toml"),
        )
        .unwrap();
        let flags = RunArgs {
            optimizer: OptimizerArgs {
                lr: Some(0.2),
                ..OptimizerArgs::default()
            },
            ..RunArgs::default()
        };
        let config = flags.or(recipe).resolve().unwrap();
        assert_eq!(config.optimizer.lr, 0.2);
        assert_eq!(config.optimizer.momentum, 0.5);
        assert_eq!(config.seed, 4);
        assert_eq!(config.optimizer.weight_decay, 5e-4);
    }
}
