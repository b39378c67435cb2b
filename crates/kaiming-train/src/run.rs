//! One training run: data, model, SGD, the epoch loop, evaluation, checkpoints and the run
//! folder (`config.toml`, `metrics.csv`, `summary.json`, `checkpoint/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use kaiming_cifar::{
    CifarDataset, DownloadConfig, Loader, LoaderConfig, Normalization, Split, locate_or_download,
};
use kaiming_init::InitPlan;
use kaiming_resnet::Model;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::backend::describe;
use crate::config::RunConfig;
use crate::feed::Feed;
use crate::metrics::{MetricRow, Metrics};
use crate::precision::{LossScaler, Precision};
use crate::summary::{Status, Summary};

/// Settings of a run that do not change its results.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Folder holding run folders.
    pub out: PathBuf,
    /// Run folder name; default `<model>-<init>-s<seed>-<UTC time>`.
    pub name: Option<String>,
    /// No progress bar.
    pub quiet: bool,
    /// Stop cleanly (status `interrupted`) after this many epochs of this invocation.
    pub stop_after: Option<usize>,
    /// Never download the dataset.
    pub no_download: bool,
    /// Which GPU of the backend (`--device`); `None` is its default adapter.
    pub device: Option<usize>,
    /// Set by Ctrl-C: finish the current step, checkpoint, stop.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// Where a run stands, saved with every checkpoint so `--resume` continues exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    /// Optimizer steps done.
    step: usize,
    /// 0-based epoch in progress (equal to the epochs done at an epoch boundary).
    epoch: usize,
    /// Steps done within `epoch`.
    step_in_epoch: usize,
    /// Rows of metrics.csv that belong to this state (later rows are discarded on resume).
    metric_rows: usize,
    /// Seconds of training and evaluation so far.
    elapsed_s: f64,
    /// Best evaluation accuracy and its epoch.
    best: Option<(f64, usize)>,
    /// The train row being accumulated.
    window: Window,
    /// Mean training loss over the last whole epoch.
    last_epoch_loss: Option<f64>,
    /// The same accumulated over the current epoch.
    epoch_window: Window,
    /// The f16 loss scale (absent in checkpoints made before it existed: none).
    #[serde(default)]
    scaler: LossScaler,
}

/// Running sums for one train row of metrics.csv.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Window {
    steps: usize,
    images: usize,
    loss_sum: f64,
    correct: usize,
    seconds: f64,
}

impl Window {
    fn add(&mut self, loss: f64, correct: usize, images: usize, seconds: f64) {
        self.steps += 1;
        self.images += images;
        self.loss_sum += loss;
        self.correct += correct;
        self.seconds += seconds;
    }

    fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }
}

/// Files of a run folder.
struct RunDir(PathBuf);

impl RunDir {
    fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    fn summary(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    fn checkpoint(&self, which: &str, what: &str) -> PathBuf {
        self.checkpoints().join(format!("{which}-{what}"))
    }
}

/// Starts a new run of `config` in `options.out/<name>` and trains it.
pub fn train(config: RunConfig, options: &RunOptions) -> Result<Summary> {
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| default_name(&config));
    let dir = RunDir(options.out.join(&name));
    if dir.0.exists()
        && std::fs::read_dir(&dir.0)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        match std::fs::read_to_string(dir.config()) {
            Ok(text) if toml::from_str::<RunConfig>(&text).ok().as_ref() == Some(&config) => bail!(
                "{} already holds this run; continue it with --resume {}",
                dir.0.display(),
                dir.0.display()
            ),
            _ => bail!(
                "{} already holds a different run; choose another --name or --out",
                dir.0.display()
            ),
        }
    }
    std::fs::create_dir_all(dir.checkpoints())
        .with_context(|| format!("cannot create {}", dir.0.display()))?;
    write_atomic(&dir.config(), config.to_toml().as_bytes())?;
    Trainer::new(config, name, dir, options, None)?.run()
}

