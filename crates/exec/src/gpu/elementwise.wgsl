// Elementwise kernels (one thread per element) and the row-wise softmax.
// Needs common.wgsl and random.wgsl.

@group(0) @binding(2) var<storage, read> in0: array<f32>;
@group(0) @binding(3) var<storage, read> in1: array<f32>;
@group(0) @binding(4) var<storage, read> in2: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// out = act(in0 + bias) with P.a = activation code, P.b = 1 when in1 is a bias of P.cols
// values (BiasAdd, BiasAct, Act).
@compute @workgroup_size(256)
fn bias_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    var v = in0[i];
    if P.b == 1u { v += in1[i % P.cols]; }
    out[i] = act(P.a, P.x, v);
}

// out = dy · act'(x, y), inputs x, y, dy.
@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    out[i] = in2[i] * act_grad(P.a, P.x, in0[i], in1[i]);
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

// Copies a block of P.cols columns of P.rows rows: out[r, P.d + j] = in0[r, P.b + j], where
// in0 has P.a columns and out has P.c (Concat, Slice, and dropout in evaluation mode).
@compute @workgroup_size(256)
fn copy_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    out[r * P.c + P.d + j] = in0[r * P.a + P.b + j];
}

// out[r, j] = in0[r, in1[j]] (an input node that takes some columns of the batch; the
// indices are stored as floats, exact below 2^24 columns). in0 has P.a columns.
@compute @workgroup_size(256)
fn gather_cols(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let r = i / P.cols;
    let j = i % P.cols;
    out[i] = in0[r * P.a + u32(in1[j])];
}

// Dropout and its gradient (the same mask): P.a, P.b = stream, P.x = rate, P.y = 1/(1-rate).
@compute @workgroup_size(256)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let u = dropout_uniform(P.a, P.b, i);
    out[i] = select(in0[i] * P.y, 0.0, u < P.x);
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
