// Losses and their gradients. Inputs: in0 = logits or predictions [rows, cols],
// in1 = targets (class indices [rows, 1], or values [rows, cols]), in2 = class weights
// when P.weighted = 1 (each row's loss times its class's weight); P.kind is a LOSS_* code.
// Needs common.wgsl.

// LossParams in uniforms.rs.
struct LossParams {
    rows: u32, cols: u32, kind: u32, accumulate: u32, weighted: u32, row_weighted: u32,
};

@group(0) @binding(0) var<uniform> P: LossParams;

@group(0) @binding(2) var<storage, read> pred: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<f32>;
@group(0) @binding(4) var<storage, read> class_w: array<f32>;
@group(0) @binding(5) var<storage, read> row_w: array<f32>;

// The weight of row r with label `label`: its class's weight times its own (1 without).
fn weight_of(r: u32, label: f32) -> f32 {
    var w = 1.0;
    if P.weighted == 1u { w = class_w[u32(label)]; }
    if P.row_weighted == 1u { w *= row_w[r]; }
    return w;
}
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> acc: array<f32>;

fn target_at(r: u32, j: u32) -> f32 {
    if P.kind == LOSS_MSE_ONE_HOT { return select(0.0, 1.0, u32(labels[r]) == j); }
    return labels[r * P.cols + j];
}

// The summed loss of each row, into out[r].
@compute @workgroup_size(256)
fn loss_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    var total = 0.0;
    if P.kind == LOSS_SOFTMAX_CE {
        var m = -3.402823e38;
        for (var j = 0u; j < P.cols; j++) { m = max(m, pred[base + j]); }
        var s = 0.0;
        for (var j = 0u; j < P.cols; j++) { s += exp(pred[base + j] - m); }
        total = (m + log(s) - pred[base + u32(labels[r])]) * weight_of(r, labels[r]);
    } else if P.kind == LOSS_SIGMOID_BCE {
        for (var j = 0u; j < P.cols; j++) {
            let z = pred[base + j];
            let y = labels[base + j];
            total += (max(z, 0.0) - z * y + log(1.0 + exp(-abs(z)))) * weight_of(r, y);
        }
    } else {
        // LOSS_MSE and LOSS_MSE_ONE_HOT (target_at tells them apart).
        for (var j = 0u; j < P.cols; j++) {
            let d = pred[base + j] - target_at(r, j);
            total += d * d;
        }
        // Plain mse is regression: no class weights, only the row's own.
        if P.kind == LOSS_MSE_ONE_HOT { total *= weight_of(r, labels[r]); } else { total *= weight_of(r, 0.0); }
    }
    out[r] = total;
}

var<workgroup> partial: array<f32, 256>;

// One workgroup: out[0] = Σ row losses (in pred) / rows; with P.accumulate = 1 also
// acc[0] += the sum (the loss of a training step, read back every few steps rather than
// every step).
@compute @workgroup_size(256)
fn loss_mean(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = lid.x; i < P.rows; i += 256u) { s += pred[i]; }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var width = 128u; width > 0u; width >>= 1u) {
        if lid.x < width { partial[lid.x] += partial[lid.x + width]; }
        workgroupBarrier();
    }
    if lid.x == 0u {
        let total = partial[0];
        out[0] = select(total / f32(P.rows), 0.0, P.rows == 0u);
        if P.accumulate == 1u { acc[0] = acc[0] + total; }
    }
}

// d(mean loss)/d(pred), one thread per row.
@compute @workgroup_size(256)
fn loss_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if r >= P.rows { return; }
    let base = r * P.cols;
    let scale = 1.0 / f32(max(P.rows, 1u));
    if P.kind == LOSS_SOFTMAX_CE {
        var m = -3.402823e38;
        for (var j = 0u; j < P.cols; j++) { m = max(m, pred[base + j]); }
        var s = 0.0;
        for (var j = 0u; j < P.cols; j++) { s += exp(pred[base + j] - m); }
        let label = u32(labels[r]);
        let k = scale * weight_of(r, labels[r]);
        for (var j = 0u; j < P.cols; j++) {
            let p = exp(pred[base + j] - m) / s;
            out[base + j] = (p - select(0.0, 1.0, j == label)) * k;
        }
    } else if P.kind == LOSS_SIGMOID_BCE {
        for (var j = 0u; j < P.cols; j++) {
            let y = labels[base + j];
            out[base + j] = (sigmoid(pred[base + j]) - y) * scale * weight_of(r, y);
        }
    } else {
        var k = scale;
        if P.kind == LOSS_MSE_ONE_HOT { k *= weight_of(r, labels[r]); } else { k *= weight_of(r, 0.0); }
        for (var j = 0u; j < P.cols; j++) {
            out[base + j] = 2.0 * (pred[base + j] - target_at(r, j)) * k;
        }
    }
}
