// Reductions: column sums (bias gradients), normalisation statistics, normalisation and
// its gradients, and the global gradient norm. Needs common.wgsl.
//
// Normalisation statistics live in a scratch buffer: mean in [0, groups), 1/std in
// [groups, 2·groups), where the groups are the columns (P.axis = NORM_BATCH), the rows
// (NORM_LAYER) or the channels of NCHW rows, P.area columns each (NORM_CHANNEL). The batch
// has P.rows rows of P.cols columns.

// ReduceParams in uniforms.rs.
struct ReduceParams {
    n: u32, rows: u32, cols: u32, axis: u32,
    chunk_rows: u32, out_offset: u32, eps: f32, momentum: f32,
    area: u32, sums: u32,
};

@group(0) @binding(0) var<uniform> P: ReduceParams;

@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;
@group(0) @binding(4) var<storage, read> in2: array<f32>;
@group(0) @binding(5) var<storage, read> in3: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;

const LANES: u32 = 8u;
const COLS: u32 = 32u;
var<workgroup> part: array<f32, 256>;

// Sum of the LANES partial values of column lid.x (tile of COLS columns × LANES lanes).
fn lane_sum(lid: vec3<u32>, v: f32) -> f32 {
    part[lid.y * COLS + lid.x] = v;
    workgroupBarrier();
    var s = 0.0;
    for (var l = 0u; l < LANES; l++) { s += part[l * COLS + lid.x]; }
    workgroupBarrier();
    return s;
}

// The rows [lo, hi) of chunk wid.y of a sum over the rows: P.chunk_rows rows per chunk
// (reductions.rs).
fn chunk_span(wid: vec3<u32>) -> vec2<u32> {
    let lo = wid.y * P.chunk_rows;
    return vec2<u32>(lo, min(lo + P.chunk_rows, P.rows));
}

// out[P.out_offset + chunk·P.cols + j] = Σ in0[r, j] over the chunk's rows: 32 columns per
// workgroup, 8 lanes down the rows. One chunk is the whole sum; several leave partial sums
// that a second sum_rows adds up.
@compute @workgroup_size(32, 8)
fn sum_rows(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * COLS + lid.x;
    let span = chunk_span(wid);
    var s = 0.0;
    if j < P.cols {
        for (var r = span.x + lid.y; r < span.y; r += LANES) { s += in0[r * P.cols + j]; }
    }
    let total = lane_sum(lid, s);
    if j < P.cols && lid.y == 0u { out[P.out_offset + wid.y * P.cols + j] = total; }
}

// Mean and sum of squared deviations (M2) of column j of in0 over the rows of chunk wid.y
// (two passes over the chunk, for accuracy).
fn moments(lid: vec3<u32>, wid: vec3<u32>, j: u32) -> vec2<f32> {
    let span = chunk_span(wid);
    let ok = j < P.cols;
    var s = 0.0;
    if ok { for (var r = span.x + lid.y; r < span.y; r += LANES) { s += in0[r * P.cols + j]; } }
    let mean = lane_sum(lid, s) / f32(max(span.y - min(span.x, span.y), 1u));
    var q = 0.0;
    if ok {
        for (var r = span.x + lid.y; r < span.y; r += LANES) {
            let d = in0[r * P.cols + j] - mean;
            q += d * d;
        }
    }
    return vec2<f32>(mean, lane_sum(lid, q));
}

// Batch-norm statistics of in0 per column in one pass over every row (one chunk).
@compute @workgroup_size(32, 8)
fn col_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * COLS + lid.x;
    let m = moments(lid, wid, j);
    if j < P.cols && lid.y == 0u {
        out[j] = m.x;
        out[P.cols + j] = 1.0 / sqrt(m.y / f32(max(P.rows, 1u)) + P.eps);
    }
}

// Batch-norm statistics over a large batch, first pass: each chunk's mean and M2 per
// column into out[chunk·2·P.cols + j] and out[… + P.cols + j].
@compute @workgroup_size(32, 8)
fn col_moments(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * COLS + lid.x;
    let m = moments(lid, wid, j);
    if j < P.cols && lid.y == 0u {
        let at = wid.y * 2u * P.cols;
        out[at + j] = m.x;
        out[at + P.cols + j] = m.y;
    }
}

// Batch-norm statistics over a large batch, second pass, one thread per column: the
// chunks' moments (in0, as col_moments wrote them; P.chunk_rows rows per chunk) merged in
// order by Chan et al.'s pairwise update, then mean and 1/std into out as col_stats.
@compute @workgroup_size(256)
fn merge_moments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    if j >= P.cols { return; }
    let chunks = (P.rows + P.chunk_rows - 1u) / P.chunk_rows;
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var c = 0u; c < chunks; c++) {
        let nb = f32(min(P.chunk_rows, P.rows - c * P.chunk_rows));
        let at = c * 2u * P.cols;
        let delta = in0[at + j] - mean;
        let total = n + nb;
        mean += delta * nb / total;
        m2 += in0[at + P.cols + j] + delta * delta * n * nb / total;
        n = total;
    }
    out[j] = mean;
    out[P.cols + j] = 1.0 / sqrt(m2 / max(n, 1.0) + P.eps);
}

