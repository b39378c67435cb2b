//! Batch-norm arithmetic on contiguous f32 buffers of shape `[batch, channels, spatial]`.
//!
//! Each channel's values are `batch` rows of `spatial` contiguous floats. Sums run within a row
//! in f32 across independent accumulators, and across rows in f64 (`crate::moments`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::moments::{Moments, combine, lane_sum};
use crate::unfilled;

/// Elements one rayon task handles at least, so small spatial sizes still split into tasks
/// big enough to be worth scheduling.
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// A `[batch, channels, ...]` tensor seen as `[batch, channels, spatial]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl Layout {
    /// The layout of a tensor with `dims` (`[batch, channels, rest...]`).
    pub fn of(dims: &[usize]) -> Self {
        Self {
            batch: dims[0],
            channels: dims[1],
            spatial: dims[2..].iter().product(),
        }
    }

    /// Values per channel: the count the statistics average over.
    fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// The rows of `data` that belong to channel `c`.
    fn rows<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let Self {
            channels, spatial, ..
        } = *self;
        (0..self.batch).map(move |n| {
            let start = (n * channels + c) * spatial;
            &data[start..start + spatial]
        })
    }

    /// Rows per rayon task when a pass walks every row of the tensor.
    fn rows_per_task(&self) -> usize {
        MIN_TASK_ELEMENTS.div_ceil(self.spatial.max(1))
    }
}

/// Per-channel mean and biased variance (burn's `batch_norm_train` statistics), from the
/// moments of each channel's rows (`crate::moments`).
pub(crate) fn statistics(x: &[f32], layout: Layout) -> (Vec<f32>, Vec<f32>) {
    (0..layout.channels)
        .into_par_iter()
        .map(|c| {
            let rows: Vec<Moments> = layout.rows(x, c).map(Moments::of).collect();
            combine(&rows, layout.spatial)
        })
        .unzip()
}

/// `1 / sqrt(variance + epsilon)` per channel, rounded once from f64.
pub(crate) fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
        .collect()
}

/// Batch norm as a per-channel affine map `y = x · scale + shift`, with an optional ReLU.
///
/// The forward and the backward build it from the same statistics with the same arithmetic,
/// so the backward recomputes the forward's ReLU mask exactly instead of storing it.
#[derive(Debug, Clone)]
pub(crate) struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl Affine {
    /// `scale = γ · inv_std`, `shift = β − mean · scale`.
    pub fn new(gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f32], relu: bool) -> Self {
        let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), a)| b - m * a)
            .collect();
        Self { scale, shift, relu }
    }

    /// The map of channel `c`.
    #[inline(always)]
    fn channel(&self, c: usize) -> ChannelMap {
        ChannelMap {
            scale: self.scale[c],
            shift: self.shift[c],
            relu: self.relu,
        }
    }

    /// The output for every element of `x`.
    pub fn apply(&self, x: &[f32], layout: Layout) -> Vec<f32> {
        // SAFETY: each row of `out` is zipped with a row of `x` of the same length.
        unsafe {
            map_rows(layout, x.len(), |row, out| {
                let map = self.channel(row % layout.channels);
                let x = &x[row * layout.spatial..][..layout.spatial];
                for (o, &x) in out.iter_mut().zip(x) {
                    o.write(map.output(x));
                }
            })
        }
    }
}

/// One channel's [`Affine`].
#[derive(Debug, Clone, Copy)]
struct ChannelMap {
    scale: f32,
    shift: f32,
    relu: bool,
}

impl ChannelMap {
    /// The normalised value of `x`, before the ReLU.
    #[inline(always)]
    fn pre_activation(self, x: f32) -> f32 {
        x * self.scale + self.shift
    }

    /// The output for `x`.
    #[inline(always)]
    fn output(self, x: f32) -> f32 {
        let y = self.pre_activation(x);
        if self.relu { y.max(0.0) } else { y }
    }

