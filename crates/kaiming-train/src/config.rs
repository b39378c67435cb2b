//! Run settings: each declared once, with its section, name, type, default, flag and help.
//!
//! From that one declaration ([`section!`]) come the resolved settings (`RunConfig` and its
//! sections, which are `config.toml`), their defaults, the table of [`Setting`]s that the
//! command line, `--set section.key=value`, `--help` and grid sweeps read, and the test that
//! every setting's flag, `--set` form and TOML key agree. Settings are given in layers, each a
//! TOML table ([`RunArgs`]): the defaults, under the kernel variables of the environment, under a
//! `--config` recipe, under the flags and `--set`. A recipe and `config.toml` share one format,
//! so `--config runs/NAME/config.toml` repeats a run exactly:
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

use anyhow::{Context, Result, anyhow, bail, ensure};
use kaiming_init::Scheme;
use kaiming_kernels::{ConvAlgorithm, ConvChoice, IsaChoice, KernelChoice};
use kaiming_resnet::{Branch, LsuvConfig, ModelConfig, ModelName, Norm, StemKind};
use serde::Deserialize;

use crate::backend::Backend;
use crate::precision::Precision;
use crate::schedule::{Schedule, ScheduleKind};
use crate::settings::{Setting, edit_distance, section, to_toml_value};

section! {
    /// The resolved settings of a run: what `config.toml` in the run folder holds, so that
    /// `--config runs/NAME/config.toml` repeats the run exactly. A key absent from a file (a run
    /// made before the setting existed) takes its default.
    pub struct RunConfig in "", heading "Run" {
        /// Init scheme of every conv and linear weight (biases zero, BN γ = 1, β = 0): he,
        /// he-uniform, he-fan-out, he-trunc, xavier, xavier-uniform, lecun, orthogonal,
        /// torch-default, …
        init: Scheme = Scheme::default(), flag "init", example "xavier";
        /// Seed of weights, data order and augmentation
        seed: u64 = 0, flag "seed", example "7";
        /// Compute backend: flex, ndarray (CPU); wgpu, vulkan, metal, cuda (GPU, each where its
        /// cargo feature is compiled in)
        backend: Backend = Backend::default(), flag "backend", example "ndarray";
        /// Arithmetic of the forward and backward passes: f32, or f16/bf16 with f32 master
        /// weights (f16 with dynamic loss scaling), where the device supports it
        precision: Precision = Precision::default(), flag "precision", example "bf16";
        /// Write a train row to metrics.csv every N steps
        log_every: usize = 50, flag "log-every", example "10";
        /// Data parallelism: split every batch across N model replicas (--batch-size stays the
        /// global batch), on N GPUs with --devices, or N replicas on the CPU; batch norm keeps
        /// per-replica statistics, as PyTorch's DDP without SyncBatchNorm
        replicas: usize = 1, flag "replicas", example "2";
    }
    sections {
        /// The network.
        model: ModelSettings,
        /// SGD.
        optimizer: OptimizerSettings,
        /// The training loss.
        loss: LossSettings,
        /// Length and learning-rate schedule.
        schedule: ScheduleSettings,
        /// Images and batches.
        data: DataSettings,
        /// The signal monitor.
        monitor: MonitorSettings,
        /// How the CPU computes (the flex backend's kernels).
        kernels: KernelSettings,
    }
}

