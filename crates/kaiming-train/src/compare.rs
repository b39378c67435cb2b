//! `train compare`: a table and a figure of several runs, grouped by init scheme.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use kaiming_resnet::{Branch, Norm};

use crate::atomic::write_atomic;
use crate::config::{RunConfig, read_toml};
use crate::metrics::Metrics;
use crate::monitor::{Signal, SignalKind};
use crate::plot::{Colour, Panel, Series, save_figure};
use crate::precision::Precision;
use crate::store::RunFiles;
use crate::summary::{Status, Summary};

/// One run as the comparison reads it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The run folder.
    pub dir: PathBuf,
    /// Its summary.json.
    pub summary: Summary,
    /// Its metrics.csv.
    pub metrics: Metrics,
    /// Its config.toml, where readable (it tells variants of one model apart).
    pub config: Option<RunConfig>,
}

impl RunRecord {
    /// Reads a run folder.
    pub fn read(dir: &Path) -> Result<Self> {
        let files = RunFiles::new(dir);
        Ok(RunRecord {
            dir: dir.to_path_buf(),
            summary: Summary::read(&files.summary())
                .with_context(|| format!("{} is not a run folder", dir.display()))?,
            metrics: Metrics::read(&files.metrics())?,
            // Unchecked: a GPU run's settings read on a machine without that backend too.
            config: match files.config().exists() {
                true => Some(read_toml(&files.config())?),
                false => None,
            },
        })
    }

    /// The model as the comparison names it: its name, plus what sets it apart from the
    /// default recipe (no normalisation, zero-init residual branches, reduced precision).
    pub fn variant(&self) -> String {
        let mut name = self.summary.model.to_string();
        if let Some(config) = &self.config {
            if config.model.norm == Norm::None {
                name.push_str(" no-norm");
            }
            if config.model.zero_init_residual {
                name.push_str(" zero-init-residual");
            }
            if config.model.residual != Branch::Standard {
                name.push_str(&format!(" {}", config.model.residual));
            }
            if config.precision != Precision::F32 {
                name.push_str(&format!(" {}", config.precision));
            }
        }
        name
    }

    /// Where the run started: its init scheme, or the weights file it was fine-tuned from (with
    /// the scheme of what the file did not provide).
    pub fn starting_point(&self) -> String {
        match &self.summary.weights {
            Some(file) => {
                let name = Path::new(file)
                    .file_name()
                    .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
                format!("from {name} + {}", self.summary.init)
            }
            None => self.summary.init.to_string(),
        }
    }

    /// Mean training loss per epoch, each train row weighted by the steps it covers.
    fn train_loss_per_epoch(&self) -> Vec<(f64, f64)> {
        let mut sums: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        let mut previous_step = 0;
        for row in self.metrics.rows.iter().filter(|row| row.split == "train") {
            let steps = row.step.saturating_sub(previous_step).max(1) as f64;
            previous_step = row.step;
            let entry = sums.entry(row.epoch).or_default();
            entry.0 += row.loss() * steps;
            entry.1 += steps;
        }
        sums.into_iter()
            .map(|(epoch, (sum, steps))| (epoch as f64, sum / steps))
            .collect()
    }

    /// Evaluation accuracy after each epoch, at the epoch's number or at its last step.
    pub fn accuracy(&self, axis: Axis) -> Vec<(f64, f64)> {
        self.metrics
            .evaluations()
            .map(|row| match axis {
                Axis::Epoch => (row.epoch as f64, row.accuracy()),
                Axis::Step => (row.step as f64, row.accuracy()),
            })
            .collect()
    }

    /// The training loss curve along `axis`: per epoch, or at each logged step (each row the
    /// mean over the steps since the last).
    pub fn train_loss(&self, axis: Axis) -> Vec<(f64, f64)> {
        match axis {
            Axis::Epoch => self.train_loss_per_epoch(),
            Axis::Step => self
                .metrics
                .rows
                .iter()
                .filter(|row| row.split == "train")
                .map(|row| (row.step as f64, row.loss()))
                .collect(),
        }
    }
}

