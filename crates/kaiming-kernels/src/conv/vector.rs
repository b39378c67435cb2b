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
        unsafe fn sum(self) -> f32 {
            let mut lanes = [0f32; 8];
            unsafe { self.store(lanes.as_mut_ptr()) };
            lanes.iter().sum()
        }
    }
}
