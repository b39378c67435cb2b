//! The pivot of a grid of runs: one cell per combination of the row and column settings
//! (`model.name` × `init`), final test accuracy and final train loss averaged over the seeds
//! with their spread, and the monitor's diagnoses per cell — as a table, `pivot.csv` and a
//! heatmap.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::atomic::write_atomic;
use crate::compare::{RunRecord, markdown_table};
use crate::config::{RunConfig, setting, settings};
use crate::heatmap::{self, HeatCell, Heatmap, Scale};
use crate::summary::Status;

/// The settings that tell `runs` apart (the seed aside), in declaration order.
pub fn varied_settings(runs: &[RunRecord]) -> Vec<&'static str> {
    settings()
        .iter()
        .map(|setting| setting.key)
        .filter(|&key| key != "seed")
        .filter(|key| {
            runs.iter()
                .map(|run| value_text(run, key))
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        })
        .collect()
}

/// The default axes: the init scheme across, every other varied setting down.
pub fn default_axes(varied: &[&'static str]) -> (Vec<&'static str>, Vec<&'static str>) {
    let (columns, rows): (Vec<_>, Vec<_>) = varied.iter().partition(|&&key| key == "init");
    match (rows.as_slice(), columns.is_empty()) {
        ([first, second, ..], true) => (vec![*first], vec![*second]),
        // The init alone varies: one column of inits down.
        ([], false) => (columns, Vec::new()),
        _ => (rows, columns),
    }
}

/// A run's value of `key`, as a cell label shows it (`-` where the run has no config.toml).
pub(crate) fn value_text(run: &RunRecord, key: &str) -> String {
    run.config
        .as_ref()
        .and_then(|config: &RunConfig| config.value(key))
        .map_or("-".to_string(), |value| match value {
            toml::Value::String(text) => text,
            other => other.to_string(),
        })
}

/// Orders labels as people read them: `plain8` before `plain14`, `2` before `10`.
fn natural(a: &str, b: &str) -> Ordering {
    fn chunks(text: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (word, tail) = rest.split_at(split);
            let end = tail
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (digits, tail) = tail.split_at(end);
            out.push((word.to_string(), digits.parse().unwrap_or(0)));
            rest = tail;
        }
        out
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => chunks(a).cmp(&chunks(b)),
    }
}

/// One cell: the runs of one row × column combination.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Runs in the cell, and how many of them completed.
    pub runs: usize,
    /// Completed runs.
    pub completed: usize,
    /// Diverged runs.
    pub diverged: usize,
    /// Final test accuracy over the completed runs: mean and sample standard deviation.
    pub accuracy: Option<(f64, f64)>,
    /// Final train loss over the completed runs: mean and sample standard deviation.
    pub train_loss: Option<(f64, f64)>,
    /// The diagnosis kinds any of its runs raised, e.g. `vanishing`.
    pub diagnoses: Vec<String>,
    /// Runs that trained ([`crate::summary::Summary::trained`]).
    pub trained: usize,
}

impl Cell {
    fn of(runs: &[&RunRecord]) -> Cell {
        let completed: Vec<&&RunRecord> = runs
            .iter()
            .filter(|run| run.summary.status == Status::Completed)
            .collect();
        let stats = |values: Vec<f64>| -> Option<(f64, f64)> {
            if values.is_empty() {
                return None;
            }
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            Some((mean, var.sqrt()))
        };
        let diagnoses: BTreeSet<String> = runs
            .iter()
            .flat_map(|run| run.summary.signals.iter().map(|s| s.kind.to_string()))
            .collect();
        Cell {
            runs: runs.len(),
            completed: completed.len(),
            diverged: runs
                .iter()
                .filter(|run| run.summary.status == Status::Diverged)
                .count(),
            accuracy: stats(
                completed
                    .iter()
                    .filter_map(|r| r.summary.final_accuracy)
                    .collect(),
            ),
            train_loss: stats(
                completed
                    .iter()
                    .filter_map(|r| r.summary.final_train_loss)
                    .collect(),
            ),
            diagnoses: diagnoses.into_iter().collect(),
            trained: runs.iter().filter(|run| run.summary.trained()).count(),
        }
    }

    /// Why the cell has no value, if it has none.
    fn absence(&self) -> Option<String> {
        match (self.runs, self.completed, self.diverged) {
            (0, _, _) => Some("missing".into()),
            (_, 0, d) if d > 0 => Some("diverged".into()),
            (_, 0, _) => Some("not finished".into()),
            _ => None,
        }
    }

