//! Batches assembled on the compute device, for GPUs.
//!
//! A GPU trains a CIFAR ResNet faster than one CPU core can crop, flip and normalise images for
//! it, and copying every batch as `f32` costs four times the bytes of the images themselves.
//! [`DeviceLoader`] uploads the dataset once, as bytes, and builds each batch there with a few
//! batched tensor ops. The host only draws which images and which crops and flips — the same
//! draws as [`Loader`]'s — and sends those few integers per batch, so both paths give the same
//! images for the same seed.
//!
//! WGSL, wgpu's shading language, has no 8-bit type, so the bytes travel packed four to a
//! 32-bit word and are unpacked on the device. Normalisation is the host path's lookup table,
//! applied by a gather, so the two paths agree to the bit. The images are held in shards of
//! [`SHARD_IMAGES`] (50 MB): wgpu caps a buffer a kernel can bind at 128 MiB by default, and
//! the 50,000 training images are 154 MB.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::augment::Transform;
use crate::batch::{Batch, BatchPlan, Epoch, Loader};
use crate::image::{CHANNELS, IMAGE_BYTES, SIDE};

/// 32-bit words per image.
const IMAGE_WORDS: usize = IMAGE_BYTES / 4;

/// Images per device buffer: 16,384 × 3,072 bytes = 50 MB, well below wgpu's binding limit.
pub const SHARD_IMAGES: usize = 16_384;

/// A [`Loader`] whose images live on a device; batches come out as tensors on that device.
#[derive(Clone, Debug)]
pub struct DeviceLoader {
    host: Loader,
    device: Device,
    /// `[≤ shard_images, IMAGE_WORDS]` each: the images' bytes, four per word, little-endian.
    shards: Vec<Tensor<2, Int>>,
    /// Images per shard (all but the last are full).
    shard_images: usize,
    /// `[N]` labels.
    labels: Tensor<1, Int>,
    /// `[CHANNELS · 256]`: the normalised value of every byte in every channel.
    table: Tensor<1>,
}

impl DeviceLoader {
    /// Uploads the images, labels and normalisation table of `host` to `device`.
    pub fn new(host: Loader, device: &Device) -> Self {
        Self::with_shards(host, device, SHARD_IMAGES)
    }

    /// As [`new`](Self::new), holding at most `shard_images` images per device buffer.
    pub fn with_shards(host: Loader, device: &Device, shard_images: usize) -> Self {
        let shard_images = shard_images.max(1);
        let data = host.dataset();
        let n = data.len();
        // Bytes as i32 bit patterns: every backend has 32-bit integers, WGSL has nothing smaller.
        let shards = data
            .images()
            .chunks(shard_images * IMAGE_BYTES)
            .map(|bytes| {
                let words: Vec<i32> = bytes
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let rows = words.len() / IMAGE_WORDS;
                Tensor::from_data(TensorData::new(words, [rows, IMAGE_WORDS]), device)
            })
            .collect();
        let labels: Vec<i32> = data.labels().iter().map(|&l| i32::from(l)).collect();
        let table: Vec<f32> = host
            .normalization()
            .lookup_tables()
            .iter()
            .flatten()
            .copied()
            .collect();
        DeviceLoader {
            shards,
            shard_images,
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
            table: Tensor::from_data(TensorData::new(table, [CHANNELS * 256]), device),
            device: device.clone(),
            host,
        }
    }

    /// The host loader that draws orders and transforms.
    pub fn host(&self) -> &Loader {
        &self.host
    }

    /// The device the batches are built on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Batches in every epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.host.batches_per_epoch()
    }

    /// The batches of `epoch`, in the host loader's order.
    pub fn epoch(&self, epoch: u64) -> DeviceEpoch<'_> {
        DeviceEpoch {
            loader: self,
            plans: self.host.epoch(epoch),
        }
    }

    /// Builds the batch of `plan` on the device.
    pub fn batch(&self, plan: &BatchPlan) -> Batch {
        let b = plan.indices.len();
        let int = |values: Vec<i32>, len: usize| {
            Tensor::<1, Int>::from_data(TensorData::new(values, [len]), &self.device)
        };
        let indices = int(plan.indices.iter().map(|&i| i as i32).collect(), b);

        // Unpack: byte k of a word is (word >> 8k) & 0xff.
        let shape = [b, IMAGE_WORDS, 4];
        let words = self
            .gather_words(&plan.indices)
            .reshape([b, IMAGE_WORDS, 1])
            .expand(shape);
        let shifts = int(vec![0, 8, 16, 24], 4).reshape([1, 1, 4]).expand(shape);
        let bytes = words
            .bitwise_right_shift(shifts)
            .bitwise_and_scalar(0xff)
            .reshape([b, CHANNELS, SIDE, SIDE]);

        let bytes = crop_and_flip(bytes, &plan.transforms, &self.device);

        // Normalise through the host path's table: entry c · 256 + byte.
        let channel_base = int((0..CHANNELS as i32).map(|c| c * 256).collect(), CHANNELS)
            .reshape([1, CHANNELS, 1, 1])
            .expand([b, CHANNELS, SIDE, SIDE]);
        let entries = (bytes + channel_base).reshape([b * IMAGE_BYTES]);
        let images = self
            .table
            .clone()
            .select(0, entries)
            .reshape([b, CHANNELS, SIDE, SIDE]);
        Batch {
            images,
            labels: self.labels.clone().select(0, indices),
        }
    }
}

