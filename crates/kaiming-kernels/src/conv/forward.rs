//! `y = conv(x, w)` as one GEMM per chunk of images: `Y[C_out, count·OH·OW] = W[C_out, J] ·
//! columns[J, count·OH·OW]`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::im2col::input_columns;
use super::matmul::{Threads, View, matmul, matmul_into};
use crate::scratch::{Scratch, prefix, with_scratch};
use crate::unfilled;

/// The output `[N, C_out, OH, OW]`, flattened, of `x` (`[N, C_in, H, W]`) and `weight`
/// (`[C_out, C_in, KH, KW]`), both contiguous, each written through `epilogue`.
pub(crate) fn forward(x: &[f32], weight: &[f32], g: &Geometry, epilogue: Epilogue) -> Vec<f32> {
    g.check_input(x);
    g.check_weight(weight);
    epilogue.check(g);
    let positions = g.out_positions();
    let per_image = g.channels_out * positions;
    if g.is_empty() {
        return vec![0.0; g.batch * per_image];
    }
    let mut output = unfilled::buffer(g.batch * per_image);
    let (size, gemm_threads) = g.chunking();
    let weights = g.weights_per_output();
    let w = View::rows(weight, g.channels_out, weights, weights);

    output
        .par_chunks_mut(size * per_image)
        .enumerate()
        .for_each(|(index, output)| {
            let first = index * size;
            let count = output.len() / per_image;
            let k = count * positions;
            with_scratch(|scratch| {
                let Scratch {
                    columns, product, ..
                } = scratch;
                let rhs = input_columns(x, g, first, count, columns);
                if count == 1 {
                    into_image(output, positions, w, rhs, epilogue, gemm_threads);
                } else {
                    // The product is [C_out, images·positions]; the output wants each image's
                    // channels together, through the epilogue.
                    let product = prefix(product, g.channels_out * k);
                    matmul(product, k, w, rhs, false, gemm_threads);
                    for (image, output) in output.chunks_exact_mut(per_image).enumerate() {
                        for (o, output) in output.chunks_exact_mut(positions).enumerate() {
                            epilogue.write(
                                o,
                                output,
                                &product[o * k + image * positions..][..positions],
                            );
                        }
                    }
                }
                for (image, output) in output.chunks_exact(per_image).enumerate() {
                    // SAFETY: the GEMM or the copy above wrote the whole image.
                    unsafe { epilogue.finish_image(first + image, output) };
                }
            })
        });
    // SAFETY: every chunk wrote all of its images, by GEMM or by copy.
    unsafe { unfilled::assume_init(output) }
}

/// One image's output `[C_out, positions]` as `w · rhs`, written by the GEMM itself: it
/// accumulates onto the epilogue's start (the bias) and the rest of the epilogue (the ReLU) is
/// one pass over the image just written, so the product needs no buffer of its own and no copy
/// into the output.
fn into_image(
    output: &mut [MaybeUninit<f32>],
    positions: usize,
    w: View,
    rhs: View,
    epilogue: Epilogue,
    threads: Threads,
) {
    if epilogue.is_none() {
        matmul_into(output, positions, w, rhs, threads);
        return;
    }
    for (o, row) in output.chunks_exact_mut(positions).enumerate() {
        row.fill(MaybeUninit::new(epilogue.start(o)));
    }
    // SAFETY: every row was just filled with its channel's start.
    let output = unsafe { unfilled::written_mut(output) };
    matmul(output, positions, w, rhs, true, threads);
    epilogue.finish_in_place(output);
}
