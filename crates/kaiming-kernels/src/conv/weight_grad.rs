//! `dW = dY · im2col(x)ᵀ` for a 2-D convolution, on contiguous f32 NCHW buffers.
//!
//! With `K = N·OH·OW` output positions and `J = C_in·KH·KW` weights per output channel, the
//! gradient is the `[C_out, J]` product of `dY` as `[C_out, K]` with the `[K, J]` im2col matrix
//! of `x`. `dY` is first permuted to `[C_out, N·OH·OW]`; the im2col matrix is built transposed
//! (`[J, K]`, so each row reads `x` along its rows) a few images at a time, and the GEMM
//! accumulates over those chunks.

use std::ops::Range;

use burn::backend::ops::ConvOptions;
use burn::tensor::Shape;
use rayon::prelude::*;

/// im2col floats built at once: 16 MiB, so the matrix stays in the last-level cache's reach
/// and memory stays flat whatever the batch.
const COLUMNS_BUDGET: usize = 1 << 22;

/// The sizes of a convolution, from its input, weight and output shapes.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    batch: usize,
    channels_in: usize,
    height: usize,
    width: usize,
    channels_out: usize,
    kernel: [usize; 2],
    out_height: usize,
    out_width: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    /// `x` is `[N, C_in, H, W]`, `weight` `[C_out, C_in, KH, KW]`, `output` `[N, C_out, OH, OW]`.
    pub fn new(x: &Shape, weight: &Shape, output: &Shape, options: &ConvOptions<2>) -> Self {
        Self {
            batch: x[0],
            channels_in: x[1],
            height: x[2],
            width: x[3],
            channels_out: weight[0],
            kernel: [weight[2], weight[3]],
            out_height: output[2],
            out_width: output[3],
            stride: options.stride,
            padding: options.padding_begin(),
            dilation: options.dilation,
        }
    }

    /// Output positions per image.
    fn out_positions(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Weights per output channel: the GEMM's `n`.
    fn weights_per_output(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }
}

/// The weight gradient `[C_out, C_in, KH, KW]`, flattened, given `x` and the output gradient.
pub(crate) fn compute(x: &[f32], output_grad: &[f32], g: &Geometry) -> Vec<f32> {
    let positions = g.out_positions();
    let total = g.batch * positions;
    let weights = g.weights_per_output();
    if total == 0 || weights == 0 || g.channels_out == 0 {
        return vec![0f32; g.channels_out * weights];
    }

    // dY as [C_out, N·OH·OW].
    let mut grad_by_channel = vec![0f32; g.channels_out * total];
    grad_by_channel
        .par_chunks_mut(total)
        .enumerate()
        .for_each(|(o, row)| {
            for (n, dst) in row.chunks_exact_mut(positions).enumerate() {
                let start = (n * g.channels_out + o) * positions;
                dst.copy_from_slice(&output_grad[start..start + positions]);
            }
        });

    // Each thread accumulates the gradient of its own share of the batch and the shares are
    // summed: with ResNet-20's 16–64 channels the product is too small in C_out and J for the
    // GEMM to spread over threads, while the batch dimension always is large.
    let threads = rayon::current_num_threads().clamp(1, g.batch);
    let shares: Vec<(usize, usize)> = (0..threads)
        .map(|t| (t * g.batch / threads, (t + 1) * g.batch / threads))
        .collect();
    let partials: Vec<Vec<f32>> = shares
        .into_par_iter()
        .map(|(first, end)| accumulate(x, &grad_by_channel, g, first..end))
        .collect();
    partials
        .into_iter()
        .reduce(|mut sum, partial| {
            sum.iter_mut().zip(&partial).for_each(|(s, p)| *s += p);
            sum
        })
        .unwrap_or_default()
}

/// The weight gradient of images `images`, a few at a time: im2col, then one GEMM each,
/// accumulating.
fn accumulate(x: &[f32], grad_by_channel: &[f32], g: &Geometry, images: Range<usize>) -> Vec<f32> {
    let positions = g.out_positions();
    let total = g.batch * positions;
    let weights = g.weights_per_output();
    let mut weight_grad = vec![0f32; g.channels_out * weights];
    let images_per_chunk = (COLUMNS_BUDGET / (positions * weights)).clamp(1, images.len().max(1));
    let mut columns = vec![0f32; weights * images_per_chunk * positions];
    for first in images.clone().step_by(images_per_chunk) {
        let count = images_per_chunk.min(images.end - first);
        let k = count * positions;
        let columns = &mut columns[..weights * k];
        im2col_transposed(x, g, first, count, columns);
        // SAFETY: `weight_grad` is `[C_out, J]` row-major (row stride J, column stride 1);
        // the left operand is rows `0..C_out` of `grad_by_channel` from column `first·OH·OW`,
        // `k` wide, within its row stride `total`; the right operand is `columns` read as the
        // `[k, J]` transpose of its `[J, k]` row-major layout (row stride 1, column stride k).
        // All three are live for the call and the destination does not alias the operands.
        unsafe {
            gemm::gemm(
                g.channels_out,
                weights,
                k,
                weight_grad.as_mut_ptr(),
                1,
                weights as isize,
                first > images.start,
                grad_by_channel.as_ptr().add(first * positions),
                1,
                total as isize,
                columns.as_ptr(),
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    weight_grad
}

/// Fills `columns` (`[C_in·KH·KW, images·OH·OW]`, row-major) with the input values each weight
/// meets at each output position of images `first..first + images`, zero in the padding.
fn im2col_transposed(x: &[f32], g: &Geometry, first: usize, images: usize, columns: &mut [f32]) {
    let positions = g.out_positions();
    let [kernel_h, kernel_w] = g.kernel;
    let plane = g.height * g.width;
    columns
        .par_chunks_mut(images * positions)
        .enumerate()
        .for_each(|(j, row)| {
            let (c, kh, kw) = (
                j / (kernel_h * kernel_w),
                (j / kernel_w) % kernel_h,
                j % kernel_w,
            );
            for (image, out) in row.chunks_exact_mut(positions).enumerate() {
                let source = &x[((first + image) * g.channels_in + c) * plane..][..plane];
                for (oh, out) in out.chunks_exact_mut(g.out_width).enumerate() {
                    let ih = (oh * g.stride[0] + kh * g.dilation[0]).checked_sub(g.padding[0]);
                    match ih.filter(|&ih| ih < g.height) {
                        Some(ih) => {
                            let source = &source[ih * g.width..][..g.width];
                            for (ow, value) in out.iter_mut().enumerate() {
                                let iw = (ow * g.stride[1] + kw * g.dilation[1])
                                    .checked_sub(g.padding[1]);
                                *value = match iw.filter(|&iw| iw < g.width) {
                                    Some(iw) => source[iw],
                                    None => 0.0,
                                };
                            }
                        }
                        None => out.fill(0.0),
                    }
                }
            }
        });
}
