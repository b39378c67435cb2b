//! Between images and the column matrices of the GEMMs.
//!
//! The columns of a chunk of `count` images are `[C_in·KH·KW, count·OH·OW]`, row-major: row
//! `j = (c, kh, kw)` holds, for every output position of every image, the input value that
//! weight `j` meets there (zero in the padding). Rows read the input along its rows, so both
//! directions are copies (or adds) of contiguous runs wherever the stride is 1. Both run on
//! the calling thread: the callers spread chunks of the batch over the threads.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::geometry::Geometry;
use super::matmul::View;
use crate::scratch::prefix;
use crate::unfilled;

/// The output indices `o` in `0..outputs` whose input index `o·stride + offset` lies in
/// `0..inputs`.
fn valid(outputs: usize, inputs: usize, stride: usize, offset: isize) -> Range<usize> {
    let stride = stride as isize;
    // First o with o·stride + offset ≥ 0, and one past the last with it < inputs.
    let first = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    let end = (inputs as isize - offset + stride - 1).div_euclid(stride);
    let end = end.clamp(0, outputs as isize) as usize;
    (first as usize).min(end)..end
}

/// Which output columns of a row read inside the image at kernel column `kw`, and the offset
/// from an output column to the input column it reads.
struct Tap {
    columns: Range<usize>,
    column_offset: isize,
}

impl Tap {
    fn new(g: &Geometry, kw: usize) -> Self {
        let column_offset = (kw * g.dilation[1]) as isize - g.padding[1] as isize;
        Self {
            columns: valid(g.out_width, g.width, g.stride[1], column_offset),
            column_offset,
        }
    }

    fn input_column(&self, ow: usize, stride: usize) -> usize {
        (ow as isize * stride as isize + self.column_offset) as usize
    }
}

/// The input row that output row `oh` reads at kernel row `kh`, if inside the image.
fn input_row(g: &Geometry, oh: usize, kh: usize) -> Option<usize> {
    (oh * g.stride[0] + kh * g.dilation[0])
        .checked_sub(g.padding[0])
        .filter(|&ih| ih < g.height)
}

/// Fills `columns` (`[C_in·KH·KW, images.len()·OH·OW]`) from `x` (`[N, C_in, H, W]`).
pub(crate) fn im2col(x: &[f32], g: &Geometry, images: Range<usize>, columns: &mut [f32]) {
    let positions = g.out_positions();
    let [kernel_h, kernel_w] = g.kernel;
    let plane = g.in_positions();
    let stride = g.stride[1];
    columns
        .chunks_exact_mut(images.len() * positions)
        .enumerate()
        .for_each(|(j, row)| {
            let (c, kh, kw) = (
                j / (kernel_h * kernel_w),
                (j / kernel_w) % kernel_h,
                j % kernel_w,
            );
            let tap = Tap::new(g, kw);
            for (image, out) in images.clone().zip(row.chunks_exact_mut(positions)) {
                let source = &x[(image * g.channels_in + c) * plane..][..plane];
                for (oh, out) in out.chunks_exact_mut(g.out_width).enumerate() {
                    let Some(ih) = input_row(g, oh, kh) else {
                        out.fill(0.0);
                        continue;
                    };
                    let source = &source[ih * g.width..][..g.width];
                    let inside = tap.columns.clone();
                    if inside.is_empty() {
                        out.fill(0.0);
                        continue;
                    }
                    out[..inside.start].fill(0.0);
                    out[inside.end..].fill(0.0);
                    let first = tap.input_column(inside.start, stride);
                    let out = &mut out[inside.clone()];
                    match stride {
                        1 => out.copy_from_slice(&source[first..first + out.len()]),
                        _ => out
                            .iter_mut()
                            .zip(source[first..].iter().step_by(stride))
                            .for_each(|(value, source)| *value = *source),
                    }
                }
            }
        });
}

