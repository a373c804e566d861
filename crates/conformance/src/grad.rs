//! Gradient checks: every autodiff rule against central finite differences of the loss.
//!
//! Each case is a small real spec: the layer under test sits between dense layers, so the
//! check covers the gradient with respect to its input (through the parameters upstream)
//! and to its own parameters. Gradients come from `loss_and_grads` at a fixed step, so a
//! dropout mask is the same for every evaluation and finite differences apply.

use ndarray::Array2;
use weft_common::rng::Rng;
use weft_planner::{Plan, Task};

use crate::support::{
    classes, inputs, labels, ok, param_index, params_for, plan, plan_with_vocab, regression,
};
use crate::tol::{FD_EPS, GRAD, KINK_MARGIN};
use crate::Ctor;

/// The step passed to `loss_and_grads` (selects the dropout mask).
const STEP: u64 = 7;
const ROWS: usize = 5;
const FEATURES: usize = 3;

pub(crate) const TRAIN_CE: &str = "{loss: cross_entropy, optimizer: {sgd: {lr: 0.1}}}";

/// Checks every parameter's gradient of `plan` at deterministic parameters.
pub(crate) fn check(ctor: Ctor, plan: &Plan, tweak: impl FnOnce(&Plan, &mut Vec<Array2<f32>>)) {
    check_x(ctor, plan, inputs(ROWS, plan.features.len(), 1), tweak);
}