    /// The output gradient `grad` at `x`, passed back through the ReLU.
    #[inline(always)]
    fn through_relu(self, x: f32, grad: f32) -> f32 {
        if !self.relu || self.pre_activation(x) > 0.0 {
            grad
        } else {
            0.0
        }
    }
}

/// A vector of `len` values whose rows of `layout.spatial` are written by `fill(row, out)` in
/// parallel. Skips zero-filling the buffer first: that memset showed up in the profile.
///
/// # Safety
/// `fill` must write every element of the row it is given (write checks catch one that does
/// not, `crate::unfilled`).
unsafe fn map_rows(
    layout: Layout,
    len: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    assert_eq!(
        len,
        layout.batch * layout.channels * layout.spatial,
        "batch norm: values against their layout"
    );
    let mut out = unfilled::buffer(len);
    if layout.spatial > 0 {
        out.par_chunks_mut(layout.spatial)
            .enumerate()
            .with_min_len(layout.rows_per_task())
            .for_each(|(row, chunk)| fill(row, chunk));
    }
    // SAFETY: the rows cover `0..len` exactly (asserted above), and the caller vouches that
    // every `fill` writes each element of its row; with `spatial == 0`, `len` is 0.
    unsafe { unfilled::assume_init(out) }
}

/// Gradients of batch norm in training mode with respect to its input, `gamma` and `beta`.
pub(crate) struct Gradients {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// The backward pass of training-mode batch norm (and the ReLU after it, if `affine` has one),
/// given its input `x`, the output gradient `grad`, and the map the forward applied.
///
/// With `g` the gradient behind the ReLU, `x̂ = (x − mean)·inv_std` and `M` values per channel:
/// `∂β = Σ g`, `∂γ = Σ g·x̂`, `∂x = γ·inv_std·(g − ∂β/M − x̂·∂γ/M)`.
/// The last is affine in `g` and `x` per channel, so it takes one pass.
pub(crate) fn backward(
    x: &[f32],
    grad: &[f32],
    layout: Layout,
    affine: &Affine,
    gamma: &[f32],
    mean: &[f32],
    inv_std: &[f32],
) -> Gradients {
    let (beta_grad, gamma_grad): (Vec<f32>, Vec<f32>) = (0..layout.channels)
        .into_par_iter()
        .map(|c| {
            let (m, map) = (mean[c], affine.channel(c));
            let (mut sum_grad, mut sum_grad_centred) = (0f64, 0f64);
            for (x, g) in layout.rows(x, c).zip(layout.rows(grad, c)) {
                sum_grad += lane_sum(g, x, |g, x| map.through_relu(x, g));
                sum_grad_centred += lane_sum(g, x, |g, x| map.through_relu(x, g) * (x - m));
            }
            (
                sum_grad as f32,
                (sum_grad_centred * f64::from(inv_std[c])) as f32,
            )
        })
        .unzip();

    // ∂x = k·g + k_x·x + k_0 per channel.
    let count = layout.per_channel() as f32;
    let coefficients: Vec<[f32; 3]> = (0..layout.channels)
        .map(|c| {
            let k = gamma[c] * inv_std[c];
            let k_x = -k * inv_std[c] * gamma_grad[c] / count;
            let k_0 = -k * beta_grad[c] / count - k_x * mean[c];
            [k, k_x, k_0]
        })
        .collect();
    // SAFETY: each row of `out` is zipped with rows of `x` and `grad` of the same length.
    let x_grad = unsafe {
        map_rows(layout, x.len(), |row, out| {
            let c = row % layout.channels;
            let ([k, k_x, k_0], map) = (coefficients[c], affine.channel(c));
            let start = row * layout.spatial;
            let (x, g) = (
                &x[start..][..layout.spatial],
                &grad[start..][..layout.spatial],
            );
            for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
                o.write(k * map.through_relu(x, g) + k_x * x + k_0);
            }
        })
    };
    Gradients {
        x: x_grad,
        gamma: gamma_grad,
        beta: beta_grad,
    }
}
