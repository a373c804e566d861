// Shared by every weft kernel module (prepended to each family file by `kernels.rs`).
//
// Binding layout, the same for every kernel so one bind-group layout serves all:
//   0: P, this dispatch's parameters     1: S, this step's scalars
//   2..5: read-only storage               6..8: read-write storage
// A kernel declares the bindings it uses; unused ones are bound to dummies. Each family
// declares P's struct itself (uniforms.rs has the same struct on the Rust side); the mode
// codes (ACT_*, LOSS_*, OPT_*, NORM_*) are generated from codes.rs and prepended.

// Per-step scalars: the learning rate and the optimizer's bias corrections, and the
// counters of the dropout generator (`Step` in uniforms.rs).
struct Step {
    lr: f32, adam_step: f32, inv_bc2: f32, decay: f32,
    step_lo: u32, step_hi: u32, seed_lo: u32, seed_hi: u32,
};

@group(0) @binding(1) var<uniform> S: Step;

// Flat element index of a 1-D launch of 256-wide workgroups over a 2-D grid (large
// tensors need more than 65535 workgroups in x).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// tanh without overflow for large |x| (exp of a non-positive number only).
fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}

const GELU_C: f32 = 0.7978846;
// SELU's λ and α (the CPU's SELU_SCALE and SELU_ALPHA).
const SELU_SCALE: f32 = 1.050701;
const SELU_ALPHA: f32 = 1.6732632;

// The activation `code` (an ACT_* constant) of x; alpha is leaky ReLU's and ELU's.
// ACT_LINEAR is the identity.
fn act(code: u32, alpha: f32, x: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: { return sigmoid(x); }
        case ACT_TANH: { return tanh_safe(x); }
        case ACT_SOFTPLUS: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case ACT_RELU: { return max(x, 0.0); }
        case ACT_LEAKY_RELU: { return select(alpha * x, x, x > 0.0); }
        case ACT_ELU: { return select(alpha * (exp(x) - 1.0), x, x > 0.0); }
        case ACT_SWISH: { return x * sigmoid(x); }
        // The tanh approximation.
        case ACT_GELU: { return 0.5 * x * (1.0 + tanh_safe(GELU_C * (x + 0.044715 * x * x * x))); }
        case ACT_SELU: { return SELU_SCALE * select(SELU_ALPHA * (exp(x) - 1.0), x, x > 0.0); }
        default: { return x; }
    }
}

// d act / dx from the input x and the output y.
fn act_grad(code: u32, alpha: f32, x: f32, y: f32) -> f32 {
    switch code {
        case ACT_SIGMOID: { return y * (1.0 - y); }
        case ACT_TANH: { return 1.0 - y * y; }
        case ACT_SOFTPLUS: { return sigmoid(x); }
        case ACT_RELU: { return select(0.0, 1.0, x > 0.0); }
        case ACT_LEAKY_RELU: { return select(alpha, 1.0, x > 0.0); }
        case ACT_ELU: { return select(y + alpha, 1.0, x > 0.0); }
        case ACT_SELU: { return select(y + SELU_SCALE * SELU_ALPHA, SELU_SCALE, x > 0.0); }
        case ACT_SWISH: { let s = sigmoid(x); return s + x * s * (1.0 - s); }
        case ACT_GELU: {
            let t = tanh_safe(GELU_C * (x + 0.044715 * x * x * x));
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
        }
        default: { return 1.0; }
    }
}
