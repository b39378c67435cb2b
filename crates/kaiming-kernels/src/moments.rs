//! Batch-norm statistics from the moments of rows: each row of contiguous values (one channel of
//! one image) gives its mean and its sum of squared deviations, and a channel's rows are
//! combined in image order.
//!
//! A row is small enough to stay in cache between its two passes, so the two-pass accuracy
//! (no `E[x²] − E[x]²` cancellation) costs one pass over memory. And a row can be summarised
//! the moment it is written: the convolution engine gathers the statistics of the batch norm
//! after it in its own output pass ([`ImageMoments`]), and the norm then never reads its input
//! for them. Both ways combine the same rows in the same order, so they give the same bits.

use std::sync::OnceLock;

/// Independent partial sums per row: enough to fill a vector register and hide FMA latency.
const LANES: usize = 16;

/// `Σ term(a[i], b[i])` in `LANES` f32 accumulators (`a` and `b` have the same length), added
/// in f64: the loop vectorises and each lane's rounding error stays that of a short sum.
#[inline(always)]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f64 {
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&a, &b)| term(a, b))
        .sum();
    let mut lanes = [0f32; LANES];
    for (a, b) in a_chunks.zip(b_chunks) {
        let (a, b): (&[f32; LANES], &[f32; LANES]) = (a.try_into().unwrap(), b.try_into().unwrap());
        for ((acc, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
            *acc += term(a, b);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(tail)
}

/// One row's mean and sum of squared deviations from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    mean: f64,
    squares: f64,
}

impl Moments {
    /// The moments of `row`, by two passes: the mean, then the squared deviations from it as
    /// rounded to f32, corrected for that rounding (`Σ(x − m)² = Σ(x − m')² − n(m − m')²`).
    pub fn of(row: &[f32]) -> Self {
        if row.is_empty() {
            return Self {
                mean: 0.0,
                squares: 0.0,
            };
        }
        let n = row.len() as f64;
        let mean = lane_sum(row, row, |x, _| x) / n;
        let rounded = mean as f32;
        let squares = lane_sum(row, row, |x, _| {
            let d = x - rounded;
            d * d
        });
        let offset = mean - f64::from(rounded);
        Self {
            mean,
            squares: (squares - n * offset * offset).max(0.0),
        }
    }
}

/// The mean and biased variance (burn's `batch_norm_train` statistics) of rows of `len` values
/// each, from their moments in order: `M = Σ Mᵢ + len·Σ(meanᵢ − mean)²` (Chan et al.). NaN for
/// no values at all, as the mean of nothing.
pub(crate) fn combine(rows: &[Moments], len: usize) -> (f32, f32) {
    if rows.is_empty() || len == 0 {
        return (f32::NAN, f32::NAN);
    }
    let count = rows.len() as f64;
    let mean = rows.iter().map(|m| m.mean).sum::<f64>() / count;
    let squares: f64 = rows
        .iter()
        .map(|m| {
            let d = m.mean - mean;
            m.squares + len as f64 * d * d
        })
        .sum();
    (mean as f32, (squares / (count * len as f64)) as f32)
}

/// The moments of every channel of every image of a convolution's output, recorded by whichever
/// thread writes the image, as it writes it.
#[derive(Debug)]
pub(crate) struct ImageMoments {
    channels: usize,
    positions: usize,
    images: Vec<OnceLock<Vec<Moments>>>,
}

impl ImageMoments {
    /// Room for `batch` images of `channels` rows of `positions` values.
    pub fn new(batch: usize, channels: usize, positions: usize) -> Self {
        Self {
            channels,
            positions,
            images: (0..batch).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Records image `index` from its output, `[channels, positions]`. Panics if the image was
    /// recorded before or has another size.
    pub fn record(&self, index: usize, output: &[f32]) {
        assert_eq!(
            output.len(),
            self.channels * self.positions,
            "image {index}'s output against its moments"
        );
        let moments = match self.positions {
            0 => vec![Moments::of(&[]); self.channels],
            positions => output.chunks_exact(positions).map(Moments::of).collect(),
        };
        assert!(
            self.images[index].set(moments).is_ok(),
            "image {index} recorded twice"
        );
    }

    /// Per-channel mean and biased variance over the batch. Panics if an image was not
    /// recorded.
    pub fn statistics(self) -> (Vec<f32>, Vec<f32>) {
        let images: Vec<Vec<Moments>> = self
            .images
            .into_iter()
            .enumerate()
            .map(|(index, image)| {
                image
                    .into_inner()
                    .unwrap_or_else(|| panic!("image {index}'s moments were not recorded"))
            })
            .collect();
        (0..self.channels)
            .map(|c| {
                let rows: Vec<Moments> = images.iter().map(|image| image[c]).collect();
                combine(&rows, self.positions)
            })
            .unzip()
    }
}

/// Checks of this module's internals against their definitions, compiled into the library and
/// run by the crate's test suite through [`crate::self_checks`].
pub(crate) mod checks {
    use super::*;

    /// The mean and biased variance of `values` in f64, by the definition.
    fn reference(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    pub fn combined_rows_give_the_statistics_of_all_values_far_from_zero_too() {
        // A mean 1000 standard deviations from zero: E[x²] − E[x]² in f32 would lose it all.
        let len = 37;
        let values: Vec<f32> = (0..5 * len)
            .map(|i| 1000.0 + ((i * 7919) % 101) as f32 / 101.0 - 0.5 + (i / len) as f32 * 0.1)
            .collect();
        let rows: Vec<Moments> = values.chunks(len).map(Moments::of).collect();
        let (mean, var) = combine(&rows, len);
        let (want_mean, want_var) = reference(&values);
        assert!((f64::from(mean) - want_mean).abs() <= 1e-7 * want_mean);
        assert!(
            (f64::from(var) - want_var).abs() <= 1e-4 * want_var,
            "{var} against {want_var}"
        );
    }

    pub fn recorded_images_give_the_rows_statistics_in_any_order() {
        let (batch, channels, positions) = (3, 2, 10);
        let values: Vec<f32> = (0..batch * channels * positions)
            .map(|i| ((i * 31) % 17) as f32 - 4.0 * (i % 3) as f32)
            .collect();
        let moments = ImageMoments::new(batch, channels, positions);
        for index in [2, 0, 1] {
            moments.record(
                index,
                &values[index * channels * positions..][..channels * positions],
            );
        }
        let (mean, var) = moments.statistics();
        for c in 0..channels {
            let channel: Vec<f32> = (0..batch)
                .flat_map(|n| &values[(n * channels + c) * positions..][..positions])
                .copied()
                .collect();
            let (want_mean, want_var) = reference(&channel);
            assert!((f64::from(mean[c]) - want_mean).abs() < 1e-6);
            assert!((f64::from(var[c]) - want_var).abs() < 1e-5 * want_var);
        }
    }

    pub fn a_missing_image_is_caught() {
        let moments = ImageMoments::new(2, 1, 4);
        moments.record(0, &[1.0, 2.0, 3.0, 4.0]);
        moments.statistics();
    }
}
