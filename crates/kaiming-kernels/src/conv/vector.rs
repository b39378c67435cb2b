//! The SIMD vectors the direct kernels compute with: one trait, implemented for AVX-512 and
//! AVX2, so each kernel is written once and compiled for both, and for a portable vector of 16
//! floats ([`Emulated512`]) that runs AVX-512's tiles on any x86-64 CPU, so the tests check their
//! index arithmetic where AVX-512 is missing.

// Only x86_64 has implementations; elsewhere no kernel is compiled for a vector.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

/// A SIMD vector of `f32` and the few operations the tile needs.
pub(super) trait Vector: Copy {
    /// Floats per vector.
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(from: *const f32) -> Self;
    unsafe fn splat(from: *const f32) -> Self;
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// Lane by lane, `b` where `a` is NaN.
    unsafe fn max(a: Self, b: Self) -> Self;
    unsafe fn store(self, to: *mut f32);
    /// The `n < LANES` floats at `from` in the first lanes, zero in the others; reads nothing
    /// past them (masked, so a row's tail at the end of its buffer is safe to read).
    unsafe fn load_first(from: *const f32, n: usize) -> Self;
    /// Stores the first `n < LANES` lanes at `to`, writing nothing past them.
    unsafe fn store_first(self, to: *mut f32, n: usize);
    /// The sum of the lanes.
    unsafe fn sum(self) -> f32;
    /// The `LANES × LANES` floats whose row `i` is at `from + i·stride`, transposed: calls
    /// `column(j, v)` for every `j`, `v` holding column `j` (lane `i` from row `i`). The
    /// channel-blocked layout's conversions, in registers instead of a float at a time.
    unsafe fn transpose(from: *const f32, stride: usize, column: impl FnMut(usize, Self));
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

/// AVX-512's vector (16 floats) in plain arrays, lane by lane as AVX-512 computes it: a fused
/// multiply-add per lane, `max` keeping its second operand where the first is NaN, masked
/// loads and stores that touch nothing past their lanes. The kernels compiled over it run the
/// same tiles, strides and border cases as over [`Avx512`], several times slower.
#[derive(Clone, Copy)]
pub(super) struct Emulated512([f32; 16]);

// SAFETY (all methods): pointers are valid for the lanes each method reads or writes; no
// instruction set is needed.
impl Vector for Emulated512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self([0.0; 16])
    }
    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        Self(unsafe { from.cast::<[f32; 16]>().read_unaligned() })
    }
    #[inline(always)]
    unsafe fn splat(from: *const f32) -> Self {
        Self([unsafe { *from }; 16])
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| a.0[i].mul_add(b.0[i], c.0[i])))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Self(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        // `vmaxps`: the first operand where it is greater, else the second (NaN included).
        Self(std::array::from_fn(|i| {
            if a.0[i] > b.0[i] { a.0[i] } else { b.0[i] }
        }))
    }
    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        unsafe { to.cast::<[f32; 16]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    unsafe fn load_first(from: *const f32, n: usize) -> Self {
        debug_assert!(n < 16);
        Self(std::array::from_fn(|i| {
            if i < n { unsafe { *from.add(i) } } else { 0.0 }
        }))
    }
    #[inline(always)]
    unsafe fn store_first(self, to: *mut f32, n: usize) {
        debug_assert!(n < 16);
        for (i, &lane) in self.0[..n].iter().enumerate() {
            unsafe { to.add(i).write(lane) };
        }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        self.0.iter().sum()
    }
    #[inline(always)]
    unsafe fn transpose(from: *const f32, stride: usize, mut column: impl FnMut(usize, Self)) {
        // Every row is read before the first column is handed out, as in registers.
        let rows: [[f32; 16]; 16] = std::array::from_fn(|i| unsafe {
            from.add(i * stride).cast::<[f32; 16]>().read_unaligned()
        });
        let columns: [[f32; 16]; 16] = std::array::from_fn(|j| std::array::from_fn(|i| rows[i][j]));
        for (j, lanes) in columns.into_iter().enumerate() {
            column(j, Self(lanes));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Vector;

    #[derive(Clone, Copy)]
    pub(in crate::conv) struct Avx512(__m512);

    /// The mask of the first `n < 16` lanes.
    #[inline(always)]
    fn first_lanes_512(n: usize) -> __mmask16 {
        debug_assert!(n < 16);
        ((1u32 << n) - 1) as __mmask16
    }

    /// The mask of the first `n < 8` lanes: all bits set in those lanes.
    #[inline(always)]
    unsafe fn first_lanes_256(n: usize) -> __m256i {
        debug_assert!(n < 8);
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    #[derive(Clone, Copy)]
    pub(in crate::conv) struct Avx2(__m256);

    // A transpose's first two steps, within each 128-bit lane of 4 floats: rows `4g..4g + 4`
    // become `quads[4g + c]`, whose lane `k` holds those rows' column `4k + c`.
    macro_rules! quads {
        ($rows:expr, $unpacklo:ident, $unpackhi:ident, $shuffle:ident) => {{
            let rows = $rows;
            let mut quads = rows;
            for g in 0..rows.len() / 4 {
                let r = &rows[4 * g..4 * g + 4];
                // Lane `k`: rows `4g`, `4g + 1` interleaved, columns `4k`, `4k + 1` (`lo`) and
                // `4k + 2`, `4k + 3` (`hi`); likewise rows `4g + 2`, `4g + 3`.
                let (lo01, hi01) = ($unpacklo(r[0], r[1]), $unpackhi(r[0], r[1]));
                let (lo23, hi23) = ($unpacklo(r[2], r[3]), $unpackhi(r[2], r[3]));
                quads[4 * g] = $shuffle::<0x44>(lo01, lo23);
                quads[4 * g + 1] = $shuffle::<0xEE>(lo01, lo23);
                quads[4 * g + 2] = $shuffle::<0x44>(hi01, hi23);
                quads[4 * g + 3] = $shuffle::<0xEE>(hi01, hi23);
            }
            quads
        }};
    }

    #[inline(always)]
    unsafe fn quads_512(rows: [__m512; 16]) -> [__m512; 16] {
        unsafe {
            quads!(
                rows,
                _mm512_unpacklo_ps,
                _mm512_unpackhi_ps,
                _mm512_shuffle_ps
            )
        }
    }

    #[inline(always)]
    unsafe fn quads_256(rows: [__m256; 8]) -> [__m256; 8] {
        unsafe {
            quads!(
                rows,
                _mm256_unpacklo_ps,
                _mm256_unpackhi_ps,
                _mm256_shuffle_ps
            )
        }
    }

    // SAFETY (all methods): called only from functions compiled with the matching target
    // features, which the caller checked the CPU has; pointers are valid for one vector.
    impl Vector for Avx512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            Self(unsafe { _mm512_loadu_ps(from) })
        }
        #[inline(always)]
        unsafe fn splat(from: *const f32) -> Self {
            Self(unsafe { _mm512_set1_ps(*from) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Self(unsafe { _mm512_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            Self(unsafe { _mm512_max_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe { _mm512_storeu_ps(to, self.0) }
        }
        #[inline(always)]
        unsafe fn load_first(from: *const f32, n: usize) -> Self {
            Self(unsafe { _mm512_maskz_loadu_ps(first_lanes_512(n), from) })
        }
        #[inline(always)]
        unsafe fn store_first(self, to: *mut f32, n: usize) {
            unsafe { _mm512_mask_storeu_ps(to, first_lanes_512(n), self.0) }
        }
        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            let mut lanes = [0f32; 16];
            unsafe { self.store(lanes.as_mut_ptr()) };
            lanes.iter().sum()
        }
        #[inline(always)]
        unsafe fn transpose(from: *const f32, stride: usize, mut column: impl FnMut(usize, Self)) {
            unsafe {
                let rows: [__m512; 16] =
                    std::array::from_fn(|i| _mm512_loadu_ps(from.add(i * stride)));
                let quads = quads_512(rows);
                // `quads[4g + c]`, 128-bit lane `k`: column `4k + c` of rows `4g..4g + 4`. Column
                // `4k + c` gathers lane `k` of `quads[c]`, `quads[4 + c]`, `quads[8 + c]`,
                // `quads[12 + c]`: a 4 × 4 transpose of 128-bit lanes.
                for c in 0..4 {
                    let (a, b) = (quads[c], quads[4 + c]);
                    let (d, e) = (quads[8 + c], quads[12 + c]);
                    let even_ab = _mm512_shuffle_f32x4::<0x88>(a, b);
                    let odd_ab = _mm512_shuffle_f32x4::<0xDD>(a, b);
                    let even_de = _mm512_shuffle_f32x4::<0x88>(d, e);
                    let odd_de = _mm512_shuffle_f32x4::<0xDD>(d, e);
                    column(c, Self(_mm512_shuffle_f32x4::<0x88>(even_ab, even_de)));
                    column(4 + c, Self(_mm512_shuffle_f32x4::<0x88>(odd_ab, odd_de)));
                    column(8 + c, Self(_mm512_shuffle_f32x4::<0xDD>(even_ab, even_de)));
                    column(12 + c, Self(_mm512_shuffle_f32x4::<0xDD>(odd_ab, odd_de)));
                }
            }
        }
    }

    impl Vector for Avx2 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Self(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            Self(unsafe { _mm256_loadu_ps(from) })
        }
        #[inline(always)]
        unsafe fn splat(from: *const f32) -> Self {
            Self(unsafe { _mm256_set1_ps(*from) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Self(unsafe { _mm256_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn max(a: Self, b: Self) -> Self {
            Self(unsafe { _mm256_max_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe { _mm256_storeu_ps(to, self.0) }
        }
        #[inline(always)]
        unsafe fn load_first(from: *const f32, n: usize) -> Self {
            Self(unsafe { _mm256_maskload_ps(from, first_lanes_256(n)) })
        }
        #[inline(always)]
        unsafe fn store_first(self, to: *mut f32, n: usize) {
            unsafe { _mm256_maskstore_ps(to, first_lanes_256(n), self.0) }
        }
        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            let mut lanes = [0f32; 8];
            unsafe { self.store(lanes.as_mut_ptr()) };
            lanes.iter().sum()
        }
        #[inline(always)]
        unsafe fn transpose(from: *const f32, stride: usize, mut column: impl FnMut(usize, Self)) {
            unsafe {
                let rows: [__m256; 8] =
                    std::array::from_fn(|i| _mm256_loadu_ps(from.add(i * stride)));
                let quads = quads_256(rows);
                // `quads[4g + c]`, 128-bit lane `k`: column `4k + c` of rows `4g..4g + 4`.
                for c in 0..4 {
                    let (a, b) = (quads[c], quads[4 + c]);
                    column(c, Self(_mm256_permute2f128_ps::<0x20>(a, b)));
                    column(4 + c, Self(_mm256_permute2f128_ps::<0x31>(a, b)));
                }
            }
        }
    }
}
