//! Direct stride-1 convolution in NCHW, vectorised over output positions, without im2col.
//!
//! For a `k×k` kernel with stride 1, each image is first copied into a zero-bordered plane per
//! channel (`Hp × Wp`, with `Wp = W + 2·padding`). On that plane, output position `(h, w)` reads
//! tap `(kh, kw)` at `(h + kh)·Wp + (w + kw)`: one fixed offset per tap from `q = h·Wp + w`. So
//! the convolution is computed for every `q` of the padded rows ("wide" output, whose last
//! `Wp − OW` columns of each row are discarded), and a tile of `OB` output channels × `QV`
//! vectors of consecutive `q` accumulates, for every input channel and tap, one unaligned load
//! of the input per vector and one broadcast weight per channel: `OB·QV` fused multiply-adds per
//! `OB + QV` loads, all in registers. The im2col path instead writes and then packs a matrix
//! nine times the input's size; for the 16–64-channel layers of the CIFAR ResNets that copying
//! costs as much as the arithmetic (`benches/README.md`).
//!
//! The input gradient of such a convolution is the same kind of convolution of the output
//! gradient, with the kernel flipped and its channel axes swapped, and padding `k − 1 − p`.
//! The weight gradient reads the same padded planes: for each tap, `dW[o, c]` is the dot
//! product of output channel `o`'s gradient, widened to the padded rows with zeros in the
//! discarded columns, with input plane `c` shifted by the tap's offset; a tile of `OB × CB`
//! channel pairs accumulates `OB·CB` products per `OB + CB` loads.

// The kernels exist only for x86_64; elsewhere `covers` is never asked (no `Isa` exists).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::ops::Range;

use rayon::prelude::*;

use super::epilogue::Epilogue;
use super::geometry::Geometry;
use super::planes::{pad, widen};
use super::vector::{Emulated512, Vector};
use super::weight_grad::sum_in_order;
use crate::routing::Isa;
use crate::scratch::{Scratch, prefix, with_scratch};
use crate::unfilled;

/// Output channels per register tile.
const OB: usize = 4;

/// Register tile of the AVX-512 kernels: vectors of consecutive positions.
const AVX512_VECTORS: usize = 4;

/// Register tile of the AVX2 kernels (half the registers of AVX-512).
const AVX2_VECTORS: usize = 2;

/// Whether the direct kernels compute `g`: stride 1, no dilation, a square odd kernel no wider
/// than 7, padding below the kernel size (so the input gradient's padding `k − 1 − p` is not
/// negative), and no empty plane.
pub(crate) fn covers(g: &Geometry) -> bool {
    let k = g.kernel[0];
    g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.kernel[0] == g.kernel[1]
        && k % 2 == 1
        && k <= 7
        && g.padding.iter().all(|&p| p < k)
        && g.in_positions() > 0
        && g.out_positions() > 0
}

/// The sizes of one image's padded planes and wide output.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) channels_in: usize,
    pub(super) channels_out: usize,
    pub(super) kernel: usize,
    /// Padded width.
    pub(super) wp: usize,
    /// Floats per padded input plane.
    pub(super) plane: usize,
    /// Output rows and columns.
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// Wide output positions per channel (`OH·Wp`), rounded up to whole tiles.
    pub(super) q_stride: usize,
    /// Padded input floats to allocate: every plane, plus what the last tiles read past the
    /// last plane.
    pub(super) padded_len: usize,
}

impl Plan {
    pub(super) fn new(g: &Geometry, tile: usize) -> Self {
        let kernel = g.kernel[0];
        let wp = g.width + 2 * g.padding[1];
        let plane = wp * (g.height + 2 * g.padding[0]);
        let q_len = g.out_height * wp;
        let q_stride = q_len.div_ceil(tile) * tile;
        let reach = (kernel - 1) * wp + (kernel - 1);
        let padded_len =
            (g.channels_in * plane).max((g.channels_in - 1) * plane + q_stride + reach);
        Self {
            channels_in: g.channels_in,
            channels_out: g.channels_out,
            kernel,
            wp,
            plane,
            oh: g.out_height,
            ow: g.out_width,
            q_stride,
            padded_len,
        }
    }
}