section! {
    /// The `[model]` section.
    pub struct ModelSettings in "model.", heading "Model" {
        /// Model: resnet18…resnet152, resnetN and plainN for any CIFAR depth N = 6n+2 (8, 14,
        /// 20…1202), plain-resnet18…plain-resnet152, plaincnn
        name: ModelName = ModelName::ResNet(18), flag "model", example "resnet20";
        /// Weight layers of plaincnn
        depth: usize = 30, flag "depth", example "12";
        /// First-stage width of plaincnn
        width: usize = 16, flag "width", example "8";
        /// Stem of resnet18…152 and plain-resnet*: cifar (3×3 conv) or imagenet (7×7/2 + pool)
        stem: StemKind = StemKind::Cifar, flag "stem", example "imagenet";
        /// Normalisation: batch or none
        norm: Norm = Norm::default(), flag "norm", example "none";
        /// Start every residual branch at zero: last BN γ of each block = 0 (Goyal et al. 2017)
        zero_init_residual: bool = false, flag "zero-init-residual", example "true";
        /// Residual branches for deep nets without batch norm: standard (x + F(x)), skipinit
        /// (x + α·F(x), α = 0 at init; De & Smith 2020) or fixup (zero-init last layers,
        /// scaled He, scalar biases; Zhang et al. 2019, needs --norm none)
        residual: Branch = Branch::Standard, flag "residual", example "skipinit";
        /// After --init, rescale each conv/linear layer from the input on until its output
        /// variance on the first training batch is 1 (LSUV; Mishkin & Matas 2016); biases start
        /// at zero
        lsuv: bool = false, flag "lsuv", example "true";
        /// LSUV: how far from 1 a layer's output variance may stay
        lsuv_tolerance: f64 = LsuvConfig::new().tolerance, flag "lsuv-tolerance", example "0.05";
        /// LSUV: rescalings per layer at most
        lsuv_max_iterations: usize = LsuvConfig::new().max_iterations,
            flag "lsuv-max-iterations", example "3";
        /// Start from these weights (a torchvision state dict, .pth or .safetensors, or a
        /// `train export`) instead of --init; what the file does not provide (a head with
        /// another class count) gets --init
        #[serde(skip_serializing_if = "Option::is_none")]
        weights: Option<PathBuf> = None, flag "weights", shown "none: --init",
            example "weights.safetensors";
    }
}

section! {
    /// The `[optimizer]` section: SGD with momentum and L2 weight decay.
    pub struct OptimizerSettings in "optimizer.", heading "Optimizer (SGD)" {
        /// Peak learning rate
        lr: f64 = 0.1, flag "lr", example "0.05";
        /// SGD momentum, without dampening as in PyTorch
        momentum: f64 = 0.9, flag "momentum", example "0.5";
        /// Nesterov momentum
        nesterov: bool = false, flag "nesterov", example "true";
        /// L2 weight decay, on every parameter as in the papers
        weight_decay: f64 = 5e-4, flag "weight-decay", example "0.0001";
    }
}

section! {
    /// The `[loss]` section: cross-entropy, as trained on (evaluations report the plain one).
    pub struct LossSettings in "loss.", heading "Loss", derive Copy {
        /// Label smoothing: the target puts this much probability evenly on all classes
        /// (Szegedy et al. 2016); 0 is plain cross-entropy
        label_smoothing: f64 = 0.0, flag "label-smoothing", example "0.1";
    }
}

section! {
    /// The `[schedule]` section.
    pub struct ScheduleSettings in "schedule.", heading "Schedule" {
        /// Epochs to train
        epochs: usize = 30, flag "epochs", example "3";
        /// Learning-rate schedule: constant, cosine, multistep
        kind: ScheduleKind = ScheduleKind::Cosine, flag "schedule", example "constant";
        /// Epochs at which multistep multiplies the rate by --gamma, e.g. 91,136
        milestones: Vec<f64> = Vec::new(), flag "milestones", example "10,20";
        /// Factor applied at each milestone
        gamma: f64 = 0.1, flag "gamma", example "0.2";
        /// Epochs of linear warm-up before the schedule (fractions allowed)
        warmup_epochs: f64 = 0.0, flag "warmup-epochs", example "0.5";
    }
}

