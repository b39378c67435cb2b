//! Output buffers that are written without being cleared first.
//!
//! `vec![0.0; n]` for every output costs a pass over memory that the kernel then overwrites,
//! and fresh pages from the OS besides. Here outputs start as `MaybeUninit` and become `f32`
//! only once every element has been written.

use std::mem::MaybeUninit;

/// `len` floats of unspecified contents.
pub(crate) fn buffer(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut values = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` needs no initialisation, and the capacity is `len`.
    unsafe { values.set_len(len) };
    values
}

/// The buffer as floats.
///
/// # Safety
/// Every element must have been written.
pub(crate) unsafe fn assume_init(values: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut values = std::mem::ManuallyDrop::new(values);
    let (pointer, len, capacity) = (values.as_mut_ptr(), values.len(), values.capacity());
    // SAFETY: same allocation, length and capacity; `MaybeUninit<f32>` has `f32`'s layout, and
    // the caller vouches that every element is initialised.
    unsafe { Vec::from_raw_parts(pointer.cast::<f32>(), len, capacity) }
}

/// Copies `source` into `target` (of the same length).
pub(crate) fn write(target: &mut [MaybeUninit<f32>], source: &[f32]) {
    assert_eq!(target.len(), source.len());
    for (target, source) in target.iter_mut().zip(source) {
        target.write(*source);
    }
}

/// Sets `target` to zeros and returns it as the floats it now holds.
pub(crate) fn zeroed(target: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    target.iter_mut().for_each(|value| {
        value.write(0.0);
    });
    // SAFETY: every element was just written, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(target as *mut [MaybeUninit<f32>] as *mut [f32]) }
}