/// `conv(x, weight)` for every image, `x` `[N, C_in, H, W]` and `weight` `[C_out, C_in, k, k]`
/// contiguous; the output `[N, C_out, OH, OW]`, flattened, each written through `epilogue`.
/// `g` must be [`covers`]ed.
pub(crate) fn forward(
    x: &[f32],
    weight: &[f32],
    g: &Geometry,
    isa: Isa,
    epilogue: Epilogue,
) -> Vec<f32> {
    g.check_input(x);
    g.check_weight(weight);
    epilogue.check(g);
    let per_image = g.channels_out * g.out_positions();
    let image_len = g.channels_in * g.in_positions();
    if g.is_empty() {
        return vec![0.0; g.batch * per_image];
    }
    let plan = Plan::new(g, isa.tile());
    let padding = g.padding;
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
                let padded = prefix(columns, plan.padded_len);
                pad(image, g.height, g.width, padding, &plan, padded, isa);
                let wide = prefix(product, plan.channels_out * plan.q_stride);
                isa.run(padded, weight, &plan, wide);
                for (o, output) in output.chunks_exact_mut(g.out_positions()).enumerate() {
                    let wide = &wide[o * plan.q_stride..];
                    for (h, row) in output.chunks_exact_mut(plan.ow).enumerate() {
                        epilogue.write(o, row, &wide[h * plan.wp..][..plan.ow]);
                    }
                }
                // SAFETY: every channel's rows were copied out of the wide output above.
                unsafe { epilogue.finish_image(index, output) };
            })
        });
    // SAFETY: every image's channels and rows were copied out of the wide output above.
    unsafe { unfilled::assume_init(output) }
}

/// The gradient with respect to `x` of [`forward`], given `weight` and the output gradient:
/// the direct convolution of the output gradient with the flipped, channel-swapped kernel.
pub(crate) fn input_grad(weight: &[f32], output_grad: &[f32], g: &Geometry, isa: Isa) -> Vec<f32> {
    g.check_weight(weight);
    g.check_output(output_grad);
    forward(
        output_grad,
        &flipped(weight, g),
        &transposed(g),
        isa,
        Epilogue::NONE,
    )
}

/// The kernel of the convolution that computes `g`'s input gradient: `weight` (`[C_out, C_in,
/// k, k]`) with its taps reversed and its channel axes swapped, `[C_in, C_out, k, k]`.
pub(super) fn flipped(weight: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = g.kernel[0] * g.kernel[1];
    let mut flipped = vec![0f32; weight.len()];
    for o in 0..g.channels_out {
        for c in 0..g.channels_in {
            let source = &weight[(o * g.channels_in + c) * taps..][..taps];
            let target = &mut flipped[(c * g.channels_out + o) * taps..][..taps];
            for (t, value) in target.iter_mut().zip(source.iter().rev()) {
                *t = *value;
            }
        }
    }
    flipped
}

/// The geometry of the convolution that computes stride-1 `g`'s input gradient: from the
/// output gradient to the input's shape, padding `k − 1 − p`.
pub(super) fn transposed(g: &Geometry) -> Geometry {
    Geometry {
        batch: g.batch,
        channels_in: g.channels_out,
        height: g.out_height,
        width: g.out_width,
        channels_out: g.channels_in,
        kernel: g.kernel,
        out_height: g.height,
        out_width: g.width,
        stride: [1, 1],
        padding: [
            g.kernel[0] - 1 - g.padding[0],
            g.kernel[1] - 1 - g.padding[1],
        ],
        dilation: [1, 1],
    }
}

/// Input channels per weight-gradient tile.
const CB: usize = 4;