/// Continues the run in `run_dir` from its latest checkpoint.
pub fn resume(run_dir: &Path, options: &RunOptions) -> Result<Summary> {
    let dir = RunDir(run_dir.to_path_buf());
    let text = std::fs::read_to_string(dir.config())
        .with_context(|| format!("{} is not a run folder (no config.toml)", run_dir.display()))?;
    let config: RunConfig = toml::from_str(&text)
        .with_context(|| format!("cannot parse {}", dir.config().display()))?;
    config.validate()?;
    let progress_text = std::fs::read_to_string(dir.checkpoint("latest", "progress.json"))
        .with_context(|| format!("{} has no checkpoint to resume from", run_dir.display()))?;
    let progress: Progress = serde_json::from_str(&progress_text)
        .with_context(|| format!("cannot parse the checkpoint of {}", run_dir.display()))?;
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Trainer::new(config, name, dir, options, Some(progress))?.run()
}

/// `<model>-<init>-s<seed>-<YYYYMMDD-HHMMSS>` in UTC: the sweep's name plus the time.
fn default_name(config: &RunConfig) -> String {
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = time
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    format!("{}-{stamp}", crate::sweep::run_name(config))
}

struct Trainer<'a> {
    config: RunConfig,
    name: String,
    dir: RunDir,
    options: &'a RunOptions,
    device: Device,
    /// Shared so an epoch can borrow it while the trainer updates itself.
    train: Arc<Feed>,
    eval: Feed,
    eval_split: &'static str,
    model: Model,
    optimizer: ModuleOptimizer,
    metrics: Metrics,
    progress: Progress,
    parameters: usize,
}

impl<'a> Trainer<'a> {
    fn new(
        config: RunConfig,
        name: String,
        dir: RunDir,
        options: &'a RunOptions,
        resumed: Option<Progress>,
    ) -> Result<Self> {
        let (train, eval, eval_split) = load_data(&config, options)?;
        let device = config.backend.device(options.device)?.autodiff();
        device.seed(config.seed);
        let on_device = config.backend.is_gpu();
        let train = Feed::new(train, &device, on_device);
        let eval = Feed::new(eval, &device.clone().without_autodiff(), on_device);

        let model_config = config.model_config();
        let (mut model, _) = model_config
            .init_with(&device, &InitPlan::new(config.init), config.seed)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let mut optimizer = optimizer(&config);
        let mut metrics = Metrics::default();
        let progress = match resumed {
            Some(progress) => {
                model = model
                    .try_load_file(dir.checkpoint("latest", "model.bpk"))
                    .with_context(|| {
                        format!("cannot load the model checkpoint of {}", dir.0.display())
                    })?;
                optimizer = optimizer
                    .load(dir.checkpoint("latest", "optimizer.bpk"))
                    .with_context(|| {
                        format!(
                            "cannot load the optimizer checkpoint of {}",
                            dir.0.display()
                        )
                    })?;
                metrics = Metrics::read(&dir.metrics())?;
                anyhow::ensure!(
                    metrics.rows.len() >= progress.metric_rows,
                    "{} has fewer rows than its checkpoint records",
                    dir.metrics().display()
                );
                metrics.rows.truncate(progress.metric_rows);
                tracing::info!(
                    "resuming {} at epoch {}, step {}",
                    dir.0.display(),
                    progress.epoch + 1,
                    progress.step
                );
                progress
            }
            None => Progress {
                scaler: LossScaler::new(config.precision),
                ..Progress::default()
            },
        };
        // Trainable parameters: burn's `num_params` also counts BatchNorm running statistics.
        let parameters = model_config.num_params();
        tracing::info!(
            "{}: {} ({} parameters), init {}, {} on {}",
            name,
            config.model,
            parameters,
            config.init,
            config.backend,
            describe(&device)
        );
        Ok(Trainer {
            config,
            name,
            dir,
            options,
            device,
            train: Arc::new(train),
            eval,
            eval_split,
            model,
            optimizer,
            metrics,
            progress,
            parameters,
        })
    }

