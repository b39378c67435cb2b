//! Channel-blocked direct 3×3 convolution, vectorised over output channels: every 3×3 layer of
//! the zoo with channels in whole vectors, at stride 1 and 2 — above all the 32- and 64-channel
//! stages of the CIFAR ResNets, whose rows of 16 and 8 positions leave a quarter to half of a
//! position-vectorised tile (`direct`) on padding.
//!
//! A vector holds one output channel block (`L` = 16 floats on AVX-512, 8 on AVX2) at one
//! position, as oneDNN's `nChw16c` layout does. The forward tile is `NB` blocks × `P`
//! consecutive positions of one output row: for every input channel and tap it loads `NB`
//! weight vectors and broadcasts `P` input values, `NB·P` fused multiply-adds, and no lane ever
//! holds a padding column. The taps that would read the zero border are skipped (each border
//! case compiled apart, `EDGES`), so where the border is one wide (every ResNet's) the tiles
//! read the image itself; a wider one is copied into the zero-bordered planes `direct` builds
//! ([`Planes`]). Rows of 4
//! positions (the 4×4 stage on AVX-512, `P` = 8) are tiled two rows at a time instead. The
//! weights are repacked once per call to `[C_out/L, C_in, 9, L]`; outputs are computed blocked,
//! `[C_out/L, OH·OW, L]`, and transposed into NCHW while they are still in the cache.
//!
//! The weight gradient sums over positions, so its tile is the reduction's output: `NB` blocks
//! of output channels × one input channel × all nine taps, accumulated in registers over every
//! position of an image (no position is wasted either), from the output gradient transposed
//! into the blocked layout and the input's planes. The input gradient is the forward
//! convolution of the output gradient with the flipped kernel (`direct::flipped`) at stride 1,
//! and four such correlations, one per parity class of input positions, at stride 2.

// The kernels exist only for x86_64; elsewhere `covers` is never asked (no `Isa` exists).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::mem::MaybeUninit;
use std::ops::{Range, RangeInclusive};

use rayon::prelude::*;

use super::Pass;
use super::direct::{self, Plan};
use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::planes::pad;
use super::vector::{Emulated512, Vector};
use super::weight_grad::sum_in_order;
use crate::routing::Isa;
use crate::scratch::{Scratch, prefix, with_scratch};
use crate::unfilled;

/// Taps of the 3×3 kernel, the only size these kernels compute.
const TAPS: usize = 9;

impl Isa {
    /// Floats per vector.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 | Isa::Avx512Emulated => 16,
            Isa::Avx2 => 8,
        }
    }
}

// The register tiles of each instruction set: output blocks per forward tile (`NB`) and
// positions per forward tile (`P`; a lone block, where the blocks are odd, takes `P1`), and
// output blocks per weight-gradient tile (`GB`, a lone block takes one) times the taps of `GR`
// kernel rows (the image is swept once per `GR` rows). AVX-512 has 32 vector registers:
// 2 × 8 (or 1 × 16) accumulators in the forward tile, 2 × 9 taps in the weight gradient's.
// AVX2 has 16: 2 × 4 (or 1 × 8), and 2 × 6 taps, then 2 × 3. (4 × 4 on AVX-512 ran no faster
// than 2 × 8: the tiles are not bound by their loads. The weight gradient's are: each tap
// broadcasts an input, shared by the tile's blocks, so 1 × 9 on AVX2, ten loads for nine
// multiply-adds, ran 1.5–2× slower than the forward pass; 2 × 6 + 2 × 3 load 13 for 18.)
const AVX512_NB: usize = 2;
const AVX512_P: usize = 8;
const AVX512_P1: usize = 16;
const AVX512_GB: usize = 2;
const AVX512_GR: usize = 3;
const AVX2_NB: usize = 2;
const AVX2_P: usize = 4;
const AVX2_P1: usize = 8;
const AVX2_GB: usize = 2;
const AVX2_GR: usize = 2;

/// Whether the blocked kernels compute `pass` of `g` on `isa`: a 3×3 convolution without
/// dilation, padding below 3, stride 1 or 2, whose output channels (the input's, for the input
/// gradient) are whole vectors.
pub(crate) fn covers(g: &Geometry, pass: Pass, isa: Isa) -> bool {
    let blocked = match pass {
        Pass::Forward | Pass::WeightGrad => g.channels_out,
        Pass::InputGrad => g.channels_in,
    };
    g.kernel == [3, 3]
        && g.dilation == [1, 1]
        && (g.stride == [1, 1] || g.stride == [2, 2])
        && g.padding.iter().all(|&p| p < 3)
        && g.in_positions() > 0
        && g.out_positions() > 0
        && blocked.is_multiple_of(isa.lanes())
}

/// Whether `pass` of a covered `g` runs on whole register tiles only: forward passes and
/// input gradients whose rows hold a position tile or span whole ones ([`spans`]), `P` wide
/// for pairs of output-channel vectors and `P1` for a lone one; the ends of narrower rows take
/// one position at a time. Weight gradients always.
pub(crate) fn whole_tiles(g: &Geometry, pass: Pass, isa: Isa) -> bool {
    let (nb, p, p1) = match isa {
        Isa::Avx512 | Isa::Avx512Emulated => (AVX512_NB, AVX512_P, AVX512_P1),
        Isa::Avx2 => (AVX2_NB, AVX2_P, AVX2_P1),
    };
    let tiled = |channels: usize, rows: usize, width: usize| {
        let fits = |tile: usize| width >= tile || spans(rows, width, tile);
        fits(p) && (channels.is_multiple_of(nb * isa.lanes()) || fits(p1))
    };
    match pass {
        Pass::Forward => tiled(g.channels_out, g.out_height, g.out_width),
        // At stride 1 the forward tiles on the input's shape; at stride 2 class tiles, along
        // class rows of about half the output's width.
        Pass::InputGrad if g.stride == [1, 1] => tiled(g.channels_in, g.height, g.width),
        Pass::InputGrad => {
            g.channels_in.is_multiple_of(nb * isa.lanes()) && g.width.min(g.out_width) >= p
        }
        Pass::WeightGrad => true,
    }
}

// A tile's `EDGES`, bits of which taps read only the zero border, so that the tile skips their
// multiply-adds, as oneDNN's direct kernels do: the border is 31 % of a 4×4 image's products
// with its 3×3 neighbours, 16 % of an 8×8's and 8 % of a 16×16's, and the kernels run at the
// FMA units' rate. `TOP`: the tile's first row's kernel row 0; `BOTTOM`: its last row's kernel
// row 2; `LEFT`: each row's first position's kernel column 0; `RIGHT`: its last's column 2.
const TOP: u8 = 1;
const BOTTOM: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;

