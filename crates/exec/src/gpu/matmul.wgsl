// C = op(A) · op(B) [+ bias, then activation], fp32: the operands of the tiled GEMM in
// gemm.wgsl for plain matrices. Needs common.wgsl and the constants kernels.rs prepends:
//   BM, BN, BK: the tile of C a workgroup computes and the depth of one K step;
//   TM, TN = BM/16, BN/16: the block of C each of the 16×16 threads keeps in registers;
//   TA, TB: read A or B transposed (no copy is made); BIAS, ACT: the fused epilogue (ACT
//   is an ACT_* code, P.alpha its alpha).
// A is [P.m, P.k] (or [P.k, P.m] when TA), B is [P.k, P.n] (or [P.n, P.k] when TB), C is
// [P.m, P.n].

// MatmulParams in uniforms.rs.
struct MatmulParams {
    m: u32, n: u32, k: u32, alpha: f32,
};

@group(0) @binding(0) var<uniform> P: MatmulParams;

@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> c: array<f32>;

fn gemm_m() -> u32 { return P.m; }
fn gemm_n() -> u32 { return P.n; }
fn gemm_k() -> u32 { return P.k; }

fn load_a(m: u32, k: u32) -> f32 {
    if m >= P.m || k >= P.k { return 0.0; }
    if TA { return a[k * P.m + m]; }
    return a[m * P.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if k >= P.k || n >= P.n { return 0.0; }
    if TB { return b[n * P.k + k]; }
    return b[k * P.n + n];
}

// C[m, n] from its accumulated sum (m, n inside C).
fn store_c(m: u32, n: u32, sum: f32) {
    var v = sum;
    if BIAS { v += bias[n]; }
    c[m * P.n + n] = act(ACT, P.alpha, v);
}
