//! A run's records as it writes them: `metrics.csv`, the TensorBoard event files and
//! `monitor.csv`, each a [`Sink`] behind one [`RunLogs`], so the loop records a row once and a
//! new format is one more sink.

use anyhow::Result;

use crate::metrics::Metrics;
use crate::monitor::{MonitorLog, MonitorRow};
use crate::store::RunFiles;
use crate::tensorboard::EventWriter;

/// One format a run's records are written in.
pub trait Sink {
    /// A row was added to `metrics` (its last).
    fn metric_row(&mut self, _metrics: &Metrics) -> Result<()> {
        Ok(())
    }

    /// The measurements of one monitored step.
    fn monitor_rows(&mut self, _rows: &[MonitorRow]) -> Result<()> {
        Ok(())
    }
}

/// `metrics.csv`, rewritten whole (atomically) at every row, so it is always a complete file.
struct MetricsFile(std::path::PathBuf);

impl Sink for MetricsFile {
    fn metric_row(&mut self, metrics: &Metrics) -> Result<()> {
        metrics.write(&self.0)
    }
}

impl Sink for EventWriter {
    fn metric_row(&mut self, metrics: &Metrics) -> Result<()> {
        if let Some(row) = metrics.rows.last() {
            EventWriter::metric_row(self, row)?;
        }
        self.flush()
    }

    fn monitor_rows(&mut self, rows: &[MonitorRow]) -> Result<()> {
        EventWriter::monitor_rows(self, rows)?;
        self.flush()
    }
}

impl Sink for MonitorLog {
    fn monitor_rows(&mut self, rows: &[MonitorRow]) -> Result<()> {
        self.append(rows)
    }
}

/// Every sink of a run.
pub struct RunLogs {
    sinks: Vec<Box<dyn Sink>>,
}

impl RunLogs {
    /// The logs of the run in `files`, continuing from `metrics` at step `step`: every file is
    /// made to agree with that state (rows of later steps, written before a crash, are dropped;
    /// TensorBoard gets the rows so far again), `monitor.csv` only where `monitor` is on.
    pub fn open(files: &RunFiles, metrics: &Metrics, step: usize, monitor: bool) -> Result<Self> {
        metrics.write(&files.metrics())?;
        let mut board = EventWriter::create(&files.tensorboard())?;
        for row in &metrics.rows {
            board.metric_row(row)?;
        }
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(MetricsFile(files.metrics()))];
        if monitor {
            let (log, kept) = MonitorLog::open(&files.monitor(), step)?;
            board.monitor_rows(&kept)?;
            sinks.push(Box::new(log));
        }
        board.flush()?;
        sinks.push(Box::new(board));
        Ok(RunLogs { sinks })
    }

    /// Records the last row of `metrics` everywhere.
    pub fn metric_row(&mut self, metrics: &Metrics) -> Result<()> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| sink.metric_row(metrics))
    }

    /// Records one monitored step everywhere.
    pub fn monitor_rows(&mut self, rows: &[MonitorRow]) -> Result<()> {
        self.sinks
            .iter_mut()
            .try_for_each(|sink| sink.monitor_rows(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricRow, RowContext, Tally};

    #[test]
    fn every_sink_gets_each_row() {
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::new(dir.path());
        let mut metrics = Metrics::default();
        let mut logs = RunLogs::open(&files, &metrics, 0, true).unwrap();
        let tally = Tally {
            steps: 1,
            images: 8,
            loss_sum: 16.0,
            correct: 2,
            seconds: 0.1,
        };
        let context = RowContext {
            lr: 0.1,
            elapsed_s: 1.0,
        };
        metrics
            .rows
            .push(MetricRow::new(1, 1, "train", &tally, context));
        logs.metric_row(&metrics).unwrap();
        let rows = [MonitorRow {
            step: 1,
            layer: "conv1".into(),
            quantity: crate::monitor::Quantity::ActivationStd,
            value: 0.5,
        }];
        logs.monitor_rows(&rows).unwrap();
        assert_eq!(Metrics::read(&files.metrics()).unwrap(), metrics);
        assert_eq!(MonitorLog::read(&files.monitor()).unwrap(), rows);
        let events = std::fs::read_dir(files.tensorboard()).unwrap().count();
        assert_eq!(events, 1, "one event file");
    }
}