section! {
    /// The `[data]` section.
    pub struct DataSettings in "data.", heading "Data" {
        /// CIFAR-10 folder (cifar-10-batches-bin); else CIFAR10_DIR, ./datasets, burn's cache,
        /// or a download
        #[serde(skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf> = None, flag "data-dir", shown "search", example "cifar";
        /// Images per optimizer step
        batch_size: usize = 128, flag "batch-size", example "64";
        /// Train on the first N training images only, for quick runs
        #[serde(skip_serializing_if = "Option::is_none")]
        train_limit: Option<usize> = None, flag "train-limit", shown "all", example "500";
        /// Evaluate on the first N images of the evaluation split only
        #[serde(skip_serializing_if = "Option::is_none")]
        eval_limit: Option<usize> = None, flag "eval-limit", shown "all", example "200";
        /// Hold out N training images as validation and evaluate on them instead of the test
        /// set (the paper's 45k/5k split is 5000)
        val_split: usize = 0, flag "val-split", example "5000";
    }
}

section! {
    /// The `[monitor]` section: the training-time signal monitor.
    pub struct MonitorSettings in "monitor.", heading "Signal monitor", derive Copy {
        /// Measure per-layer activations, dead ReLUs, gradients and update ratios on a fixed
        /// batch every N steps (monitor.csv, TensorBoard, diagnoses in summary.json); 0 turns
        /// it off
        every: usize = 100, flag "monitor-every", example "10";
        /// Images in the monitor's fixed batch (the first training images, unaugmented)
        batch_size: usize = 64, flag "monitor-batch-size", example "16";
        /// Diagnose vanishing when a layer's activation std falls below this fraction of the
        /// first layer's, or its gradient std below this fraction of the last layer's
        vanishing_below: f64 = 1e-3, flag "vanishing-below", example "0.01";
        /// Diagnose exploding above this multiple
        exploding_above: f64 = 1e3, flag "exploding-above", example "100";
        /// Diagnose dead ReLUs when more than this fraction of a layer's channels are dead
        dead_above: f64 = 0.5, flag "dead-above", example "0.9";
        /// Diagnose an update ratio ‖Δw‖/‖w‖ below this
        update_ratio_min: f64 = 1e-5, flag "update-ratio-min", example "0.000001";
        /// Diagnose an update ratio above this
        update_ratio_max: f64 = 1e-1, flag "update-ratio-max", example "0.5";
    }
}

section! {
    /// The `[kernels]` section: how the flex backend computes on the CPU. The environment
    /// variables `KAIMING_CONV`, `KAIMING_CONV_ISA` and `KAIMING_KERNELS=burn` set the same
    /// (a recipe and the flags win over them); every run records what it used.
    pub struct KernelSettings in "kernels.", heading "CPU kernels" {
        /// Convolution algorithm: auto (by the measured rules), gemm (im2col GEMMs), direct
        /// (the direct kernels wherever they apply) or blocked (the channel-blocked direct
        /// kernels wherever they apply, GEMMs elsewhere)
        conv: ConvAlgorithm = ConvAlgorithm::Auto, flag "conv", example "gemm";
        /// Instruction set of the direct kernels: auto (the widest the CPU has), avx512 or avx2
        /// (refused at start on a CPU without it), avx512-emulated (AVX-512's kernels on
        /// portable vectors, any x86-64 CPU, slow: for tests), or none (burn's convolutions, as
        /// on a CPU without AVX2 and FMA)
        isa: IsaChoice = IsaChoice::Auto, flag "conv-isa", example "avx2";
        /// Compute everything with burn's own operations instead of this project's kernels
        burn: bool = false, flag "burn-kernels", example "true";
    }
}

impl KernelSettings {
    /// The kernels' choice these settings make.
    pub fn choice(&self) -> KernelChoice {
        KernelChoice {
            burn: self.burn,
            conv: ConvChoice {
                algorithm: self.conv,
                isa: self.isa,
            },
        }
    }

