//! TensorBoard event files (`runs/<name>/tensorboard/`), so `tensorboard --logdir runs` compares
//! init schemes the way PyTorch users do.
//!
//! An event file is a sequence of TFRecords, each one serialised `tensorflow.Event` protobuf:
//! first a `file_version` event, then one event per logged value. The messages are the few
//! fields of TensorFlow's `event.proto` and `summary.proto` that scalars use, encoded by `prost`;
//! the records' checksums are CRC-32C (`crc32c`), masked as TensorFlow masks them.
//!
//! The event file is a view of `metrics.csv` and `monitor.csv`, not a record of its own: when a
//! run starts or resumes, the folder is written anew from those rows, so after a crash and
//! `--resume` TensorBoard shows exactly what the CSV files hold, with no orphaned steps.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prost::Message;

use crate::metrics::MetricRow;
use crate::monitor::MonitorRow;

/// `tensorflow.Event`, the fields scalars use.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "EventKind", tags = "3, 5")]
    what: Option<EventKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum EventKind {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value`.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// Writes one event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Empties `dir` of event files and starts a new one there.
    pub fn create(dir: &Path) -> Result<Self> {
        if dir.exists() {
            for entry in std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .filter_map(|e| e.ok())
            {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("events.out.tfevents.")
                {
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("cannot remove {}", entry.path().display()))?;
                }
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}",
            now().floor() as u64,
            std::process::id()
        );
        let path = dir.join(name);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write(&Event {
            wall_time: now(),
            step: 0,
            what: Some(EventKind::FileVersion("brain.Event:2".to_string())),
        })?;
        Ok(writer)
    }

    /// Scalars of one step, as one event.
    pub fn scalars(
        &mut self,
        step: usize,
        values: impl IntoIterator<Item = (String, f64)>,
    ) -> Result<()> {
        let value: Vec<SummaryValue> = values
            .into_iter()
            .map(|(tag, value)| SummaryValue {
                tag,
                simple_value: Some(value as f32),
            })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            what: Some(EventKind::Summary(Summary { value })),
        })
    }

    /// The values of a metrics.csv row, tagged `<split>/<column>`.
    pub fn metric_row(&mut self, row: &MetricRow) -> Result<()> {
        let values = row
            .values
            .iter()
            .map(|(column, value)| (format!("{}/{column}", row.split), *value));
        self.scalars(row.step, values)
    }

    /// Monitor rows (of one step or several), tagged `monitor/<quantity>/<layer>`.
    pub fn monitor_rows(&mut self, rows: &[MonitorRow]) -> Result<()> {
        let mut start = 0;
        while start < rows.len() {
            let step = rows[start].step;
            let end = start + rows[start..].iter().take_while(|r| r.step == step).count();
            let values = rows[start..end]
                .iter()
                .map(|r| (format!("monitor/{}/{}", r.quantity, r.layer), r.value));
            self.scalars(step, values)?;
            start = end;
        }
        Ok(())
    }

    /// Hands what is written to the OS, so a reader sees it.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc(&length).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file
            .write_all(&record)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// TFRecord's checksum: CRC-32C, rotated and offset so that data holding its own CRC does not
/// checksum to a constant.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