/// Whether position `p` of a tile of `P` positions, `W` to a row, skips tap `(kh, kw)` by
/// `EDGES`; a constant once the tile's loops are unrolled.
#[inline(always)]
const fn skips<const EDGES: u8, const P: usize, const W: usize>(
    p: usize,
    kh: usize,
    kw: usize,
) -> bool {
    (EDGES & TOP != 0 && p < W && kh == 0)
        || (EDGES & BOTTOM != 0 && p >= P - W && kh == 2)
        || (EDGES & LEFT != 0 && p.is_multiple_of(W) && kw == 0)
        || (EDGES & RIGHT != 0 && p % W == W - 1 && kw == 2)
}

/// `$body` with `$e` a constant equal to `$edges` (below 16), each value compiled apart so
/// that a tile's skipped taps are known to the compiler.
macro_rules! with_edges {
    ($edges:expr, $e:ident => $body:expr) => {
        match $edges {
            0 => {
                const $e: u8 = 0;
                $body
            }
            1 => {
                const $e: u8 = 1;
                $body
            }
            2 => {
                const $e: u8 = 2;
                $body
            }
            3 => {
                const $e: u8 = 3;
                $body
            }
            4 => {
                const $e: u8 = 4;
                $body
            }
            5 => {
                const $e: u8 = 5;
                $body
            }
            6 => {
                const $e: u8 = 6;
                $body
            }
            7 => {
                const $e: u8 = 7;
                $body
            }
            8 => {
                const $e: u8 = 8;
                $body
            }
            9 => {
                const $e: u8 = 9;
                $body
            }
            10 => {
                const $e: u8 = 10;
                $body
            }
            11 => {
                const $e: u8 = 11;
                $body
            }
            12 => {
                const $e: u8 = 12;
                $body
            }
            13 => {
                const $e: u8 = 13;
                $body
            }
            14 => {
                const $e: u8 = 14;
                $body
            }
            15 => {
                const $e: u8 = 15;
                $body
            }
            edges => unreachable!("edges {edges}"),
        }
    };
}

/// Rows of [`SHORT_ROW`] outputs, shorter than a forward tile of `tile` positions, which the
/// forward tiles cover whole rows at a time (`forward_spanning`): ResNet-18's and ResNet-50's
/// 4×4 stage on AVX-512.
const SHORT_ROW: usize = 4;

/// Whether forward tiles of `tile` positions span whole rows of an output `rows × width`.
fn spans(rows: usize, width: usize, tile: usize) -> bool {
    width == SHORT_ROW
        && tile > SHORT_ROW
        && tile.is_multiple_of(SHORT_ROW)
        && rows.is_multiple_of(tile / SHORT_ROW)
}

/// The sizes the kernels index by: the padded planes' (`direct`'s plan), the stride and the
/// blocks'.
#[derive(Debug, Clone, Copy)]
struct Layout {
    plan: Plan,
    /// 1 or 2, both axes.
    stride: usize,
    /// Output channel blocks.
    blocks: usize,
    /// Output positions per channel, `OH·OW`.
    positions: usize,
    /// Zero rows above and columns left of the image, and its rows and columns: where a tile's
    /// taps read only padding ([`Layout::edges`]).
    padding: [usize; 2],
    height: usize,
    width: usize,
    /// Where the tiles read their inputs.
    planes: Planes,
}

/// The planes a tile reads, indexed as the zero-bordered ones: padded position `(r, c)` of a
/// plane at `r·row + c − shift`. Where the border is at most one row and column wide, the
/// tiles skip every tap that reads it (the outermost ones, [`Layout::edges`]), so they read the
/// image itself: no copy into bordered planes (5 % of a ResNet-20 step). A wider border (the
/// input gradient of a convolution without padding) is copied, as `direct` does.
#[derive(Debug, Clone, Copy)]
struct Planes {
    /// Whether the planes are `pad`'s bordered copy.
    bordered: bool,
    /// Floats per plane and per row.
    plane: usize,
    row: usize,
    /// `padding[0]·row + padding[1]` for the image, 0 for bordered planes.
    shift: usize,
}

impl Layout {
    fn new(g: &Geometry, isa: Isa) -> Self {
        // Tiles never read past a plane's last row, so no slack is needed.
        let plan = Plan::new(g, 1);
        let planes = match g.padding.iter().all(|&p| p <= 1) {
            true => Planes {
                bordered: false,
                plane: g.in_positions(),
                row: g.width,
                shift: g.padding[0] * g.width + g.padding[1],
            },
            false => Planes {
                bordered: true,
                plane: plan.plane,
                row: plan.wp,
                shift: 0,
            },
        };
        Self {
            plan,
            stride: g.stride[0],
            blocks: g.channels_out / isa.lanes(),
            positions: g.out_positions(),
            padding: g.padding,
            height: g.height,
            width: g.width,
            planes,
        }
    }

    /// One image's planes for the tiles: `image` itself, or its bordered copy in `scratch`.
    fn planes<'a>(&self, image: &'a [f32], scratch: &'a mut Vec<f32>, isa: Isa) -> &'a [f32] {
        if !self.planes.bordered {
            return image;
        }
        let padded = prefix(scratch, self.plan.padded_len);
        pad(
            image,
            self.height,
            self.width,
            self.padding,
            &self.plan,
            padded,
            isa,
        );
        padded
    }

    /// The [`EDGES`](TOP) of a tile over output rows `rows` and columns `columns`: which of
    /// its outermost taps read a padded row or column.
    fn edges(&self, rows: RangeInclusive<usize>, columns: RangeInclusive<usize>) -> u8 {
        let s = self.stride;
        let padding = |at: usize, axis: usize, size: usize| {
            at < self.padding[axis] || at >= self.padding[axis] + size
        };
        let mut edges = 0;
        for (reads_padding, edge) in [
            (padding(rows.start() * s, 0, self.height), TOP),
            (padding(rows.end() * s + 2, 0, self.height), BOTTOM),
            (padding(columns.start() * s, 1, self.width), LEFT),
            (padding(columns.end() * s + 2, 1, self.width), RIGHT),
        ] {
            if reads_padding {
                edges |= edge;
            }
        }
        edges
    }

