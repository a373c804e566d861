//! Dropout: in training it zeroes about `rate` of the units and scales the rest by
//! 1 / (1 − rate), with a mask fixed by (seed, step); in evaluation it is the identity.

use ndarray::{array, Array2};
use weft_exec::Executor;
use weft_planner::Plan;

use crate::support::{assert_all_close, close, ok, plan, regression, set_named, MSE_SGD};
use crate::tol::{DROPOUT_FRACTION, FORWARD};
use crate::Ctor;

const UNITS: usize = 4000;
const RATE: f64 = 0.3;

/// `1 → dense(UNITS, all ones) → dropout → dense(1)`: with the last weights zero and the
/// target −0.5, d(loss)/d(output) is exactly 1, so the last layer's weight gradient is
/// the dropout output itself.
fn probe(ctor: Ctor) -> (Plan, Box<dyn Executor>) {
    let model = format!(
        "[{{dense: {{units: {UNITS}, use_bias: false}}}}, {{dropout: {{rate: {RATE}}}}}, {{dense: {{units: 1, use_bias: false}}}}]"
    );
    let p = plan(&model, MSE_SGD, 1, regression());
    let mut exec = ctor(&p);
    set_named(
        exec.as_mut(),
        &p,
        &[
            ("dense_0.weight", Array2::ones((1, UNITS))),
            ("dense_2.weight", Array2::zeros((UNITS, 1))),
        ],
    );
    (p, exec)
}

fn output(exec: &mut dyn Executor, step: u64) -> Vec<f32> {
    let (x, y) = (array![[1.0f32]], array![-0.5f32]);
    ok(exec.loss_and_grads(x.view(), y.view(), step));
    ok(exec.grads())[1].iter().copied().collect()
}

pub fn zeroes_about_rate_and_rescales(ctor: Ctor) {
    let (_, mut exec) = probe(ctor);
    let h = output(exec.as_mut(), 3);
    let scale = 1.0 / (1.0 - RATE);
    let zeros = h.iter().filter(|v| **v == 0.0).count();
    for (i, v) in h.iter().enumerate() {
        assert!(
            *v == 0.0 || close(f64::from(*v), scale, FORWARD),
            "unit {i}: {v} is neither 0 nor {scale}"
        );
    }
    let fraction = zeros as f64 / UNITS as f64;
    assert!(
        (fraction - RATE).abs() < DROPOUT_FRACTION,
        "{fraction} of units zeroed, rate {RATE}"
    );
}

pub fn mask_is_fixed_per_step(ctor: Ctor) {
    let (_, mut exec) = probe(ctor);
    let a = output(exec.as_mut(), 5);
    let b = output(exec.as_mut(), 5);
    let c = output(exec.as_mut(), 6);
    assert_eq!(a, b, "the same step must give the same mask");
    let differ = a
        .iter()
        .zip(&c)
        .filter(|(x, y)| (**x == 0.0) != (**y == 0.0))
        .count();
    assert!(
        differ > UNITS / 10,
        "steps 5 and 6 share the mask ({differ} units differ)"
    );
}

pub fn is_identity_in_eval(ctor: Ctor) {
    let (p, mut exec) = probe(ctor);
    set_named(
        exec.as_mut(),
        &p,
        &[("dense_2.weight", Array2::ones((UNITS, 1)))],
    );
    let x = array![[1.0f32], [0.5]];
    let want = array![[UNITS as f64], [UNITS as f64 / 2.0]];
    assert_all_close(
        "dropout (eval)",
        &ok(exec.predict(x.view())),
        &want,
        FORWARD,
    );
    let loss = ok(exec.eval_loss(x.view(), array![0.0f32, 0.0].view()));
    let want_loss = (UNITS as f64).powi(2) * (1.0 + 0.25) / 2.0;
    assert!(
        close(f64::from(loss), want_loss, FORWARD),
        "eval loss {loss}, want {want_loss}"
    );
}
