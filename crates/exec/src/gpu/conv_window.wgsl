// The window of a convolution or pooling over images stored one per row (NCHW): its
// parameters, bindings and the input cell an output position reads. Needs common.wgsl;
// conv.wgsl and conv_gemm.wgsl follow it.

// ConvParams in uniforms.rs; stride, pad and dil pack height | width << 16.
struct ConvParams {
    n: u32, rows: u32, c: u32, h: u32, w: u32, kh: u32, kw: u32,
    stride: u32, pad: u32, dil: u32, oh: u32, ow: u32, filters: u32, bias: u32,
    act: u32, alpha: f32,
};

@group(0) @binding(0) var<uniform> P: ConvParams;

@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c3: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn lo(v: u32) -> i32 { return i32(v & 0xffffu); }
fn hi(v: u32) -> i32 { return i32(v >> 16u); }

// The input row of output row `oy` and kernel row `i` (may be outside the image).
fn in_y(oy: u32, i: u32) -> i32 { return i32(oy) * lo(P.stride) + i32(i) * lo(P.dil) - lo(P.pad); }
fn in_x(ox: u32, j: u32) -> i32 { return i32(ox) * hi(P.stride) + i32(j) * hi(P.dil) - hi(P.pad); }