    /// The environment's kernel variables as a layer of settings, naming a bad one.
    fn environment_layer() -> Result<toml::Table> {
        let choice = kaiming_kernels::from_environment().map_err(|error| anyhow!(error))?;
        let defaults = KernelSettings::default();
        let mut layer = RunArgs::default();
        if choice.burn != defaults.burn {
            layer.insert("kernels.burn", toml::Value::Boolean(choice.burn));
        }
        if choice.conv.algorithm != defaults.conv {
            layer.insert(
                "kernels.conv",
                to_toml_value(choice.conv.algorithm).map_err(|e| anyhow!(e))?,
            );
        }
        if choice.conv.isa != defaults.isa {
            layer.insert(
                "kernels.isa",
                toml::Value::String(choice.conv.isa.to_string()),
            );
        }
        Ok(layer.given)
    }
}

/// Every setting, in declaration order: the top level, then each section.
pub fn settings() -> &'static [Setting] {
    static SETTINGS: std::sync::OnceLock<Vec<Setting>> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| {
        let mut settings = Vec::new();
        RunConfig::declare(&mut settings);
        settings
    })
}

/// The setting named `key`, or an error naming the nearest one.
pub fn setting(key: &str) -> Result<&'static Setting> {
    settings()
        .iter()
        .find(|setting| setting.key == key)
        .ok_or_else(|| {
            let nearest = settings()
                .iter()
                .min_by_key(|setting| edit_distance(key, setting.key))
                .map_or("", |setting| setting.key);
            anyhow!("unknown setting '{key}' (did you mean '{nearest}'?)")
        })
}

/// Settings given so far — by flags, `--set`, a recipe or a sweep's grid — as a TOML table;
/// what none gives takes its default in [`RunArgs::resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    given: toml::Table,
}

impl RunArgs {
    /// Reads a TOML recipe (or a run's `config.toml`), naming the file, and the line of a
    /// syntax error, an unknown key or a value of the wrong type.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_toml(&text, path)
    }

    /// Parses a recipe's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        // Typed once for the errors (line, key, expected type), kept as the table it is.
        parse_toml::<RunConfig>(text, origin)?;
        let given = parse_toml(text, origin)?;
        Ok(RunArgs { given })
    }

    /// Sets `key` from the text of a flag, `--set` or a grid: an unknown key names the nearest
    /// real one, a bad value the key.
    pub fn set(&mut self, key: &str, text: &str) -> Result<()> {
        let setting = setting(key)?;
        let value = setting
            .parse(text)
            .map_err(|error| anyhow!("{key}={text}: {error}"))?;
        self.insert(setting.key, value);
        Ok(())
    }

    /// Sets `key` (a declared one) to `value`.
    pub fn insert(&mut self, key: &str, value: toml::Value) {
        let mut table = &mut self.given;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_string(), value);
                return;
            }
            let entry = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            table = entry.as_table_mut().expect("made a table above");
        }
    }

    /// Whether `key` is given.
    pub fn is_given(&self, key: &str) -> bool {
        lookup(&self.given, key).is_some()
    }

    /// These settings, with `base` filling the ones not given here.
    pub fn or(self, base: RunArgs) -> RunArgs {
        let mut given = base.given;
        merge(&mut given, self.given);
        RunArgs { given }
    }

    /// The complete, checked settings: the defaults, under the environment's kernel variables,
    /// under these.
    pub fn resolve(self) -> Result<RunConfig> {
        let config = self.merged()?;
        config.validate()?;
        Ok(config)
    }

    /// [`RunArgs::resolve`] without the checks of the values together.
    pub(crate) fn merged(self) -> Result<RunConfig> {
        let mut given = KernelSettings::environment_layer()?;
        merge(&mut given, self.given);
        RunConfig::deserialize(toml::Value::Table(given))
            .map_err(|error| anyhow!("{}", error.message()))
    }
}

