// Convolution and pooling of images stored one per row (NCHW), the same ops as the CPU's
// cpu/conv.rs, as direct kernels: every one gathers (one thread per output value, no
// atomics), the gradients looping over the outputs that read their cell. The convolution
// itself is an implicit GEMM (conv_gemm.wgsl). Its weights' gradient stays a direct kernel,
// one thread per weight: as a GEMM its output (filters × kernel cells) is a tile or two,
// and on lavapipe the GEMM measured slower (`weft bench gpu`, BENCHMARKS.md); a split-K
// GEMM is the step for a real GPU. Needs conv_window.wgsl.

// dx[r, ci, y, x] = Σ over the outputs that read the cell: dy[r, f, oy, ox] · w[f, ci, i, j];
// a = w, b = dy.
@compute @workgroup_size(256)
fn conv_grad_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= P.n { return; }
    let r = t / (P.c * P.h * P.w);
    let ci = (t / (P.h * P.w)) % P.c;
    let y = i32((t / P.w) % P.h);
    let x = i32(t % P.w);
    let pos = P.oh * P.ow;
    var acc = 0.0;
    for (var i = 0u; i < P.kh; i++) {
        let ny = y + lo(P.pad) - i32(i) * lo(P.dil);
        if ny < 0 || ny % lo(P.stride) != 0 { continue; }
        let oy = u32(ny / lo(P.stride));
        if oy >= P.oh { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let nx = x + hi(P.pad) - i32(j) * hi(P.dil);
            if nx < 0 || nx % hi(P.stride) != 0 { continue; }
            let ox = u32(nx / hi(P.stride));
            if ox >= P.ow { continue; }
            for (var f = 0u; f < P.filters; f++) {
                acc += b[(r * P.filters + f) * pos + oy * P.ow + ox] * a[((f * P.c + ci) * P.kh + i) * P.kw + j];
            }
        }
    }
    out[t] = acc;
}

// dw[f, ci, i, j] = Σ_r Σ_(oy, ox) dy[r, f, oy, ox] · x[r, ci, y, x]; a = x, b = dy.
@compute @workgroup_size(256)
fn conv_grad_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= P.n { return; }
    let area = P.kh * P.kw;
    let f = t / (P.c * area);
    let ci = (t / area) % P.c;
    let i = (t % area) / P.kw;
    let j = t % P.kw;
    let pos = P.oh * P.ow;
    var acc = 0.0;
    for (var r = 0u; r < P.rows; r++) {
        for (var oy = 0u; oy < P.oh; oy++) {
            let y = in_y(oy, i);
            if y < 0 || y >= i32(P.h) { continue; }
            for (var ox = 0u; ox < P.ow; ox++) {
                let x = in_x(ox, j);
                if x < 0 || x >= i32(P.w) { continue; }
                acc += b[(r * P.filters + f) * pos + oy * P.ow + ox] * a[((r * P.c + ci) * P.h + u32(y)) * P.w + u32(x)];
            }
        }
    }
    out[t] = acc;
}

// db[f] = Σ_r Σ_(oy, ox) dy[r, f, oy, ox]; b = dy.
@compute @workgroup_size(256)
fn conv_grad_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let f = flat_index(gid, nwg);
    if f >= P.n { return; }
    let pos = P.oh * P.ow;
    var acc = 0.0;
    for (var r = 0u; r < P.rows; r++) {
        for (var p = 0u; p < pos; p++) {
            acc += b[(r * P.filters + f) * pos + p];
        }
    }
    out[f] = acc;
}

// The cell of channel plane `base` that window (oy, ox) takes as its largest: the first of
// equal ones in row-major order (as the CPU), or -1 when the window has no image cell.
fn window_max(base: u32, oy: u32, ox: u32) -> i32 {
    var best = -1;
    var v = 0.0;
    for (var i = 0u; i < P.kh; i++) {
        let y = in_y(oy, i);
        if y < 0 || y >= i32(P.h) { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let x = in_x(ox, j);
            if x < 0 || x >= i32(P.w) { continue; }
            let at = i32(base + u32(y) * P.w + u32(x));
            if best < 0 || a[at] > v { best = at; v = a[at]; }
        }
    }
    return best;
}

// Image cells in window (oy, ox).
fn window_count(oy: u32, ox: u32) -> u32 {
    var n = 0u;
    for (var i = 0u; i < P.kh; i++) {
        let y = in_y(oy, i);
        if y < 0 || y >= i32(P.h) { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let x = in_x(ox, j);
            if x >= 0 && x < i32(P.w) { n++; }
        }
    }
    return n;
}

// out[r, ci, oy, ox] = the window's largest cell (max) or mean (avg); a = x; P.bias = 1 for max.
@compute @workgroup_size(256)
fn pool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= P.n { return; }
    let pos = P.oh * P.ow;
    let plane = t / pos;
    let oy = (t % pos) / P.ow;
    let ox = t % P.ow;
    let base = plane * P.h * P.w;
    if P.bias == 1u {
        out[t] = a[window_max(base, oy, ox)];
        return;
    }
    var sum = 0.0;
    for (var i = 0u; i < P.kh; i++) {
        let y = in_y(oy, i);
        if y < 0 || y >= i32(P.h) { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let x = in_x(ox, j);
            if x < 0 || x >= i32(P.w) { continue; }
            sum += a[base + u32(y) * P.w + u32(x)];
        }
    }
    out[t] = sum / f32(max(window_count(oy, ox), 1u));
}

// dx[r, ci, y, x] = Σ over the windows holding the cell: dy if it is their largest (max), or
// dy / cells (avg); a = x, b = dy.
@compute @workgroup_size(256)
fn pool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if t >= P.n { return; }
    let plane = t / (P.h * P.w);
    let y = i32((t / P.w) % P.h);
    let x = i32(t % P.w);
    let base = plane * P.h * P.w;
    let pos = P.oh * P.ow;
    var acc = 0.0;
    for (var i = 0u; i < P.kh; i++) {
        let ny = y + lo(P.pad) - i32(i);
        if ny < 0 || ny % lo(P.stride) != 0 { continue; }
        let oy = u32(ny / lo(P.stride));
        if oy >= P.oh { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let nx = x + hi(P.pad) - i32(j);
            if nx < 0 || nx % hi(P.stride) != 0 { continue; }
            let ox = u32(nx / hi(P.stride));
            if ox >= P.ow { continue; }
            let g = b[plane * pos + oy * P.ow + ox];
            if P.bias == 1u {
                if window_max(base, oy, ox) == i32(t) { acc += g; }
            } else {
                acc += g / f32(max(window_count(oy, ox), 1u));
            }
        }
    }
    out[t] = acc;
}
