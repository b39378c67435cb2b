//! Checkpoint sets: everything a run needs to continue, written and read as one unit.
//!
//! A set is a folder `checkpoints/step-<N>/` holding the model, the optimizer state, the rows
//! of metrics.csv so far and `progress.json` (where the run stands, with the size and CRC-32 of
//! each other file). It is written under a staging name, flushed to disk, renamed into place,
//! and only then does the `checkpoints/latest` pointer switch to it; so whatever moment a crash
//! hits, `latest` names a whole set. Resume reads only the set `latest` names, and checks every
//! file against `progress.json` before burn decodes it. The newest K sets are kept, and the one
//! `checkpoints/best` names (the best evaluation so far).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use kaiming_resnet::Model;
use serde::{Deserialize, Serialize};

use crate::atomic::{sync_dir, write_atomic};
use crate::fault::{self, Point};
use crate::metrics::{Metrics, Tally};
use crate::monitor::Signal;
use crate::precision::LossScaler;

const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const METRICS: &str = "metrics.csv";
const PROGRESS: &str = "progress.json";

/// Where a run stands: saved in every set so `--resume` continues exactly.
///
/// Every field defaults, so a set written before a field existed still loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    /// 0-based epoch in progress (equal to the epochs done at an epoch boundary).
    pub epoch: usize,
    /// Steps done within `epoch`.
    pub step_in_epoch: usize,
    /// Seconds of training and evaluation so far.
    pub elapsed_s: f64,
    /// Best evaluation accuracy and its epoch.
    pub best: Option<(f64, usize)>,
    /// The step of the set written after that evaluation: `checkpoints/best` names it, and
    /// pruning keeps it.
    pub best_step: Option<usize>,
    /// The train row being accumulated.
    pub window: Tally,
    /// The same over the current epoch.
    pub epoch_window: Tally,
    /// Mean training loss over the last whole epoch.
    pub last_epoch_loss: Option<f64>,
    /// The f16 loss scale.
    pub scaler: LossScaler,
    /// The monitor's diagnoses so far.
    pub signals: Vec<Signal>,
}

/// One file of a set, as `progress.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileSum {
    name: String,
    bytes: u64,
    crc32: u32,
}

/// The contents of `progress.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SetIndex {
    progress: Progress,
    files: Vec<FileSum>,
}

/// How often a run writes a set between the ends of epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Every N optimizer steps.
    Steps(usize),
    /// When this long has passed since the last set.
    Interval(Duration),
}

impl Default for CheckpointEvery {
    fn default() -> Self {
        CheckpointEvery::Interval(Duration::from_secs(600))
    }
}

impl FromStr for CheckpointEvery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let every = match s.parse::<usize>() {
            Ok(steps) => CheckpointEvery::Steps(steps),
            Err(_) => CheckpointEvery::Interval(humantime::parse_duration(s).map_err(|e| {
                format!("'{s}' is neither a step count (500) nor a duration (10m, 90s): {e}")
            })?),
        };
        if matches!(
            every,
            CheckpointEvery::Steps(0) | CheckpointEvery::Interval(Duration::ZERO)
        ) {
            return Err(format!("'{s}': the interval must be positive"));
        }
        Ok(every)
    }
}

impl fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointEvery::Steps(n) => write!(f, "{n}"),
            CheckpointEvery::Interval(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// Decides when the next mid-epoch set is due.
#[derive(Debug)]
pub struct Cadence {
    every: CheckpointEvery,
    last: Instant,
}

impl Cadence {
    /// Counting from now.
    pub fn new(every: CheckpointEvery) -> Self {
        Cadence {
            every,
            last: Instant::now(),
        }
    }

    /// Whether a set is due after `step` steps.
    pub fn due(&self, step: usize) -> bool {
        match self.every {
            CheckpointEvery::Steps(n) => step.is_multiple_of(n),
            CheckpointEvery::Interval(d) => self.last.elapsed() >= d,
        }
    }

    /// A set was just written.
    pub fn saved(&mut self) {
        self.last = Instant::now();
    }
}

/// The checkpoint sets of one run folder.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    keep: usize,
}

/// A complete set, read and checked: what resume continues from.
#[derive(Debug)]
pub struct LoadedSet {
    /// The set's folder.
    pub dir: PathBuf,
    /// Where the run stood.
    pub progress: Progress,
    /// The rows of metrics.csv up to that point.
    pub metrics: Metrics,
}