    /// Checks, once per image, what the unsafe kernels rely on: the CPU has `isa`, the layout
    /// is this instruction set's, the slices are as long as the layout says, and the tiles
    /// read the image itself only where they skip all of its border.
    fn check(&self, isa: Isa, planes: &[f32], blocked: &[f32], weights: &[f32]) {
        let plan = &self.plan;
        assert!(isa.supported(), "{isa:?} kernels on a CPU without {isa:?}");
        assert_eq!(plan.kernel, 3, "the blocked kernels are 3×3");
        assert_eq!(self.blocks * isa.lanes(), plan.channels_out, "whole blocks");
        assert!(matches!(self.stride, 1 | 2), "stride 1 or 2");
        let reach = |outputs: usize| (outputs - 1) * self.stride + 3;
        assert!(
            reach(plan.ow) <= plan.wp,
            "columns read inside the padded plane"
        );
        assert!(
            reach(plan.oh) * plan.wp <= plan.plane,
            "rows read inside the padded plane"
        );
        match self.planes.bordered {
            true => assert!(planes.len() >= plan.channels_in * plan.plane),
            false => {
                assert!(
                    self.padding.iter().all(|&p| p <= 1),
                    "a border the tiles skip"
                );
                assert_eq!(planes.len(), plan.channels_in * self.height * self.width);
            }
        }
        assert_eq!(blocked.len(), plan.channels_out * self.positions);
        assert_eq!(weights.len(), plan.channels_out * plan.channels_in * TAPS);
    }
}

/// Filters of `per_output` floats each, `[C, per_output]`, as `[C/L, per_output, L]`: for a
/// weight `[C_out, C_in, 3, 3]`, `[C_out/L, C_in, 9, L]`, so a tile's weights for one input
/// channel and tap are one vector per block.
fn block_filters(weight: &[f32], per_output: usize, lanes: usize) -> Vec<f32> {
    let mut blocked = vec![0f32; weight.len()];
    for (o, filter) in weight.chunks_exact(per_output).enumerate() {
        let (block, lane) = (o / lanes, o % lanes);
        for (ct, value) in filter.iter().enumerate() {
            blocked[(block * per_output + ct) * lanes + lane] = *value;
        }
    }
    blocked
}

