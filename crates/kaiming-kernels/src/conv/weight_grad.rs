//! `dW = dY · columnsᵀ`: `[C_out, J] = [C_out, N·OH·OW] · [N·OH·OW, J]`, as in PyTorch, with
//! both output dimensions large. Burn computes it as another convolution with batch and
//! channels swapped, whose per-channel GEMMs are 9 columns wide for a 3×3 kernel — the edge
//! case of the GEMM's micro-kernels (45 % of a ResNet-18 step on flex).

use rayon::prelude::*;

use super::geometry::Geometry;
use super::im2col::im2col;
use super::input_grad::gradient_columns;
use super::matmul::{Threads, View, matmul};
use crate::scratch::{Scratch, prefix, with_scratch};

/// The weight gradient `[C_out, C_in, KH, KW]`, flattened, given `x` (`[N, C_in, H, W]`) and
/// the output gradient (`[N, C_out, OH, OW]`), both contiguous.
///
/// Each thread accumulates the gradient of a fixed share of the batch and the shares are
/// summed in order, so the result does not depend on scheduling: the same inputs and thread
/// count give the same bits.
pub(crate) fn weight_grad(x: &[f32], output_grad: &[f32], g: &Geometry) -> Vec<f32> {
    let weights = g.weights_per_output();
    if g.is_empty() {
        return vec![0.0; g.channels_out * weights];
    }
    let threads = rayon::current_num_threads();
    let shares = threads.clamp(1, g.batch);
    let gemm_threads = match shares < threads {
        true => Threads::All,
        false => Threads::Caller,
    };
    let size = g.images_per_chunk(threads);
    let positions = g.out_positions();
    let image_len = g.channels_in * g.in_positions();

    let partials: Vec<Vec<f32>> = (0..shares)
        .into_par_iter()
        .map(|share| {
            let images = share * g.batch / shares..(share + 1) * g.batch / shares;
            let mut weight_grad = vec![0f32; g.channels_out * weights];
            with_scratch(|scratch| {
                let Scratch {
                    columns, gathered, ..
                } = scratch;
                for first in images.clone().step_by(size) {
                    let count = size.min(images.end - first);
                    let k = count * positions;
                    let dy = gradient_columns(output_grad, g, first, count, gathered);
                    let columns = match g.is_pointwise() && count == 1 {
                        true => View::rows(&x[first * image_len..][..image_len], weights, k, k),
                        false => {
                            let columns = prefix(columns, weights * k);
                            im2col(x, g, first..first + count, columns);
                            View::rows(columns, weights, k, k)
                        }
                    };
                    let accumulate = first > images.start;
                    matmul(
                        &mut weight_grad,
                        weights,
                        dy,
                        columns.t(),
                        accumulate,
                        gemm_threads,
                    );
                }
            });
            weight_grad
        })
        .collect();
    partials
        .into_iter()
        .reduce(|mut sum, partial| {
            sum.iter_mut().zip(&partial).for_each(|(s, p)| *s += p);
            sum
        })
        .unwrap_or_default()
}
