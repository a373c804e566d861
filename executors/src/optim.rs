//! First-order optimizer updates (sgd, adagrad, rmsprop, adam, adamw) and learning-rate
//! schedules. Updates run in place over flat slices; state is kept per parameter.

use weft_dsl::{Optimizer, Schedule, TrainSpec};

/// Per-parameter optimizer state (moments), created on first use.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
}

/// Applies one step of `opt` to `param` with gradient `grad` scaled by `gscale` (clipping).
pub fn update(opt: &Optimizer, lr: f32, param: &mut [f32], grad: &[f32], gscale: f32, st: &mut State) {
    let n = param.len();
    if st.m.len() != n {
        st.m = vec![0.0; n];
        st.v = match opt {
            Optimizer::Adagrad(a) => vec![a.initial_accumulator as f32; n],
            _ => vec![0.0; n],
        };
    }
    st.t += 1;
    match opt {
        Optimizer::Sgd(s) => {
            let (mu, wd) = (s.momentum as f32, s.weight_decay as f32);
            for i in 0..n {
                let g = grad[i] * gscale + wd * param[i];
                if mu == 0.0 {
                    param[i] -= lr * g;
                } else {
                    let buf = mu * st.m[i] + g;
                    st.m[i] = buf;
                    param[i] -= lr * if s.nesterov { g + mu * buf } else { buf };
                }
            }
        }
        Optimizer::Adagrad(a) => {
            let (eps, wd) = (a.epsilon as f32, a.weight_decay as f32);
            for i in 0..n {
                let g = grad[i] * gscale + wd * param[i];
                st.v[i] += g * g;
                param[i] -= lr * g / (st.v[i].sqrt() + eps);
            }
        }
        Optimizer::Rmsprop(r) => {
            let (rho, mu, eps, wd) = (r.rho as f32, r.momentum as f32, r.epsilon as f32, r.weight_decay as f32);
            for i in 0..n {
                let g = grad[i] * gscale + wd * param[i];
                st.v[i] = rho * st.v[i] + (1.0 - rho) * g * g;
                let step = g / (st.v[i].sqrt() + eps);
                if mu > 0.0 {
                    st.m[i] = mu * st.m[i] + step;
                    param[i] -= lr * st.m[i];
                } else {
                    param[i] -= lr * step;
                }
            }
        }
        Optimizer::Adam(a) | Optimizer::Adamw(a) => {
            let decoupled = matches!(opt, Optimizer::Adamw(_));
            let wd = a.weight_decay.unwrap_or(if decoupled { 0.01 } else { 0.0 }) as f32;
            let (b1, b2, eps) = (a.beta1 as f32, a.beta2 as f32, a.epsilon as f32);
            let bc1 = 1.0 - b1.powi(st.t as i32);
            let bc2 = 1.0 - b2.powi(st.t as i32);
            let step = lr / bc1;
            let inv_bc2 = 1.0 / bc2;
            let (l2, decay) = if decoupled { (0.0, 1.0 - lr * wd) } else { (wd, 1.0) };
            let (m, v) = (&mut st.m[..n], &mut st.v[..n]);
            for i in 0..n {
                let g = grad[i] * gscale + l2 * param[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                param[i] = param[i] * decay - step * m[i] / ((v[i] * inv_bc2).sqrt() + eps);
            }
        }
        Optimizer::Lbfgs(_) => {}
    }
}

/// The learning rate at `step` (0-based) of `total_steps`, with warmup and schedule.
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
        let mut t = TrainSpec::default();
        t.warmup_steps = 10;
        assert!((learning_rate(&t, 0, 100, 1000) - 1e-4).abs() < 1e-9);
        assert!((learning_rate(&t, 50, 100, 1000) - 1e-3).abs() < 1e-9);
        t.warmup_steps = 0;
        t.schedule = Schedule::Step(StepSchedule { every_epochs: 2, gamma: 0.5 });
        assert!((learning_rate(&t, 450, 100, 1000) - 2.5e-4).abs() < 1e-9);
        t.schedule = Schedule::Cosine(CosineSchedule { min_lr: 0.0 });
        assert!((learning_rate(&t, 500, 100, 1000) - 5e-4).abs() < 1e-7);
        assert!(learning_rate(&t, 999, 100, 1000) < 1e-6);
    }
}