    fn run(mut self) -> Result<Summary> {
        let steps_per_epoch = self.train.batches_per_epoch();
        let schedule = self.config.schedule(steps_per_epoch);
        let loss_fn = CrossEntropyLossConfig::new().init(&self.device);
        let mut status = Status::Running;
        let mut epochs_this_session = 0;
        self.write_summary(status)?;

        'epochs: while self.progress.epoch < self.config.epochs {
            let epoch = self.progress.epoch;
            let train = self.train.clone();
            let data = train.epoch(epoch as u64);
            let bar = self.progress_bar(epoch, steps_per_epoch);
            for index in self.progress.step_in_epoch..steps_per_epoch {
                let started = Instant::now();
                let batch = data.batch(index).expect("index below batches_per_epoch");
                let images = batch.labels.dims()[0];
                let lr = schedule.lr(self.progress.step);
                let logits = self.config.precision.forward(&self.model, batch.images);
                let loss = loss_fn.forward(logits.clone(), batch.labels.clone());
                let loss_value = loss.clone().into_scalar::<f64>();
                if !loss_value.is_finite() {
                    tracing::warn!(
                        "loss is {loss_value} at step {}: the run diverged",
                        self.progress.step
                    );
                    status = Status::Diverged;
                    bar.abandon();
                    break 'epochs;
                }
                let correct = count_correct(logits, batch.labels);
                // A step whose f16 gradients overflowed is skipped, as PyTorch's GradScaler does.
                if let Some(grads) = self.progress.scaler.backward(loss, &self.model) {
                    self.model = self.optimizer.step(lr, self.model.clone(), grads);
                }

                let seconds = started.elapsed().as_secs_f64();
                self.progress.step += 1;
                self.progress.step_in_epoch += 1;
                self.progress.elapsed_s += seconds;
                self.progress
                    .window
                    .add(loss_value, correct, images, seconds);
                self.progress
                    .epoch_window
                    .add(loss_value, correct, images, seconds);
                if self.progress.step.is_multiple_of(self.config.log_every)
                    || self.progress.step_in_epoch == steps_per_epoch
                {
                    self.flush_window(lr);
                }
                let epoch_window = self.progress.epoch_window;
                bar.set_message(format!(
                    "loss {:.3}  acc {:.3}  {:.0} img/s",
                    epoch_window.mean_loss(),
                    epoch_window.correct as f64 / epoch_window.images.max(1) as f64,
                    epoch_window.images as f64 / epoch_window.seconds.max(1e-9)
                ));
                bar.inc(1);
                if self.interrupted() {
                    bar.abandon();
                    status = Status::Interrupted;
                    self.save_checkpoint("latest")?;
                    tracing::warn!(
                        "interrupted at step {}; checkpoint written",
                        self.progress.step
                    );
                    break 'epochs;
                }
            }
            bar.finish_and_clear();

            self.end_epoch(schedule.lr(self.progress.step.saturating_sub(1)))?;
            epochs_this_session += 1;
            if self.options.stop_after == Some(epochs_this_session)
                && self.progress.epoch < self.config.epochs
            {
                status = Status::Interrupted;
                tracing::info!(
                    "stopping after {epochs_this_session} epoch(s) as asked; continue with --resume {}",
                    self.dir.0.display()
                );
                break;
            }
        }
        if status == Status::Running {
            status = Status::Completed;
        }
        self.metrics.write(&self.dir.metrics())?;
        let summary = self.write_summary(status)?;
        tracing::info!(
            "{}: {status}, final {} accuracy {}, best {}",
            self.name,
            self.eval_split,
            summary
                .final_accuracy
                .map_or("-".into(), |a| format!("{:.4}", a)),
            summary
                .best_accuracy
                .map_or("-".into(), |a| format!("{:.4}", a)),
        );
        Ok(summary)
    }

    /// Evaluates, logs the epoch, and checkpoints (latest, and best when it improved).
    fn end_epoch(&mut self, lr: f64) -> Result<()> {
        let epoch = self.progress.epoch + 1;
        let started = Instant::now();
        let (loss, accuracy) = evaluate(&self.model.valid(), &self.eval, self.config.precision);
        let seconds = started.elapsed().as_secs_f64();
        self.progress.elapsed_s += seconds;
        self.metrics.rows.push(MetricRow {
            step: self.progress.step,
            epoch,
            split: self.eval_split.to_string(),
            loss,
            accuracy,
            lr,
            images_per_sec: self.eval.dataset().len() as f64 / seconds.max(1e-9),
            elapsed_s: self.progress.elapsed_s,
        });
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4}, {} loss {loss:.4}, accuracy {accuracy:.4}",
            self.config.epochs,
            self.progress.epoch_window.mean_loss(),
            self.eval_split
        );
        self.progress.last_epoch_loss = Some(self.progress.epoch_window.mean_loss());
        self.progress.epoch_window = Window::default();
        self.progress.epoch = epoch;
        self.progress.step_in_epoch = 0;
        let improved = self.progress.best.is_none_or(|(best, _)| accuracy > best);
        if improved {
            self.progress.best = Some((accuracy, epoch));
        }
        self.save_checkpoint("latest")?;
        if improved {
            self.save_checkpoint("best")?;
        }
        self.write_summary(Status::Running)?;
        Ok(())
    }

    /// Appends the accumulated train row.
    fn flush_window(&mut self, lr: f64) {
        let window = std::mem::take(&mut self.progress.window);
        if window.steps == 0 {
            return;
        }
        self.metrics.rows.push(MetricRow {
            step: self.progress.step,
            epoch: self.progress.epoch + 1,
            split: "train".to_string(),
            loss: window.mean_loss(),
            accuracy: window.correct as f64 / window.images.max(1) as f64,
            lr,
            images_per_sec: window.images as f64 / window.seconds.max(1e-9),
            elapsed_s: self.progress.elapsed_s,
        });
    }

    /// Model, optimizer, progress and metrics, each file replaced atomically; progress last, so
    /// it never points at files that are not written yet.
    fn save_checkpoint(&mut self, which: &str) -> Result<()> {
        self.progress.metric_rows = self.metrics.rows.len();
        self.metrics.write(&self.dir.metrics())?;
        let model_path = self.dir.checkpoint(which, "model.bpk");
        let optimizer_path = self.dir.checkpoint(which, "optimizer.bpk");
        let staged = |path: &Path| path.with_extension("bpk.partial");
        self.model
            .valid()
            .save_file(staged(&model_path))
            .with_context(|| format!("cannot write {}", model_path.display()))?;
        self.optimizer
            .save(staged(&optimizer_path))
            .with_context(|| format!("cannot write {}", optimizer_path.display()))?;
        for path in [&model_path, &optimizer_path] {
            std::fs::rename(staged(path), path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let progress = serde_json::to_string_pretty(&self.progress).expect("progress serialises");
        write_atomic(
            &self.dir.checkpoint(which, "progress.json"),
            progress.as_bytes(),
        )
    }

    fn write_summary(&self, status: Status) -> Result<Summary> {
        let last_eval = self.metrics.evaluations().last();
        let summary = Summary {
            name: self.name.clone(),
            model: self.config.model.to_string(),
            init: self.config.init.to_string(),
            backend: self.config.backend.to_string(),
            device: describe(&self.device),
            precision: self.config.precision.to_string(),
            seed: self.config.seed,
            git_commit: git_commit(),
            status,
            epochs_completed: self.progress.epoch,
            steps: self.progress.step,
            eval_split: self.eval_split.to_string(),
            best_accuracy: self.progress.best.map(|(accuracy, _)| accuracy),
            best_epoch: self.progress.best.map(|(_, epoch)| epoch),
            final_accuracy: last_eval.map(|row| row.accuracy),
            final_train_loss: self.progress.last_epoch_loss,
            parameters: self.parameters,
            total_time_s: self.progress.elapsed_s,
        };
        summary.write(&self.dir.summary())?;
        Ok(summary)
    }

    fn progress_bar(&self, epoch: usize, steps: usize) -> ProgressBar {
        if self.options.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.config.epochs));
        bar.set_position(self.progress.step_in_epoch as u64);
        bar
    }

    fn interrupted(&self) -> bool {
        self.options
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }
}