// The row of a one-workgroup-per-row launch (rows spread over y past the grid limit).
fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Layer-norm statistics of in0, one 64-thread workgroup per row.
@compute @workgroup_size(64)
fn row_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of(wid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    var s = 0.0;
    for (var j = lid.x; j < P.cols; j += 64u) { s += in0[base + j]; }
    let mean = tree_sum(lid, s, 64u) / f32(P.cols);
    var q = 0.0;
    for (var j = lid.x; j < P.cols; j += 64u) { let d = in0[base + j] - mean; q += d * d; }
    let var_ = tree_sum(lid, q, 64u) / f32(P.cols);
    if lid.x == 0u {
        out[r] = mean;
        out[P.rows + r] = 1.0 / sqrt(var_ + P.eps);
    }
}

// Batch-norm statistics in evaluation mode from the running mean (in0) and variance (in1).
@compute @workgroup_size(256)
fn stats_from_running(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    if j >= groups() { return; }
    out[j] = in0[j];
    out[groups() + j] = 1.0 / sqrt(in1[j] + P.eps);
}

// Running statistics after a training step: out = mean, out2 = variance, blended with the
// batch's statistics (in0) by P.momentum.
@compute @workgroup_size(256)
fn running_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    if j >= groups() { return; }
    let m = P.momentum;
    let inv = in0[groups() + j];
    let var_ = 1.0 / (inv * inv) - P.eps;
    out[j] = (1.0 - m) * out[j] + m * in0[j];
    out2[j] = (1.0 - m) * out2[j] + m * var_;
}

fn group_of(r: u32, j: u32) -> u32 {
    if P.axis == NORM_CHANNEL { return j / P.area; }
    return select(j, r, P.axis == NORM_LAYER);
}
fn groups() -> u32 {
    if P.axis == NORM_CHANNEL { return P.cols / P.area; }
    return select(P.cols, P.rows, P.axis == NORM_LAYER);
}
// The gamma and beta index of column j: per channel for NORM_CHANNEL, per column otherwise.
fn param_of(j: u32) -> u32 { return select(j, j / P.area, P.axis == NORM_CHANNEL); }
// Elements per statistics group.
fn group_count() -> u32 {
    if P.axis == NORM_CHANNEL { return P.rows * P.area; }
    return select(P.rows, P.cols, P.axis == NORM_LAYER);
}

// gamma · (x − mean) · inv + beta; in0 = x, in1 = statistics, in2 = gamma, in3 = beta.
@compute @workgroup_size(256)
fn norm_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    let g = group_of(r, j);
    let k = param_of(j);
    out[i] = in2[k] * (in0[i] - in1[g]) * in1[groups() + g] + in3[k];
}

fn xhat(r: u32, j: u32) -> f32 {
    let g = group_of(r, j);
    return (in0[r * P.cols + j] - in1[g]) * in1[groups() + g];
}

// dL/dgamma = Σ_r dy · x̂ per column over a chunk of rows (as sum_rows); in0 = x,
// in1 = statistics, in2 = dy.
@compute @workgroup_size(32, 8)
fn norm_grad_gamma(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * COLS + lid.x;
    let span = chunk_span(wid);
    var s = 0.0;
    if j < P.cols {
        for (var r = span.x + lid.y; r < span.y; r += LANES) { s += in2[r * P.cols + j] * xhat(r, j); }
    }
    let total = lane_sum(lid, s);
    if j < P.cols && lid.y == 0u { out[P.out_offset + wid.y * P.cols + j] = total; }
}

// Batch norm's input gradient, first part: Σ dy and Σ dy·x̂ per column over a chunk of
// rows, into out[P.out_offset + chunk·2·P.cols + j] and out[… + P.cols + j]; in0 = x,
// in1 = statistics, in2 = dy.
@compute @workgroup_size(32, 8)
fn norm_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let j = wid.x * COLS + lid.x;
    let span = chunk_span(wid);
    var s1 = 0.0;
    var s2 = 0.0;
    if j < P.cols {
        for (var r = span.x + lid.y; r < span.y; r += LANES) {
            let d = in2[r * P.cols + j];
            s1 += d;
            s2 += d * xhat(r, j);
        }
    }
    let t1 = lane_sum(lid, s1);
    let t2 = lane_sum(lid, s2);
    if j < P.cols && lid.y == 0u {
        let at = P.out_offset + wid.y * 2u * P.cols;
        out[at + j] = t1;
        out[at + P.cols + j] = t2;
    }
}