impl DeviceLoader {
    /// The packed images `indices` (`[B, IMAGE_WORDS]`, in order), taken from their shards.
    fn gather_words(&self, indices: &[u32]) -> Tensor<2, Int> {
        let int = |values: Vec<i32>| {
            let len = values.len();
            Tensor::<1, Int>::from_data(TensorData::new(values, [len]), &self.device)
        };
        if let [shard] = self.shards.as_slice() {
            return shard
                .clone()
                .select(0, int(indices.iter().map(|&i| i as i32).collect()));
        }
        // Per shard, the images it holds; then the inverse permutation restores the batch order.
        let mut grouped = Vec::new();
        let mut position = vec![0; indices.len()];
        let mut next = 0;
        for (s, shard) in self.shards.iter().enumerate() {
            let mut local = Vec::new();
            for (slot, &i) in indices.iter().enumerate() {
                if i as usize / self.shard_images == s {
                    local.push((i as usize % self.shard_images) as i32);
                    position[slot] = next;
                    next += 1;
                }
            }
            if !local.is_empty() {
                grouped.push(shard.clone().select(0, int(local)));
            }
        }
        Tensor::cat(grouped, 0).select(0, int(position))
    }
}

/// Applies each image's crop and flip to `bytes` (`[B, C, H, W]`) by two gathers: output pixel
/// `(y, x)` takes source row `y + dy` and source column `x + dx` (`31 - x + dx` when flipped),
/// and is zero — black, as the host path pads — where that falls outside the image.
fn crop_and_flip(
    bytes: Tensor<4, Int>,
    transforms: &[Transform],
    device: &Device,
) -> Tensor<4, Int> {
    if transforms.iter().all(|t| *t == Transform::IDENTITY) {
        return bytes;
    }
    let b = transforms.len();
    let side = SIDE as i32;
    let mut rows = Vec::with_capacity(b * SIDE);
    let mut cols = Vec::with_capacity(b * SIDE);
    let mut row_inside = Vec::with_capacity(b * SIDE);
    let mut col_inside = Vec::with_capacity(b * SIDE);
    for t in transforms {
        for i in 0..side {
            let row = i + t.dy;
            let col = if t.flip { side - 1 - i } else { i } + t.dx;
            rows.push(row.clamp(0, side - 1));
            cols.push(col.clamp(0, side - 1));
            row_inside.push(i32::from((0..side).contains(&row)));
            col_inside.push(i32::from((0..side).contains(&col)));
        }
    }
    let full = [b, CHANNELS, SIDE, SIDE];
    let tensor = |values: Vec<i32>, shape: [usize; 4]| {
        Tensor::<4, Int>::from_data(TensorData::new(values, shape), device)
    };
    let rows = tensor(rows, [b, 1, SIDE, 1]).expand(full);
    let cols = tensor(cols, [b, 1, 1, SIDE]).expand(full);
    let inside = tensor(row_inside, [b, 1, SIDE, 1]).expand(full)
        * tensor(col_inside, [b, 1, 1, SIDE]).expand(full);
    bytes.gather(2, rows).gather(3, cols) * inside
}

/// The batches of one epoch, built on the device.
#[derive(Clone, Debug)]
pub struct DeviceEpoch<'a> {
    loader: &'a DeviceLoader,
    plans: Epoch<'a>,
}

impl DeviceEpoch<'_> {
    /// Batch `index` of this epoch, or `None` past the last.
    pub fn batch(&self, index: usize) -> Option<Batch> {
        self.plans.plan(index).map(|plan| self.loader.batch(&plan))
    }
}
