// Optimizer updates in place, one thread per element, the formulas of optim.rs.
// P.a = kind: 0 sgd, 1 sgd momentum, 2 sgd nesterov, 3 adagrad, 4 rmsprop, 5 adam, 6 adamw.
// P.b = 1 when in1[0] holds the global gradient norm and P.x the clipping threshold.
// P.y = weight decay, P.z = momentum / rho / beta1, P.w = epsilon, P.x2 = rmsprop momentum
// or beta2. S holds the learning rate and Adam's bias corrections of this step.
// Needs common.wgsl.

@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> norm: array<f32>;
@group(0) @binding(6) var<storage, read_write> param: array<f32>;
@group(0) @binding(7) var<storage, read_write> m: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= P.n { return; }
    var gscale = 1.0;
    if P.b == 1u {
        let n = norm[0];
        if n > P.x { gscale = P.x / (n + 1e-6); }
    }
    let lr = S.lr;
    let wd = P.y;
    var p = param[i];
    let g0 = grad[i] * gscale;
    switch P.a {
        case 0u: { p -= lr * (g0 + wd * p); }
        case 1u: {
            let mi = P.z * m[i] + g0 + wd * p;
            m[i] = mi;
            p -= lr * mi;
        }
        case 2u: {
            let g = g0 + wd * p;
            let mi = P.z * m[i] + g;
            m[i] = mi;
            p -= lr * (g + P.z * mi);
        }
        case 3u: {
            let g = g0 + wd * p;
            let vi = v[i] + g * g;
            v[i] = vi;
            p -= lr * g / (sqrt(vi) + P.w);
        }
        case 4u: {
            let g = g0 + wd * p;
            let vi = P.z * v[i] + (1.0 - P.z) * g * g;
            v[i] = vi;
            let mi = P.x2 * m[i] + g / (sqrt(vi) + P.w);
            m[i] = mi;
            p -= lr * mi;
        }
        default: {
            // Adam (L2 decay in the gradient) or AdamW (decoupled decay, S.decay).
            let adamw = P.a == 6u;
            let g = g0 + select(wd, 0.0, adamw) * p;
            let mi = P.z * m[i] + (1.0 - P.z) * g;
            let vi = P.x2 * v[i] + (1.0 - P.x2) * g * g;
            m[i] = mi;
            v[i] = vi;
            p = p * select(1.0, S.decay, adamw) - S.adam_step * mi / (sqrt(vi * S.inv_bc2) + P.w);
        }
    }
    param[i] = p;
}
