//! `metrics.csv`: one long-form table of training and evaluation rows, its columns declared as
//! data.
//!
//! A row is keyed by `step,epoch,split`; every other column is a [`Column`] of [`COLUMNS`],
//! computed from the [`Tally`] the row accumulated. Adding a metric is one more column (and, if
//! it needs one, one more `Tally` field): the header follows from the list, a file written
//! before the column existed still reads (its old rows leave the new cell empty), and a
//! checkpoint written before the field existed still loads (the field defaults).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;

/// The sums a row of metrics.csv is computed from: the steps of a train row, or the batches of
/// an evaluation pass. Checkpointed while a row is open, so a resumed run closes the row an
/// uninterrupted run would have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    /// Optimizer steps (train) or batches (evaluation).
    pub steps: usize,
    /// Images seen.
    pub images: usize,
    /// Sum over images of the cross-entropy.
    pub loss_sum: f64,
    /// Images classified correctly.
    pub correct: usize,
    /// Seconds spent.
    pub seconds: f64,
}

impl Tally {
    /// Adds one batch of `images` images with mean loss `loss`.
    pub fn add(&mut self, loss: f64, correct: usize, images: usize, seconds: f64) {
        self.steps += 1;
        self.images += images;
        self.loss_sum += loss * images as f64;
        self.correct += correct;
        self.seconds += seconds;
    }

    /// Mean cross-entropy per image.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }

    /// Top-1 accuracy.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }

    /// Images per second.
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// What a row knows besides its tally.
#[derive(Debug, Clone, Copy)]
pub struct RowContext {
    /// Learning rate of the last step.
    pub lr: f64,
    /// Seconds of training and evaluation since the run started, across resumes.
    pub elapsed_s: f64,
}

/// One column of metrics.csv after the keys.
pub struct Column {
    /// Header name.
    pub name: &'static str,
    /// What it holds.
    pub doc: &'static str,
    /// Its value for a row.
    pub value: fn(&Tally, &RowContext) -> f64,
}

/// The columns a row gets, in header order.
pub const COLUMNS: &[Column] = &[
    Column {
        name: "loss",
        doc: "mean cross-entropy per image over the row's steps (train) or the split (evaluation)",
        value: |t, _| t.mean_loss(),
    },
    Column {
        name: "accuracy",
        doc: "top-1 accuracy in [0, 1] over the same images",
        value: |t, _| t.accuracy(),
    },
    Column {
        name: "lr",
        doc: "learning rate of the last step in the row",
        value: |_, c| c.lr,
    },
    Column {
        name: "images_per_sec",
        doc: "images per second over the row's steps or the evaluation pass",
        value: |t, _| t.images_per_sec(),
    },
    Column {
        name: "elapsed_s",
        doc: "seconds of training and evaluation since the run started, across resumes",
        value: |_, c| c.elapsed_s,
    },
];

/// The key columns every row has, before the metric columns.
pub const KEYS: [&str; 3] = ["step", "epoch", "split"];

/// One row of metrics.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Optimizer steps done when the row was written.
    pub step: usize,
    /// 1-based epoch the row belongs to.
    pub epoch: usize,
    /// `train`, `val` or `test`.
    pub split: String,
    /// The metric cells by column name, in header order; a column the row predates is absent.
    pub values: Vec<(String, f64)>,
}

impl MetricRow {
    /// The row of [`COLUMNS`] for `tally`.
    pub fn new(step: usize, epoch: usize, split: &str, tally: &Tally, context: RowContext) -> Self {
        MetricRow {
            step,
            epoch,
            split: split.to_string(),
            values: COLUMNS
                .iter()
                .map(|c| (c.name.to_string(), (c.value)(tally, &context)))
                .collect(),
        }
    }

    /// The value of column `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find_map(|(column, value)| (column == name).then_some(*value))
    }

    /// The loss (NaN for a row without one).
    pub fn loss(&self) -> f64 {
        self.get("loss").unwrap_or(f64::NAN)
    }

    /// The accuracy (NaN for a row without one).
    pub fn accuracy(&self) -> f64 {
        self.get("accuracy").unwrap_or(f64::NAN)
    }
}