    /// The cell as the tables write it: its accuracy, final train loss and diagnoses.
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.accuracy_text()];
        if let Some((loss, _)) = self.train_loss {
            lines.push(format!("loss {loss:.3}"));
        }
        if self.runs > 0 {
            lines.push(format!("trains {}/{}", self.trained, self.runs));
        }
        if !self.diagnoses.is_empty() {
            lines.push(self.diagnoses.join(", "));
        }
        lines
    }

    /// The cell's accuracy as the table writes it: `39.6 ± 0.4 % (3)`, the diagnoses after.
    fn accuracy_text(&self) -> String {
        if let Some(why) = self.absence() {
            return why;
        }
        let (mean, sd) = self.accuracy.unwrap_or((f64::NAN, 0.0));
        let mut text = format!("{:.1}", 100.0 * mean);
        if self.completed > 1 {
            text.push_str(&format!(" ± {:.1}", 100.0 * sd));
        }
        text.push_str(" %");
        if self.completed > 1 {
            text.push_str(&format!(" ({})", self.completed));
        }
        if self.completed < self.runs {
            text.push_str(&format!(" [{} of {} done]", self.completed, self.runs));
        }
        text
    }
}

/// Runs pivoted by settings.
#[derive(Debug, Clone)]
pub struct Pivot {
    /// The settings down and across.
    pub axes: (Vec<&'static str>, Vec<&'static str>),
    /// Row labels, in natural order.
    pub rows: Vec<String>,
    /// Column labels, in natural order.
    pub columns: Vec<String>,
    /// `cells[row][column]`; every combination, present or missing.
    pub cells: Vec<Vec<Cell>>,
}

/// Pivots `runs` by the settings `rows` and `columns` (keys as in `config.toml`; several join
/// their values with `/`).
pub fn pivot(runs: &[RunRecord], rows: &[&str], columns: &[&str]) -> Result<Pivot> {
    let check = |keys: &[&str]| -> Result<Vec<&'static str>> {
        keys.iter().map(|key| Ok(setting(key)?.key)).collect()
    };
    let (rows, columns) = (check(rows)?, check(columns)?);
    if rows.is_empty() {
        bail!("a pivot needs at least one row setting (--rows)");
    }
    let label = |run: &RunRecord, keys: &[&str]| -> String {
        if keys.is_empty() {
            return "all".into();
        }
        keys.iter()
            .map(|key| value_text(run, key))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mut groups: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((label(run, &rows), label(run, &columns)))
            .or_default()
            .push(run);
    }
    let sorted = |labels: BTreeSet<String>| {
        let mut labels: Vec<String> = labels.into_iter().collect();
        labels.sort_by(|a, b| natural(a, b));
        labels
    };
    let row_labels = sorted(groups.keys().map(|(r, _)| r.clone()).collect());
    let column_labels = sorted(groups.keys().map(|(_, c)| c.clone()).collect());
    let cells = row_labels
        .iter()
        .map(|r| {
            column_labels
                .iter()
                .map(|c| {
                    Cell::of(
                        groups
                            .get(&(r.clone(), c.clone()))
                            .map_or(&[], Vec::as_slice),
                    )
                })
                .collect()
        })
        .collect();
    Ok(Pivot {
        axes: (rows, columns),
        rows: row_labels,
        columns: column_labels,
        cells,
    })
}

impl Pivot {
    fn axis_names(&self) -> (String, String) {
        let join = |keys: &[&str]| {
            if keys.is_empty() {
                "-".to_string()
            } else {
                keys.join(" / ")
            }
        };
        (join(&self.axes.0), join(&self.axes.1))
    }

    /// The accuracy table, with the diagnoses of each cell.
    pub fn table(&self) -> Table {
        let (rows, columns) = self.axis_names();
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(
            std::iter::once(format!("{rows} \\ {columns}")).chain(self.columns.iter().cloned()),
        );
        for (label, cells) in self.rows.iter().zip(&self.cells) {
            table.add_row(
                std::iter::once(label.clone())
                    .chain(cells.iter().map(|cell| cell.lines().join("\n"))),
            );
        }
        table
    }

    /// `pivot.md`: the table as the READMEs show it, a cell's lines joined by `; `.
    fn markdown(&self) -> String {
        let (rows, columns) = self.axis_names();
        let header: Vec<String> = std::iter::once(format!("{rows} \\ {columns}"))
            .chain(self.columns.iter().cloned())
            .collect();
        let lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .zip(&self.cells)
            .map(|(label, cells)| {
                std::iter::once(label.clone())
                    .chain(cells.iter().map(|cell| cell.lines().join("; ")))
                    .collect()
            })
            .collect();
        markdown_table(&header, &lines)
    }

    /// `pivot.csv`: one line per cell.
    fn csv(&self) -> Result<Vec<u8>> {
        let (rows, columns) = self.axis_names();
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record([
            rows.as_str(),
            columns.as_str(),
            "runs",
            "completed",
            "diverged",
            "accuracy_mean",
            "accuracy_sd",
            "train_loss_mean",
            "train_loss_sd",
            "diagnoses",
            "trained",
        ])?;
        let number = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for (row, cells) in self.rows.iter().zip(&self.cells) {
            for (column, cell) in self.columns.iter().zip(cells) {
                csv.write_record([
                    row.clone(),
                    column.clone(),
                    cell.runs.to_string(),
                    cell.completed.to_string(),
                    cell.diverged.to_string(),
                    number(cell.accuracy.map(|a| a.0)),
                    number(cell.accuracy.map(|a| a.1)),
                    number(cell.train_loss.map(|l| l.0)),
                    number(cell.train_loss.map(|l| l.1)),
                    cell.diagnoses.join("; "),
                    cell.trained.to_string(),
                ])?;
            }
        }
        Ok(csv.into_inner()?)
    }

