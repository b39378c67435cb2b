//! Readers for the official binary layouts of CIFAR-10 and CIFAR-100.
//!
//! Both layouts are flat files of fixed-size records: CIFAR-10 records are one label byte then
//! 3072 pixel bytes (the red, green and blue 32×32 planes, row by row); CIFAR-100 records carry
//! a coarse and a fine label byte before the same pixels. One code path reads both, taking the
//! number of label bytes and the class counts from [`BinaryFormat`].

use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::image::{IMAGE_BYTES, Split};

/// The class names of CIFAR-10, in label order, used when `batches.meta.txt` is absent.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The six files of the official CIFAR-10 binary release, training batches first.
pub const CIFAR10_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// The two data files of the official CIFAR-100 binary release.
pub const CIFAR100_FILES: [&str; 2] = ["train.bin", "test.bin"];

/// Which of the two binary layouts a folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryFormat {
    /// `data_batch_{1..5}.bin` + `test_batch.bin`, 1 label byte per record, 10 classes.
    Cifar10,
    /// `train.bin` + `test.bin`, a coarse (20 classes) then a fine (100 classes) label byte.
    Cifar100,
}

impl BinaryFormat {
    /// Label bytes before the pixels of each record.
    pub fn label_bytes(self) -> usize {
        match self {
            BinaryFormat::Cifar10 => 1,
            BinaryFormat::Cifar100 => 2,
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    /// Every data file the layout must have, whatever split is read: a folder with some of them
    /// missing is a half-finished copy and is refused rather than silently read in part.
    pub fn required_files(self) -> &'static [&'static str] {
        match self {
            BinaryFormat::Cifar10 => &CIFAR10_FILES,
            BinaryFormat::Cifar100 => &CIFAR100_FILES,
        }
    }

    /// The data files of one split, in reading order.
    pub fn split_files(self, split: Split) -> &'static [&'static str] {
        match (self, split) {
            (BinaryFormat::Cifar10, Split::Train) => &CIFAR10_FILES[..5],
            (BinaryFormat::Cifar10, Split::Test) => &CIFAR10_FILES[5..],
            (BinaryFormat::Cifar100, Split::Train) => &CIFAR100_FILES[..1],
            (BinaryFormat::Cifar100, Split::Test) => &CIFAR100_FILES[1..],
        }
    }

    fn fine_classes(self) -> usize {
        match self {
            BinaryFormat::Cifar10 => 10,
            BinaryFormat::Cifar100 => 100,
        }
    }
}

/// What a binary split holds once read: planar pixels, labels, and (CIFAR-100) coarse labels.
pub(crate) struct BinarySplit {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub coarse_labels: Option<Vec<u8>>,
    pub classes: Vec<String>,
}

/// Checks that every file the format needs is present.
pub(crate) fn check_present(dir: &Path, format: BinaryFormat) -> Result<(), DataError> {
    for name in format.required_files() {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::MissingFile { path });
        }
    }
    Ok(())
}

/// Checks that every data file of the format holds a whole number of records.
pub(crate) fn check_sizes(dir: &Path, format: BinaryFormat) -> Result<(), DataError> {
    for name in format.required_files() {
        record_count(&dir.join(name), format.record_bytes())?;
    }
    Ok(())
}

/// The number of records in a file, from its size.
fn record_count(path: &Path, record: usize) -> Result<usize, DataError> {
    let len = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if len % record as u64 != 0 {
        return Err(DataError::PartialRecord {
            path: path.to_path_buf(),
            len,
            record,
        });
    }
    Ok((len / record as u64) as usize)
}

/// Reads one split of a binary-layout folder, checking record sizes and label ranges.
pub(crate) fn read_split(
    dir: &Path,
    format: BinaryFormat,
    split: Split,
) -> Result<BinarySplit, DataError> {
    check_present(dir, format)?;
    let files = format.split_files(split);
    let record = format.record_bytes();

    // Sizes first, so that the whole buffer is allocated once and a bad file is reported before
    // any large read.
    let mut total_records = 0;
    for name in files {
        total_records += record_count(&dir.join(name), record)?;
    }

    let mut images = Vec::with_capacity(total_records * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(total_records);
    let mut coarse_labels = match format {
        BinaryFormat::Cifar10 => None,
        BinaryFormat::Cifar100 => Some(Vec::with_capacity(total_records)),
    };

    for name in files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        // The file may have changed since its size was taken; check again on what was read.
        if bytes.len() % record != 0 {
            return Err(DataError::PartialRecord {
                path,
                len: bytes.len() as u64,
                record,
            });
        }
        for (index, rec) in bytes.chunks_exact(record).enumerate() {
            let fine_at = format.label_bytes() - 1;
            let fine = rec[fine_at];
            check_label(&path, index, record, fine_at, fine, format.fine_classes())?;
            if let Some(coarse) = coarse_labels.as_mut() {
                check_label(&path, index, record, 0, rec[0], 20)?;
                coarse.push(rec[0]);
            }
            labels.push(fine);
            images.extend_from_slice(&rec[format.label_bytes()..]);
        }
    }

    let classes = read_class_names(dir, format)?;
    Ok(BinarySplit {
        images,
        labels,
        coarse_labels,
        classes,
    })
}

fn check_label(
    path: &Path,
    record: usize,
    record_bytes: usize,
    within: usize,
    label: u8,
    classes: usize,
) -> Result<(), DataError> {
    if usize::from(label) < classes {
        return Ok(());
    }
    Err(DataError::BadLabel {
        path: path.to_path_buf(),
        record,
        offset: (record * record_bytes + within) as u64,
        label,
        classes,
    })
}

/// Reads the class names shipped with the data, falling back to the published ones (CIFAR-10)
/// or to numbers (CIFAR-100) when the names file is absent: the names are for display only.
fn read_class_names(dir: &Path, format: BinaryFormat) -> Result<Vec<String>, DataError> {
    let (file, count) = match format {
        BinaryFormat::Cifar10 => ("batches.meta.txt", 10),
        BinaryFormat::Cifar100 => ("fine_label_names.txt", 100),
    };
    let path: PathBuf = dir.join(file);
    if !path.is_file() {
        return Ok(match format {
            BinaryFormat::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            BinaryFormat::Cifar100 => (0..count).map(|i| format!("class_{i}")).collect(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != count {
        return Err(DataError::BadFile {
            path,
            reason: format!("lists {} class names, expected {count}", names.len()),
        });
    }
    Ok(names)
}