// Batch norm's input gradient (per column or per channel), one thread per element:
// dx = gamma · inv / n · (n·dy − Σ dy − x̂ · Σ dy·x̂), with the group's mean, 1/std, Σ dy
// and Σ dy·x̂ in in1 at [0, G), [G, 2G), [2G, 3G), [3G, 4G); in0 = x, in2 = gamma, in3 = dy.
@compute @workgroup_size(256)
fn batch_norm_grad_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    let c = groups();
    let g = group_of(r, j);
    let n = f32(group_count());
    out[i] = in2[param_of(j)] * in1[c + g] / n * (n * in3[i] - in1[2u * c + g] - xhat(r, j) * in1[3u * c + g]);
}

// The `e`-th element of channel `ch` (NCHW rows of P.area pixels a channel) in a row-major
// [P.rows, P.cols] buffer's flat index.
fn channel_at(ch: u32, e: u32) -> u32 {
    return (e / P.area) * P.cols + ch * P.area + e % P.area;
}

// Channel batch-norm statistics of in0, one 64-thread workgroup per channel, two passes.
@compute @workgroup_size(64)
fn channel_stats(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = row_of(wid, nwg);
    let n = P.rows * P.area;
    if ch >= groups() { return; }
    var s = 0.0;
    for (var e = lid.x; e < n; e += 64u) { s += in0[channel_at(ch, e)]; }
    let mean = tree_sum(lid, s, 64u) / f32(max(n, 1u));
    var q = 0.0;
    for (var e = lid.x; e < n; e += 64u) { let d = in0[channel_at(ch, e)] - mean; q += d * d; }
    let var_ = tree_sum(lid, q, 64u) / f32(max(n, 1u));
    if lid.x == 0u {
        out[ch] = mean;
        out[groups() + ch] = 1.0 / sqrt(var_ + P.eps);
    }
}

// Σ dy and Σ dy·x̂ per channel, one 64-thread workgroup per channel; in0 = x,
// in1 = statistics, in2 = dy. P.sums: SUMS_BOTH writes both at out[P.out_offset + ch] and
// out[P.out_offset + G + ch] (the input gradient's sums), SUMS_GAMMA only Σ dy·x̂,
// SUMS_BETA only Σ dy.
@compute @workgroup_size(64)
fn channel_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = row_of(wid, nwg);
    let n = P.rows * P.area;
    if ch >= groups() { return; }
    let mean = in1[ch];
    let inv = in1[groups() + ch];
    var a = 0.0;
    var b = 0.0;
    for (var e = lid.x; e < n; e += 64u) {
        let at = channel_at(ch, e);
        let d = in2[at];
        a += d;
        b += d * (in0[at] - mean) * inv;
    }
    let s1 = tree_sum(lid, a, 64u);
    let s2 = tree_sum(lid, b, 64u);
    if lid.x == 0u {
        switch P.sums {
            case SUMS_GAMMA: { out[P.out_offset + ch] = s2; }
            case SUMS_BETA: { out[P.out_offset + ch] = s1; }
            default: {
                out[P.out_offset + ch] = s1;
                out[P.out_offset + groups() + ch] = s2;
            }
        }
    }
}

// Layer norm's input gradient, one 64-thread workgroup per row; in0 = x,
// in1 = statistics, in2 = gamma, in3 = dy.
@compute @workgroup_size(64)
fn layer_norm_grad_input(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of(wid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    var a = 0.0;
    var b = 0.0;
    for (var j = lid.x; j < P.cols; j += 64u) {
        let dxh = in3[base + j] * in2[j];
        a += dxh;
        b += dxh * xhat(r, j);
    }
    let s1 = tree_sum(lid, a, 64u);
    let s2 = tree_sum(lid, b, 64u);
    let n = f32(P.cols);
    let inv = in1[P.rows + r];
    for (var j = lid.x; j < P.cols; j += 64u) {
        let dxh = in3[base + j] * in2[j];
        out[base + j] = inv / n * (n * dxh - s1 - xhat(r, j) * s2);
    }
}

var<workgroup> acc: array<f32, 256>;

// Σ of the `threads` threads' values of v (a power of two ≤ 256; every thread gets it).
fn tree_sum(lid: vec3<u32>, v: f32, threads: u32) -> f32 {
    acc[lid.x] = v;
    workgroupBarrier();
    for (var width = threads / 2u; width > 0u; width >>= 1u) {
        if lid.x < width { acc[lid.x] += acc[lid.x + width]; }
        workgroupBarrier();
    }
    let total = acc[0];
    workgroupBarrier();
    return total;
}

// Σ in0² over P.n values, each workgroup's share into out[P.out_offset + workgroup] (the
// first pass of the global gradient norm).
@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var s = 0.0;
    for (var i = wid.x * 256u + lid.x; i < P.n; i += 256u * nwg.x) { s += in0[i] * in0[i]; }
    let total = tree_sum(lid, s, 256u);
    if lid.x == 0u { out[P.out_offset + wid.x] = total; }
}

// out[0] = sqrt(Σ in0[0..P.n]): one workgroup adds the partial sums of squares.
@compute @workgroup_size(256)
fn sqrt_of_sum(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = lid.x; i < P.n; i += 256u) { s += in0[i]; }
    let total = tree_sum(lid, s, 256u);
    if lid.x == 0u { out[0] = sqrt(total); }
}
