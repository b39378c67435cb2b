//! `metrics.csv`: one long-form table of training and evaluation rows.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;

/// One row of `metrics.csv`; the field order is the header,
/// `step,epoch,split,loss,accuracy,lr,images_per_sec,elapsed_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Optimizer steps done when the row was written.
    pub step: usize,
    /// 1-based epoch the row belongs to.
    pub epoch: usize,
    /// `train`, `val` or `test`.
    pub split: String,
    /// Mean cross-entropy over the steps (train) or the split (evaluation).
    pub loss: f64,
    /// Top-1 accuracy in [0, 1] over the same images.
    pub accuracy: f64,
    /// Learning rate of the last step in the row.
    pub lr: f64,
    /// Images per second over the row's steps (train) or the evaluation pass.
    pub images_per_sec: f64,
    /// Seconds of training and evaluation since the run started, across resumes.
    pub elapsed_s: f64,
}

/// The rows of a run, kept in memory and rewritten atomically, so the file is always whole.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Rows in the order they were produced.
    pub rows: Vec<MetricRow>,
}

impl Metrics {
    /// Reads `metrics.csv`, checking its header.
    pub fn read(path: &Path) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header = reader
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?;
        let expected = "step,epoch,split,loss,accuracy,lr,images_per_sec,elapsed_s";
        anyhow::ensure!(
            header.iter().collect::<Vec<_>>().join(",") == expected,
            "{}: header is not `{expected}`",
            path.display()
        );
        let rows = reader
            .deserialize()
            .enumerate()
            .map(|(i, row)| row.with_context(|| format!("{}: bad row {}", path.display(), i + 2)))
            .collect::<Result<_>>()?;
        Ok(Metrics { rows })
    }

    /// Writes all rows to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        if self.rows.is_empty() {
            writer.write_record([
                "step",
                "epoch",
                "split",
                "loss",
                "accuracy",
                "lr",
                "images_per_sec",
                "elapsed_s",
            ])?;
        }
        for row in &self.rows {
            writer.serialize(row)?;
        }
        write_atomic(path, &writer.into_inner()?)
    }

    /// Evaluation rows (`val` or `test`), one per epoch.
    pub fn evaluations(&self) -> impl Iterator<Item = &MetricRow> {
        self.rows.iter().filter(|row| row.split != "train")
    }
}
