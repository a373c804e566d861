// Optimizer updates in place, one thread per element, the formulas of optim.rs, over `n`
// values of an arena from `offset`.
// P.kind is an OPT_* code. With P.clip = 1, norm[0] holds the global gradient norm and the
// gradients are scaled down to a norm of P.max_norm. S holds the learning rate and Adam's
// bias corrections of this step.
// Needs common.wgsl.

// OptimParams in uniforms.rs.
struct OptimParams {
    n: u32, kind: u32, clip: u32, max_norm: f32, weight_decay: f32,
    momentum: f32, rho: f32, beta1: f32, beta2: f32, epsilon: f32,
    offset: u32, l1: f32, l2: f32,
};

@group(0) @binding(0) var<uniform> P: OptimParams;

@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> norm: array<f32>;
@group(0) @binding(6) var<storage, read_write> param: array<f32>;
@group(0) @binding(7) var<storage, read_write> m: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if k >= P.n { return; }
    let i = P.offset + k;
    var gscale = 1.0;
    if P.clip == 1u {
        let n = norm[0];
        if n > P.max_norm { gscale = P.max_norm / (n + 1e-6); }
    }
    let lr = S.lr;
    let wd = P.weight_decay;
    var p = param[i];
    // The penalty's gradient (sign(0) = 0, as the L1 norm's subgradient Keras takes).
    let g0 = grad[i] * gscale + P.l1 * sign(p) + 2.0 * P.l2 * p;
    switch P.kind {
        case OPT_SGD: { p -= lr * (g0 + wd * p); }
        case OPT_SGD_MOMENTUM: {
            let mi = P.momentum * m[i] + g0 + wd * p;
            m[i] = mi;
            p -= lr * mi;
        }
        case OPT_SGD_NESTEROV: {
            let g = g0 + wd * p;
            let mi = P.momentum * m[i] + g;
            m[i] = mi;
            p -= lr * (g + P.momentum * mi);
        }
        case OPT_ADAGRAD: {
            let g = g0 + wd * p;
            let vi = v[i] + g * g;
            v[i] = vi;
            p -= lr * g / (sqrt(vi) + P.epsilon);
        }
        case OPT_RMSPROP: {
            let g = g0 + wd * p;
            let vi = P.rho * v[i] + (1.0 - P.rho) * g * g;
            v[i] = vi;
            let mi = P.momentum * m[i] + g / (sqrt(vi) + P.epsilon);
            m[i] = mi;
            p -= lr * mi;
        }
        default: {
            // OPT_ADAM (L2 decay in the gradient) or OPT_ADAMW (decoupled decay, S.decay).
            let adamw = P.kind == OPT_ADAMW;
            let g = g0 + select(wd, 0.0, adamw) * p;
            let mi = P.beta1 * m[i] + (1.0 - P.beta1) * g;
            let vi = P.beta2 * v[i] + (1.0 - P.beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            p = p * select(1.0, S.decay, adamw) - S.adam_step * mi / (sqrt(vi * S.inv_bc2) + P.epsilon);
        }
    }
    param[i] = p;
}
