// The tiled GEMM C = A · B, fp32, in workgroup memory with register blocking: the core that
// matmul.wgsl (plain matrices) and conv_gemm.wgsl (a convolution as an implicit GEMM) share.
// The file before it defines the operands: gemm_m/n/k() (C is [M, N], the sum runs over K),
// load_a(m, k) and load_b(k, n) (0 outside), store_c(m, n, sum), and the constants BM, BN,
// BK, TM, TN (see matmul.wgsl) and TA, TB (the operand's memory order: true when
// consecutive k are consecutive addresses of B, or consecutive m of A, so that the tile
// loads below stay coalesced).

var<workgroup> As: array<f32, BK * BM>;
var<workgroup> Bs: array<f32, BK * BN>;

// Workgroup (x + z·nx, y) computes the tile of C at column tile x + z·nx and row tile y
// (z spreads the column tiles of a wide C over a second dimension when there are more than
// an adapter allows in one).
@compute @workgroup_size(16, 16)
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row0 = wid.y * BM;
    let col0 = (wid.x + wid.z * nwg.x) * BN;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, TM * TN>;
    var ar: array<f32, TM>;
    var br: array<f32, TN>;
    for (var k0 = 0u; k0 < gemm_k(); k0 += BK) {
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
        if m >= gemm_m() { continue; }
        for (var j = 0u; j < TN; j++) {
            let n = col0 + lid.x + 16u * j;
            if n >= gemm_n() { continue; }
            store_c(m, n, acc[i * TN + j]);
        }
    }
}