#[cfg(test)]
impl RunArgs {
    /// The settings, each checked on its own only (the examples of the agreement test are
    /// valid one by one, not always on this machine or together).
    pub(crate) fn resolve_unchecked(self) -> RunConfig {
        self.merged().unwrap()
    }
}

/// The value at the dotted `key` (`model.depth`) of `table`.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let (section, name) = match key.rsplit_once('.') {
        Some((section, name)) => (table.get(section)?.as_table()?, name),
        None => (table, key),
    };
    section.get(name)
}

/// Lays `over` onto `base`, table into table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Parses TOML into `T`, naming `origin` and the line of a syntax or type error; an unknown
/// key also gets the nearest real one.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &Path) -> Result<T> {
    toml::from_str(text).map_err(|error| {
        let line_of = |offset: usize| text.get(..offset).unwrap_or(text).matches('\n').count() + 1;
        let mut line = error.span().map(|span| line_of(span.start));
        let mut message = error.message().to_string();
        if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
        {
            let unknown = unknown.as_str();
            let nearest = settings()
                .iter()
                .min_by_key(|setting| edit_distance(unknown, setting.name()))
                .map_or("", |setting| setting.key);
            message = format!("unknown setting `{unknown}` (did you mean `{nearest}`?)");
            // The span is the table's; the key's own line follows it.
            let table_start = error.span().map_or(0, |span| span.start);
            line = text[table_start..]
                .lines()
                .position(|l| {
                    l.trim_start()
                        .strip_prefix(unknown)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .map(|index| line_of(table_start) + index)
                .or(line);
        }
        match line {
            Some(line) => anyhow!("{}:{line}: {message}", origin.display()),
            None => anyhow!("{}: {message}", origin.display()),
        }
    })
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| anyhow!("{}: not UTF-8 text ({e})", path.display()))
}

/// Reads a TOML file into `T`, naming the file on every error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    parse_toml(&read_text(path)?, path)
}

impl RunConfig {
    /// Reads and checks a run's `config.toml`.
    pub fn read(path: &Path) -> Result<Self> {
        let config: RunConfig = read_toml(path)?;
        config
            .validate()
            .with_context(|| format!("{}", path.display()))?;
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
        ensure!(
            (0.0..1.0).contains(&self.loss.label_smoothing),
            "--label-smoothing must lie in [0, 1) (got {})",
            self.loss.label_smoothing
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
        self.model_config().validate()?;
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
        self.kernels
            .choice()
            .validate()
            .map_err(|error| anyhow!("--conv-isa {}: {error}", self.kernels.isa))?;
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

    /// The model settings this run's model ignores: a ResNet's plaincnn depth, a CIFAR net's
    /// stem, a plain net's residual branches, LSUV's tolerance without LSUV.
    fn ignored_model_settings(&self) -> Vec<&'static str> {
        let m = &self.model;
        let mut ignored = Vec::new();
        if m.name != ModelName::PlainCnn {
            ignored.extend(["depth", "width"]);
        }
        if !matches!(m.name, ModelName::ResNet(_) | ModelName::PlainResNet(_)) {
            ignored.push("stem");
        }
        if !matches!(m.name, ModelName::ResNet(_) | ModelName::CifarResNet(_)) {
            ignored.extend(["residual", "zero_init_residual"]);
        }
        if !m.lsuv {
            ignored.extend(["lsuv_tolerance", "lsuv_max_iterations"]);
        }
        ignored
    }

    /// The settings as TOML, without those the model ignores: a run folder records what shaped
    /// the run.
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("run settings serialise to TOML");
        if let Some(model) = table.get_mut("model").and_then(toml::Value::as_table_mut) {
            for key in self.ignored_model_settings() {
                model.remove(key);
            }
        }
        toml::to_string(&table).expect("run settings serialise to TOML")
    }

    /// These settings as their `config.toml` reads back: two runs that differ only in what
    /// their model ignores are the same run.
    pub fn recorded(&self) -> RunConfig {
        toml::from_str(&self.to_toml()).expect("written settings read back")
    }

