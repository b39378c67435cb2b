//! The copies that frame an image for the direct and blocked kernels: padded planes (each
//! channel's rows with zero borders around them) and the widened output gradient (each row
//! followed by zeros to the padded width).
//!
//! A row of the narrow layers is 8–32 floats, so copying it with `copy_from_slice` and zeroing
//! its borders with `fill` made three calls into libc per row, whose fixed cost exceeded the
//! copying: 8.5 % of a ResNet-56 step went to `memcpy`, `memset` and this loop. Here each row is
//! whole vectors and one masked vector for its tail, the same for the zeros, with no calls.

// The kernels exist only for x86_64; elsewhere no `Isa` exists to ask for these copies.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::direct::Plan;
use super::vector::{Emulated512, Vector};
use crate::routing::Isa;

/// Copies `image` (`[C_in, H, W]`) into `padded` (`[C_in, Hp, Wp]` plus slack), zero outside
/// the image; the slack past the last plane is zeroed too, so every float the kernel reads is
/// written here. `padding` is `[top, left]`; the plan's planes give the bottom and right.
pub(super) fn pad(
    image: &[f32],
    height: usize,
    width: usize,
    padding: [usize; 2],
    plan: &Plan,
    padded: &mut [f32],
    isa: Isa,
) {
    let [top, left] = padding;
    assert!(height > 0 && width > 0, "an empty image to pad");
    assert_eq!(
        image.len(),
        plan.channels_in * height * width,
        "image to pad"
    );
    assert!(
        plan.wp >= left + width,
        "padded rows narrower than the image's"
    );
    assert!(
        plan.plane.is_multiple_of(plan.wp) && plan.plane / plan.wp >= top + height,
        "padded planes shorter than the image's"
    );
    assert!(
        padded.len() >= plan.channels_in * plan.plane,
        "padded buffer"
    );
    let frame = Frame {
        rows: height,
        width,
        stride: plan.wp,
        before: top * plan.wp + left,
        between: plan.wp - width,
        after: plan.plane - (top + height - 1) * plan.wp - left - width,
    };
    // SAFETY: `frame` writes `plane` floats per plane (`before + rows·width + (rows − 1)·between
    // + after`) and reads `height·width` per image plane; the asserts above bound both.
    unsafe { copy_framed(image, padded, plan.channels_in, &frame, plan.plane, isa) };
}

/// Copies one image's output gradient (`[C_out, OH, OW]`) into `wide` (`[C_out, q_stride]`,
/// rows `Wp` apart), zero in the discarded columns and past the last row, so the wide dot
/// products count only real outputs. (Those zeros still multiply input values of the padded
/// planes; an infinite input there would turn the sum into NaN, as it would in burn's own
/// convolution of such an input.)
pub(super) fn widen(output_grad: &[f32], plan: &Plan, wide: &mut [f32], isa: Isa) {
    assert!(plan.oh > 0 && plan.ow > 0, "an empty gradient to widen");
    assert_eq!(
        output_grad.len(),
        plan.channels_out * plan.oh * plan.ow,
        "gradient to widen"
    );
    assert!(
        plan.wp >= plan.ow && plan.q_stride >= plan.oh * plan.wp,
        "wide rows"
    );
    assert!(
        wide.len() >= plan.channels_out * plan.q_stride,
        "wide buffer"
    );
    let frame = Frame {
        rows: plan.oh,
        width: plan.ow,
        stride: plan.wp,
        before: 0,
        between: plan.wp - plan.ow,
        after: plan.q_stride - (plan.oh - 1) * plan.wp - plan.ow,
    };
    // SAFETY: as in `pad`: `q_stride` floats written per channel, `OH·OW` read.
    unsafe {
        copy_framed(
            output_grad,
            wide,
            plan.channels_out,
            &frame,
            plan.q_stride,
            isa,
        )
    };
}

/// Where a plane's rows go in its framed copy: `before` zeros, then each row of `width` floats
/// with `between` zeros after all but the last, then `after` zeros; rows start `stride` apart.
struct Frame {
    rows: usize,
    width: usize,
    stride: usize,
    before: usize,
    between: usize,
    after: usize,
}