    /// The two heatmaps: final test accuracy and final train loss, diagnoses marked.
    pub fn heatmaps(&self, split: &str) -> Vec<Heatmap> {
        // The marks in short, so that three fit in a cell; the note spells them out.
        let short = |kind: &str| {
            match kind {
                "vanishing" => "vanish",
                "exploding" => "explode",
                "dead ReLUs" => "dead",
                "update ratio" => "upd-ratio",
                other => other,
            }
            .to_string()
        };
        let note = "framed: the signal monitor's diagnoses (vanish: vanishing signal, explode: \
                    exploding, dead: dead ReLUs, upd-ratio: update ratio out of range)";
        let map = |title: String,
                   value: &dyn Fn(&Cell) -> Option<(f64, f64)>,
                   scale: f64,
                   text: &dyn Fn(f64, f64, usize) -> String,
                   higher_is_better: bool| Heatmap {
            title,
            axes: self.axis_names(),
            rows: self.rows.clone(),
            columns: self.columns.clone(),
            cells: self
                .cells
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|cell| match (cell.absence(), value(cell)) {
                            (None, Some((mean, sd))) => HeatCell::Value {
                                value: scale * mean,
                                text: text(mean, sd, cell.completed),
                                mark: cell
                                    .diagnoses
                                    .iter()
                                    .map(|kind| short(kind))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            },
                            (why, _) => HeatCell::Empty(why.unwrap_or_else(|| "-".into())),
                        })
                        .collect()
                })
                .collect(),
            scale: Scale::Linear,
            higher_is_better: Some(higher_is_better),
            note: note.to_string(),
        };
        let spread = |sd: f64, n: usize, scale: f64, digits: usize| {
            if n > 1 {
                format!(" ± {:.*}", digits, scale * sd)
            } else {
                String::new()
            }
        };
        vec![
            map(
                format!("final {split} accuracy (%), mean over seeds"),
                &|cell| cell.accuracy,
                100.0,
                &|mean, sd, n| format!("{:.1}{}", 100.0 * mean, spread(sd, n, 100.0, 1)),
                true,
            ),
            map(
                "final train loss, mean over seeds".into(),
                &|cell| cell.train_loss,
                1.0,
                &|mean, sd, n| format!("{mean:.3}{}", spread(sd, n, 1.0, 3)),
                false,
            ),
        ]
    }

    /// Writes `pivot.csv`, `pivot.md` and `heatmap.{svg,png}` into `out`.
    pub fn write(&self, out: &Path, split: &str) -> Result<()> {
        write_atomic(&out.join("pivot.csv"), &self.csv()?)?;
        write_atomic(&out.join("pivot.md"), self.markdown().as_bytes())?;
        heatmap::save(&self.heatmaps(split), &out.join("heatmap"))
    }
}

/// Pivots the runs in `run_dirs` by `rows` × `columns` (by default the settings that vary,
/// [`default_axes`]), writes `pivot.csv`, `pivot.md` and the heatmap into `out`, and returns the table;
/// `None` where no setting but the seed varies.
pub fn report(
    run_dirs: &[std::path::PathBuf],
    out: &Path,
    rows: &[String],
    columns: &[String],
) -> Result<Option<Table>> {
    let runs = crate::compare::read_runs(run_dirs)?;
    let (rows, columns): (Vec<&str>, Vec<&str>) = if rows.is_empty() && columns.is_empty() {
        default_axes(&varied_settings(&runs))
    } else {
        (
            rows.iter().map(String::as_str).collect(),
            columns.iter().map(String::as_str).collect(),
        )
    };
    if rows.is_empty() && columns.is_empty() {
        return Ok(None);
    }
    let pivot = pivot(&runs, &rows, &columns)?;
    let split = runs
        .iter()
        .map(|run| run.summary.eval_split.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(" / ");
    pivot.write(out, &split)?;
    Ok(Some(pivot.table()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_naturally() {
        let mut labels = vec!["plain56", "plain8", "plain14", "10", "2"];
        labels.sort_by(|a, b| natural(a, b));
        assert_eq!(labels, ["2", "10", "plain8", "plain14", "plain56"]);
    }

    #[test]
    fn init_goes_across_and_two_other_settings_split() {
        assert_eq!(
            default_axes(&["model.name", "init"]),
            (vec!["model.name"], vec!["init"])
        );
        assert_eq!(
            default_axes(&["model.depth", "optimizer.lr"]),
            (vec!["model.depth"], vec!["optimizer.lr"])
        );
        assert_eq!(default_axes(&["init"]), (vec!["init"], vec![]));
    }
}
