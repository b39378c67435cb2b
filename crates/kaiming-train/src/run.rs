//! One training run: the loop that feeds [`Trainer::step`] the run's batches, logs the rows of
//! metrics.csv, evaluates at the end of each epoch, and writes checkpoint sets into its run
//! folder — mid-epoch on a cadence, and at the end of every epoch — so that `--resume` after a
//! crash at any moment continues exactly where the last set left off.

mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kaiming_cifar::Normalization;
use kaiming_resnet::{Branch, Norm};

use crate::backend::Backend;
use crate::checkpoint::{Cadence, CheckpointEvery, Checkpoints, Progress};
use crate::config::RunConfig;
use crate::fault::{self, Point};
use crate::feed::Feed;
use crate::logs::RunLogs;
use crate::metrics::{MetricRow, Metrics, RowContext, Tally};
use crate::monitor::{Monitor, MonitorRow, warn_new_signals};
use crate::store::{RunFolder, RunStore};
use crate::summary::{Status, Summary};
use crate::trainer::Trainer;

pub use restore::splits;

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
    /// Mid-epoch checkpoint sets: every N steps or every so long.
    pub checkpoint_every: CheckpointEvery,
    /// Checkpoint sets kept (the newest; the best one is kept besides).
    pub keep_checkpoints: usize,
    /// Where CIFAR-10 is, in place of the run's own setting (a resumed run whose data moved).
    pub data_dir: Option<PathBuf>,
    /// The GPUs of a data-parallel run (`--devices`), one per replica.
    pub devices: Option<Vec<usize>>,
}

/// Starts a new run of `config` in the store `options.out` and trains it.
pub fn train(mut config: RunConfig, options: &RunOptions) -> Result<Summary> {
    // The run names its starting weights so that it resumes from anywhere.
    if let Some(weights) = &config.model.weights {
        config.model.weights = Some(
            std::fs::canonicalize(weights)
                .map_err(|e| anyhow::anyhow!("--weights {}: {e}", weights.display()))?,
        );
    }
    let folder = RunStore::new(&options.out).create(&config, options.name.as_deref())?;
    crate::atomic::write_atomic(&folder.files().config(), config.to_toml().as_bytes())?;
    Run::start(config, folder, options)?.run()
}

/// Continues the run in `run_dir` from its latest checkpoint set (from the start if it has
/// none yet).
pub fn resume(run_dir: &Path, options: &RunOptions) -> Result<Summary> {
    let folder = RunStore::open(run_dir)?;
    let config = RunConfig::read(&folder.files().config())?;
    Run::start(config, folder, options)?.run()
}

/// The whole run's time to go, from the mean wall time per step since this session started:
/// evaluations, monitor steps and checkpoints included, so it stays steady where a rate over the
/// last few steps would jump at each of them.
struct Eta {
    started: Instant,
    first_step: usize,
    total_steps: usize,
}

impl Eta {
    fn new(first_step: usize, total_steps: usize) -> Self {
        Eta {
            started: Instant::now(),
            first_step,
            total_steps,
        }
    }

    /// The time to go after `step` steps, as `2h 05m`.
    fn remaining(&self, step: usize) -> String {
        let done = step.saturating_sub(self.first_step).max(1) as f64;
        let left = self.total_steps.saturating_sub(step) as f64;
        let seconds = (self.started.elapsed().as_secs_f64() / done * left).round() as u64;
        let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
        match (days, hours) {
            (0, 0) => format!("{minutes}m {:02}s", seconds % 60),
            (0, _) => format!("{hours}h {minutes:02}m"),
            _ => format!("{days}d {hours:02}h"),
        }
    }
}

/// A run in progress.
struct Run<'a> {
    config: RunConfig,
    folder: RunFolder,
    options: &'a RunOptions,
    trainer: Trainer,
    /// Shared so an epoch can borrow it while the run updates itself.
    train: Arc<Feed>,
    eval: Feed,
    eval_split: &'static str,
    metrics: Metrics,
    progress: Progress,
    checkpoints: Checkpoints,
    /// The signal monitor, where it is on.
    monitor: Option<Monitor>,
    /// metrics.csv, TensorBoard, monitor.csv.
    logs: RunLogs,
    device_name: String,
    /// Every replica's device.
    device_names: Vec<String>,
    parameters: usize,
    /// What the inputs are normalised with, for the summary and an export.
    normalization: Normalization,
}