    /// The value of setting `key` in these settings.
    pub fn value(&self, key: &str) -> Option<toml::Value> {
        lookup(&toml::Table::try_from(self).ok()?, key).cloned()
    }
}

impl MonitorSettings {
    /// Rejects impossible thresholds, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        ensure!(
            self.every == 0 || self.batch_size > 0,
            "--monitor-batch-size must be at least 1"
        );
        ensure!(
            positive(self.vanishing_below) && positive(self.exploding_above),
            "--vanishing-below and --exploding-above must be positive numbers"
        );
        ensure!(
            (0.0..=1.0).contains(&self.dead_above),
            "--dead-above must lie in [0, 1] (got {})",
            self.dead_above
        );
        ensure!(
            positive(self.update_ratio_min) && self.update_ratio_min < self.update_ratio_max,
            "--update-ratio-min and --update-ratio-max must be two increasing positive numbers \
             (got {}, {})",
            self.update_ratio_min,
            self.update_ratio_max
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<RunConfig> {
        RunArgs::from_toml(text, Path::new("r.toml"))?.resolve()
    }

    #[test]
    fn config_toml_round_trips_and_reads_as_a_recipe() {
        let mut config = RunArgs::default().resolve().unwrap();
        config.schedule.kind = ScheduleKind::Multistep;
        config.schedule.milestones = vec![10.0, 20.0];
        config.data.train_limit = Some(100);
        let text = config.to_toml();
        let back: RunConfig = parse_toml(&text, Path::new("config.toml")).unwrap();
        assert_eq!(back, config);
        assert_eq!(resolve(&text).unwrap(), config);
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
        let recipe = RunArgs::from_toml(
            "seed = 4\n[optimizer]\nlr = 0.5\nmomentum = 0.5\n",
            Path::new("r"),
        )
        .unwrap();
        let mut flags = RunArgs::default();
        flags.set("optimizer.lr", "0.2").unwrap();
        let config = flags.or(recipe).resolve().unwrap();
        assert_eq!(config.optimizer.lr, 0.2);
        assert_eq!(config.optimizer.momentum, 0.5);
        assert_eq!(config.seed, 4);
        assert_eq!(config.optimizer.weight_decay, 5e-4);
    }

    #[test]
    fn unknown_keys_name_the_nearest_setting_and_the_line() {
        let error = RunArgs::default().set("optimizer.lrr", "0.1").unwrap_err();
        assert!(
            error.to_string().contains("did you mean 'optimizer.lr'"),
            "{error}"
        );
        let error = resolve("seed = 1\n[model]\ndepht = 8\n").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("r.toml:3:"), "{message}");
        assert!(message.contains("`model.depth`"), "{message}");
        let error = resolve("[optimizer]\nlr = \"fast\"\n").unwrap_err();
        assert!(error.to_string().starts_with("r.toml:2:"), "{error}");
    }

    #[test]
    fn a_run_records_only_the_model_settings_it_used() {
        let mut args = RunArgs::default();
        args.set("model.name", "resnet20").unwrap();
        args.set("model.depth", "44").unwrap();
        let config = args.resolve().unwrap();
        let text = config.to_toml();
        assert!(!text.contains("depth"), "{text}");
        assert!(!text.contains("width"), "{text}");
        assert!(!text.contains("lsuv_tolerance"), "{text}");
        let back = RunConfig::read_text(&text);
        assert_eq!(back, config.recorded());
        let mut plain = RunArgs::default();
        plain.set("model.name", "plaincnn").unwrap();
        plain.set("model.depth", "12").unwrap();
        assert!(plain.resolve().unwrap().to_toml().contains("depth = 12"));
    }

    impl RunConfig {
        fn read_text(text: &str) -> RunConfig {
            parse_toml(text, Path::new("config.toml")).unwrap()
        }
    }
}