/// `[C/L, Q, L]` → `[C, Q]` rows of `output`, each written once, through `epilogue`: `L × L`
/// tiles transposed in registers (a float at a time, this pass and `block` took 5 % of a
/// ResNet-20 step), the last `Q mod L` positions of each block a float at a time.
fn unblock(
    blocked: &[f32],
    positions: usize,
    isa: Isa,
    epilogue: Epilogue,
    output: &mut [MaybeUninit<f32>],
) {
    check_blocks(blocked.len(), output.len(), positions, isa);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set and the lengths are whole blocks (both asserted
    // by `check_blocks`).
    unsafe {
        match isa {
            Isa::Avx512 => x86::unblock_avx512(blocked, positions, epilogue, output),
            Isa::Avx2 => x86::unblock_avx2(blocked, positions, epilogue, output),
            Isa::Avx512Emulated => {
                unblock_with::<Emulated512>(blocked, positions, epilogue, output)
            }
        }
    }
}

/// `[C, Q]` → `[C/L, Q, L]`, as [`unblock`] in reverse.
fn block(rows: &[f32], positions: usize, isa: Isa, blocked: &mut [f32]) {
    check_blocks(rows.len(), blocked.len(), positions, isa);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `unblock`.
    unsafe {
        match isa {
            Isa::Avx512 => x86::block_avx512(rows, positions, blocked),
            Isa::Avx2 => x86::block_avx2(rows, positions, blocked),
            Isa::Avx512Emulated => block_with::<Emulated512>(rows, positions, blocked),
        }
    }
}

/// Panics unless a conversion between `[C, Q]` and `[C/L, Q, L]` reads and writes whole
/// blocks of `Q = positions`.
fn check_blocks(from: usize, to: usize, positions: usize, isa: Isa) {
    assert!(isa.supported(), "{isa:?} kernels on a CPU without {isa:?}");
    assert_eq!(
        from, to,
        "the blocked and the plain layout hold as many floats"
    );
    assert!(
        positions > 0 && from.is_multiple_of(positions * isa.lanes()),
        "whole blocks of {positions} positions"
    );
}

/// [`unblock`] for `V`.
///
/// # Safety
/// As checked by [`check_blocks`], with `L = V::LANES`; inlined only into functions compiled
/// for `V`'s instruction set.
#[inline(always)]
unsafe fn unblock_with<V: Vector>(
    blocked: &[f32],
    positions: usize,
    epilogue: Epilogue,
    output: &mut [MaybeUninit<f32>],
) {
    let lanes = V::LANES;
    let whole = positions / lanes * lanes;
    let out = output.as_mut_ptr().cast::<f32>();
    for block in 0..output.len() / (positions * lanes) {
        // SAFETY: block `block`'s positions and channels are inside both slices.
        unsafe {
            let from = blocked.as_ptr().add(block * positions * lanes);
            for q in (0..whole).step_by(lanes) {
                V::transpose(from.add(q * lanes), lanes, |j, v| {
                    let c = block * lanes + j;
                    epilogue.apply_lanes(c, v).store(out.add(c * positions + q));
                });
            }
            for j in 0..lanes {
                let c = block * lanes + j;
                for q in whole..positions {
                    let value = *from.add(q * lanes + j);
                    out.add(c * positions + q).write(epilogue.apply(c, value));
                }
            }
        }
    }
}

/// [`block`] for `V`.
///
/// # Safety
/// As [`unblock_with`].
#[inline(always)]
unsafe fn block_with<V: Vector>(rows: &[f32], positions: usize, blocked: &mut [f32]) {
    let lanes = V::LANES;
    let whole = positions / lanes * lanes;
    for block in 0..rows.len() / (positions * lanes) {
        // SAFETY: as in `unblock_with`.
        unsafe {
            let from = rows.as_ptr().add(block * lanes * positions);
            let to = blocked.as_mut_ptr().add(block * positions * lanes);
            for q in (0..whole).step_by(lanes) {
                V::transpose(from.add(q), positions, |j, v| {
                    v.store(to.add((q + j) * lanes))
                });
            }
            for q in whole..positions {
                for j in 0..lanes {
                    *to.add(q * lanes + j) = *from.add(j * positions + q);
                }
            }
        }
    }
}

/// `conv(x, weight)` for every image, as `direct::forward`, on the blocked kernels, each
/// output written through `epilogue`. `g` must be [`covers`]ed for the forward pass.
pub(crate) fn forward(
    x: &[f32],
    weight: &[f32],
    g: &Geometry,
    isa: Isa,
    epilogue: Epilogue,
) -> Vec<f32> {
    g.check_input(x);
    g.check_weight(weight);
    assert!(
        covers(g, Pass::Forward, isa),
        "blocked forward of {g:?} on {isa:?}"
    );
    epilogue.check(g);
    let per_image = g.channels_out * g.out_positions();
    let image_len = g.channels_in * g.in_positions();
    if g.is_empty() {
        return vec![0.0; g.batch * per_image];
    }
    let layout = Layout::new(g, isa);
    let weights = block_filters(weight, g.channels_in * TAPS, isa.lanes());
    let mut output = unfilled::buffer(g.batch * per_image);
    output
        .par_chunks_mut(per_image)
        .zip(x.par_chunks(image_len))
        .enumerate()
        .for_each(|(index, (output, image))| {
            with_scratch(|scratch| {
                let Scratch {
                    columns, product, ..
                } = scratch;
                let planes = layout.planes(image, columns, isa);
                let blocked = prefix(product, per_image);
                layout.check(isa, planes, blocked, &weights);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has the instruction set and the slices are as the kernels
                // require (`Layout::check`).
                unsafe {
                    match isa {
                        Isa::Avx512 => x86::forward_avx512(planes, &weights, &layout, blocked),
                        Isa::Avx2 => x86::forward_avx2(planes, &weights, &layout, blocked),
                        Isa::Avx512Emulated => {
                            forward_image::<Emulated512, AVX512_NB, AVX512_P, AVX512_P1>(
                                planes, &weights, &layout, blocked,
                            )
                        }
                    }
                }
                unblock(blocked, layout.positions, isa, epilogue, output);
                // SAFETY: `unblock` wrote every channel's row of the image.
                unsafe { epilogue.finish_image(index, output) };
            })
        });
    // SAFETY: `unblock` wrote every channel's row of every image.
    unsafe { unfilled::assume_init(output) }
}

/// The gradient with respect to `x` of [`forward`]: the blocked forward convolution of the
/// output gradient with the flipped, channel-swapped kernel. `g` must be
/// [`covers`]ed for the input gradient.
pub(crate) fn input_grad(weight: &[f32], output_grad: &[f32], g: &Geometry, isa: Isa) -> Vec<f32> {
    g.check_weight(weight);
    g.check_output(output_grad);
    assert!(
        covers(g, Pass::InputGrad, isa),
        "blocked input gradient of {g:?} on {isa:?}"
    );
    if g.stride == [2, 2] {
        return input_grad_strided(weight, output_grad, g, isa);
    }
    forward(
        output_grad,
        &direct::flipped(weight, g),
        &direct::transposed(g),
        isa,
        Epilogue::NONE,
    )
}

/// The input gradient of a stride-2 `g`, by parity: input row `i` (column `j`) receives from
/// kernel rows `kh ≡ i + p (mod 2)` only, output row `h = (i + p − kh)/2`. So each of the four
/// classes of input positions (even/odd row × even/odd column) is a stride-1 correlation of
/// the output gradient with the taps of its class (4, 2, 2 or 1 of them), computed as the
/// forward tiles are, vectorised over blocks of input channels.
fn input_grad_strided(weight: &[f32], output_grad: &[f32], g: &Geometry, isa: Isa) -> Vec<f32> {
    let per_image = g.channels_in * g.in_positions();
    let grad_len = g.channels_out * g.out_positions();
    if g.is_empty() {
        return vec![0.0; g.batch * per_image];
    }
    // The output gradient as the input of a convolution, zero-bordered by one row and column
    // (for the class rows that would read `h = −1` or `h = OH`).
    let plan = Plan::new(
        &Geometry {
            channels_in: g.channels_out,
            height: g.out_height,
            width: g.out_width,
            padding: [1, 1],
            stride: [1, 1],
            out_height: g.out_height,
            out_width: g.out_width,
            ..g.clone()
        },
        1,
    );
    let layout = Transposed {
        plan,
        padding: g.padding[0],
        height: g.height,
        width: g.width,
        blocks: g.channels_in / isa.lanes(),
    };
    // `[C_in/L, C_out, 9, L]`: the kernel with its channel axes swapped, not flipped (each tap
    // is indexed by itself), blocked over input channels.
    let taps = g.kernel[0] * g.kernel[1];
    let mut swapped = vec![0f32; weight.len()];
    for o in 0..g.channels_out {
        for c in 0..g.channels_in {
            swapped[(c * g.channels_out + o) * taps..][..taps]
                .copy_from_slice(&weight[(o * g.channels_in + c) * taps..][..taps]);
        }
    }
    let weights = block_filters(&swapped, g.channels_out * TAPS, isa.lanes());
    let mut x_grad = unfilled::buffer(g.batch * per_image);
    x_grad
        .par_chunks_mut(per_image)
        .zip(output_grad.par_chunks(grad_len))
        .for_each(|(x_grad, output_grad)| {
            with_scratch(|scratch| {
                let Scratch {
                    columns, product, ..
                } = scratch;
                let padded = prefix(columns, plan.padded_len);
                pad(
                    output_grad,
                    g.out_height,
                    g.out_width,
                    [1, 1],
                    &plan,
                    padded,
                    isa,
                );
                let blocked = prefix(product, per_image);
                layout.check(isa, padded, blocked, &weights);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as in `forward`, by `Transposed::check`.
                unsafe {
                    match isa {
                        Isa::Avx512 => x86::input_grad_avx512(padded, &weights, &layout, blocked),
                        Isa::Avx2 => x86::input_grad_avx2(padded, &weights, &layout, blocked),
                        Isa::Avx512Emulated => {
                            input_grad_image::<Emulated512, AVX512_NB, AVX512_P, AVX512_P1>(
                                padded, &weights, &layout, blocked,
                            )
                        }
                    }
                }
                unblock(blocked, g.in_positions(), isa, Epilogue::NONE, x_grad);
            })
        });
    // SAFETY: `unblock` wrote every channel's row of every image.
    unsafe { unfilled::assume_init(x_grad) }
}

/// The sizes a stride-2 input gradient indexes by: the output gradient's zero-bordered planes,
/// the convolution's padding and input size, and the blocks of input channels.
#[derive(Debug, Clone, Copy)]
struct Transposed {
    plan: Plan,
    padding: usize,
    height: usize,
    width: usize,
    blocks: usize,
}

impl Transposed {
    /// The class positions `m` (rows or columns) of parity `a` on an axis of `size` inputs:
    /// `2m + a − padding` inside the input.
    fn class(&self, a: usize, size: usize) -> Range<usize> {
        let first = self.padding.saturating_sub(a).div_ceil(2);
        let end = (size + self.padding - a).div_ceil(2);
        first..end.max(first)
    }

    /// As `Layout::check`, for the class tiles' reads: an output row or column `m + 1 + d`
    /// (`d` ∈ {−1, 0}) inside the bordered planes, for every class position.
    fn check(&self, isa: Isa, padded: &[f32], blocked: &[f32], weights: &[f32]) {
        let plan = &self.plan;
        assert!(isa.supported(), "{isa:?} kernels on a CPU without {isa:?}");
        assert_eq!(
            self.blocks * isa.lanes() * 9 * plan.channels_in,
            weights.len()
        );
        for (a, size, bordered) in [(0, self.height, plan.oh + 2), (1, self.height, plan.oh + 2)]
            .into_iter()
            .chain([(0, self.width, plan.wp), (1, self.width, plan.wp)])
        {
            let class = self.class(a, size);
            assert!(
                class.is_empty() || class.end < bordered,
                "class reads inside the border"
            );
        }
        assert_eq!(plan.plane, plan.wp * (plan.oh + 2));
        assert!(padded.len() >= plan.channels_in * plan.plane);
        assert_eq!(
            blocked.len(),
            self.blocks * isa.lanes() * self.height * self.width
        );
    }
}

/// The weight gradient `[C_out, C_in, 3, 3]`, flattened, of [`forward`]. Each thread sums a
/// fixed share of the batch and the shares are added in order, so the result does not depend
/// on scheduling. `g` must be [`covers`]ed for the weight gradient.
pub(crate) fn weight_grad(x: &[f32], output_grad: &[f32], g: &Geometry, isa: Isa) -> Vec<f32> {
    g.check_input(x);
    g.check_output(output_grad);
    assert!(
        covers(g, Pass::WeightGrad, isa),
        "blocked weight gradient of {g:?} on {isa:?}"
    );
    let len = g.channels_out * g.channels_in * TAPS;
    if g.is_empty() {
        return vec![0.0; len];
    }
    let layout = Layout::new(g, isa);
    let image_len = g.channels_in * g.in_positions();
    let grad_len = g.channels_out * g.out_positions();
    let partials: Vec<Vec<f32>> = g
        .shares()
        .into_par_iter()
        .map(|images| {
            // Blocked, `[C_out/L, C_in, 9, L]`, until the shares are summed.
            let mut weight_grad = vec![0f32; len];
            with_scratch(|scratch| {
                let Scratch {
                    columns, product, ..
                } = scratch;
                for image in images {
                    let planes = layout.planes(&x[image * image_len..][..image_len], columns, isa);
                    let blocked = prefix(product, grad_len);
                    block(
                        &output_grad[image * grad_len..][..grad_len],
                        layout.positions,
                        isa,
                        blocked,
                    );
                    layout.check(isa, planes, blocked, &weight_grad);
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as in `forward`.
                    unsafe {
                        match isa {
                            Isa::Avx512 => {
                                x86::weight_grad_avx512(planes, blocked, &layout, &mut weight_grad)
                            }
                            Isa::Avx2 => {
                                x86::weight_grad_avx2(planes, blocked, &layout, &mut weight_grad)
                            }
                            Isa::Avx512Emulated => weight_grad_image::<
                                Emulated512,
                                AVX512_GB,
                                AVX512_GR,
                            >(
                                planes, blocked, &layout, &mut weight_grad
                            ),
                        }
                    }
                }
            });
            weight_grad
        })
        .collect();
    let blocked = sum_in_order(partials);
    let per_output = g.channels_in * TAPS;
    let lanes = isa.lanes();
    let mut weight_grad = vec![0f32; len];
    for (o, filter) in weight_grad.chunks_exact_mut(per_output).enumerate() {
        let (block, lane) = (o / lanes, o % lanes);
        for (ct, value) in filter.iter_mut().enumerate() {
            *value = blocked[(block * per_output + ct) * lanes + lane];
        }
    }
    weight_grad
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        AVX2_GB, AVX2_GR, AVX2_NB, AVX2_P, AVX2_P1, AVX512_GB, AVX512_GR, AVX512_NB, AVX512_P,
        AVX512_P1, Layout, Transposed,
    };
    use std::mem::MaybeUninit;

    use crate::conv::epilogue::Epilogue;
    use crate::conv::vector::{Avx2, Avx512};

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::unblock_with`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn unblock_avx512(
        blocked: &[f32],
        positions: usize,
        epilogue: Epilogue,
        output: &mut [MaybeUninit<f32>],
    ) {
        unsafe { super::unblock_with::<Avx512>(blocked, positions, epilogue, output) }
    }

    /// # Safety
    /// The CPU has AVX2; the slices are as [`super::unblock_with`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn unblock_avx2(
        blocked: &[f32],
        positions: usize,
        epilogue: Epilogue,
        output: &mut [MaybeUninit<f32>],
    ) {
        unsafe { super::unblock_with::<Avx2>(blocked, positions, epilogue, output) }
    }

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::block_with`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_avx512(rows: &[f32], positions: usize, blocked: &mut [f32]) {
        unsafe { super::block_with::<Avx512>(rows, positions, blocked) }
    }

    /// # Safety
    /// The CPU has AVX2; the slices are as [`super::block_with`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_avx2(rows: &[f32], positions: usize, blocked: &mut [f32]) {
        unsafe { super::block_with::<Avx2>(rows, positions, blocked) }
    }

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::forward_image`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_avx512(
        planes: &[f32],
        weights: &[f32],
        layout: &Layout,
        blocked: &mut [f32],
    ) {
        unsafe {
            super::forward_image::<Avx512, AVX512_NB, AVX512_P, AVX512_P1>(
                planes, weights, layout, blocked,
            )
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the slices are as [`super::forward_image`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward_avx2(
        planes: &[f32],
        weights: &[f32],
        layout: &Layout,
        blocked: &mut [f32],
    ) {
        unsafe {
            super::forward_image::<Avx2, AVX2_NB, AVX2_P, AVX2_P1>(planes, weights, layout, blocked)
        }
    }

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::input_grad_image`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_grad_avx512(
        padded: &[f32],
        weights: &[f32],
        layout: &Transposed,
        blocked: &mut [f32],
    ) {
        unsafe {
            super::input_grad_image::<Avx512, AVX512_NB, AVX512_P, AVX512_P1>(
                padded, weights, layout, blocked,
            )
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the slices are as [`super::input_grad_image`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_grad_avx2(
        padded: &[f32],
        weights: &[f32],
        layout: &Transposed,
        blocked: &mut [f32],
    ) {
        unsafe {
            super::input_grad_image::<Avx2, AVX2_NB, AVX2_P, AVX2_P1>(
                padded, weights, layout, blocked,
            )
        }
    }

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::weight_grad_image`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_grad_avx512(
        planes: &[f32],
        blocked: &[f32],
        layout: &Layout,
        weight_grad: &mut [f32],
    ) {
        unsafe {
            super::weight_grad_image::<Avx512, AVX512_GB, AVX512_GR>(
                planes,
                blocked,
                layout,
                weight_grad,
            )
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the slices are as [`super::weight_grad_image`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_grad_avx2(
        planes: &[f32],
        blocked: &[f32],
        layout: &Layout,
        weight_grad: &mut [f32],
    ) {
        unsafe {
            super::weight_grad_image::<Avx2, AVX2_GB, AVX2_GR>(planes, blocked, layout, weight_grad)
        }
    }
}

/// One image's blocked output `[C_out/L, OH·OW, L]` from its planes ([`Planes`]).
///
/// # Safety
/// As checked by [`Layout::check`], with `L = V::LANES`; inlined only into functions compiled
/// for `V`'s instruction set.
#[inline(always)]
unsafe fn forward_image<V: Vector, const NB: usize, const P: usize, const P1: usize>(
    planes: &[f32],
    weights: &[f32],
    layout: &Layout,
    blocked: &mut [f32],
) {
    match layout.stride {
        1 => unsafe { forward_strided::<V, NB, P, P1, 1>(planes, weights, layout, blocked) },
        _ => unsafe { forward_strided::<V, NB, P, P1, 2>(planes, weights, layout, blocked) },
    }
}

/// [`forward_image`] for stride `S`, the layout's.
///
/// # Safety
/// As [`forward_image`].
#[inline(always)]
unsafe fn forward_strided<
    V: Vector,
    const NB: usize,
    const P: usize,
    const P1: usize,
    const S: usize,
>(
    planes: &[f32],
    weights: &[f32],
    layout: &Layout,
    blocked: &mut [f32],
) {
    let whole = layout.blocks / NB * NB;
    for block in (0..whole).step_by(NB) {
        unsafe { forward_blocks::<V, NB, P, S>(planes, weights, layout, blocked, block) };
    }
    for block in whole..layout.blocks {
        unsafe { forward_blocks::<V, 1, P1, S>(planes, weights, layout, blocked, block) };
    }
}

/// Output blocks `block..block + NB` at every position, `P` at a time: along each row, or,
/// where a tile holds whole rows of 4 ([`spans`]: ResNet-18's and ResNet-50's 4×4 stage on
/// AVX-512), over two or more rows at once, so that no tile falls back to one position at a
/// time there.
///
/// # Safety
/// As [`forward_image`], with `block + NB ≤ C_out/L` and `S` the layout's stride.
#[inline(always)]
unsafe fn forward_blocks<V: Vector, const NB: usize, const P: usize, const S: usize>(
    planes: &[f32],
    weights: &[f32],
    layout: &Layout,
    blocked: &mut [f32],
    block: usize,
) {
    let plan = &layout.plan;
    if spans(plan.oh, plan.ow, P) {
        unsafe {
            forward_spanning::<V, NB, P, S, SHORT_ROW>(planes, weights, layout, blocked, block)
        };
        return;
    }
    for h in 0..plan.oh {
        let tile = |w: usize| Tile {
            block,
            q: h * plan.ow + w,
            origin: h * S * layout.planes.row + w * S,
        };
        let mut w = 0;
        while w + P <= plan.ow {
            with_edges!(layout.edges(h..=h, w..=w + P - 1), E => unsafe {
                forward_tile::<V, NB, P, P, E>(planes, weights, layout, blocked, tile(w), |p| p * S)
            });
            w += P;
        }
        // The rest of a row not a multiple of `P` wide (none of the zoo's), one position at a
        // time.
        for w in w..plan.ow {
            with_edges!(layout.edges(h..=h, w..=w), E => unsafe {
                forward_tile::<V, NB, 1, 1, E>(planes, weights, layout, blocked, tile(w), |_| 0)
            });
        }
    }
}

/// [`forward_blocks`] on rows of `W` outputs ([`spans`]), `P / W` whole rows a tile. `W` is a
/// constant so that a tile's reads are fixed offsets from one or a few bases each tap, as along
/// a row; read through an array of offsets instead, the compiler spilled the tile to the stack
/// and it ran no faster than one position at a time (117 ms for ResNet-18's 512-channel 4×4
/// layer against 46 now, 57 for im2col + GEMM; `cargo bench --bench conv`).
///
/// # Safety
/// As [`forward_blocks`], with `OW = W` and `OH` a multiple of `P / W` (`spans`).
#[inline(always)]
unsafe fn forward_spanning<
    V: Vector,
    const NB: usize,
    const P: usize,
    const S: usize,
    const W: usize,
>(
    planes: &[f32],
    weights: &[f32],
    layout: &Layout,
    blocked: &mut [f32],
    block: usize,
) {
    let plan = &layout.plan;
    let rows = P / W;
    let row_stride = S * layout.planes.row;
    for h in (0..plan.oh).step_by(rows) {
        let tile = Tile {
            block,
            q: h * W,
            origin: h * row_stride,
        };
        let offset = |p: usize| (p / W) * row_stride + (p % W) * S;
        let edges = layout.edges(h..=h + rows - 1, 0..=W - 1);
        with_edges!(edges, E => unsafe {
            forward_tile::<V, NB, P, W, E>(planes, weights, layout, blocked, tile, offset)
        });
    }
}

/// Where a forward tile starts: its first output block, its first output position (`OH·OW`
/// flattened) and where that position's first tap is, as a padded position ([`Planes`]).
#[derive(Clone, Copy)]
struct Tile {
    block: usize,
    q: usize,
    origin: usize,
}

/// Output blocks `tile.block..+NB` at positions `tile.q..+P`, `W` of them to a row, position
/// `p` reading its first tap at padded position `tile.origin + offset(p)` of each plane
/// ([`Planes`]), skipping the taps `EDGES` says read padding.
///
/// # Safety
/// As [`forward_blocks`], with `tile.q + P ≤ OH·OW` and each position's origin the one
/// `forward_blocks` derives (so every read is inside the planes, `Layout::check`).
#[inline(always)]
unsafe fn forward_tile<
    V: Vector,
    const NB: usize,
    const P: usize,
    const W: usize,
    const EDGES: u8,
>(
    planes: &[f32],
    weights: &[f32],
    layout: &Layout,
    blocked: &mut [f32],
    tile: Tile,
    offset: impl Fn(usize) -> usize,
) {
    let plan = &layout.plan;
    let Planes {
        plane, row, shift, ..
    } = layout.planes;
    let per_block = plan.channels_in * TAPS * V::LANES;
    let mut acc = [[unsafe { V::zero() }; NB]; P];
    // SAFETY: each tap read is at planes position `(r, c)` of a plane, `r·row + c − shift`:
    // inside bordered planes (the highest, `(C_in − 1)·plane + ((OH − 1)·S + 2)·Wp + (OW − 1)·S
    // + 2`, is in the last plane, `Layout::check`), and inside the image where the planes are
    // the image (a border of at most one, `Layout::check`), whose border's taps are those
    // `EDGES` skips. The address arithmetic wraps, since a skipped tap's address may lie before
    // the image; only the taps read are dereferenced. The highest weight is the last block's
    // last.
    unsafe {
        let x = planes
            .as_ptr()
            .wrapping_sub(shift)
            .wrapping_add(tile.origin);
        let weights = weights.as_ptr().add(tile.block * per_block);
        for c in 0..plan.channels_in {
            let x = x.wrapping_add(c * plane);
            let weights = weights.add(c * TAPS * V::LANES);
            for kh in 0..3 {
                for kw in 0..3 {
                    let at = x.wrapping_add(kh * row + kw);
                    let tap = weights.add((kh * 3 + kw) * V::LANES);
                    let mut filters = [V::zero(); NB];
                    for (n, filter) in filters.iter_mut().enumerate() {
                        *filter = V::load(tap.add(n * per_block));
                    }
                    for (p, acc) in acc.iter_mut().enumerate() {
                        if skips::<EDGES, P, W>(p, kh, kw) {
                            continue;
                        }
                        let input = V::splat(at.wrapping_add(offset(p)));
                        for (acc, filter) in acc.iter_mut().zip(filters) {
                            *acc = V::fma(filter, input, *acc);
                        }
                    }
                }
            }
        }
        let out = blocked.as_mut_ptr();
        for (p, acc) in acc.iter().enumerate() {
            for (n, acc) in acc.iter().enumerate() {
                acc.store(out.add(((tile.block + n) * layout.positions + tile.q + p) * V::LANES));
            }
        }
    }
}

/// One image's blocked input gradient `[C_in/L, H·W, L]` of a stride-2 convolution, from its
/// output gradient's bordered planes, class by class.
///
/// # Safety
/// As checked by [`Transposed::check`], with `L = V::LANES`; inlined only into functions
/// compiled for `V`'s instruction set.
#[inline(always)]
unsafe fn input_grad_image<V: Vector, const NB: usize, const P: usize, const P1: usize>(
    padded: &[f32],
    weights: &[f32],
    layout: &Transposed,
    blocked: &mut [f32],
) {
    let whole = layout.blocks / NB * NB;
    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        for block in (0..whole).step_by(NB) {
            unsafe { class_blocks::<V, NB, P>(padded, weights, layout, blocked, block, (a, b)) };
        }
        for block in whole..layout.blocks {
            unsafe { class_blocks::<V, 1, P1>(padded, weights, layout, blocked, block, (a, b)) };
        }
    }
}

/// Input-channel blocks `block..block + NB` at every input position of parity class
/// `(a, b)`, `P` columns at a time.
///
/// # Safety
/// As [`input_grad_image`], with `block + NB ≤ C_in/L`.
#[inline(always)]
unsafe fn class_blocks<V: Vector, const NB: usize, const P: usize>(
    padded: &[f32],
    weights: &[f32],
    layout: &Transposed,
    blocked: &mut [f32],
    block: usize,
    (a, b): (usize, usize),
) {
    // A class's taps and where each reads: kernel row `kh ≡ a`, output row `m + 1 + d`.
    let taps = |parity: usize| match parity {
        0 => &[(0, 0), (2, -1)][..],
        _ => &[(1, 0)][..],
    };
    let (rows, columns) = (taps(a), taps(b));
    let columns_of_class = layout.class(b, layout.width);
    for m in layout.class(a, layout.height) {
        let mut n = columns_of_class.start;
        while n + P <= columns_of_class.end {
            let at = ClassTile { block, m, n, a, b };
            unsafe { class_tile::<V, NB, P>(padded, weights, layout, blocked, at, rows, columns) };
            n += P;
        }
        for n in n..columns_of_class.end {
            let at = ClassTile { block, m, n, a, b };
            unsafe { class_tile::<V, NB, 1>(padded, weights, layout, blocked, at, rows, columns) };
        }
    }
}

/// Where a class tile starts: its first input-channel block, class row and column, and class.
#[derive(Clone, Copy)]
struct ClassTile {
    block: usize,
    m: usize,
    n: usize,
    a: usize,
    b: usize,
}

/// Input-channel blocks `block..block + NB` at class positions `(m, n..n + P)`: input row
/// `2m + a − padding`, columns `2(n + p) + b − padding`.
///
/// # Safety
/// As [`class_blocks`], with `m` and `n..n + P` inside their classes.
#[inline(always)]
unsafe fn class_tile<V: Vector, const NB: usize, const P: usize>(
    padded: &[f32],
    weights: &[f32],
    layout: &Transposed,
    blocked: &mut [f32],
    at: ClassTile,
    rows: &[(usize, isize)],
    columns: &[(usize, isize)],
) {
    let ClassTile { block, m, n, a, b } = at;
    let plan = &layout.plan;
    let per_block = plan.channels_in * TAPS * V::LANES;
    let mut acc = [[unsafe { V::zero() }; NB]; P];
    // SAFETY: reads at output-gradient row `m + 1 + d` and columns `n + p + 1 + d`, inside the
    // bordered planes (`Transposed::check`); weights inside the blocks; writes at input
    // positions inside the image (the classes' definition).
    unsafe {
        let weights = weights.as_ptr().add(block * per_block);
        for o in 0..plan.channels_in {
            let plane = padded.as_ptr().add(o * plan.plane);
            let filters = weights.add(o * TAPS * V::LANES);
            for &(kh, dh) in rows {
                let row = plane.add(((m + 1) as isize + dh) as usize * plan.wp + n + 1);
                for &(kw, dw) in columns {
                    let at = row.offset(dw);
                    let tap = filters.add((kh * 3 + kw) * V::LANES);
                    let mut filter = [V::zero(); NB];
                    for (k, filter) in filter.iter_mut().enumerate() {
                        *filter = V::load(tap.add(k * per_block));
                    }
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let input = V::splat(at.add(p));
                        for (acc, filter) in acc.iter_mut().zip(filter) {
                            *acc = V::fma(filter, input, *acc);
                        }
                    }
                }
            }
        }
        let positions = layout.height * layout.width;
        let i = 2 * m + a - layout.padding;
        let out = blocked.as_mut_ptr();
        for (p, acc) in acc.iter().enumerate() {
            let q = i * layout.width + 2 * (n + p) + b - layout.padding;
            for (k, acc) in acc.iter().enumerate() {
                acc.store(out.add(((block + k) * positions + q) * V::LANES));
            }
        }
    }
}