/// [`check`] on the batch `x`.
fn check_x(
    ctor: Ctor,
    plan: &Plan,
    x: Array2<f32>,
    tweak: impl FnOnce(&Plan, &mut Vec<Array2<f32>>),
) {
    let y = labels(ROWS, &plan.task);
    let mut params = params_for(plan);
    tweak(plan, &mut params);
    let mut exec = ctor(plan);
    ok(exec.set_params(&params));
    if plan.sample_weighted {
        // Rows weigh 0, 0.5, 1, 1.5, 2, … (a zero weight included).
        let w: Vec<f32> = (0..ROWS).map(|i| (i % 5) as f32 * 0.5).collect();
        exec.set_sample_weights(Some(&w));
    }
    let loss = ok(exec.loss_and_grads(x.view(), y.view(), STEP));
    assert!(loss.is_finite(), "loss {loss}");
    let analytic = ok(exec.grads());

    let mut failures = Vec::new();
    let (mut worst, mut worst_abs) = (0.0f64, 0.0f64);
    for (pi, p) in plan.params.iter().enumerate() {
        assert_eq!(
            analytic[pi].dim(),
            params[pi].dim(),
            "gradient shape of {}",
            p.name
        );
        for (idx, &g) in analytic[pi].indexed_iter() {
            let at = |delta: f32, exec: &mut dyn weft_exec::Executor| {
                let mut moved = params.clone();
                moved[pi][idx] += delta;
                ok(exec.set_params(&moved));
                let l = ok(exec.loss_and_grads(x.view(), y.view(), STEP));
                (f64::from(l), f64::from(moved[pi][idx]))
            };
            let (up, x_up) = at(FD_EPS, exec.as_mut());
            let (down, x_down) = at(-FD_EPS, exec.as_mut());
            let numeric = (up - down) / (x_up - x_down);
            let g = f64::from(g);
            let err = (g - numeric).abs()
                / (f64::from(GRAD.atol) + f64::from(GRAD.rtol) * g.abs().max(numeric.abs()));
            worst = worst.max(err);
            worst_abs = worst_abs.max((g - numeric).abs());
            if err > 1.0 {
                failures.push(format!(
                    "  {}{idx:?}: analytic {g:.6}, finite differences {numeric:.6}",
                    p.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "gradients differ from finite differences (eps {FD_EPS}, rtol {}, atol {}):\n{}",
        GRAD.rtol,
        GRAD.atol,
        failures.join("\n")
    );
    // Printed with --nocapture: how much of the tolerance the case uses.
    let case = std::thread::current().name().unwrap_or("?").to_string();
    println!("{case}: worst |analytic - numeric| {worst_abs:.2e}, {worst:.3} of the tolerance");
}

fn check_model(ctor: Ctor, model: &str, train: &str, task: Task) {
    let p = plan(model, train, FEATURES, task);
    check(ctor, &p, |_, _| {});
}

/// `dense(3) → activation → dense(3)`, with the first layer near the identity so every
/// pre-activation is at least `KINK_MARGIN` from zero.
fn check_activation(ctor: Ctor, activation: &str) {
    let model =
        format!("[{{dense: {{units: 3}}}}, {{activation: {activation}}}, {{dense: {{units: 3}}}}]");
    let p = plan(&model, TRAIN_CE, FEATURES, classes(3));
    check(ctor, &p, |plan, params| {
        let mut rng = Rng::new(5, 0);
        let w = Array2::from_shape_fn((3, 3), |(i, j)| {
            f32::from(i == j) + 0.05 * (rng.uniform() * 2.0 - 1.0)
        });
        let pre = inputs(ROWS, FEATURES, 1).dot(&w);
        let nearest = pre.iter().fold(f32::INFINITY, |m, v| m.min(v.abs()));
        assert!(
            nearest >= KINK_MARGIN,
            "test precondition: a pre-activation is {nearest} from zero"
        );
        params[param_index(plan, "dense_0.weight")] = w;
        params[param_index(plan, "dense_0.bias")] = Array2::zeros((1, 3));
    });
}

pub fn dense(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 4}}, {dense: {units: 3}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn dense_without_bias(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh, use_bias: false}}, {dense: {units: 3, use_bias: false}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn linear(ctor: Ctor) {
    check_activation(ctor, "linear");
}
pub fn sigmoid(ctor: Ctor) {
    check_activation(ctor, "sigmoid");
}
pub fn tanh(ctor: Ctor) {
    check_activation(ctor, "tanh");
}
pub fn softplus(ctor: Ctor) {
    check_activation(ctor, "softplus");
}
pub fn relu(ctor: Ctor) {
    check_activation(ctor, "relu");
}
pub fn leaky_relu(ctor: Ctor) {
    check_activation(ctor, "{leaky_relu: {alpha: 0.1}}");
}
pub fn elu(ctor: Ctor) {
    check_activation(ctor, "{elu: {alpha: 0.7}}");
}
pub fn swish(ctor: Ctor) {
    check_activation(ctor, "swish");
}
pub fn gelu(ctor: Ctor) {
    check_activation(ctor, "gelu");
}
pub fn selu(ctor: Ctor) {
    check_activation(ctor, "selu");
}
pub fn softmax(ctor: Ctor) {
    check_activation(ctor, "softmax");
}

pub fn dropout(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 6, activation: tanh}}, {dropout: {rate: 0.5}}, {dense: {units: 3}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn batch_norm(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4}}, {batch_norm: {}}, {dense: {units: 3}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn layer_norm(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4}}, {layer_norm: {}}, {dense: {units: 3}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn add_merge(ctor: Ctor) {
    check_model(
        ctor,
        "{inputs: {x: features}, nodes: {
            a: {dense: {units: 4, activation: tanh}, input: x},
            b: {dense: {units: 4, activation: sigmoid}, input: x},
            s: {add: [a, b]},
            out: {dense: {units: 3}, input: s}}, output: out}",
        TRAIN_CE,
        classes(3),
    );
}

/// A residual block: `a` reaches the sum directly and through `b`, so its gradient is
/// the sum of two contributions.
pub fn add_merge_shared_input(ctor: Ctor) {
    check_model(
        ctor,
        "{inputs: {x: features}, nodes: {
            a: {dense: {units: 4, activation: tanh}, input: x},
            b: {dense: {units: 4, activation: tanh}, input: a},
            s: {add: [a, b]},
            out: {dense: {units: 3}, input: s}}, output: out}",
        TRAIN_CE,
        classes(3),
    );
}

/// Concatenates the raw input (no gradient) with two layers of different widths.
pub fn concat_merge(ctor: Ctor) {
    check_model(
        ctor,
        "{inputs: {x: features}, nodes: {
            a: {dense: {units: 2, activation: tanh}, input: x},
            b: {dense: {units: 3, activation: sigmoid}, input: x},
            c: {concat: [x, a, b]},
            out: {dense: {units: 3}, input: c}}, output: out}",
        TRAIN_CE,
        classes(3),
    );
}