/// The train loader and the evaluation loader with the evaluation split's name.
fn load_data(config: &RunConfig, options: &RunOptions) -> Result<(Loader, Loader, &'static str)> {
    let download = (!options.no_download).then(|| DownloadConfig {
        progress: !options.quiet,
        ..DownloadConfig::default()
    });
    let located = locate_or_download(config.data_dir.as_deref(), download.as_ref())?;
    tracing::info!(
        "CIFAR-10 from {} ({:?})",
        located.dir.display(),
        located.source
    );
    let train = CifarDataset::load(&located.dir, Split::Train)?;
    let (train, eval, split) = if config.val_split > 0 {
        let (train, val) = train.split_validation(config.val_split, config.seed)?;
        (train, val, "val")
    } else {
        (
            train,
            CifarDataset::load(&located.dir, Split::Test)?,
            "test",
        )
    };
    let train = match config.train_limit {
        Some(limit) => train.limit(limit),
        None => train,
    };
    let eval = match config.eval_limit {
        Some(limit) => eval.limit(limit),
        None => eval,
    };
    let normalization = Normalization::from_dataset(&train)?;
    let train_loader = Loader::new(
        train,
        normalization,
        LoaderConfig::train(config.batch_size, config.seed),
    )?;
    let eval_loader = Loader::new(eval, normalization, LoaderConfig::eval(500))?;
    Ok((train_loader, eval_loader, split))
}