/// Adds one image's weight gradient to `weight_grad` (`[C_out/L, C_in, 9, L]`), from its
/// planes ([`Planes`]) and blocked output gradient `[C_out/L, OH·OW, L]`.
///
/// # Safety
/// As checked by [`Layout::check`], with `L = V::LANES`; inlined only into functions compiled
/// for `V`'s instruction set.
#[inline(always)]
unsafe fn weight_grad_image<V: Vector, const GB: usize, const GR: usize>(
    planes: &[f32],
    blocked: &[f32],
    layout: &Layout,
    weight_grad: &mut [f32],
) {
    let whole = layout.blocks / GB * GB;
    // Each call inlined here, compiled for `V`'s instruction set (a function pointer would not).
    for block in (0..whole).step_by(GB) {
        for c in 0..layout.plan.channels_in {
            unsafe {
                weight_grad_rows::<V, GB, GR>(planes, blocked, layout, weight_grad, (block, c))
            };
        }
    }
    for block in whole..layout.blocks {
        for c in 0..layout.plan.channels_in {
            unsafe {
                weight_grad_rows::<V, 1, 3>(planes, blocked, layout, weight_grad, (block, c))
            };
        }
    }
}

/// [`weight_grad_tile`] for every `GR` kernel rows, at the layout's stride.
///
/// # Safety
/// As [`weight_grad_tile`].
#[inline(always)]
unsafe fn weight_grad_rows<V: Vector, const GB: usize, const GR: usize>(
    planes: &[f32],
    blocked: &[f32],
    layout: &Layout,
    weight_grad: &mut [f32],
    at: (usize, usize),
) {
    macro_rules! rows_from {
        ($kh:literal) => {
            match layout.stride {
                1 => unsafe {
                    weight_grad_tile::<V, GB, GR, $kh, 1>(planes, blocked, layout, weight_grad, at)
                },
                _ => unsafe {
                    weight_grad_tile::<V, GB, GR, $kh, 2>(planes, blocked, layout, weight_grad, at)
                },
            }
        };
    }
    for first in (0..3).step_by(GR) {
        match first {
            0 => rows_from!(0),
            1 => rows_from!(1),
            _ => rows_from!(2),
        }
    }
}

