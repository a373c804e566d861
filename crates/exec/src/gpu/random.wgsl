// Philox4x32-10, the counter-based generator of planner/src/rng.rs, in WGSL: value i of
// stream s under seed k is a pure function of (k, s, i), so a dropout mask is the same on
// the CPU and the GPU and needs no storage.

// (hi, lo) 32-bit halves of the 64-bit product a·b (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// uniform_at(seed, stream, (step << 32) | i): the dropout draw for element i this step.
fn dropout_uniform(stream_lo: u32, stream_hi: u32, i: u32) -> f32 {
    let counter = vec4<u32>(
        (S.step_lo << 30u) | (i >> 2u),
        (S.step_lo >> 2u) | (S.step_hi << 30u),
        stream_lo,
        stream_hi,
    );
    let block = philox(counter, vec2<u32>(S.seed_lo, S.seed_hi));
    return f32(block[i & 3u] >> 8u) * (1.0 / 16777216.0);
}
