//! `dx` of a convolution: per chunk of images, the columns' gradient `W^T[J, C_out] ·
//! dY[C_out, count·OH·OW]` as one GEMM, then col2im. Burn's flex backend instead runs a
//! transposed convolution whose inner loops are scalar (10 % of a ResNet-20 step).

use rayon::prelude::*;

use super::geometry::Geometry;
use super::im2col::col2im;
use super::matmul::{Threads, View, matmul, matmul_into};
use crate::scratch::{Scratch, prefix, with_scratch};
use crate::unfilled;

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

/// The gradient `[N, C_in, H, W]`, flattened, with respect to `x`, given `weight`
/// (`[C_out, C_in, KH, KW]`) and the output gradient (`[N, C_out, OH, OW]`), both contiguous.
pub(crate) fn input_grad(weight: &[f32], output_grad: &[f32], g: &Geometry) -> Vec<f32> {
    let image_len = g.channels_in * g.in_positions();
    if g.is_empty() || image_len == 0 {
        return vec![0.0; g.batch * image_len];
    }
    let mut x_grad = unfilled::buffer(g.batch * image_len);
    let threads = rayon::current_num_threads();
    let size = g.images_per_chunk(threads);
    let gemm_threads = match g.batch.div_ceil(size) < threads {
        true => Threads::All,
        false => Threads::Caller,
    };
    let weights = g.weights_per_output();
    let w_t = View::rows(weight, g.channels_out, weights, weights).t();
    let positions = g.out_positions();

    x_grad
        .par_chunks_mut(size * image_len)
        .enumerate()
        .for_each(|(index, x_grad)| {
            let first = index * size;
            let count = x_grad.len() / image_len;
            let k = count * positions;
            with_scratch(|scratch| {
                let Scratch {
                    columns, gathered, ..
                } = scratch;
                let dy = gradient_columns(output_grad, g, first, count, gathered);
                if g.is_pointwise() && count == 1 {
                    matmul_into(x_grad, positions, w_t, dy, gemm_threads);
                    return;
                }
                let columns = prefix(columns, weights * k);
                matmul(columns, k, w_t, dy, false, gemm_threads);
                col2im(columns, g, count, x_grad);
            })
        });
    // SAFETY: every chunk wrote all of its images, by GEMM or by col2im.
    unsafe { unfilled::assume_init(x_grad) }
}
