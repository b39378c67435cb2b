//! Per-channel normalisation with the training set's statistics.

use crate::dataset::CifarDataset;
use crate::error::DataError;
use crate::image::{CHANNELS, IMAGE_BYTES, PLANE};

/// Per-channel mean and standard deviation on the [0, 1] pixel scale; a pixel `v` becomes
/// `(v / 255 - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Mean of red, green and blue.
    pub mean: [f32; CHANNELS],
    /// Population standard deviation of red, green and blue.
    pub std: [f32; CHANNELS],
}

impl Normalization {
    /// The values measured on CIFAR-10's 50,000 training images (and published widely); use
    /// them when the training set is not at hand, e.g. for inference.
    pub const CIFAR10_TRAIN: Normalization = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };

    /// Computes the per-channel mean and standard deviation over every pixel of `data`.
    ///
    /// Sums are exact integers (`u64`), so the result does not depend on the order of the
    /// images: the same training set always gives the same statistics.
    pub fn from_dataset(data: &CifarDataset) -> Result<Self, DataError> {
        if data.is_empty() {
            return Err(DataError::Config(
                "cannot compute normalisation of an empty dataset".to_string(),
            ));
        }
        let mut sum = [0u64; CHANNELS];
        let mut sum_sq = [0u64; CHANNELS];
        for image in data.images().chunks_exact(IMAGE_BYTES) {
            for (c, plane) in image.chunks_exact(PLANE).enumerate() {
                // A plane's sums fit in u32 (1024 × 255² < 2³²); widening once per plane keeps
                // the inner loop narrow enough to vectorise.
                let (s, s2) = plane.iter().fold((0u32, 0u32), |(s, s2), &v| {
                    let v = u32::from(v);
                    (s + v, s2 + v * v)
                });
                sum[c] += u64::from(s);
                sum_sq[c] += u64::from(s2);
            }
        }
        let n = (data.len() * PLANE) as f64;
        let mut out = Normalization {
            mean: [0.0; CHANNELS],
            std: [0.0; CHANNELS],
        };
        for c in 0..CHANNELS {
            let mean = sum[c] as f64 / n;
            let var = (sum_sq[c] as f64 / n - mean * mean).max(0.0);
            if var == 0.0 {
                return Err(DataError::Config(format!(
                    "channel {c} is constant; its standard deviation is 0"
                )));
            }
            out.mean[c] = (mean / 255.0) as f32;
            out.std[c] = (var.sqrt() / 255.0) as f32;
        }
        Ok(out)
    }

    /// The normalised value of every possible byte, per channel: turning normalisation into a
    /// table lookup makes it free next to the copy the batch needs anyway.
    pub fn lookup_tables(&self) -> [[f32; 256]; CHANNELS] {
        let mut tables = [[0.0; 256]; CHANNELS];
        for (c, table) in tables.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        tables
    }
}