impl Checkpoints {
    /// The sets in `dir`, keeping the newest `keep` (at least 1).
    pub fn new(dir: PathBuf, keep: usize) -> Self {
        Checkpoints {
            dir,
            keep: keep.max(1),
        }
    }

    /// Writes the set of step `progress.step` and points `latest` at it; points `best` at the
    /// set of `progress.best_step`. A set already written for this very state is not written
    /// again (Ctrl-C right after a resume).
    pub fn save(
        &self,
        progress: &Progress,
        metrics: &Metrics,
        model: &Model,
        optimizer: &ModuleOptimizer,
    ) -> Result<()> {
        let name = set_name(progress.step);
        let unchanged = self.pointer("latest")?.as_deref() == Some(name.as_str())
            && read_set(&self.dir.join(&name)).is_ok_and(|set| set.progress == *progress);
        if !unchanged {
            self.write_set(&name, progress, metrics, model, optimizer)?;
            fault::check(Point::CheckpointBeforePointer, None);
            write_atomic(&self.dir.join("latest"), format!("{name}\n").as_bytes())?;
        }
        if let Some(step) = progress.best_step {
            let best = set_name(step);
            if self.pointer("best").ok().flatten().as_deref() != Some(best.as_str())
                && self.dir.join(&best).is_dir()
            {
                write_atomic(&self.dir.join("best"), format!("{best}\n").as_bytes())?;
            }
        }
        self.prune(progress);
        Ok(())
    }

    fn write_set(
        &self,
        name: &str,
        progress: &Progress,
        metrics: &Metrics,
        model: &Model,
        optimizer: &ModuleOptimizer,
    ) -> Result<()> {
        let stage = self.dir.join(format!(".partial-{name}"));
        if stage.exists() {
            std::fs::remove_dir_all(&stage)
                .with_context(|| format!("cannot clear {}", stage.display()))?;
        }
        std::fs::create_dir_all(&stage)
            .with_context(|| format!("cannot create {}", stage.display()))?;
        // The new folders' names must survive a power cut too.
        sync_dir(&self.dir)?;
        if let Some(run) = self.dir.parent() {
            sync_dir(run)?;
        }
        model
            .valid()
            .save_file(stage.join(MODEL))
            .with_context(|| format!("cannot write {}", stage.join(MODEL).display()))?;
        fault::check(Point::CheckpointBetweenFiles, None);
        optimizer
            .save(stage.join(OPTIMIZER))
            .with_context(|| format!("cannot write {}", stage.join(OPTIMIZER).display()))?;
        std::fs::write(stage.join(METRICS), metrics.to_csv())
            .with_context(|| format!("cannot write {}", stage.join(METRICS).display()))?;
        let files = [MODEL, OPTIMIZER, METRICS]
            .into_iter()
            .map(|file| file_sum(&stage, file))
            .collect::<Result<Vec<_>>>()?;
        let index = SetIndex {
            progress: progress.clone(),
            files,
        };
        let json = serde_json::to_string_pretty(&index).expect("progress serialises");
        std::fs::write(stage.join(PROGRESS), json)
            .with_context(|| format!("cannot write {}", stage.join(PROGRESS).display()))?;
        for file in [MODEL, OPTIMIZER, METRICS, PROGRESS] {
            std::fs::File::open(stage.join(file))
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot flush {}", stage.join(file).display()))?;
        }
        sync_dir(&stage)?;
        let target = self.dir.join(name);
        if target.exists() {
            // Left by a process that died before switching the pointer: replace it.
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot replace {}", target.display()))?;
        }
        std::fs::rename(&stage, &target)
            .with_context(|| format!("cannot move {} into place", stage.display()))?;
        sync_dir(&self.dir)
    }

