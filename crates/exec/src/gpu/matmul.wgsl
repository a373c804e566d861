// C = op(A) · op(B) [+ bias, then activation], fp32, tiled in workgroup memory with
// register blocking. Needs common.wgsl and the constants kernels.rs prepends:
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

var<workgroup> As: array<f32, BK * BM>;
var<workgroup> Bs: array<f32, BK * BN>;

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

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, TM * TN>;
    var ar: array<f32, TM>;
    var br: array<f32, TN>;
    for (var k0 = 0u; k0 < P.k; k0 += BK) {
        // Fill the tiles so that consecutive threads read consecutive addresses of the
        // operand as it is laid out in memory (coalesced), whichever way it is read.
        for (var e = tid; e < BK * BM; e += 256u) {
            var m: u32;
            var k: u32;
            if TA { k = e / BM; m = e % BM; } else { m = e / BK; k = e % BK; }
            As[k * BM + m] = load_a(row0 + m, k0 + k);
        }
        for (var e = tid; e < BK * BN; e += 256u) {
            var n: u32;
            var k: u32;
            if TB { n = e / BK; k = e % BK; } else { k = e / BN; n = e % BN; }
            Bs[k * BN + n] = load_b(k0 + k, col0 + n);
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            // Thread (x, y) owns rows y + 16i and columns x + 16j of the tile: neighbouring
            // threads read neighbouring words of workgroup memory.
            for (var i = 0u; i < TM; i++) { ar[i] = As[k * BM + lid.y + 16u * i]; }
            for (var j = 0u; j < TN; j++) { br[j] = Bs[k * BN + lid.x + 16u * j]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let m = row0 + lid.y + 16u * i;
        if m >= P.m { continue; }
        for (var j = 0u; j < TN; j++) {
            let n = col0 + lid.x + 16u * j;
            if n >= P.n { continue; }
            var v = acc[i * TN + j];
            if BIAS { v += bias[n]; }
            c[m * P.n + n] = act(ACT, P.alpha, v);
        }
    }
}