pub fn cross_entropy(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 3}}]",
        TRAIN_CE,
        classes(3),
    );
}

/// A softmax output layer is fused into the loss (the loss reads the logits).
pub fn cross_entropy_softmax_output(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 3, activation: softmax}}]",
        TRAIN_CE,
        classes(3),
    );
}

pub fn binary_cross_entropy(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 1, activation: sigmoid}}]",
        "{loss: binary_cross_entropy, optimizer: {sgd: {lr: 0.1}}}",
        classes(2),
    );
}

pub fn mse_regression(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 1}}]",
        "{loss: mse, optimizer: {sgd: {lr: 0.1}}}",
        regression(),
    );
}

/// Mse against one-hot labels; the output sigmoid is not fused, so its rule is used too.
pub fn mse_one_hot(ctor: Ctor) {
    check_model(
        ctor,
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 3, activation: sigmoid}}]",
        "{loss: mse, optimizer: {sgd: {lr: 0.1}}}",
        classes(3),
    );
}

/// Class weights (`train.class_weight`) scale each row's loss and gradient by its class's
/// weight, for every classification loss.
pub fn class_weighted_losses(ctor: Ctor) {
    let cases = [
        (
            "{dense: {units: 3}}",
            "cross_entropy",
            3,
            vec![0.5, 2.0, 1.5],
        ),
        (
            "{dense: {units: 1, activation: sigmoid}}",
            "binary_cross_entropy",
            2,
            vec![0.3, 2.5],
        ),
        (
            "{dense: {units: 3, activation: sigmoid}}",
            "mse",
            3,
            vec![2.0, 0.25, 1.0],
        ),
    ];
    for (out, loss, k, w) in cases {
        let model = format!("[{{dense: {{units: 4, activation: tanh}}}}, {out}]");
        let train = format!("{{loss: {loss}, optimizer: {{sgd: {{lr: 0.1}}}}}}");
        let p = ok(plan(&model, &train, FEATURES, classes(k)).with_class_weights(w));
        check(ctor, &p, |_, _| {});
        // Row weights (`data.weight_column`) on top of the class weights.
        let mut p = p;
        p.sample_weighted = true;
        check(ctor, &p, |_, _| {});
    }
    // Row weights alone, for regression.
    let mut p = plan(
        "[{dense: {units: 4, activation: tanh}}, {dense: {units: 1}}]",
        "{loss: mse, optimizer: {sgd: {lr: 0.1}}}",
        FEATURES,
        regression(),
    );
    p.sample_weighted = true;
    check(ctor, &p, |_, _| {});
}

/// The same node twice in one merge: its gradient is counted twice.
pub fn merge_same_input_twice(ctor: Ctor) {
    for merge in ["add", "concat"] {
        check_model(
            ctor,
            &format!(
                "{{inputs: {{x: features}}, nodes: {{
                    a: {{dense: {{units: 3, activation: tanh}}, input: x}},
                    m: {{{merge}: [a, a]}},
                    out: {{dense: {{units: 3}}, input: m}}}}, output: out}}"
            ),
            TRAIN_CE,
            classes(3),
        );
    }
}

/// An embedding input beside the other features: the table's gradient sums the rows of
/// repeated ids (ids 1 twice, 0 and 3 once, and 6, outside the table, reads zeros).
pub fn embedding(ctor: Ctor) {
    let model = "{inputs: {x: features, c: {embedding: {column: f2, dim: 3}}}, nodes: {
        e: {dense: {units: 3, activation: tanh}, input: c},
        h: {concat: [x, e]},
        out: {dense: {units: 3}, input: h}}, output: out}";
    let p = plan_with_vocab(model, TRAIN_CE, FEATURES, classes(3), &[("f2", 5)]);
    let mut x = inputs(ROWS, FEATURES, 1);
    for (r, id) in [1.0, 3.0, 1.0, 0.0, 6.0].into_iter().enumerate() {
        x[[r, 2]] = id;
    }
    check_x(ctor, &p, x, |_, _| {});
}
