// Embedding tables: the forward lookup and the table's gradient. The output binding is
// atomic, so that rows of the batch with the same id add into one table row: a float add by
// compare-and-swap on its bits (WGSL has no float atomics). Ids are stored as f32.
// Needs common.wgsl.

// EmbeddingParams in uniforms.rs.
struct EmbeddingParams {
    n: u32, dim: u32, vocab: u32,
};

@group(0) @binding(0) var<uniform> P: EmbeddingParams;

@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;

// The table row an id names, or P.vocab when it names none.
fn row_of(id: f32) -> u32 {
    if id < 0.0 || fract(id) != 0.0 || id >= f32(P.vocab) { return P.vocab; }
    return u32(id);
}

// out[r, j] = table[ids[r], j] (src is the table); P.n = rows · dim.
@compute @workgroup_size(256)
fn embed_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let k = row_of(ids[i / P.dim]);
    var v = 0.0;
    if k < P.vocab { v = src[k * P.dim + i % P.dim]; }
    atomicStore(&out[i], bitcast<u32>(v));
}

// out = 0; P.n = vocab · dim.
@compute @workgroup_size(256)
fn embed_zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    atomicStore(&out[i], 0u);
}

// out[ids[r], j] += dy[r, j] (src is dy); P.n = rows · dim.
@compute @workgroup_size(256)
fn embed_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    let k = row_of(ids[i / P.dim]);
    if k >= P.vocab { return; }
    let at = k * P.dim + i % P.dim;
    let g = src[i];
    var old = atomicLoad(&out[at]);
    loop {
        let swapped = atomicCompareExchangeWeak(&out[at], old, bitcast<u32>(bitcast<f32>(old) + g));
        if swapped.exchanged { break; }
        old = swapped.old_value;
    }
}
