//! `dW = dY · columnsᵀ`: `[C_out, J] = [C_out, N·OH·OW] · [N·OH·OW, J]`, as in PyTorch, with
//! both output dimensions large. Burn computes it as another convolution with batch and
//! channels swapped, whose per-channel GEMMs are 9 columns wide for a 3×3 kernel — the edge
//! case of the GEMM's micro-kernels (45 % of a ResNet-18 step on flex).

use rayon::prelude::*;

use super::geometry::Geometry;
use super::im2col::{gradient_columns, input_columns};
use super::matmul::{Threads, matmul};
use crate::scratch::{Scratch, with_scratch};

/// The weight gradient `[C_out, C_in, KH, KW]`, flattened, given `x` (`[N, C_in, H, W]`) and
/// the output gradient (`[N, C_out, OH, OW]`), both contiguous.
///
/// Each thread accumulates the gradient of a fixed share of the batch and the shares are
/// summed in order, so the result does not depend on scheduling: the same inputs and thread
/// count give the same bits.
pub(crate) fn weight_grad(x: &[f32], output_grad: &[f32], g: &Geometry) -> Vec<f32> {
    g.check_input(x);
    g.check_output(output_grad);
    let weights = g.weights_per_output();
    if g.is_empty() {
        return vec![0.0; g.channels_out * weights];
    }
    let threads = rayon::current_num_threads();
    let shares = g.shares();
    let gemm_threads = match shares.len() < threads {
        true => Threads::All,
        false => Threads::Caller,
    };
    let size = g.images_per_chunk(threads);

    let partials: Vec<Vec<f32>> = shares
        .into_par_iter()
        .map(|images| {
            let mut weight_grad = vec![0f32; g.channels_out * weights];
            with_scratch(|scratch| {
                let Scratch {
                    columns, gathered, ..
                } = scratch;
                for first in images.clone().step_by(size) {
                    let count = size.min(images.end - first);
                    let dy = gradient_columns(output_grad, g, first, count, gathered);
                    let columns = input_columns(x, g, first, count, columns);
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
    sum_in_order(partials)
}

/// The element-wise sum of per-share gradients, first to last.
pub(crate) fn sum_in_order(partials: Vec<Vec<f32>>) -> Vec<f32> {
    partials
        .into_iter()
        .reduce(|mut sum, partial| {
            sum.iter_mut().zip(&partial).for_each(|(s, p)| *s += p);
            sum
        })
        .unwrap_or_default()
}