/// What the comparison figure's horizontal axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Epochs, each point an epoch's mean: for runs of several epochs.
    Epoch,
    /// Logged steps: for short runs, whose per-epoch curves would be one or two points.
    Step,
}

impl Axis {
    /// Below this many epochs in the longest run, the figure counts steps.
    const MIN_EPOCHS: usize = 5;

    /// Steps when even the longest of `runs` has fewer than [`Axis::MIN_EPOCHS`] epochs.
    pub fn for_runs(runs: &[RunRecord]) -> Self {
        let longest = runs.iter().map(|run| run.summary.epochs_completed).max();
        match longest {
            Some(epochs) if epochs >= Self::MIN_EPOCHS => Axis::Epoch,
            _ => Axis::Step,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Axis::Epoch => "epoch",
            Axis::Step => "step",
        }
    }
}

/// The columns of `train compare`'s table, as its terminal table and `comparison.md` head them.
const TABLE_HEADER: [&str; 11] = [
    "run",
    "model",
    "init",
    "seed",
    "status",
    "best acc %",
    "final acc %",
    "final train loss",
    "epochs",
    "time s",
    "signals",
];

/// One line of the table per run, as text.
fn table_rows(runs: &[RunRecord]) -> Vec<[String; 11]> {
    let percent = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
    runs.iter()
        .map(|run| {
            let s = &run.summary;
            [
                s.name.clone(),
                run.variant(),
                run.starting_point(),
                s.seed.to_string(),
                s.status.to_string(),
                percent(s.best_accuracy),
                percent(s.final_accuracy),
                s.final_train_loss.map_or("-".into(), |l| format!("{l:.4}")),
                s.epochs_completed.to_string(),
                format!("{:.0}", s.total_time_s),
                signal_counts(&s.signals),
            ]
        })
        .collect()
}

/// The table of `train compare`, one line per run.
pub fn table(runs: &[RunRecord]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(TABLE_HEADER);
    for row in table_rows(runs) {
        table.add_row(row);
    }
    table
}

/// A GitHub Markdown table: `header`, then `rows`, `|` in cells escaped. It is what the
/// READMEs under `docs/` paste, and the published-results test holds them to it.
pub fn markdown_table<R: AsRef<[String]>>(header: &[String], rows: &[R]) -> String {
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(header);
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&line(row.as_ref()));
    }
    out
}

/// Where `path` lies as seen from `base` (both existing folders), e.g. `../6-trainability/x`:
/// `comparison.csv` names its runs this way so that the folder can move as a whole.
fn relative_to(path: &Path, base: &Path) -> Result<PathBuf> {
    let canonical = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("cannot resolve {}", p.display()))
    };
    let (path, base) = (canonical(path)?, canonical(base)?);
    let shared = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative: PathBuf = base.components().skip(shared).map(|_| "..").collect();
    relative.extend(path.components().skip(shared));
    Ok(relative)
}

/// The run folders `paths` name: each path that is a run folder (it has `summary.json`), and
/// for a folder of run folders (a sweep's `--out`, shared by its shards) every run folder in it,
/// in name order.
pub fn expand_run_folders(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    for path in paths {
        if RunFiles::is_run(path) {
            runs.push(path.clone());
            continue;
        }
        let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| {
                format!(
                    "{} is neither a run folder nor a folder of runs",
                    path.display()
                )
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| RunFiles::is_run(p))
            .collect();
        if inside.is_empty() {
            anyhow::bail!(
                "{} holds no run folders (none has summary.json)",
                path.display()
            );
        }
        inside.sort();
        runs.extend(inside);
    }
    Ok(runs)
}

