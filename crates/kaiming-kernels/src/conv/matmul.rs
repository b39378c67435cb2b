//! The one place the convolutions call the `gemm` crate: strided views checked against their
//! slices, so the unsafe call sees only in-bounds operands.

use std::mem::MaybeUninit;

/// A read-only strided matrix over a slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `rows × cols`, row-major, rows `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let view = Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        view.check();
        view
    }

    /// The transpose, with no copy.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view out of its slice");
        }
    }
}

/// How a product is spread over threads: the caller's chunks usually are the parallelism, and
/// the GEMM runs on the calling thread; a lone product (a batch of one) uses every thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    Caller,
    All,
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), `dst` row-major with rows
/// `dst_row_stride` apart.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threads: Threads,
) {
    // SAFETY: an initialised slice may be read and written.
    unsafe {
        product(
            dst.as_mut_ptr(),
            dst.len(),
            dst_row_stride,
            lhs,
            rhs,
            accumulate,
            threads,
        )
    }
}

/// `dst = lhs · rhs` into memory that need not be initialised: the GEMM only writes it.
pub(crate) fn matmul_into(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    threads: Threads,
) {
    // SAFETY: without `accumulate` the GEMM writes `dst` and never reads it.
    unsafe {
        product(
            dst.as_mut_ptr().cast(),
            dst.len(),
            dst_row_stride,
            lhs,
            rhs,
            false,
            threads,
        )
    }
}

/// The product into `len` floats at `dst`.
///
/// # Safety
/// `dst` must be valid for writes of `len` floats, and for reads too where `accumulate`.
unsafe fn product(
    dst: *mut f32,
    len: usize,
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threads: Threads,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions of a product");
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    // Rows that overlapped would be written by several threads at once under `Threads::All`.
    assert!(
        m == 1 || dst_row_stride >= n,
        "product rows of {n} floats {dst_row_stride} apart overlap"
    );
    assert!(
        (m - 1) * dst_row_stride + n <= len,
        "product destination out of its slice"
    );
    let parallelism = match threads {
        Threads::Caller => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the operands were checked to lie inside their slices (`View::check`), the
    // destination's rows to lie apart and inside its `len` floats (above); the caller vouches
    // for `dst`, which comes from a mutable borrow and so aliases neither operand. With `k == 0`
    // gemm writes zeros (or leaves an accumulated `dst` as it is).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
