//! Working buffers that live as long as the thread that uses them.
//!
//! The convolutions need large temporary matrices (im2col columns, gathered gradients, GEMM
//! products) on every call. Allocated fresh, each would be zero-filled and page-faulted anew
//! every step (11–18 % of a ResNet-20 step before this module, `benches/README.md`); kept per
//! thread, they are allocated once, grow to the largest layer and are then only overwritten.
//! Every user writes the part it reads before reading it, so stale contents never leak.

use std::cell::RefCell;

/// The buffers of one thread, by role; each grows to the largest request it has served.
#[derive(Default)]
pub(crate) struct Scratch {
    /// im2col columns, or the columns gradient before col2im.
    pub columns: Vec<f32>,
    /// A chunk of an output gradient gathered into `[channels, images·positions]`.
    pub gathered: Vec<f32>,
    /// A GEMM product before it is scattered into `[images, channels, positions]`.
    pub product: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Runs `work` with this thread's buffers. They are taken out of the thread-local slot for the
/// call, so a nested call on the same thread (a rayon task that blocks and runs another) gets
/// empty buffers of its own instead of aliasing these.
pub(crate) fn with_scratch<R>(work: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.with(RefCell::take);
    let result = work(&mut scratch);
    SCRATCH.with(|cell| {
        if cell.borrow().capacity() < scratch.capacity() {
            cell.replace(scratch);
        }
    });
    result
}

impl Scratch {
    fn capacity(&self) -> usize {
        self.columns.capacity() + self.gathered.capacity() + self.product.capacity()
    }
}

/// The first `len` floats of `buffer`, growing it (once) if it is shorter. The contents are
/// whatever the last user left: callers overwrite before reading.
pub(crate) fn prefix(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}