/// The rows of a run, kept in memory and rewritten atomically, so the file is always whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The metric columns of the header: the file's, then any of [`COLUMNS`] it lacked.
    pub columns: Vec<String>,
    /// Rows in the order they were produced.
    pub rows: Vec<MetricRow>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            columns: COLUMNS.iter().map(|c| c.name.to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

impl Metrics {
    /// Reads `metrics.csv`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&bytes, path)
    }

    /// Parses the bytes of a metrics.csv read from `origin`, naming it and the line of any
    /// error.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
        let header = reader
            .headers()
            .with_context(|| format!("cannot read the header of {}", origin.display()))?
            .clone();
        let names: Vec<&str> = header.iter().collect();
        ensure!(
            names.len() >= KEYS.len() && names[..KEYS.len()] == KEYS,
            "{}: the header does not start with `{}`",
            origin.display(),
            KEYS.join(",")
        );
        let mut columns: Vec<String> = Vec::new();
        for name in &names[KEYS.len()..] {
            ensure!(
                !name.is_empty() && !KEYS.contains(name) && !columns.iter().any(|c| c == name),
                "{}: the header names column `{name}` twice or empty",
                origin.display()
            );
            columns.push(name.to_string());
        }
        let mut rows = Vec::new();
        for (index, record) in reader.records().enumerate() {
            let line = index + 2;
            let bad = |what: String| anyhow::anyhow!("{}:{line}: {what}", origin.display());
            let record = record.map_err(|e| bad(e.to_string()))?;
            if record.len() != names.len() {
                bail!(bad(format!(
                    "{} fields where the header has {}",
                    record.len(),
                    names.len()
                )));
            }
            let int = |i: usize| {
                record[i]
                    .parse::<usize>()
                    .map_err(|_| bad(format!("{} `{}` is not a count", KEYS[i], &record[i])))
            };
            let (step, epoch) = (int(0)?, int(1)?);
            let split = record[2].to_string();
            ensure!(!split.is_empty(), bad("the split is empty".to_string()));
            let mut values = Vec::new();
            for (column, cell) in columns.iter().zip(record.iter().skip(KEYS.len())) {
                if cell.is_empty() {
                    continue;
                }
                let value = cell
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{column} `{cell}` is not a number")))?;
                values.push((column.clone(), value));
            }
            rows.push(MetricRow {
                step,
                epoch,
                split,
                values,
            });
        }
        for column in COLUMNS {
            if !columns.iter().any(|c| c == column.name) {
                columns.push(column.name.to_string());
            }
        }
        Ok(Metrics { columns, rows })
    }

    /// The file's bytes: the header, then every row (empty cells where a row lacks a column).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let header = KEYS
            .iter()
            .copied()
            .chain(self.columns.iter().map(String::as_str));
        writer.write_record(header).expect("writing to memory");
        for row in &self.rows {
            let mut record = vec![
                row.step.to_string(),
                row.epoch.to_string(),
                row.split.clone(),
            ];
            record.extend(
                self.columns
                    .iter()
                    .map(|c| row.get(c).map_or(String::new(), |v| v.to_string())),
            );
            writer.write_record(&record).expect("writing to memory");
        }
        writer.into_inner().expect("writing to memory")
    }

    /// Writes all rows to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_csv())
    }

    /// Evaluation rows (`val` or `test`), one per epoch.
    pub fn evaluations(&self) -> impl Iterator<Item = &MetricRow> {
        self.rows.iter().filter(|row| row.split != "train")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_newer_column_reads_and_gains_it() {
        let old = b"step,epoch,split,loss,accuracy\n10,1,train,2.5,0.1\n";
        let metrics = Metrics::parse(old, Path::new("old.csv")).unwrap();
        assert_eq!(metrics.rows[0].get("loss"), Some(2.5));
        assert_eq!(metrics.rows[0].get("lr"), None);
        let mut metrics = metrics;
        let tally = Tally {
            steps: 1,
            images: 4,
            loss_sum: 4.0,
            correct: 2,
            seconds: 1.0,
        };
        let context = RowContext {
            lr: 0.1,
            elapsed_s: 3.0,
        };
        metrics
            .rows
            .push(MetricRow::new(11, 1, "train", &tally, context));
        let text = String::from_utf8(metrics.to_csv()).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("step,epoch,split,loss,accuracy,lr,images_per_sec,elapsed_s")
        );
        assert_eq!(lines.next(), Some("10,1,train,2.5,0.1,,,"));
        assert_eq!(lines.next(), Some("11,1,train,1,0.5,0.1,4,3"));
        let again = Metrics::parse(text.as_bytes(), Path::new("new.csv")).unwrap();
        assert_eq!(again, metrics);
    }
}