/// The weight gradient `[C_out, C_in, k, k]`, flattened, of [`forward`], given `x` and the
/// output gradient, both contiguous. Each thread sums a fixed share of the batch and the shares
/// are added in order, so the result does not depend on scheduling.
pub(crate) fn weight_grad(x: &[f32], output_grad: &[f32], g: &Geometry, isa: Isa) -> Vec<f32> {
    g.check_input(x);
    g.check_output(output_grad);
    let taps = g.kernel[0] * g.kernel[1];
    let len = g.channels_out * g.channels_in * taps;
    if g.is_empty() {
        return vec![0.0; len];
    }
    let plan = Plan::new(g, isa.tile());
    let image_len = g.channels_in * g.in_positions();
    let grad_len = g.channels_out * g.out_positions();
    let partials: Vec<Vec<f32>> = g
        .shares()
        .into_par_iter()
        .map(|images| {
            let mut weight_grad = vec![0f32; len];
            with_scratch(|scratch| {
                let Scratch {
                    columns, product, ..
                } = scratch;
                for image in images {
                    let padded = prefix(columns, plan.padded_len);
                    pad(
                        &x[image * image_len..][..image_len],
                        g.height,
                        g.width,
                        g.padding,
                        &plan,
                        padded,
                        isa,
                    );
                    let wide = prefix(product, plan.channels_out * plan.q_stride);
                    widen(
                        &output_grad[image * grad_len..][..grad_len],
                        &plan,
                        wide,
                        isa,
                    );
                    isa.accumulate_weight_grad(padded, wide, &plan, &mut weight_grad);
                }
            });
            weight_grad
        })
        .collect();
    sum_in_order(partials)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::conv::vector::{Avx2, Avx512};

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::image`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn image_avx512(
        padded: &[f32],
        weight: &[f32],
        plan: &super::Plan,
        wide: &mut [f32],
    ) {
        unsafe { super::image::<Avx512, { super::AVX512_VECTORS }>(padded, weight, plan, wide) }
    }

    /// # Safety
    /// The CPU has AVX-512F; the slices are as [`super::weight_grad_image`] requires.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_grad_avx512(
        padded: &[f32],
        wide: &[f32],
        plan: &super::Plan,
        weight_grad: &mut [f32],
    ) {
        unsafe { super::weight_grad_image::<Avx512>(padded, wide, plan, weight_grad) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the slices are as [`super::weight_grad_image`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_grad_avx2(
        padded: &[f32],
        wide: &[f32],
        plan: &super::Plan,
        weight_grad: &mut [f32],
    ) {
        unsafe { super::weight_grad_image::<Avx2>(padded, wide, plan, weight_grad) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA; the slices are as [`super::image`] requires.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn image_avx2(
        padded: &[f32],
        weight: &[f32],
        plan: &super::Plan,
        wide: &mut [f32],
    ) {
        unsafe { super::image::<Avx2, { super::AVX2_VECTORS }>(padded, weight, plan, wide) }
    }
}

impl Isa {
    /// Output positions per register tile.
    fn tile(self) -> usize {
        match self {
            Isa::Avx512 | Isa::Avx512Emulated => 16 * AVX512_VECTORS,
            Isa::Avx2 => 8 * AVX2_VECTORS,
        }
    }

    /// Checks, once per image, what the unsafe kernels rely on: the CPU has this instruction
    /// set, the plan's tiles are this set's, the plan reserves what its tiles read, and the
    /// slices are as long as the plan says.
    fn check(self, plan: &Plan, padded: &[f32], wide: &[f32], weights: &[f32]) {
        assert!(
            self.supported(),
            "{self:?} kernels on a CPU without {self:?}"
        );
        assert_eq!(plan.q_stride % self.tile(), 0, "a plan for another tile");
        assert!(plan.channels_in > 0 && plan.kernel > 0, "an empty plan");
        let reach = (plan.kernel - 1) * (plan.wp + 1);
        assert!(
            plan.padded_len >= (plan.channels_in - 1) * plan.plane + plan.q_stride + reach,
            "the padded planes are shorter than the tiles' reads"
        );
        assert!(padded.len() >= plan.padded_len);
        assert!(wide.len() >= plan.channels_out * plan.q_stride);
        assert_eq!(
            weights.len(),
            plan.channels_out * plan.channels_in * plan.kernel * plan.kernel
        );
    }

    /// One image's wide output from its padded planes, on this instruction set.
    fn run(self, padded: &[f32], weight: &[f32], plan: &Plan, wide: &mut [f32]) {
        self.check(plan, padded, wide, weight);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has the instruction set, and the plan and slices are as the kernels
        // require (`check`).
        unsafe {
            match self {
                Isa::Avx512 => x86::image_avx512(padded, weight, plan, wide),
                Isa::Avx2 => x86::image_avx2(padded, weight, plan, wide),
                Isa::Avx512Emulated => {
                    image::<Emulated512, AVX512_VECTORS>(padded, weight, plan, wide)
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no direct convolution kernels on this architecture")
    }

    /// Adds one image's weight gradient to `weight_grad`, from its padded planes and widened
    /// output gradient, on this instruction set.
    fn accumulate_weight_grad(
        self,
        padded: &[f32],
        wide: &[f32],
        plan: &Plan,
        weight_grad: &mut [f32],
    ) {
        self.check(plan, padded, wide, weight_grad);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `run`.
        unsafe {
            match self {
                Isa::Avx512 => x86::weight_grad_avx512(padded, wide, plan, weight_grad),
                Isa::Avx2 => x86::weight_grad_avx2(padded, wide, plan, weight_grad),
                Isa::Avx512Emulated => {
                    weight_grad_image::<Emulated512>(padded, wide, plan, weight_grad)
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no direct convolution kernels on this architecture")
    }
}

/// The wide output `[C_out, q_stride]` of one image from its padded planes.
///
/// # Safety
/// `padded` holds `plan.padded_len` floats, `wide` `C_out · q_stride`, `weight`
/// `C_out · C_in · k²`; inlined only into functions compiled for `V`'s instruction set.
#[inline(always)]
unsafe fn image<V: Vector, const QV: usize>(
    padded: &[f32],
    weight: &[f32],
    plan: &Plan,
    wide: &mut [f32],
) {
    // 3×3, every convolution of the ResNets but the 7×7 stem, with its taps unrolled.
    match plan.kernel {
        3 => unsafe { image_with::<V, QV, 3>(padded, weight, plan, wide) },
        _ => unsafe { image_with::<V, QV, 0>(padded, weight, plan, wide) },
    }
}

/// [`image`] for a kernel of `K × K` (`K = 0`: the plan's size, not known at compile time).
///
/// # Safety
/// As [`image`], with `K` zero or the plan's kernel size.
#[inline(always)]
unsafe fn image_with<V: Vector, const QV: usize, const K: usize>(
    padded: &[f32],
    weight: &[f32],
    plan: &Plan,
    wide: &mut [f32],
) {
    let tile = V::LANES * QV;
    assert_eq!(
        plan.q_stride % tile,
        0,
        "the plan's tiles are this kernel's"
    );
    let full = plan.channels_out / OB * OB;
    // Output channels outermost: a block's weights (`OB · C_in · k²` floats) stay in the L1
    // cache while its positions sweep the padded planes, which stay in L2.
    for o in (0..full).step_by(OB) {
        for q in (0..plan.q_stride).step_by(tile) {
            unsafe { tile_of::<V, OB, QV, K>(padded, weight, plan, wide, o..o + OB, q) };
        }
    }
    for o in full..plan.channels_out {
        for q in (0..plan.q_stride).step_by(tile) {
            unsafe { tile_of::<V, 1, QV, K>(padded, weight, plan, wide, o..o + 1, q) };
        }
    }
}

/// Output channels `outputs` (`N` of them) × positions `q..q + QV·LANES` of the wide output.
///
/// # Safety
/// As [`image_with`]; `q + QV·LANES ≤ q_stride` and `outputs` within `C_out`.
#[inline(always)]
unsafe fn tile_of<V: Vector, const N: usize, const QV: usize, const K: usize>(
    padded: &[f32],
    weight: &[f32],
    plan: &Plan,
    wide: &mut [f32],
    outputs: Range<usize>,
    q: usize,
) {
    let k = if K == 0 { plan.kernel } else { K };
    let taps = k * k;
    let per_output = plan.channels_in * taps;
    let mut acc = [[unsafe { V::zero() }; QV]; N];
    let x = padded.as_ptr();
    let w = weight.as_ptr();
    for c in 0..plan.channels_in {
        // SAFETY: the highest float read is `(C_in − 1)·plane + q_stride − 1 + (k−1)·Wp + k − 1`,
        // below `padded_len` by `Plan::new`; weights stay within `C_out · C_in · k²`.
        unsafe {
            let plane = x.add(c * plan.plane + q);
            let weights = w.add(outputs.start * per_output + c * taps);
            for kh in 0..k {
                for kw in 0..k {
                    let at = plane.add(kh * plan.wp + kw);
                    let mut inputs = [V::zero(); QV];
                    for (v, input) in inputs.iter_mut().enumerate() {
                        *input = V::load(at.add(v * V::LANES));
                    }
                    for (n, acc) in acc.iter_mut().enumerate() {
                        let weight = V::splat(weights.add(n * per_output + kh * k + kw));
                        for (acc, input) in acc.iter_mut().zip(inputs) {
                            *acc = V::fma(weight, input, *acc);
                        }
                    }
                }
            }
        }
    }
    let out = wide.as_mut_ptr();
    for (n, acc) in acc.iter().enumerate() {
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: `(outputs.start + n)·q_stride + q + (v + 1)·LANES ≤ C_out · q_stride`.
            unsafe { acc.store(out.add((outputs.start + n) * plan.q_stride + q + v * V::LANES)) };
        }
    }
}

/// Adds to `weight_grad` (`[C_out, C_in, k, k]`) one image's contribution.
///
/// # Safety
/// `padded` holds `plan.padded_len` floats, `wide` `C_out · q_stride`; inlined only into
/// functions compiled for `V`'s instruction set.
#[inline(always)]
unsafe fn weight_grad_image<V: Vector>(
    padded: &[f32],
    wide: &[f32],
    plan: &Plan,
    weight_grad: &mut [f32],
) {
    let k = plan.kernel;
    for kh in 0..k {
        for kw in 0..k {
            let (tap, offset) = (kh * k + kw, kh * plan.wp + kw);
            for o in (0..plan.channels_out).step_by(OB) {
                for c in (0..plan.channels_in).step_by(CB) {
                    let at = Pair { o, c, tap, offset };
                    let whole = o + OB <= plan.channels_out && c + CB <= plan.channels_in;
                    if whole {
                        // SAFETY: as this function's; the tile lies inside the channels.
                        unsafe { pair_block::<V, OB, CB>(padded, wide, plan, weight_grad, at) };
                        continue;
                    }
                    // The remainder channels, one pair at a time.
                    for o in o..(o + OB).min(plan.channels_out) {
                        for c in c..(c + CB).min(plan.channels_in) {
                            let at = Pair { o, c, ..at };
                            // SAFETY: as above.
                            unsafe { pair_block::<V, 1, 1>(padded, wide, plan, weight_grad, at) };
                        }
                    }
                }
            }
        }
    }
}

/// Where a weight-gradient tile starts: first output and input channel, tap, and the tap's
/// offset on the padded plane.
#[derive(Clone, Copy)]
struct Pair {
    o: usize,
    c: usize,
    tap: usize,
    offset: usize,
}

/// `dW[o..o + NO, c..c + NC, tap] += Σ_q wide[o][q] · padded[c][q + offset]`.
///
/// # Safety
/// As [`weight_grad_image`], with `at.o + NO ≤ C_out` and `at.c + NC ≤ C_in`.
#[inline(always)]
unsafe fn pair_block<V: Vector, const NO: usize, const NC: usize>(
    padded: &[f32],
    wide: &[f32],
    plan: &Plan,
    weight_grad: &mut [f32],
    at: Pair,
) {
    let taps = plan.kernel * plan.kernel;
    let mut acc = [[unsafe { V::zero() }; NC]; NO];
    let (x, dy) = (padded.as_ptr(), wide.as_ptr());
    for q in (0..plan.q_stride).step_by(V::LANES) {
        // SAFETY: `q + LANES ≤ q_stride`, so the widened gradient reads stay in `C_out ·
        // q_stride`, and the padded reads in `padded_len` (`Plan::new`).
        unsafe {
            let mut inputs = [V::zero(); NC];
            for (n, input) in inputs.iter_mut().enumerate() {
                *input = V::load(x.add((at.c + n) * plan.plane + at.offset + q));
            }
            for (n, acc) in acc.iter_mut().enumerate() {
                let grad = V::load(dy.add((at.o + n) * plan.q_stride + q));
                for (acc, input) in acc.iter_mut().zip(inputs) {
                    *acc = V::fma(grad, input, *acc);
                }
            }
        }
    }
    for (n, acc) in acc.iter().enumerate() {
        for (m, acc) in acc.iter().enumerate() {
            let index = ((at.o + n) * plan.channels_in + at.c + m) * taps + at.tap;
            // SAFETY: as above.
            weight_grad[index] += unsafe { acc.sum() };
        }
    }
}