/// Writes into `x_grad` (`[images, C_in, H, W]`, the chunk's own images) the sum, over every
/// weight, of what `columns` (`[C_in·KH·KW, images·OH·OW]`, the columns' gradient) sends back
/// to each input position. Every element of `x_grad` is written.
pub(crate) fn col2im(
    columns: &[f32],
    g: &Geometry,
    images: usize,
    x_grad: &mut [MaybeUninit<f32>],
) {
    let positions = g.out_positions();
    let taps = g.kernel[0] * g.kernel[1];
    let plane = g.in_positions();
    let row_len = images * positions;
    let stride = g.stride[1];
    x_grad
        .chunks_exact_mut(plane)
        .enumerate()
        .for_each(|(index, plane_grad)| {
            let (image, c) = (index / g.channels_in, index % g.channels_in);
            let plane_grad = unfilled::zeroed(plane_grad);
            for kh in 0..g.kernel[0] {
                for kw in 0..g.kernel[1] {
                    let j = c * taps + kh * g.kernel[1] + kw;
                    let row = &columns[j * row_len + image * positions..][..positions];
                    let tap = Tap::new(g, kw);
                    let inside = tap.columns.clone();
                    if inside.is_empty() {
                        continue;
                    }
                    let first = tap.input_column(inside.start, stride);
                    for (oh, row) in row.chunks_exact(g.out_width).enumerate() {
                        let Some(ih) = input_row(g, oh, kh) else {
                            continue;
                        };
                        let target = &mut plane_grad[ih * g.width + first..];
                        let row = &row[inside.clone()];
                        match stride {
                            1 => target
                                .iter_mut()
                                .zip(row)
                                .for_each(|(target, value)| *target += value),
                            _ => target
                                .iter_mut()
                                .step_by(stride)
                                .zip(row)
                                .for_each(|(target, value)| *target += value),
                        }
                    }
                }
            }
        });
}

/// The columns of images `first..first + count` of `x` as a `[C_in·KH·KW, count·OH·OW]` view:
/// the image itself for one image of a pointwise convolution, else built into `columns`.
pub(crate) fn input_columns<'a>(
    x: &'a [f32],
    g: &Geometry,
    first: usize,
    count: usize,
    columns: &'a mut Vec<f32>,
) -> View<'a> {
    let (weights, k) = (g.weights_per_output(), count * g.out_positions());
    let image_len = g.channels_in * g.in_positions();
    if g.is_pointwise() && count == 1 {
        return View::rows(&x[first * image_len..][..image_len], weights, k, k);
    }
    let columns = prefix(columns, weights * k);
    im2col(x, g, first..first + count, columns);
    View::rows(columns, weights, k, k)
}

/// `[count·positions]` columns of `output_grad` (`[N, C_out, positions]`) for images
/// `first..first + count`, as a `[C_out, count·positions]` view: the images themselves for one
/// image, else gathered into `gathered`.
pub(crate) fn gradient_columns<'a>(
    output_grad: &'a [f32],
    g: &Geometry,
    first: usize,
    count: usize,
    gathered: &'a mut Vec<f32>,
) -> View<'a> {
    let positions = g.out_positions();
    let per_image = g.channels_out * positions;
    let k = count * positions;
    if count == 1 {
        return View::rows(
            &output_grad[first * per_image..][..per_image],
            g.channels_out,
            k,
            k,
        );
    }
    let gathered = prefix(gathered, g.channels_out * k);
    for (o, row) in gathered.chunks_exact_mut(k).enumerate() {
        for (image, row) in row.chunks_exact_mut(positions).enumerate() {
            row.copy_from_slice(
                &output_grad[((first + image) * g.channels_out + o) * positions..][..positions],
            );
        }
    }
    View::rows(gathered, g.channels_out, k, k)
}

/// Checks of this module's internals against their definitions, compiled into the library and
/// run by the crate's test suite through [`crate::self_checks`].
pub(crate) mod checks {
    use super::valid;

    pub fn valid_ranges_match_a_scan() {
        for outputs in 0..7 {
            for inputs in 0..7 {
                for stride in 1..4 {
                    for offset in -4isize..4 {
                        let scan: Vec<usize> = (0..outputs)
                            .filter(|&o| {
                                (0..inputs as isize)
                                    .contains(&(o as isize * stride as isize + offset))
                            })
                            .collect();
                        let range: Vec<usize> = valid(outputs, inputs, stride, offset).collect();
                        assert_eq!(range, scan, "{outputs} {inputs} {stride} {offset}");
                    }
                }
            }
        }
    }
}
