//! First-order optimizer updates (sgd, adagrad, rmsprop, adam, adamw) and learning-rate
//! schedules. Updates run in place over flat slices; state is kept per parameter.

use rayon::prelude::*;
use weft_dsl::{Optimizer, Schedule, TrainSpec};
use weft_planner::op::Penalty;

use crate::cpu::simd::widest;

/// Per-parameter optimizer state (moments), created on first use.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

/// The optimizer's state as a checkpoint holds it, so a resumed run continues exactly: the
/// number of updates done (Adam's bias correction) and the two moment slots, flat in the
/// plan's `params` order. `m` and `v` are empty before the first update.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimState {
    pub updates: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// Elements per parallel chunk; parameters smaller than two chunks update on one thread.
const CHUNK: usize = 16 * 1024;

/// Runs `f(param, grad, m, v)` over every element, in parallel chunks for large tensors.
/// Elementwise only (no reductions), so the result does not depend on the thread count.
fn each(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    f: impl Fn(&mut f32, f32, &mut f32, &mut f32) + Sync,
) {
    let run = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            f(p, *g, m, v);
        }
    };
    // The loop vectorises at the widest width this CPU has (chosen at run time).
    if p.len() < 2 * CHUNK {
        widest(|| run(p, g, m, v));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| widest(|| run(p, g, m, v)));
    }
}

/// Applies one step of `opt` to `param` with gradient `grad` scaled by `gscale` (clipping),
/// plus the gradient of the layer's `penalty` (L1 / L2 on the weights).
pub fn update(
    opt: &Optimizer,
    lr: f32,
    param: &mut [f32],
    grad: &[f32],
    (gscale, penalty): (f32, Penalty),
    st: &mut State,
) {
    let n = param.len();
    if st.m.len() != n {
        st.m = vec![0.0; n];
        st.v = match opt {
            Optimizer::Adagrad(a) => vec![a.initial_accumulator as f32; n],
            _ => vec![0.0; n],
        };
    }
    st.t += 1;
    let (m, v) = (&mut st.m[..], &mut st.v[..]);
    match opt {
        Optimizer::Sgd(s) => {
            let (mu, wd) = (s.momentum as f32, s.weight_decay as f32);
            if mu == 0.0 {
                each(param, grad, m, v, |p, g, _, _| {
                    *p -= lr * ((g * gscale + penalty.grad(*p)) + wd * *p)
                });
            } else if s.nesterov {
                each(param, grad, m, v, |p, g, m, _| {
                    let g = (g * gscale + penalty.grad(*p)) + wd * *p;
                    *m = mu * *m + g;
                    *p -= lr * (g + mu * *m);
                });
            } else {
                each(param, grad, m, v, |p, g, m, _| {
                    *m = mu * *m + (g * gscale + penalty.grad(*p)) + wd * *p;
                    *p -= lr * *m;
                });
            }
        }
        Optimizer::Adagrad(a) => {
            let (eps, wd) = (a.epsilon as f32, a.weight_decay as f32);
            each(param, grad, m, v, |p, g, _, v| {
                let g = (g * gscale + penalty.grad(*p)) + wd * *p;
                *v += g * g;
                *p -= lr * g / (v.sqrt() + eps);
            });
        }
        Optimizer::Rmsprop(r) => {
            let (rho, mu, eps, wd) = (
                r.rho as f32,
                r.momentum as f32,
                r.epsilon as f32,
                r.weight_decay as f32,
            );
            each(param, grad, m, v, |p, g, m, v| {
                let g = (g * gscale + penalty.grad(*p)) + wd * *p;
                *v = rho * *v + (1.0 - rho) * g * g;
                let step = g / (v.sqrt() + eps);
                // momentum 0 keeps m at 0 and makes this plain RMSprop.
                *m = mu * *m + step;
                *p -= lr * *m;
            });
        }
        Optimizer::Adam(a) | Optimizer::Adamw(a) => {
            let decoupled = matches!(opt, Optimizer::Adamw(_));
            let wd = adam_weight_decay(opt).unwrap_or(0.0);
            let (b1, b2, eps) = (a.beta1 as f32, a.beta2 as f32, a.epsilon as f32);
            let bc1 = 1.0 - b1.powi(st.t as i32);
            let bc2 = 1.0 - b2.powi(st.t as i32);
            let step = lr / bc1;
            let inv_bc2 = 1.0 / bc2;
            let (l2, decay) = if decoupled {
                (0.0, 1.0 - lr * wd)
            } else {
                (wd, 1.0)
            };
            each(param, grad, m, v, |p, g, m, v| {
                let g = (g * gscale + penalty.grad(*p)) + l2 * *p;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p = *p * decay - step * *m / ((*v * inv_bc2).sqrt() + eps);
            });
        }
        Optimizer::Lbfgs(_) => {}
    }
}

/// The learning rate at `step` (0-based) of `total_steps`, with warmup and schedule.
/// Adam's weight decay, and AdamW's (0.01 unless the spec sets it); `None` for other
/// optimizers.
pub fn adam_weight_decay(opt: &Optimizer) -> Option<f32> {
    match opt {
        Optimizer::Adam(a) => Some(a.weight_decay.unwrap_or(0.0) as f32),
        Optimizer::Adamw(a) => Some(a.weight_decay.unwrap_or(0.01) as f32),
        _ => None,
    }
}

pub fn learning_rate(train: &TrainSpec, step: u64, steps_per_epoch: u64, total_steps: u64) -> f32 {
    let base = train.optimizer.lr();
    let warm = train.warmup_steps as u64;
    if step < warm {
        return (base * (step + 1) as f64 / warm as f64) as f32;
    }
    let lr = match &train.schedule {
        Schedule::Constant => base,
        Schedule::Step(s) => {
            let epoch = step / steps_per_epoch.max(1);
            base * s.gamma.powi((epoch / s.every_epochs.max(1) as u64) as i32)
        }
        Schedule::Cosine(c) => {
            let span = total_steps.saturating_sub(warm).max(1) as f64;
            let t = ((step - warm) as f64 / span).min(1.0);
            c.min_lr + 0.5 * (base - c.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
        }
    };
    lr as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_dsl::{CosineSchedule, StepSchedule};

    #[test]
    fn schedules() {
        let mut t = TrainSpec {
            warmup_steps: 10,
            ..TrainSpec::default()
        };
        assert!((learning_rate(&t, 0, 100, 1000) - 1e-4).abs() < 1e-9);
        assert!((learning_rate(&t, 50, 100, 1000) - 1e-3).abs() < 1e-9);
        t.warmup_steps = 0;
        t.schedule = Schedule::Step(StepSchedule {
            every_epochs: 2,
            gamma: 0.5,
        });
        assert!((learning_rate(&t, 450, 100, 1000) - 2.5e-4).abs() < 1e-9);
        t.schedule = Schedule::Cosine(CosineSchedule { min_lr: 0.0 });
        assert!((learning_rate(&t, 500, 100, 1000) - 5e-4).abs() < 1e-7);
        assert!(learning_rate(&t, 999, 100, 1000) < 1e-6);
    }
}
