//! Seeded, resumable batching: shuffle, augment, normalise, and hand over burn tensors.
//!
//! Every random choice of an epoch derives from `(seed, epoch)` alone — the order from one
//! ChaCha8 stream, each batch's crops and flips from another keyed by the batch index — so a
//! run resumed at an epoch boundary sees exactly the batches an uninterrupted run would, and any
//! batch can be rebuilt on its own (in a test, a benchmark, or a second thread).

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::augment::{AugmentConfig, Transform, transform_mapped};
use crate::dataset::CifarDataset;
use crate::error::DataError;
use crate::image::{CHANNELS, IMAGE_BYTES, SIDE};
use crate::normalize::Normalization;

/// How a [`Loader`] cuts an epoch into batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (the last batch of an epoch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Whether each epoch visits the images in a new seeded order.
    pub shuffle: bool,
    /// Crop and flip for training; `None` for evaluation.
    pub augment: Option<AugmentConfig>,
    /// Whether to skip a last, smaller batch (avoids a tiny batch in BatchNorm statistics).
    pub drop_last: bool,
    /// The seed every epoch's order and augmentation derive from.
    pub seed: u64,
}

impl LoaderConfig {
    /// Training: shuffled, augmented as in the ResNet paper, every image used.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            augment: Some(AugmentConfig::default()),
            drop_last: false,
            seed,
        }
    }

    /// Evaluation: file order, no augmentation.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: None,
            drop_last: false,
            seed: 0,
        }
    }
}

/// One batch on the CPU: normalised `f32` pixels in `[B, 3, 32, 32]` order and `i64` labels,
/// plus what was done to each image (for tests and debugging).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostBatch {
    /// `B × 3 × 32 × 32` normalised pixels.
    pub images: Vec<f32>,
    /// `B` labels.
    pub labels: Vec<i64>,
    /// The dataset index of each image.
    pub indices: Vec<u32>,
    /// The crop and flip applied to each image ([`Transform::IDENTITY`] without augmentation).
    pub transforms: Vec<Transform>,
}

impl HostBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Moves the batch onto `device` as burn tensors.
    pub fn into_batch(self, device: &Device) -> Batch {
        let n = self.len();
        let images = TensorData::new(self.images, [n, CHANNELS, SIDE, SIDE]);
        let labels = TensorData::new(self.labels, [n]);
        Batch {
            images: Tensor::from_data(images, device),
            labels: Tensor::from_data(labels, device),
        }
    }
}

/// One batch as burn tensors.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[B, 3, 32, 32]` normalised images.
    pub images: Tensor<4>,
    /// `[B]` class labels.
    pub labels: Tensor<1, Int>,
}

/// Turns a dataset into epochs of batches.
#[derive(Clone, Debug)]
pub struct Loader {
    data: CifarDataset,
    config: LoaderConfig,
    normalization: Normalization,
    tables: Box<[[f32; 256]; CHANNELS]>,
}

/// What one batch is made of, before any pixel is touched: which images, and the crop and flip
/// of each. The host path and the device path ([`DeviceLoader`](crate::DeviceLoader)) build
/// their pixels from the same plan, so they give the same images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchPlan {
    /// The dataset index of each image.
    pub indices: Vec<u32>,
    /// The crop and flip of each image ([`Transform::IDENTITY`] without augmentation).
    pub transforms: Vec<Transform>,
}

