// Elementwise kernels (one thread per element) and the row-wise softmax.
// Needs common.wgsl and random.wgsl.

// ElementwiseParams in uniforms.rs.
struct ElementwiseParams {
    n: u32, rows: u32, cols: u32,
    act: u32, alpha: f32, has_bias: u32,
    src_cols: u32, src_off: u32, dst_cols: u32, dst_off: u32,
    stream_lo: u32, stream_hi: u32, rate: f32, scale: f32,
};

@group(0) @binding(0) var<uniform> P: ElementwiseParams;

@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;
@group(0) @binding(4) var<storage, read> in2: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// out = act(in0 + bias), the bias being in1 when P.has_bias is 1 (BiasAdd, BiasAct, Act).
@compute @workgroup_size(256)
fn bias_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    var v = in0[i];
    if P.has_bias == 1u { v += in1[i % P.cols]; }
    out[i] = act(P.act, P.alpha, v);
}

// out = dy · act'(x, y), inputs x, y, dy.
@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    out[i] = in2[i] * act_grad(P.act, P.alpha, in0[i], in1[i]);
}

// out = in0 + in1.
@compute @workgroup_size(256)
fn add2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    out[i] = in0[i] + in1[i];
}

// out += in0 (the third and later inputs of an Add).
@compute @workgroup_size(256)
fn add_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    out[i] = out[i] + in0[i];
}

// Copies a block of P.cols columns of P.rows rows: out[r, P.dst_off + j] =
// in0[r, P.src_off + j] (Concat, Slice, and dropout in evaluation mode).
@compute @workgroup_size(256)
fn copy_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    out[r * P.dst_cols + P.dst_off + j] = in0[r * P.src_cols + P.src_off + j];
}

// out[r, j] = in0[r, in1[j]] (an input node that takes some columns of the batch; the
// indices are stored as floats, exact below 2^24 columns). in0 has P.src_cols columns.
@compute @workgroup_size(256)
fn gather_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    out[i] = in0[r * P.src_cols + u32(in1[j])];
}

// Dropout and its gradient (the same mask); P.scale = 1/(1 - P.rate).
@compute @workgroup_size(256)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let u = dropout_uniform(P.stream_lo, P.stream_hi, i);
    out[i] = select(in0[i] * P.scale, 0.0, u < P.rate);
}

// Softmax over each row of P.cols values (one thread per row).
@compute @workgroup_size(256)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    var m = -3.402823e38;
    for (var j = 0u; j < P.cols; j++) { m = max(m, in0[base + j]); }
    var s = 0.0;
    for (var j = 0u; j < P.cols; j++) {
        let e = exp(in0[base + j] - m);
        out[base + j] = e;
        s += e;
    }
    let inv = 1.0 / s;
    for (var j = 0u; j < P.cols; j++) { out[base + j] = out[base + j] * inv; }
}

// Gradient of the row softmax from y (in1) and dy (in2): y · (dy − Σ y·dy).
@compute @workgroup_size(256)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    var dot = 0.0;
    for (var j = 0u; j < P.cols; j++) { dot += in1[base + j] * in2[base + j]; }
    for (var j = 0u; j < P.cols; j++) {
        out[base + j] = in1[base + j] * (in2[base + j] - dot);
    }
}
