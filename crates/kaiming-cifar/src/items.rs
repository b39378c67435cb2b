//! `CifarDataset` as a burn-dataset `Dataset`, for code built on burn's `DataLoader` and its
//! transforms (`ShuffledDataset`, `PartialDataset`, …).
//!
//! The trainer does not go through it: [`crate::Loader`] builds whole batches straight from the
//! byte buffer, which is much faster than one item (and one allocation) per image.

use burn_dataset::{Dataset, DatasetError};

use crate::dataset::CifarDataset;
use crate::error::DataError;

/// One image and its label, as the `Dataset` trait hands them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarItem {
    /// `3 × 32 × 32` bytes: the red, green and blue planes, row by row.
    pub image: Vec<u8>,
    /// Class index (the fine label for CIFAR-100).
    pub label: usize,
}

impl Dataset<CifarItem> for CifarDataset {
    /// The item at `index`; an error (not a panic) past the end.
    fn get(&self, index: usize) -> Result<CifarItem, DatasetError> {
        let image = self.image(index).ok_or_else(|| {
            DatasetError::new(DataError::Config(format!(
                "index {index} is past the end of a dataset of {} images",
                self.len()
            )))
        })?;
        Ok(CifarItem {
            image: image.to_vec(),
            label: self.labels()[index] as usize,
        })
    }

    fn len(&self) -> usize {
        CifarDataset::len(self)
    }
}