/// The monitor's diagnoses of a run as counts of layers per kind, e.g. `vanishing 9, update
/// ratio 30`; `-` for none.
pub fn signal_counts(signals: &[Signal]) -> String {
    let mut counts: BTreeMap<SignalKind, usize> = BTreeMap::new();
    for signal in signals {
        *counts.entry(signal.kind).or_default() += 1;
    }
    if counts.is_empty() {
        return "-".to_string();
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A curve as `(x, y)` points.
type Curve = Vec<(f64, f64)>;

/// Mean over runs at each x, with the min and max `(x, lo, hi)`, for the x values that every
/// run which did not diverge has: a diverged run counts while its curve lasts, and does not cut
/// its group's curve short.
fn aggregate(curves: &[(Curve, bool)]) -> (Curve, Vec<(f64, f64, f64)>) {
    let mut by_x: BTreeMap<i64, (Vec<f64>, usize)> = BTreeMap::new();
    for (curve, diverged) in curves {
        for &(x, y) in curve {
            let entry = by_x.entry(x.round() as i64).or_default();
            entry.0.push(y);
            entry.1 += usize::from(!diverged);
        }
    }
    let lasting = curves.iter().filter(|(_, diverged)| !diverged).count();
    let shared = by_x
        .into_iter()
        .filter(|(_, (ys, kept))| *kept == lasting && !ys.is_empty())
        .map(|(x, (ys, _))| (x, ys));
    let mut mean = Vec::new();
    let mut band = Vec::new();
    for (x, ys) in shared {
        let x = x as f64;
        let finite: Vec<f64> = ys.iter().copied().filter(|y| y.is_finite()).collect();
        if finite.is_empty() {
            continue;
        }
        mean.push((x, finite.iter().sum::<f64>() / finite.len() as f64));
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        band.push((x, lo, hi));
    }
    (mean, band)
}

/// Writes `comparison.csv` (one row per run, with its folder as seen from `out`),
/// `comparison.md` (the table), `comparison.svg` and `comparison.png` into `out` and returns the
/// table.
pub fn compare(run_dirs: &[PathBuf], out: &Path) -> Result<Table> {
    let runs = read_runs(run_dirs)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    let mut csv = csv::Writer::from_writer(Vec::new());
    for run in &runs {
        csv.serialize(run.summary_row(&relative_to(&run.dir, out)?))?;
    }
    write_atomic(&out.join("comparison.csv"), &csv.into_inner()?)?;
    let header = TABLE_HEADER.map(String::from);
    write_atomic(
        &out.join("comparison.md"),
        markdown_table(&header, &table_rows(&runs)).as_bytes(),
    )?;

    // One colour per (model variant, init, other settings that vary, split): the mean over its
    // seeds with a min–max band. Runs evaluated on different splits are never averaged, and
    // their labels say which split each is.
    let splits: BTreeSet<&str> = runs.iter().map(|r| r.summary.eval_split.as_str()).collect();
    let mixed_splits = splits.len() > 1;
    let others = distinguishing_settings(&runs);
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for run in &runs {
        let mut init = run.starting_point();
        for key in &others {
            init.push_str(&format!(" {}", setting_label(run, key)));
        }
        if mixed_splits {
            init.push_str(&format!(" [{}]", run.summary.eval_split));
        }
        groups.entry((run.variant(), init)).or_default().push(run);
    }
    let several_models = groups
        .keys()
        .map(|(model, _)| model)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let axis = Axis::for_runs(&runs);
    let mut loss_series = Vec::new();
    let mut accuracy_series = Vec::new();
    for (color, ((model, init), members)) in groups.iter().enumerate() {
        let diverged = members
            .iter()
            .filter(|r| r.summary.status == Status::Diverged)
            .count();
        let mean_of = match (members.len(), diverged) {
            (1, _) => String::new(),
            (n, 0) => format!(" (mean of {n})"),
            (n, d) => format!(" (mean of {n}, {d} diverged)"),
        };
        let label = match several_models {
            true => format!("{model} {init}{mean_of}"),
            false => format!("{init}{mean_of}"),
        };
        let series = |curves: Vec<(Curve, bool)>| {
            let (points, band) = aggregate(&curves);
            Series {
                label: label.clone(),
                color: Colour::Palette(color),
                points,
                band: (members.len() > 1).then_some(band),
                dashed: false,
            }
        };
        let ended = |r: &&RunRecord| r.summary.status == Status::Diverged;
        loss_series.push(series(
            members
                .iter()
                .map(|r| (r.train_loss(axis), ended(r)))
                .collect(),
        ));
        accuracy_series.push(series(
            members
                .iter()
                .map(|r| (r.accuracy(axis), ended(r)))
                .collect(),
        ));
    }
    let split = splits.into_iter().collect::<Vec<_>>().join(" / ");
    save_figure(
        &[
            Panel {
                title: "training loss".into(),
                x_label: axis.label().into(),
                y_label: "cross-entropy".into(),
                log_y: false,
                series: loss_series,
            },
            Panel {
                title: format!("{split} accuracy"),
                x_label: axis.label().into(),
                y_label: "accuracy".into(),
                log_y: false,
                series: accuracy_series,
            },
        ],
        &out.join("comparison"),
    )?;
    Ok(table(&runs))
}

/// Reads the run folders, skipping (and naming, in a warning) any that cannot be read — a
/// corrupt `summary.json`, `metrics.csv` or `config.toml` — so that one broken run does not
/// leave a sweep without its table. An error only when none can be read.
pub fn read_runs(run_dirs: &[PathBuf]) -> Result<Vec<RunRecord>> {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for dir in run_dirs {
        match RunRecord::read(dir) {
            Ok(run) => runs.push(run),
            Err(error) => {
                tracing::warn!("skipping {}: {error:#}", dir.display());
                skipped.push(format!("{}: {error:#}", dir.display()));
            }
        }
    }
    if runs.is_empty() {
        anyhow::bail!("no run could be read: {}", skipped.join("; "));
    }
    Ok(runs)
}

/// The settings besides the seed that tell the runs apart and that neither the model variant
/// nor the starting point already names (the learning rate of a rate sweep, the width of a
/// width sweep), so that runs differing in them are drawn apart. The monitor's and kernels'
/// settings change nothing a figure shows.
fn distinguishing_settings(runs: &[RunRecord]) -> Vec<&'static str> {
    const NAMED: [&str; 6] = [
        "init",
        "model.name",
        "model.norm",
        "model.zero_init_residual",
        "model.residual",
        "precision",
    ];
    crate::pivot::varied_settings(runs)
        .into_iter()
        .filter(|key| {
            !NAMED.contains(key) && !key.starts_with("monitor.") && !key.starts_with("kernels.")
        })
        .collect()
}

/// `lr=0.01`: a setting's short name and a run's value of it.
fn setting_label(run: &RunRecord, key: &str) -> String {
    let name = key.rsplit('.').next().unwrap_or(key);
    format!("{name}={}", crate::pivot::value_text(run, key))
}

/// A flat row of `comparison.csv`.
#[derive(serde::Serialize)]
struct SummaryRow<'a> {
    run: &'a str,
    model: String,
    init: String,
    seed: u64,
    status: String,
    best_accuracy: Option<f64>,
    final_accuracy: Option<f64>,
    final_train_loss: Option<f64>,
    epochs: usize,
    time_s: f64,
    signals: String,
    /// The run folder, relative to the comparison's folder.
    folder: String,
}

impl RunRecord {
    fn summary_row(&self, folder: &Path) -> SummaryRow<'_> {
        let s = &self.summary;
        SummaryRow {
            run: &s.name,
            model: self.variant(),
            init: self.starting_point(),
            seed: s.seed,
            status: s.status.to_string(),
            best_accuracy: s.best_accuracy,
            final_accuracy: s.final_accuracy,
            final_train_loss: s.final_train_loss,
            epochs: s.epochs_completed,
            time_s: s.total_time_s,
            signals: signal_counts(&s.signals),
            folder: folder.to_string_lossy().into_owned(),
        }
    }
}
