//! Optimizers: each one, with its default hyperparameters, trains `dense(8, tanh) →
//! dense(3)` on three separable blobs (90 rows, batches of 10) through `train::fit` to a
//! mean train loss below 0.05 and 100% train accuracy, in about twice the epochs the CPU
//! executor needs; and each first-order update matches its formula, step by step, in f64.

use weft_runtime::train::{fit_local as fit, predict_all, Quiet};

use crate::support::{accuracy, blobs, classes, close, executor_with_params, flat, ok, plan};
use crate::tol::FORWARD;
use crate::Ctor;

const MODEL: &str = "[{dense: {units: 8, activation: tanh}}, {dense: {units: 3}}]";
/// The threshold in every test name.
const TARGET_LOSS: f32 = 0.05;

fn reaches(ctor: Ctor, optimizer: &str, batch_size: usize, epochs: usize) {
    let train = format!("{{loss: cross_entropy, optimizer: {optimizer}, batch_size: {batch_size}, epochs: {epochs}}}");
    let p = plan(MODEL, &train, 2, classes(3));
    let data = blobs();
    let mut exec = ctor(&p);
    let outcome = ok(fit(exec.as_mut(), &p, &data, None, &mut Quiet));
    let losses: Vec<f32> = outcome.history.iter().map(|r| r.train_loss).collect();
    let last = losses.last().copied().unwrap_or(f32::NAN);
    let first = losses.iter().position(|l| *l < TARGET_LOSS).map(|i| i + 1);
    println!("{optimizer}: below {TARGET_LOSS} from epoch {first:?} of {epochs}; final train loss {last}");
    assert!(
        last < TARGET_LOSS,
        "{optimizer}: final train loss {last} is not below {TARGET_LOSS}; per epoch: {losses:?}"
    );
    let acc = accuracy(&ok(predict_all(exec.as_mut(), &data.x, 64)), &data.y);
    assert_eq!(acc, 1.0, "{optimizer}: train accuracy");
}

pub fn sgd_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "sgd", 10, 150);
}

pub fn sgd_momentum_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "{sgd: {momentum: 0.9}}", 10, 15);
}

pub fn sgd_nesterov_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "{sgd: {momentum: 0.9, nesterov: true}}", 10, 15);
}

pub fn adagrad_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "adagrad", 10, 400);
}

pub fn rmsprop_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "rmsprop", 10, 120);
}

pub fn adam_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "adam", 10, 200);
}

pub fn adamw_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "adamw", 10, 200);
}

/// Full batch: each epoch is up to `max_iter` (20) L-BFGS iterations.
pub fn lbfgs_reaches_loss_below_0_05(ctor: Ctor) {
    reaches(ctor, "lbfgs", 90, 2);
}

/// The reference update of one parameter element, in f64; `m`, `v` are its state.
#[derive(Clone, Copy)]
enum Rule {
    Sgd {
        momentum: f64,
        nesterov: bool,
        wd: f64,
    },
    Adagrad {
        init: f64,
        eps: f64,
        wd: f64,
    },
    Rmsprop {
        rho: f64,
        momentum: f64,
        eps: f64,
        wd: f64,
    },
    Adam {
        b1: f64,
        b2: f64,
        eps: f64,
        wd: f64,
        decoupled: bool,
    },
}

impl Rule {
    fn start_v(self) -> f64 {
        match self {
            Rule::Adagrad { init, .. } => init,
            _ => 0.0,
        }
    }

    /// One step at time `t` (1-based): updates `p`, `m`, `v` in place.
    fn apply(self, t: i32, lr: f64, p: &mut f64, g: f64, m: &mut f64, v: &mut f64) {
        match self {
            Rule::Sgd {
                momentum,
                nesterov,
                wd,
            } => {
                let g = g + wd * *p;
                if momentum == 0.0 {
                    *p -= lr * g;
                } else {
                    *m = momentum * *m + g;
                    *p -= lr * if nesterov { g + momentum * *m } else { *m };
                }
            }
            Rule::Adagrad { eps, wd, .. } => {
                let g = g + wd * *p;
                *v += g * g;
                *p -= lr * g / (v.sqrt() + eps);
            }
            Rule::Rmsprop {
                rho,
                momentum,
                eps,
                wd,
            } => {
                let g = g + wd * *p;
                *v = rho * *v + (1.0 - rho) * g * g;
                *m = momentum * *m + g / (v.sqrt() + eps);
                *p -= lr * *m;
            }
            Rule::Adam {
                b1,
                b2,
                eps,
                wd,
                decoupled,
            } => {
                let g = if decoupled { g } else { g + wd * *p };
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                if decoupled {
                    *p *= 1.0 - lr * wd;
                }
                *p -= lr / bc1 * *m / ((*v / bc2).sqrt() + eps);
            }
        }
    }
}

/// Three `train_step`s from fixed parameters match `rule` applied in f64 to the
/// gradients `loss_and_grads` reports at each step's starting point.
fn steps_match(ctor: Ctor, optimizer: &str, rule: Rule) {
    steps_match_with(ctor, MODEL, optimizer, rule, &[]);
}

