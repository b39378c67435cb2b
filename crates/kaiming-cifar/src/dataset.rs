//! The in-memory dataset: every image of a split in one `u8` buffer.
//!
//! One contiguous buffer (150 MB for CIFAR-10's training set) keeps loading a single read per
//! file and lets the batch code crop and flip with plain index arithmetic, with no per-image
//! allocation or generic image type in the way.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::binary::{self, BinaryFormat};
use crate::error::DataError;
use crate::folder;
use crate::image::{IMAGE_BYTES, Split};

/// The on-disk layouts the crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The official CIFAR-10 or CIFAR-100 binary files.
    Binary(BinaryFormat),
    /// `train/<class>/*.png` and `test/<class>/*.png`, as burn-dataset caches it.
    ImageFolder,
}

impl Layout {
    /// Recognises the layout of `dir` from the files in it.
    ///
    /// A folder with only some of the binary files is an error naming the first missing file,
    /// not a smaller dataset: a half-copied dataset must not train silently.
    pub fn detect(dir: &Path) -> Result<Layout, DataError> {
        if !dir.is_dir() {
            return Err(DataError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            ));
        }
        for format in [BinaryFormat::Cifar10, BinaryFormat::Cifar100] {
            if format.required_files().iter().any(|f| dir.join(f).exists()) {
                binary::check_present(dir, format)?;
                return Ok(Layout::Binary(format));
            }
        }
        if folder::split_dir(dir, Split::Train).is_dir()
            || folder::split_dir(dir, Split::Test).is_dir()
        {
            return Ok(Layout::ImageFolder);
        }
        Err(DataError::UnknownLayout {
            path: dir.to_path_buf(),
        })
    }
}

/// One split of CIFAR-10 or CIFAR-100 held in memory.
///
/// Image `i` is `images()[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]`, three 32×32 planes (R, G, B).
#[derive(Clone, Debug)]
pub struct CifarDataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    coarse_labels: Option<Vec<u8>>,
    classes: Vec<String>,
}

impl CifarDataset {
    /// Reads one split of the dataset in `dir`, whatever its [`Layout`].
    pub fn load(dir: &Path, split: Split) -> Result<Self, DataError> {
        let layout = Layout::detect(dir)?;
        tracing::debug!(dir = %dir.display(), ?layout, ?split, "reading CIFAR");
        match layout {
            Layout::Binary(format) => {
                let read = binary::read_split(dir, format, split)?;
                Ok(CifarDataset {
                    images: read.images,
                    labels: read.labels,
                    coarse_labels: read.coarse_labels,
                    classes: read.classes,
                })
            }
            Layout::ImageFolder => {
                let read = folder::read_split(dir, split)?;
                Ok(CifarDataset {
                    images: read.images,
                    labels: read.labels,
                    coarse_labels: None,
                    classes: read.classes,
                })
            }
        }
    }

    /// Builds a dataset from planar pixels and labels already in memory (for synthetic data,
    /// benchmarks, or images from elsewhere), with the same checks as the file readers.
    pub fn from_parts(
        images: Vec<u8>,
        labels: Vec<u8>,
        classes: Vec<String>,
    ) -> Result<Self, DataError> {
        if images.len() != labels.len() * IMAGE_BYTES {
            return Err(DataError::Config(format!(
                "{} pixel bytes for {} labels; expected {} per image",
                images.len(),
                labels.len(),
                IMAGE_BYTES
            )));
        }
        if classes.is_empty() || classes.len() > 256 {
            return Err(DataError::Config(format!(
                "{} classes; expected 1 to 256",
                classes.len()
            )));
        }
        if let Some(bad) = labels.iter().position(|&l| usize::from(l) >= classes.len()) {
            return Err(DataError::Config(format!(
                "image {bad} has label {}, expected 0..{}",
                labels[bad],
                classes.len()
            )));
        }
        Ok(CifarDataset {
            images,
            labels,
            coarse_labels: None,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All pixels, image after image.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// The planar pixels of image `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        self.images
            .get(index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES)
    }

    /// The labels (fine labels for CIFAR-100).
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// CIFAR-100's coarse (superclass) labels; `None` for other data.
    pub fn coarse_labels(&self) -> Option<&[u8]> {
        self.coarse_labels.as_deref()
    }

    /// Class names in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Images per class, in label order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Keeps only the first `n` images (all of them if there are fewer), for quick runs.
    pub fn limit(self, n: usize) -> Self {
        let n = n.min(self.len());
        let mut out = self;
        out.images.truncate(n * IMAGE_BYTES);
        out.labels.truncate(n);
        if let Some(c) = out.coarse_labels.as_mut() {
            c.truncate(n);
        }
        out
    }

    /// Splits off `size` images for validation, as the ResNet paper does with 45k/5k on
    /// CIFAR-10's training set. Returns `(train, validation)`.
    ///
    /// The split is stratified, so each class gives the same share (500 per class for 5,000
    /// out of CIFAR-10's training set), and depends only on `seed`: the same seed always yields
    /// the same split, which a resumed or repeated run relies on. Both halves keep the original
    /// file order.
    pub fn split_validation(self, size: usize, seed: u64) -> Result<(Self, Self), DataError> {
        if size >= self.len() {
            return Err(DataError::Config(format!(
                "validation size {size} leaves no training images out of {}",
                self.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            per_class[usize::from(l)].push(i);
        }
        // Each class's quota is its share rounded down; the images still missing are then
        // taken one per class, largest remainder first, so the total is exactly `size`.
        let total = self.len();
        let mut quotas: Vec<(usize, usize, usize)> = per_class
            .iter()
            .enumerate()
            .map(|(c, idx)| (c, idx.len() * size / total, idx.len() * size % total))
            .collect();
        let assigned: usize = quotas.iter().map(|q| q.1).sum();
        quotas.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for q in quotas.iter_mut().take(size - assigned) {
            q.1 += 1;
        }
        let mut in_validation = vec![false; total];
        quotas.sort_by_key(|q| q.0);
        for ((_, quota, _), idx) in quotas.iter().zip(per_class.iter_mut()) {
            idx.shuffle(&mut rng);
            for &i in &idx[..*quota] {
                in_validation[i] = true;
            }
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..total).partition(|&i| in_validation[i]);
        Ok((self.select(&train), self.select(&val)))
    }

    fn select(&self, indices: &[usize]) -> Self {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        for &i in indices {
            images.extend_from_slice(&self.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
        }
        CifarDataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            coarse_labels: self
                .coarse_labels
                .as_ref()
                .map(|c| indices.iter().map(|&i| c[i]).collect()),
            classes: self.classes.clone(),
        }
    }
}
