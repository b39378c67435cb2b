//! The one error type of the crate.
//!
//! Every variant names the file (or URL) it is about, so that a user who sees the message knows
//! what to fix without a backtrace. Nothing in the crate panics on bad input: a malformed file,
//! a failed download or a bad configuration all end up here.

use std::path::PathBuf;

/// Everything that can go wrong between the files on disk (or on the network) and a batch.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The underlying error: written into the message, not chained as its source, so that
        /// a report of the whole chain says it once.
        cause: std::io::Error,
    },

    /// A file that the layout requires is not there.
    #[error("{path}: missing (the dataset folder is incomplete)")]
    MissingFile {
        /// The expected file.
        path: PathBuf,
    },

    /// A binary file does not hold a whole number of records.
    #[error("{path}: {len} bytes is not a whole number of {record}-byte records")]
    PartialRecord {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The record size of its layout.
        record: usize,
    },

    /// A label byte lies outside the classes of the dataset.
    #[error(
        "{path}: record {record} (byte offset {offset}) has label {label}, expected 0..{classes}"
    )]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The index of the record in the file.
        record: usize,
        /// The byte offset of the label in the file.
        offset: u64,
        /// The label found.
        label: u8,
        /// The number of classes.
        classes: usize,
    },

    /// A file's content cannot be used (an undecodable or wrongly sized image, a class-name
    /// list of the wrong length).
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A folder holds none of the known layouts.
    #[error(
        "{path}: no CIFAR layout found (expected data_batch_*.bin, train.bin or train/<class>/*.png)"
    )]
    UnknownLayout {
        /// The folder.
        path: PathBuf,
    },

    /// No dataset was found in any of the places searched, and downloading was not allowed.
    #[error("no CIFAR-10 data found (searched: {}); pass --data-dir, set CIFAR10_DIR, or allow the download", display_paths(.searched))]
    NotFound {
        /// Every place looked at, in order.
        searched: Vec<PathBuf>,
    },

    /// A file's SHA-1 differs from the official one.
    #[error("{path}: SHA-1 is {actual}, the official file's is {expected}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The official sum.
        expected: String,
        /// The sum of the file on disk.
        actual: String,
    },

    /// The downloaded archive's MD5 differs from the expected one.
    #[error(
        "{url}: the archive's MD5 is {actual}, expected {expected} (corrupt or wrong download)"
    )]
    DownloadChecksum {
        /// Where it came from.
        url: String,
        /// The expected sum.
        expected: String,
        /// The sum of what was received.
        actual: String,
    },

    /// The HTTP request failed or the transfer broke off.
    #[error("{url}: download failed: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What the HTTP client reported.
        reason: String,
    },

    /// The archive is unreadable or holds something it must not.
    #[error("{url}: bad archive: {reason}")]
    Archive {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The download would replace an existing folder.
    #[error("{path}: already exists; remove it or point --data-dir at it")]
    AlreadyExists {
        /// The folder in the way.
        path: PathBuf,
    },

    /// A setting makes no sense (batch size 0, validation larger than the set, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl DataError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}
