//! `dx` of a convolution: per chunk of images, the columns' gradient `W^T[J, C_out] ·
//! dY[C_out, count·OH·OW]` as one GEMM, then col2im. Burn's flex backend instead runs a
//! transposed convolution whose inner loops are scalar (10 % of a ResNet-20 step).

use rayon::prelude::*;

use super::geometry::Geometry;
use super::im2col::{col2im, gradient_columns};
use super::matmul::{View, matmul, matmul_into};
use crate::scratch::{Scratch, prefix, with_scratch};
use crate::unfilled;

/// The gradient `[N, C_in, H, W]`, flattened, with respect to `x`, given `weight`
/// (`[C_out, C_in, KH, KW]`) and the output gradient (`[N, C_out, OH, OW]`), both contiguous.
pub(crate) fn input_grad(weight: &[f32], output_grad: &[f32], g: &Geometry) -> Vec<f32> {
    g.check_weight(weight);
    g.check_output(output_grad);
    let image_len = g.channels_in * g.in_positions();
    if g.is_empty() || image_len == 0 {
        return vec![0.0; g.batch * image_len];
    }
    let mut x_grad = unfilled::buffer(g.batch * image_len);
    let (size, gemm_threads) = g.chunking();
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
