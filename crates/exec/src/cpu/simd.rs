//! Run-time choice of the instruction set for the CPU's elementwise loops, so one release
//! binary runs on every x86-64 node of a cluster and still uses AVX-512 or AVX2 where the
//! CPU has them (the matmul is gemm's, which dispatches at run time by itself).
//!
//! `multiversion` compiles [`widest`] once per target below and picks one on each call
//! (feature detection is a cached atomic load). The closure it runs is inlined into each
//! clone, so the loops inside vectorise at that clone's width. Its dispatch calls
//! `#[target_feature]` functions, which Rust counts as unsafe code; the macro checks the
//! features first, which is what makes the call sound.
#![allow(unsafe_code)]

use multiversion::multiversion;

/// Runs `f` compiled for the widest instruction set this CPU has: AVX-512 (F, VL, BW, DQ),
/// AVX2 with FMA, or the baseline (SSE2 on x86-64; NEON is the aarch64 baseline).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma",
    "x86_64+avx2+fma",
))]
#[inline]
pub fn widest<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_closure_on_this_cpu() {
        let xs: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let sum = widest(|| xs.iter().map(|x| x * 2.0).sum::<f32>());
        assert_eq!(sum, 999_000.0);
    }
}