impl Loader {
    /// Prepares batching of `data`, normalised with `normalization`.
    pub fn new(
        data: CifarDataset,
        normalization: Normalization,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Config(
                "batch size must be at least 1".to_string(),
            ));
        }
        if data.len() > u32::MAX as usize {
            return Err(DataError::Config(format!(
                "{} images is too many",
                data.len()
            )));
        }
        if let Some(augment) = config.augment {
            augment.validate()?;
        }
        if normalization
            .std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(DataError::Config(format!(
                "normalisation std {:?} must be positive",
                normalization.std
            )));
        }
        Ok(Loader {
            data,
            config,
            normalization,
            tables: Box::new(normalization.lookup_tables()),
        })
    }

    /// The images being batched.
    pub fn dataset(&self) -> &CifarDataset {
        &self.data
    }

    /// The normalisation applied to every pixel.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// The batching settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Batches in every epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.data.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The order in which `epoch` visits the images: a permutation drawn from `(seed, epoch)`,
    /// or the file order without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.data.len() as u32).collect();
        if self.config.shuffle {
            order.shuffle(&mut self.rng(epoch, 0));
        }
        order
    }

    /// The batches of `epoch`, in order, on the CPU.
    pub fn epoch(&self, epoch: u64) -> Epoch<'_> {
        Epoch {
            loader: self,
            epoch,
            order: self.order(epoch),
            next: 0,
        }
    }

    /// The batches of `epoch` as tensors on `device`.
    pub fn epoch_on<'a>(
        &'a self,
        epoch: u64,
        device: &'a Device,
    ) -> impl ExactSizeIterator<Item = Batch> + 'a {
        self.epoch(epoch).map(move |b| b.into_batch(device))
    }

    /// A ChaCha8 generator keyed by the seed, the epoch and a stream number (0 for the order,
    /// `1 + batch` for a batch's augmentation). Distinct keys give independent streams.
    fn rng(&self, epoch: u64, stream: u64) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.config.seed.to_le_bytes());
        key[8..16].copy_from_slice(&epoch.to_le_bytes());
        key[16..24].copy_from_slice(&stream.to_le_bytes());
        key[24..].copy_from_slice(b"cifarbat");
        ChaCha8Rng::from_seed(key)
    }

    /// The images of batch `index` of an epoch whose order is `order`, with their transforms
    /// drawn from the batch's own stream; `out` is overwritten, reusing its buffers.
    fn plan_into(&self, epoch: u64, order: &[u32], index: usize, out: &mut BatchPlan) {
        let start = index * self.config.batch_size;
        let end = (start + self.config.batch_size).min(order.len());
        let members = &order[start..end];
        let mut rng = self.rng(epoch, 1 + index as u64);
        out.indices.clear();
        out.indices.extend_from_slice(members);
        out.transforms.clear();
        out.transforms
            .extend(members.iter().map(|_| match self.config.augment {
                Some(augment) => augment.sample(&mut rng),
                None => Transform::IDENTITY,
            }));
    }

    /// Writes batch `index` of an epoch whose order is `order` into `out`, reusing its buffers.
    fn fill(&self, epoch: u64, order: &[u32], index: usize, out: &mut HostBatch) {
        let mut plan = BatchPlan {
            indices: std::mem::take(&mut out.indices),
            transforms: std::mem::take(&mut out.transforms),
        };
        self.plan_into(epoch, order, index, &mut plan);
        out.indices = plan.indices;
        out.transforms = plan.transforms;
        out.labels.clear();
        out.labels.extend(
            out.indices
                .iter()
                .map(|&i| i64::from(self.data.labels()[i as usize])),
        );
        out.images.resize(out.indices.len() * IMAGE_BYTES, 0.0);

        let images = self.data.images();
        for ((&i, &t), dst) in out
            .indices
            .iter()
            .zip(&out.transforms)
            .zip(out.images.chunks_exact_mut(IMAGE_BYTES))
        {
            let i = i as usize;
            transform_mapped(
                &images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES],
                t,
                dst,
                &self.tables,
            );
        }
    }
}

/// The batches of one epoch on the CPU, in order; also gives random access to any batch.
#[derive(Clone, Debug)]
pub struct Epoch<'a> {
    loader: &'a Loader,
    epoch: u64,
    order: Vec<u32>,
    next: usize,
}

impl Epoch<'_> {
    /// Batch `index` of this epoch, or `None` past the last.
    pub fn batch(&self, index: usize) -> Option<HostBatch> {
        let mut out = HostBatch::default();
        self.batch_into(index, &mut out).then_some(out)
    }

    /// The images and transforms of batch `index`, or `None` past the last.
    pub fn plan(&self, index: usize) -> Option<BatchPlan> {
        if index >= self.loader.batches_per_epoch() {
            return None;
        }
        let mut plan = BatchPlan::default();
        self.loader
            .plan_into(self.epoch, &self.order, index, &mut plan);
        Some(plan)
    }

    /// Writes batch `index` into `out`, reusing its allocations (what the benchmark measures);
    /// returns `false`, leaving `out` alone, past the last batch.
    pub fn batch_into(&self, index: usize, out: &mut HostBatch) -> bool {
        if index >= self.loader.batches_per_epoch() {
            return false;
        }
        self.loader.fill(self.epoch, &self.order, index, out);
        true
    }
}

impl Iterator for Epoch<'_> {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        let batch = self.batch(self.next)?;
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.batches_per_epoch().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch<'_> {}
