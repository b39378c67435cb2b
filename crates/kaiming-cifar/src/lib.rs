//! CIFAR-10 (and CIFAR-100) for burn: from the files on disk, or a verified download, to
//! augmented, normalised batches of burn tensors.
//!
//! - **Reading**: the official binary layouts of CIFAR-10 and CIFAR-100 ([`BinaryFormat`]) and
//!   the `train/<class>/*.png` folders burn-dataset caches ([`Layout::ImageFolder`]), each split
//!   held as one `u8` buffer ([`CifarDataset`]). Truncated files, bad labels and missing files
//!   are errors naming the file ([`DataError`]); nothing panics on bad input.
//! - **Finding**: [`locate_data_dir`] tries `--data-dir`, `CIFAR10_DIR`,
//!   `./datasets/cifar-10-batches-bin`, then burn-dataset's cache, and logs which it used;
//!   [`locate_or_download`] falls back to [`download`], which checks the archive's MD5 and
//!   unpacks it safely. [`verify`] compares the files with the official SHA-1 sums.
//! - **Batches**: a [`Loader`] shuffles, crops, flips and normalises with tight loops over the
//!   byte buffer; every epoch derives from `(seed, epoch)` alone, so runs repeat exactly and
//!   resume at any epoch boundary. [`Epoch::batch_into`] gives the CPU-side `f32` batch without
//!   tensors; [`Loader::epoch_on`] gives [`Batch`]es of tensors on a device.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use kaiming_cifar::{
//!     CifarDataset, DownloadConfig, Loader, LoaderConfig, Normalization, Split,
//!     locate_or_download,
//! };
//!
//! # fn main() -> Result<(), kaiming_cifar::DataError> {
//! let located = locate_or_download(None, Some(&DownloadConfig::default()))?;
//! // The ResNet paper's 45k/5k split; the statistics come from the 45k training images.
//! let (train, val) = CifarDataset::load(&located.dir, Split::Train)?.split_validation(5_000, 0)?;
//! let norm = Normalization::from_dataset(&train)?;
//! let train = Loader::new(train, norm, LoaderConfig::train(128, 42))?;
//! let val = Loader::new(val, norm, LoaderConfig::eval(500))?;
//!
//! let device = Device::flex();
//! for epoch in 0..2 {
//!     for batch in train.epoch_on(epoch, &device) {
//!         // batch.images: [128, 3, 32, 32], batch.labels: [128]
//!         let _ = (batch.images.dims(), batch.labels.dims());
//!     }
//! }
//! assert_eq!(val.batches_per_epoch(), 10);
//! # Ok(())
//! # }
//! ```

mod augment;
mod batch;
mod binary;
mod dataset;
mod download;
mod error;
mod folder;
mod image;
mod items;
mod locate;
mod normalize;
mod resident;
mod verify;

pub use augment::{AugmentConfig, Transform, transform_bytes};
pub use batch::{Batch, BatchPlan, Epoch, HostBatch, Loader, LoaderConfig};
pub use binary::{BinaryFormat, CIFAR10_CLASSES, CIFAR10_FILES, CIFAR100_FILES};
pub use dataset::{CifarDataset, Layout};
pub use download::{ARCHIVE_ROOT, DownloadConfig, OFFICIAL_MD5, OFFICIAL_URL, URL_ENV, download};
pub use error::DataError;
pub use image::{CHANNELS, IMAGE_BYTES, PLANE, SIDE, Split};
pub use items::CifarItem;
pub use locate::{
    DIR_ENV, LOCAL_DIR, Located, SearchPaths, Source, locate_data_dir, locate_or_download,
};
pub use normalize::Normalization;
pub use resident::{DeviceEpoch, DeviceLoader, SHARD_IMAGES};
pub use verify::{CIFAR10_SHA1, sha1_hex, verify};