/// Adds to output blocks `block..block + GB` and input channel `c` of `weight_grad` the sums
/// over every position of the image of their taps in kernel rows `KH..(KH + GR).min(3)`.
///
/// # Safety
/// As [`weight_grad_image`], with `block + GB ≤ C_out/L`, `c < C_in`, `KH < 3` and `S` the
/// layout's stride.
#[inline(always)]
unsafe fn weight_grad_tile<
    V: Vector,
    const GB: usize,
    const GR: usize,
    const KH: usize,
    const S: usize,
>(
    planes: &[f32],
    blocked: &[f32],
    layout: &Layout,
    weight_grad: &mut [f32],
    (block, c): (usize, usize),
) {
    let plan = &layout.plan;
    let per_block = plan.channels_in * TAPS * V::LANES;
    let dw = weight_grad.as_mut_ptr();
    let mut acc = [[unsafe { V::zero() }; TAPS]; GB];
    let at = (block, c);
    // SAFETY: as `weight_grad_positions` requires, every position of the image once; the
    // tile's writes stay in its blocks' channel `c`.
    unsafe {
        // A row's first and last positions skip their border's taps; those between share the
        // row's.
        let last = plan.ow - 1;
        for h in 0..plan.oh {
            with_edges!(layout.edges(h..=h, 0..=0), E => {
                weight_grad_positions::<V, GB, GR, KH, S, E>(planes, blocked, layout, at, h, 0..1, &mut acc)
            });
            if last > 0 {
                let row = layout.edges(h..=h, 1..=1) & (TOP | BOTTOM);
                with_edges!(row, E => weight_grad_positions::<V, GB, GR, KH, S, E>(
                    planes, blocked, layout, at, h, 1..last, &mut acc
                ));
                with_edges!(layout.edges(h..=h, last..=last), E => {
                    weight_grad_positions::<V, GB, GR, KH, S, E>(
                        planes, blocked, layout, at, h, last..last + 1, &mut acc
                    )
                });
            }
        }
        for (n, acc) in acc.iter().enumerate() {
            let target = dw.add((block + n) * per_block + c * TAPS * V::LANES);
            let taps = KH * 3..(KH + GR).min(3) * 3;
            for (t, acc) in acc.iter().enumerate().take(taps.end).skip(taps.start) {
                let at = target.add(t * V::LANES);
                V::add(V::load(at), *acc).store(at);
            }
        }
    }
}

