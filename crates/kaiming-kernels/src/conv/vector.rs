//! The SIMD vectors the direct kernels compute with: one trait, implemented for AVX-512 and
//! AVX2, so each kernel is written once and compiled for both.

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
    unsafe fn store(self, to: *mut f32);
    /// The `n < LANES` floats at `from` in the first lanes, zero in the others; reads nothing
    /// past them (masked, so a row's tail at the end of its buffer is safe to read).
    unsafe fn load_first(from: *const f32, n: usize) -> Self;
    /// Stores the first `n < LANES` lanes at `to`, writing nothing past them.
    unsafe fn store_first(self, to: *mut f32, n: usize);
    /// The sum of the lanes.
    unsafe fn sum(self) -> f32;
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

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
    }
}