/// The run's optimizer.
fn optimizer(config: &RunConfig) -> ModuleOptimizer {
    sgd(config.momentum, config.nesterov, config.weight_decay)
}

/// SGD with momentum (no dampening, as PyTorch and the papers) and L2 weight decay.
pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> ModuleOptimizer {
    let momentum = (momentum > 0.0).then_some(MomentumConfig {
        momentum,
        dampening: 0.0,
        nesterov,
    });
    let weight_decay = (weight_decay > 0.0).then_some(WeightDecayConfig {
        penalty: weight_decay as f32,
    });
    SgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay(weight_decay)
        .init()
}

/// Mean loss and accuracy of `model` over every batch of `feed`, computed in `precision`.
pub fn evaluate(model: &Model, feed: &Feed, precision: Precision) -> (f64, f64) {
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("a model with parameters has a device");
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (mut loss_sum, mut correct, mut images) = (0.0, 0, 0);
    let data = feed.epoch(0);
    for index in 0..feed.batches_per_epoch() {
        let batch = data.batch(index).expect("index in range");
        let n = batch.labels.dims()[0];
        let logits = precision.forward(model, batch.images);
        loss_sum += loss_fn
            .forward(logits.clone(), batch.labels.clone())
            .into_scalar::<f64>()
            * n as f64;
        correct += count_correct(logits, batch.labels);
        images += n;
    }
    (
        loss_sum / images.max(1) as f64,
        correct as f64 / images.max(1) as f64,
    )
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predictions = logits.argmax(1).flatten::<1>(0, 1);
    predictions.equal(labels).int().sum().into_scalar::<i64>() as usize
}

/// The commit of the working tree the binary runs in, if it is a git checkout.
fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