/// [`steps_match`] of `model`, whose parameters named in `penalties` add `l1·sign(p) +
/// 2·l2·p` to their gradients.
fn steps_match_with(
    ctor: Ctor,
    model: &str,
    optimizer: &str,
    rule: Rule,
    penalties: &[(&str, f64, f64)],
) {
    let lr = 0.05f32;
    let train = format!("{{loss: cross_entropy, optimizer: {optimizer}}}");
    let p = plan(model, &train, 2, classes(3));
    // Each flat value's penalty, in the plan's parameter order.
    let per_value: Vec<(f64, f64)> = p
        .params
        .iter()
        .flat_map(|param| {
            let pen = penalties
                .iter()
                .find(|(n, _, _)| *n == param.name)
                .map_or((0.0, 0.0), |(_, l1, l2)| (*l1, *l2));
            std::iter::repeat_n(pen, param.shape.numel(1))
        })
        .collect();
    let data = blobs();
    let (x, y) = (
        data.x.slice(ndarray::s![..12, ..]),
        data.y.slice(ndarray::s![..12]),
    );
    let mut exec = executor_with_params(ctor, &p);
    let mut want: Vec<f64> = flat(&ok(exec.params()))
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    let mut m = vec![0.0; want.len()];
    let mut v = vec![rule.start_v(); want.len()];
    for t in 1..=3 {
        ok(exec.loss_and_grads(x, y, t as u64));
        let grads = flat(&ok(exec.grads()));
        ok(exec.train_step(x, y, t as u64, lr));
        for i in 0..want.len() {
            let (l1, l2) = per_value.get(i).copied().unwrap_or_default();
            let w = want[i];
            let penalty = l1 * w.signum() * f64::from(u8::from(w != 0.0)) + 2.0 * l2 * w;
            rule.apply(
                t,
                f64::from(lr),
                &mut want[i],
                f64::from(grads[i]) + penalty,
                &mut m[i],
                &mut v[i],
            );
        }
        let got = flat(&ok(exec.params()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                close(f64::from(*g), *w, FORWARD),
                "{optimizer}, step {t}, parameter value {i}: got {g}, want {w}"
            );
        }
    }
}

pub fn sgd_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{sgd: {lr: 0.05, weight_decay: 0.01}}",
        Rule::Sgd {
            momentum: 0.0,
            nesterov: false,
            wd: 0.01,
        },
    );
}

pub fn sgd_momentum_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{sgd: {lr: 0.05, momentum: 0.8, weight_decay: 0.01}}",
        Rule::Sgd {
            momentum: 0.8,
            nesterov: false,
            wd: 0.01,
        },
    );
}

pub fn sgd_nesterov_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{sgd: {lr: 0.05, momentum: 0.8, nesterov: true, weight_decay: 0.01}}",
        Rule::Sgd {
            momentum: 0.8,
            nesterov: true,
            wd: 0.01,
        },
    );
}

pub fn adagrad_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{adagrad: {lr: 0.05, initial_accumulator: 0.2, epsilon: 0.001, weight_decay: 0.01}}",
        Rule::Adagrad {
            init: 0.2,
            eps: 1e-3,
            wd: 0.01,
        },
    );
}

pub fn rmsprop_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{rmsprop: {lr: 0.05, rho: 0.8, epsilon: 0.001, weight_decay: 0.01}}",
        Rule::Rmsprop {
            rho: 0.8,
            momentum: 0.0,
            eps: 1e-3,
            wd: 0.01,
        },
    );
}

pub fn rmsprop_momentum_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{rmsprop: {lr: 0.05, rho: 0.8, momentum: 0.5, epsilon: 0.001}}",
        Rule::Rmsprop {
            rho: 0.8,
            momentum: 0.5,
            eps: 1e-3,
            wd: 0.0,
        },
    );
}

pub fn adam_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{adam: {lr: 0.05, beta1: 0.8, beta2: 0.9, epsilon: 0.001, weight_decay: 0.01}}",
        Rule::Adam {
            b1: 0.8,
            b2: 0.9,
            eps: 1e-3,
            wd: 0.01,
            decoupled: false,
        },
    );
}

/// AdamW's weight decay is decoupled: `p ← p (1 − lr·wd)`, outside the moments.
pub fn adamw_step_matches_reference(ctor: Ctor) {
    steps_match(
        ctor,
        "{adamw: {lr: 0.05, beta1: 0.8, beta2: 0.9, epsilon: 0.001, weight_decay: 0.1}}",
        Rule::Adam {
            b1: 0.8,
            b2: 0.9,
            eps: 1e-3,
            wd: 0.1,
            decoupled: true,
        },
    );
}

/// `dense: {l1, l2}` adds `l1·sign(w) + 2·l2·w` to its weights' gradients (not its bias's),
/// under a coupled and a decoupled weight decay.
pub fn dense_l1_l2_penalties_match_reference(ctor: Ctor) {
    let model = "[{dense: {units: 8, activation: tanh, l1: 0.01, l2: 0.02}}, {dense: {units: 3, l2: 0.05}}]";
    let penalties = [
        ("dense_0.weight", 0.01, 0.02),
        ("dense_1.weight", 0.0, 0.05),
    ];
    steps_match_with(
        ctor,
        model,
        "{sgd: {lr: 0.05, momentum: 0.8}}",
        Rule::Sgd {
            momentum: 0.8,
            nesterov: false,
            wd: 0.0,
        },
        &penalties,
    );
    steps_match_with(
        ctor,
        model,
        "{adamw: {lr: 0.05, beta1: 0.8, beta2: 0.9, epsilon: 0.001, weight_decay: 0.1}}",
        Rule::Adam {
            b1: 0.8,
            b2: 0.9,
            eps: 1e-3,
            wd: 0.1,
            decoupled: true,
        },
        &penalties,
    );
}