pub(crate) mod checks {
    //! Run by the crate's test suite through [`crate::self_checks`]: the direct kernels
    //! against a plain f64 convolution, on every instruction set this CPU
    //! has and AVX-512's emulated, on shapes small enough for Miri. A machine without AVX-512
    //! cannot run the AVX-512 kernels natively; Miri can, and checks every access they make as
    //! it goes: `MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks" RUSTFLAGS="-C
    //! target-feature=+avx512f,+avx2,+fma" cargo +nightly miri test -p kaiming-kernels --test
    //! suite internals::` (`docs/development.md`).

    use std::io::Write;

    use burn::backend::ops::ConvOptions;
    use burn::tensor::Shape;

    use super::{Epilogue, Isa, forward, input_grad, weight_grad};
    use crate::conv::geometry::Geometry;
    use crate::conv::{Pass, blocked};

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Output, input gradient and weight gradient of the convolution of `x` with `weight`
    /// under the output gradient `dy`, summed in f64 straight from the definition.
    fn reference(g: &Geometry, x: &[f32], weight: &[f32], dy: &[f32]) -> [Vec<f64>; 3] {
        let (k, p, stride) = (g.kernel[0], g.padding[0] as isize, g.stride[0] as isize);
        let mut output = vec![0f64; g.batch * g.channels_out * g.out_positions()];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; weight.len()];
        for n in 0..g.batch {
            for o in 0..g.channels_out {
                for oh in 0..g.out_height {
                    for ow in 0..g.out_width {
                        let out = ((n * g.channels_out + o) * g.out_height + oh) * g.out_width + ow;
                        for c in 0..g.channels_in {
                            for kh in 0..k {
                                for kw in 0..k {
                                    let ih = oh as isize * stride + kh as isize - p;
                                    let iw = ow as isize * stride + kw as isize - p;
                                    if ih < 0
                                        || iw < 0
                                        || ih >= g.height as isize
                                        || iw >= g.width as isize
                                    {
                                        continue;
                                    }
                                    let i = ((n * g.channels_in + c) * g.height + ih as usize)
                                        * g.width
                                        + iw as usize;
                                    let w = ((o * g.channels_in + c) * k + kh) * k + kw;
                                    output[out] += f64::from(x[i]) * f64::from(weight[w]);
                                    dx[i] += f64::from(dy[out]) * f64::from(weight[w]);
                                    dw[w] += f64::from(dy[out]) * f64::from(x[i]);
                                }
                            }
                        }
                    }
                }
            }
        }
        [output, dx, dw]
    }

    fn assert_close(what: &str, ours: &[f32], exact: &[f64]) {
        assert_eq!(ours.len(), exact.len(), "{what}: length");
        for (i, (a, b)) in ours.iter().zip(exact).enumerate() {
            let error = (f64::from(*a) - b).abs();
            assert!(
                error <= 1e-5 * b.abs().max(1.0),
                "{what}[{i}]: {a} against {b}"
            );
        }
    }

    /// Every kernel of `pass` (direct and channel-blocked) against the definition, on every
    /// instruction set this CPU has. One test per pass, so Miri can check one pass's kernels
    /// in a run of its own (`… miri test … --test suite internals::weight_gradient`).
    fn kernels_match_the_definition(pass: Pass) {
        // (batch, in, out, height, width, kernel, padding, stride): channel counts off the
        // register tile, rows shorter and longer than a vector, odd sizes, 1×1, 5×5, no
        // padding; then the channel-blocked kernels' shapes: 32 and 16 channels (pairs of
        // vectors and a lone one on AVX-512), rows off their position tiles, no padding (the
        // input gradient's padding is then 2), stride 2 on odd and even sizes; rows of 4, which
        // the forward tiles span two or four at a time (at stride 1 and 2; a lone vector on
        // AVX2 with 24 channels), and rows of 4 in a number of rows no tile spans.
        let shapes = [
            (2, 3, 5, 5, 7, 3, 1, 1),
            (1, 4, 4, 9, 17, 3, 1, 1),
            (1, 2, 6, 6, 5, 5, 2, 1),
            (2, 5, 3, 4, 4, 1, 0, 1),
            (1, 3, 2, 6, 6, 3, 0, 1),
            (1, 32, 32, 3, 11, 3, 1, 1),
            (2, 16, 32, 5, 4, 3, 0, 1),
            (1, 16, 16, 2, 18, 3, 1, 1),
            (1, 16, 32, 7, 19, 3, 1, 2),
            (2, 16, 16, 6, 4, 3, 0, 2),
            (2, 16, 32, 4, 4, 3, 1, 1),
            (1, 16, 32, 8, 8, 3, 1, 2),
            (1, 8, 24, 4, 4, 3, 1, 1),
            (1, 32, 32, 3, 4, 3, 1, 1),
        ];
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Avx512Emulated] {
            if !isa.supported() {
                // Past the harness's capture, so a passing test's log says so too.
                let said = writeln!(
                    std::io::stderr(),
                    "not tested here: the {pass:?} kernels on {isa:?}, which this CPU lacks"
                );
                said.expect("stderr is writable");
                continue;
            }
            let mut blocked_runs = 0;
            for (batch, c, o, h, w, k, p, s) in shapes {
                let g = Geometry::new(
                    &Shape::new([batch, c, h, w]),
                    &Shape::new([o, c, k, k]),
                    &ConvOptions::new([s, s], [p, p], [1, 1], 1),
                );
                let x = values(batch * c * h * w, 1);
                let weight = values(o * c * k * k, 2);
                let dy = values(batch * o * g.out_positions(), 3);
                let [output, dx, dw] = reference(&g, &x, &weight, &dy);
                let what = format!(
                    "{isa:?} {pass:?} on {batch}×{c}×{h}×{w}, {o} filters {k}×{k} pad {p} stride {s}"
                );
                if super::covers(&g) {
                    let (ours, exact) = match pass {
                        Pass::Forward => (forward(&x, &weight, &g, isa, Epilogue::NONE), &output),
                        Pass::InputGrad => (input_grad(&weight, &dy, &g, isa), &dx),
                        Pass::WeightGrad => (weight_grad(&x, &dy, &g, isa), &dw),
                    };
                    assert_close(&format!("direct {what}"), &ours, exact);
                }
                if blocked::covers(&g, pass, isa) {
                    blocked_runs += 1;
                    let (ours, exact) = match pass {
                        Pass::Forward => (
                            blocked::forward(&x, &weight, &g, isa, Epilogue::NONE),
                            &output,
                        ),
                        Pass::InputGrad => (blocked::input_grad(&weight, &dy, &g, isa), &dx),
                        Pass::WeightGrad => (blocked::weight_grad(&x, &dy, &g, isa), &dw),
                    };
                    assert_close(&format!("blocked {what}"), &ours, exact);
                }
            }
            // The last nine shapes are the blocked kernels', but for the 24-channel one on
            // AVX-512 (not whole vectors).
            let expected = match isa {
                Isa::Avx512 | Isa::Avx512Emulated => 8,
                Isa::Avx2 => 9,
            };
            assert_eq!(
                blocked_runs, expected,
                "the blocked {pass:?} kernels ran on {blocked_runs} shapes on {isa:?}"
            );
        }
    }

    pub fn forward_kernels_match_the_definition() {
        kernels_match_the_definition(Pass::Forward);
    }

    pub fn input_gradient_kernels_match_the_definition() {
        kernels_match_the_definition(Pass::InputGrad);
    }

    pub fn weight_gradient_kernels_match_the_definition() {
        kernels_match_the_definition(Pass::WeightGrad);
    }
}
