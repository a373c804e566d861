//! Matrix multiply on ndarray views through the `gemm` crate (AVX2/AVX-512 kernels, threads).
//!
//! `gemm` takes raw pointers and strides, so this is the one place with `unsafe`; every call
//! checks the shapes first, and the views keep the memory alive and unaliased.
#![allow(unsafe_code)]

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// `out = a' @ b'` where `a' = aᵀ` when `ta` (likewise `b'`), resizing `out` if needed.
/// With `accumulate`, adds to `out` instead of overwriting it.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, ta: bool, tb: bool, out: &mut Array2<f32>) {
    let (m, k) = if ta { (a.ncols(), a.nrows()) } else { a.dim() };
    let n = if tb { b.nrows() } else { b.ncols() };
    if out.dim() != (m, n) {
        *out = Array2::zeros((m, n));
    }
    let threads = if m * n * k >= 1 << 20 {
        rayon::current_num_threads()
    } else {
        1
    };
    matmul_into(a, b, ta, tb, out.view_mut(), false, threads);
}

/// `out (+)= a' @ b'` into a view of the right shape (a part of a larger buffer), on
/// `threads` threads (1 inside a rayon loop that is already parallel).
pub fn matmul_into(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    ta: bool,
    tb: bool,
    mut out: ArrayViewMut2<f32>,
    accumulate: bool,
    threads: usize,
) {
    let a = if ta { a.reversed_axes() } else { a };
    let b = if tb { b.reversed_axes() } else { b };
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "matmul inner dimensions (checked by the planner)");
    assert_eq!(
        out.dim(),
        (m, n),
        "matmul output shape (sized by the caller)"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (o_rs, o_cs) = (out.strides()[0], out.strides()[1]);
    // SAFETY: shapes were checked above; the strides come from live ndarray views of at
    // least (m, k), (k, n) and (m, n) elements; `out` is a unique (mutable) view and does not
    // alias `a` or `b` (the executor takes it out of its buffer list before the call).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            o_cs,
            o_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn all_transpose_combinations_match_ndarray() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let b = array![[1.0f32, 0.5], [2.0, -1.0], [0.0, 3.0]];
        let want = a.dot(&b);
        let mut out = Array2::zeros((0, 0));
        matmul(a.view(), b.view(), false, false, &mut out);
        assert_eq!(out, want);
        let at = a.t().to_owned();
        let bt = b.t().to_owned();
        matmul(at.view(), b.view(), true, false, &mut out);
        assert_eq!(out, want);
        matmul(a.view(), bt.view(), false, true, &mut out);
        assert_eq!(out, want);
        matmul(at.view(), bt.view(), true, true, &mut out);
        assert_eq!(out, want);
    }
}
