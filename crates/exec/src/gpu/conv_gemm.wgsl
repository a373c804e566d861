// A convolution as an implicit GEMM: the operands of gemm.wgsl, with the im2col columns
// read straight from the image by `cols` (never written out), so the convolution gets the
// tiled GEMM's reuse of workgroup memory and registers without a workspace buffer:
//   out[r, f, p] = act(Σ_q w[f, q] · cols_r[q, p] + bias[f]),
// M = filters, N = rows·P, K = c·kh·kw (P: the output positions of a channel; q: a kernel
// cell, channel by row by column); a = x, b = w, c3 = the bias (when P.bias = 1). Needs
// conv_window.wgsl and the tile constants kernels.rs prepends (see matmul.wgsl).

fn positions() -> u32 { return P.oh * P.ow; }
fn cells() -> u32 { return P.c * P.kh * P.kw; }

fn gemm_m() -> u32 { return P.filters; }
fn gemm_n() -> u32 { return P.rows * positions(); }
fn gemm_k() -> u32 { return cells(); }

// Image r's im2col at kernel cell q and output position p: the input cell read, or 0 in the
// padding.
fn cols(r: u32, q: u32, p: u32) -> f32 {
    let area = P.kh * P.kw;
    let ci = q / area;
    let y = in_y(p / P.ow, (q % area) / P.kw);
    let x = in_x(p % P.ow, q % P.kw);
    if y < 0 || y >= i32(P.h) || x < 0 || x >= i32(P.w) { return 0.0; }
    return a[((r * P.c + ci) * P.h + u32(y)) * P.w + u32(x)];
}

fn load_a(m: u32, k: u32) -> f32 {
    if m >= gemm_m() || k >= gemm_k() { return 0.0; }
    return b[m * cells() + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if k >= gemm_k() || n >= gemm_n() { return 0.0; }
    let pos = positions();
    return cols(n / pos, k, n % pos);
}

fn store_c(m: u32, n: u32, sum: f32) {
    let pos = positions();
    var v = sum;
    if P.bias == 1u { v += c3[m]; }
    out[(n / pos * P.filters + m) * pos + n % pos] = act(P.act, P.alpha, v);
}