/// Frames `planes` planes of `source` into `target`, the framed planes `framed` floats apart,
/// and zeroes what follows the last one.
///
/// # Safety
/// `source` holds `planes · rows · width` floats and `target` `planes · framed` at least, with
/// `before + rows·width + (rows − 1)·between + after == framed`, `rows ≥ 1`.
unsafe fn copy_framed(
    source: &[f32],
    target: &mut [f32],
    planes: usize,
    frame: &Frame,
    framed: usize,
    isa: Isa,
) {
    debug_assert_eq!(
        frame.before + frame.rows * frame.width + (frame.rows - 1) * frame.between + frame.after,
        framed
    );
    debug_assert_eq!(frame.width + frame.between, frame.stride);
    // `Isa` is a plain enum, and the callers frame planes before the kernels check theirs.
    assert!(isa.supported(), "{isa:?} kernels on a CPU without {isa:?}");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set (asserted above); the bounds are the caller's.
    unsafe {
        match isa {
            Isa::Avx512 => x86::framed_avx512(source, target, planes, frame, framed),
            Isa::Avx2 => x86::framed_avx2(source, target, planes, frame, framed),
            Isa::Avx512Emulated => {
                self::framed::<Emulated512>(source, target, planes, frame, framed)
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no direct convolution kernels on this architecture")
}

/// [`copy_framed`] on vectors `V`.
///
/// # Safety
/// As [`copy_framed`]; inlined only into functions compiled for `V`'s instruction set.
#[inline(always)]
unsafe fn framed<V: Vector>(
    source: &[f32],
    target: &mut [f32],
    planes: usize,
    frame: &Frame,
    framed: usize,
) {
    let (from, to) = (source.as_ptr(), target.as_mut_ptr());
    for plane in 0..planes {
        // SAFETY: within the bounds of the function's contract.
        unsafe {
            let from = from.add(plane * frame.rows * frame.width);
            let to = to.add(plane * framed);
            zero::<V>(to, frame.before);
            let to = to.add(frame.before);
            for row in 0..frame.rows {
                let last = row + 1 == frame.rows;
                let to = to.add(row * frame.stride);
                copy::<V>(from.add(row * frame.width), to, frame.width);
                let zeros = if last { frame.after } else { frame.between };
                zero::<V>(to.add(frame.width), zeros);
            }
        }
    }
    // SAFETY: the tail of `target` past the planes.
    unsafe { zero::<V>(to.add(planes * framed), target.len() - planes * framed) };
}

/// Copies `n` floats.
///
/// # Safety
/// `from` readable and `to` writable for `n` floats; on `V`'s instruction set.
#[inline(always)]
unsafe fn copy<V: Vector>(from: *const f32, to: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY: every access is below `n`.
    unsafe {
        while i + V::LANES <= n {
            V::load(from.add(i)).store(to.add(i));
            i += V::LANES;
        }
        if i < n {
            V::load_first(from.add(i), n - i).store_first(to.add(i), n - i);
        }
    }
}

/// Zeroes `n` floats.
///
/// # Safety
/// `to` writable for `n` floats; on `V`'s instruction set.
#[inline(always)]
unsafe fn zero<V: Vector>(to: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY: every access is below `n`.
    unsafe {
        let zero = V::zero();
        while i + V::LANES <= n {
            zero.store(to.add(i));
            i += V::LANES;
        }
        if i < n {
            zero.store_first(to.add(i), n - i);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Frame, framed};
    use crate::conv::vector::{Avx2, Avx512};

    /// # Safety
    /// The CPU has AVX-512F; as [`super::copy_framed`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn framed_avx512(
        source: &[f32],
        target: &mut [f32],
        planes: usize,
        frame: &Frame,
        size: usize,
    ) {
        unsafe { framed::<Avx512>(source, target, planes, frame, size) }
    }

    /// # Safety
    /// The CPU has AVX2; as [`super::copy_framed`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn framed_avx2(
        source: &[f32],
        target: &mut [f32],
        planes: usize,
        frame: &Frame,
        size: usize,
    ) {
        unsafe { framed::<Avx2>(source, target, planes, frame, size) }
    }
}