impl<'a> Run<'a> {
    fn run(mut self) -> Result<Summary> {
        let steps_per_epoch = self.train.batches_per_epoch();
        let epochs = self.config.schedule.epochs;
        let total_steps = epochs * steps_per_epoch;
        let bar = self.progress_bar(total_steps);
        let eta = Eta::new(self.progress.step, total_steps);
        let mut cadence = Cadence::new(self.options.checkpoint_every);
        let mut status = Status::Running;
        let mut epochs_this_session = 0;
        if self.interrupted() {
            bail!("interrupted before the first step; nothing was trained");
        }
        self.write_summary(status)?;

        'epochs: while self.progress.epoch < epochs {
            let epoch = self.progress.epoch;
            bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            let train = self.train.clone();
            let data = train.epoch(epoch as u64);
            while self.progress.step_in_epoch < steps_per_epoch {
                let started = Instant::now();
                let batch = data
                    .batch(self.progress.step_in_epoch)
                    .expect("index below batches_per_epoch");
                let steps_done = self.progress.step;
                let watch = self
                    .monitor
                    .as_ref()
                    .filter(|monitor| monitor.due(steps_done))
                    .map(|monitor| monitor.watch(self.trainer.model(), steps_done));
                let (stats, watch) = match watch {
                    Some(mut watch) => (self.trainer.step_observed(batch, &mut watch), Some(watch)),
                    None => (self.trainer.step(batch), None),
                };
                // The run has started: its folder stays from here on, whatever happens.
                self.folder.keep();
                if !stats.loss.is_finite() {
                    tracing::warn!(
                        "loss is {} at step {}: the run diverged{}",
                        stats.loss,
                        stats.step,
                        self.divergence_hint()
                    );
                    status = Status::Diverged;
                    break 'epochs;
                }
                if let Some(watch) = watch {
                    let rows = watch.finish(self.trainer.model());
                    self.record_monitor(&rows)?;
                }
                fault::check(Point::AfterStep, Some(stats.step + 1));
                let seconds = started.elapsed().as_secs_f64();
                let p = &mut self.progress;
                p.step = self.trainer.steps_done();
                p.step_in_epoch += 1;
                p.elapsed_s += seconds;
                p.window
                    .add(stats.loss, stats.correct, stats.images, seconds);
                p.epoch_window
                    .add(stats.loss, stats.correct, stats.images, seconds);
                let epoch_ends = p.step_in_epoch == steps_per_epoch;
                if p.step.is_multiple_of(self.config.log_every) || epoch_ends {
                    self.flush_window(stats.lr)?;
                }
                let w = self.progress.epoch_window;
                bar.set_message(format!(
                    "loss {:.3}  acc {:.3}  {:.0} img/s  run ETA {}",
                    w.mean_loss(),
                    w.accuracy(),
                    w.images_per_sec(),
                    eta.remaining(self.progress.step)
                ));
                bar.inc(1);
                if self.interrupted()
                    || fault::hit(Point::InterruptAfterStep, Some(self.progress.step))
                {
                    status = Status::Interrupted;
                    // At the end of an epoch the evaluation belongs to the state being saved.
                    if epoch_ends {
                        self.end_epoch()?;
                    } else {
                        self.save()?;
                    }
                    tracing::warn!(
                        "interrupted at step {}; checkpoint written",
                        self.progress.step
                    );
                    break 'epochs;
                }
                if !epoch_ends && cadence.due(self.progress.step) {
                    self.save()?;
                    cadence.saved();
                }
            }
            self.end_epoch()?;
            cadence.saved();
            epochs_this_session += 1;
            if self.options.stop_after == Some(epochs_this_session) && self.progress.epoch < epochs
            {
                status = Status::Interrupted;
                tracing::info!(
                    "stopping after {epochs_this_session} epoch(s) as asked; continue with --resume {}",
                    self.folder.path().display()
                );
                break;
            }
        }
        bar.finish_and_clear();
        if status == Status::Running {
            status = Status::Completed;
        }
        let summary = self.write_summary(status)?;
        let percent = |a: Option<f64>| a.map_or("-".into(), |a| format!("{a:.4}"));
        tracing::info!(
            "{}: {status}, final {} accuracy {}, best {}",
            self.folder.name(),
            self.eval_split,
            percent(summary.final_accuracy),
            percent(summary.best_accuracy),
        );
        Ok(summary)
    }

    /// Evaluates, logs the epoch, and writes a set (the best one when the accuracy improved).
    fn end_epoch(&mut self) -> Result<()> {
        let epoch = self.progress.epoch + 1;
        let tally = self.trainer.evaluate(&self.eval);
        self.progress.elapsed_s += tally.seconds;
        let lr = self.trainer.lr(self.progress.step.saturating_sub(1));
        self.push_row(self.eval_split, &tally, lr)?;
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4}, {} loss {:.4}, accuracy {:.4}",
            self.config.schedule.epochs,
            self.progress.epoch_window.mean_loss(),
            self.eval_split,
            tally.mean_loss(),
            tally.accuracy()
        );
        let p = &mut self.progress;
        p.last_epoch_loss = Some(p.epoch_window.mean_loss());
        p.epoch_window = Tally::default();
        p.epoch = epoch;
        p.step_in_epoch = 0;
        if p.best.is_none_or(|(best, _)| tally.accuracy() > best) {
            p.best = Some((tally.accuracy(), epoch));
            p.best_step = Some(p.step);
        }
        self.save()?;
        self.write_summary(Status::Running)?;
        Ok(())
    }

    /// Appends the accumulated train row.
    fn flush_window(&mut self, lr: f64) -> Result<()> {
        let window = std::mem::take(&mut self.progress.window);
        if window.steps == 0 {
            return Ok(());
        }
        self.push_row("train", &window, lr)
    }

    /// Logs one monitored step, and warns of each diagnosis the first time it appears.
    fn record_monitor(&mut self, rows: &[MonitorRow]) -> Result<()> {
        let Some(monitor) = &self.monitor else {
            return Ok(());
        };
        self.logs.monitor_rows(rows)?;
        let new = monitor.diagnose(rows, &mut self.progress.signals);
        warn_new_signals(&new);
        Ok(())
    }

    /// Appends a row to the metrics and every log.
    fn push_row(&mut self, split: &str, tally: &Tally, lr: f64) -> Result<()> {
        let context = RowContext {
            lr,
            elapsed_s: self.progress.elapsed_s,
        };
        let row = MetricRow::new(
            self.progress.step,
            self.progress.epoch + 1,
            split,
            tally,
            context,
        );
        self.metrics.rows.push(row);
        self.logs.metric_row(&self.metrics)
    }

    /// Writes the checkpoint set of the current step.
    fn save(&mut self) -> Result<()> {
        self.progress.scaler = self.trainer.scaler();
        self.checkpoints.save(
            &self.progress,
            &self.metrics,
            self.trainer.model(),
            self.trainer.optimizer(),
        )
    }

    /// Why a run without normalisation may have diverged, and what to try: a residual net whose
    /// branches all start at full strength doubles its signal's variance per block.
    fn divergence_hint(&self) -> String {
        let m = &self.config.model;
        if m.norm == Norm::None && m.name.is_residual() && m.residual == Branch::Standard {
            format!(
                " ({} without normalisation: each residual block adds a branch of its input's \
                 variance, so the signal grows ~√2 per block; start the branches at zero with \
                 --residual fixup or --residual skipinit)",
                m.name
            )
        } else {
            String::new()
        }
    }

    fn write_summary(&self, status: Status) -> Result<Summary> {
        let last_eval = self.metrics.evaluations().last();
        let summary = Summary {
            name: self.folder.name().to_string(),
            model: self.config.model.name,
            init: self.config.init,
            weights: self
                .config
                .model
                .weights
                .as_ref()
                .map(|p| p.display().to_string()),
            backend: self.config.backend,
            device: self.device_name.clone(),
            devices: self.device_names.clone(),
            precision: self.config.precision,
            seed: self.config.seed,
            git_commit: git_commit(),
            status,
            epochs_completed: self.progress.epoch,
            steps: self.progress.step,
            eval_split: self.eval_split.to_string(),
            best_accuracy: self.progress.best.map(|(accuracy, _)| accuracy),
            best_epoch: self.progress.best.map(|(_, epoch)| epoch),
            final_accuracy: last_eval.map(MetricRow::accuracy),
            final_train_loss: self.progress.last_epoch_loss,
            parameters: self.parameters,
            total_time_s: self.progress.elapsed_s,
            signals: self.progress.signals.clone(),
            input_normalization: Some(self.normalization.into()),
            kernels: (self.config.backend == Backend::Flex)
                .then(|| self.config.kernels.choice().into()),
        };
        summary.write(&self.folder.files().summary())?;
        Ok(summary)
    }

    /// One bar over the whole run, so its ETA is the run's, not the epoch's.
    fn progress_bar(&self, total_steps: usize) -> ProgressBar {
        if self.options.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total_steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] step {pos}/{len}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(self.progress.step as u64);
        bar
    }

    fn interrupted(&self) -> bool {
        self.options
            .interrupt
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }
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