/// Adds to `acc`, output blocks `block..block + GB` × the taps of input channel `c` in kernel
/// rows `KH..(KH + GR).min(3)`, the products at output positions `(h, w)` for `w` in
/// `columns`, skipping the taps `EDGES` says read padding there.
///
/// # Safety
/// As [`weight_grad_tile`], with `h < OH` and `columns` inside `0..OW`.
#[inline(always)]
unsafe fn weight_grad_positions<
    V: Vector,
    const GB: usize,
    const GR: usize,
    const KH: usize,
    const S: usize,
    const EDGES: u8,
>(
    planes: &[f32],
    blocked: &[f32],
    layout: &Layout,
    (block, c): (usize, usize),
    h: usize,
    columns: Range<usize>,
    acc: &mut [[V; TAPS]; GB],
) {
    let plan = &layout.plan;
    let Planes {
        plane, row, shift, ..
    } = layout.planes;
    let (x, dy) = (planes.as_ptr(), blocked.as_ptr());
    // SAFETY: inputs as in `forward_tile` (reads at `r·row + c − shift`, the address arithmetic
    // wrapping); gradient reads stay in block `block + GB − 1` of `C_out/L · OH·OW · L` floats.
    unsafe {
        let x = x.wrapping_sub(shift).wrapping_add(c * plane + h * S * row);
        for w in columns {
            let q = h * plan.ow + w;
            let mut grads = [V::zero(); GB];
            for (n, grad) in grads.iter_mut().enumerate() {
                *grad = V::load(dy.add(((block + n) * layout.positions + q) * V::LANES));
            }
            let at = x.wrapping_add(w * S);
            for kh in KH..(KH + GR).min(3) {
                for kw in 0..3 {
                    if skips::<EDGES, 1, 1>(0, kh, kw) {
                        continue;
                    }
                    let input = V::splat(at.wrapping_add(kh * row + kw));
                    for (acc, grad) in acc.iter_mut().zip(grads) {
                        acc[kh * 3 + kw] = V::fma(grad, input, acc[kh * 3 + kw]);
                    }
                }
            }
        }
    }
}