    /// The set `latest` names, checked, or `None` when the run has none yet. Should that set be
    /// damaged (a disk error, a hand edit), the newest older set that reads whole is taken, with
    /// a warning; only when none does is it an error.
    pub fn latest(&self) -> Result<Option<LoadedSet>> {
        let Some(name) = self.pointer("latest")? else {
            return Ok(None);
        };
        let error = match read_set(&self.dir.join(&name)) {
            Ok(set) => return Ok(Some(set)),
            Err(error) => error.context(format!(
                "{} names {name}",
                self.dir.join("latest").display()
            )),
        };
        let latest = parse_set_name(&name).unwrap_or(usize::MAX);
        let mut older: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let step = parse_set_name(&e.file_name().to_string_lossy())?;
                        (step < latest).then(|| (step, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        older.sort();
        for (_, dir) in older.into_iter().rev() {
            if let Ok(set) = read_set(&dir) {
                tracing::warn!(
                    "{error:#}; continuing from the older set {} instead",
                    dir.display()
                );
                return Ok(Some(set));
            }
        }
        Err(error)
    }

    /// The folder of the set `best` names, if any.
    pub fn best(&self) -> Result<Option<PathBuf>> {
        Ok(self.pointer("best")?.map(|name| self.dir.join(name)))
    }

    /// The set name a pointer file holds.
    fn pointer(&self, which: &str) -> Result<Option<String>> {
        let path = self.dir.join(which);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let name = std::str::from_utf8(&bytes).unwrap_or("").trim();
        ensure!(
            parse_set_name(name).is_some(),
            "{} does not name a checkpoint set (`step-<N>`)",
            path.display()
        );
        Ok(Some(name.to_string()))
    }

    /// Removes sets beyond the newest `keep` (never the latest nor the best one) and staging
    /// folders.
    fn prune(&self, progress: &Progress) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut pinned: Vec<String> = vec![set_name(progress.step)];
        pinned.extend(progress.best_step.map(set_name));
        let mut sets = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".partial-") {
                let _ = std::fs::remove_dir_all(entry.path());
            } else if let Some(step) = parse_set_name(&name) {
                sets.push((step, name));
            }
        }
        sets.sort();
        let excess = sets.len().saturating_sub(self.keep);
        for (_, name) in sets.into_iter().take(excess) {
            if !pinned.contains(&name)
                && let Err(error) = std::fs::remove_dir_all(self.dir.join(&name))
            {
                tracing::warn!("cannot remove the old checkpoint {name}: {error}");
            }
        }
    }
}

/// Reads a set's `progress.json` and `metrics.csv`, after checking every file's size and
/// CRC-32, so a damaged set is an error naming the file before any decoder sees it.
pub fn read_set(dir: &Path) -> Result<LoadedSet> {
    let index_path = dir.join(PROGRESS);
    let bytes = std::fs::read(&index_path)
        .with_context(|| format!("cannot read {}", index_path.display()))?;
    let index: SetIndex = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a checkpoint index", index_path.display()))?;
    for file in [MODEL, OPTIMIZER, METRICS] {
        let Some(sum) = index.files.iter().find(|f| f.name == file) else {
            bail!("{} does not list {file}", index_path.display());
        };
        let found = file_sum(dir, file)?;
        ensure!(
            found == *sum,
            "{} is damaged (or {} is): {} bytes with CRC-32 {:08x}, where the set recorded {} \
             bytes with {:08x}",
            dir.join(file).display(),
            index_path.display(),
            found.bytes,
            found.crc32,
            sum.bytes,
            sum.crc32
        );
    }
    let metrics = Metrics::read(&dir.join(METRICS))?;
    Ok(LoadedSet {
        dir: dir.to_path_buf(),
        progress: index.progress,
        metrics,
    })
}

impl LoadedSet {
    /// The model with the set's weights; `model` gives the architecture and device.
    pub fn load_model(&self, model: Model) -> Result<Model> {
        model
            .try_load_file(self.dir.join(MODEL))
            .with_context(|| format!("cannot load {}", self.dir.join(MODEL).display()))
    }

    /// The optimizer with the set's state.
    pub fn load_optimizer(&self, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
        optimizer
            .load(self.dir.join(OPTIMIZER))
            .with_context(|| format!("cannot load {}", self.dir.join(OPTIMIZER).display()))
    }
}

fn set_name(step: usize) -> String {
    format!("step-{step:09}")
}

fn parse_set_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("step-")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn file_sum(dir: &Path, file: &str) -> Result<FileSum> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(FileSum {
        name: file.to_string(),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_steps_or_durations() {
        assert_eq!("500".parse(), Ok(CheckpointEvery::Steps(500)));
        assert_eq!(
            "10m".parse(),
            Ok(CheckpointEvery::Interval(Duration::from_secs(600)))
        );
        for bad in ["0", "0s", "soon", "-3"] {
            assert!(bad.parse::<CheckpointEvery>().is_err(), "{bad}");
        }
    }

    #[test]
    fn set_names_round_trip_and_nothing_else_parses() {
        assert_eq!(parse_set_name(&set_name(1234)), Some(1234));
        for bad in ["step-", "step-1a", "../step-1", "best", "step-+1"] {
            assert_eq!(parse_set_name(bad), None, "{bad}");
        }
    }
}
