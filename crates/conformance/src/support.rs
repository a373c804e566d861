//! Shared helpers: specs from YAML, plans, small data sets, deterministic parameters, checks.

use std::fmt::Display;

use ndarray::{Array1, Array2};
use weft_common::rng::Rng;
use weft_data::Dataset;
use weft_exec::Executor;
use weft_planner::{DataShape, Plan, Task};

use crate::tol::Tol;
use crate::Ctor;

/// Unwraps, printing the error with `Display` (the located spec message, say).
pub fn ok<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A full spec around a `model:` and a `train:` value (both YAML flow text).
pub fn yaml(model: &str, train: &str) -> String {
    format!(
        "name: conformance\nseed: 42\ndata: {{source: builtin:iris}}\nmodel: {model}\ntrain: {train}\nevaluate: []\n"
    )
}

pub fn classes(n: usize) -> Task {
    Task::Classification { classes: n }
}

pub fn regression() -> Task {
    Task::Regression { targets: 1 }
}

/// Plans `model` / `train` for `features` numeric columns (`f0`, `f1`, …) and `task`.
pub fn plan(model: &str, train: &str, features: usize, task: Task) -> Plan {
    plan_with_vocab(model, train, features, task, &[])
}

/// [`plan`] where columns of `vocab` are embedding ids taking that many values.
pub fn plan_with_vocab(
    model: &str,
    train: &str,
    features: usize,
    task: Task,
    vocab: &[(&str, usize)],
) -> Plan {
    let text = yaml(model, train);
    let (spec, _) = ok(weft_dsl::load("<conformance>", &text, &[]));
    let data = DataShape {
        features: (0..features).map(|i| format!("f{i}")).collect(),
        task,
        vocab: vocab.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
    };
    ok(Plan::new(&spec, &data))
}

/// [`plan`] for images of `c × h × w` (`data.image`), one per row.
pub fn plan_image(model: &str, train: &str, (c, h, w): (usize, usize, usize), task: Task) -> Plan {
    let text = yaml(model, train).replace(
        "data: {source: builtin:iris}",
        &format!(
            "data: {{source: builtin:iris, image: {{channels: {c}, height: {h}, width: {w}}}}}"
        ),
    );
    let (spec, _) = ok(weft_dsl::load("<conformance>", &text, &[]));
    let data = DataShape {
        features: (0..c * h * w).map(|i| format!("f{i}")).collect(),
        task,
        vocab: Default::default(),
    };
    ok(Plan::new(&spec, &data))
}

/// `rows` × `cols` values with |v| in [0.4, 1.0] and mixed signs (away from zero, so a
/// near-identity first layer keeps pre-activations away from relu's kink).
pub fn inputs(rows: usize, cols: usize, stream: u64) -> Array2<f32> {
    let mut rng = Rng::new(7, stream);
    Array2::from_shape_simple_fn((rows, cols), || {
        let magnitude = 0.4 + 0.6 * rng.uniform();
        if rng.uniform() < 0.5 {
            -magnitude
        } else {
            magnitude
        }
    })
}

/// Labels for `rows` rows: class indices cycling through `task`'s classes, or values in
/// [-1, 1] for regression.
pub fn labels(rows: usize, task: &Task) -> Array1<f32> {
    match task {
        Task::Classification { classes } => Array1::from_shape_fn(rows, |i| (i % classes) as f32),
        Task::Regression { .. } => {
            let mut rng = Rng::new(7, 99);
            Array1::from_shape_simple_fn(rows, || rng.uniform() * 2.0 - 1.0)
        }
    }
}

/// Deterministic parameter values for a plan, independent of any executor's initialiser:
/// weights and biases uniform in [-0.6, 0.6], norm gains in [0.7, 1.3].
pub fn params_for(plan: &Plan) -> Vec<Array2<f32>> {
    plan.params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut rng = Rng::new(11, i as u64);
            let gain = p.name.ends_with(".gamma");
            Array2::from_shape_simple_fn((p.shape.rows_at(1), p.shape.cols), || {
                let u = rng.uniform() * 2.0 - 1.0;
                if gain {
                    1.0 + 0.3 * u
                } else {
                    0.6 * u
                }
            })
        })
        .collect()
}

/// The index of parameter `name` in the plan's `params` order.
pub fn param_index(plan: &Plan, name: &str) -> usize {
    let names: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no parameter `{name}`; the plan has {names:?}"))
}

/// Sets the named parameters (others keep their value).
pub fn set_named(exec: &mut dyn Executor, plan: &Plan, values: &[(&str, Array2<f32>)]) {
    let mut params = ok(exec.params());
    for (name, v) in values {
        params[param_index(plan, name)] = v.clone();
    }
    ok(exec.set_params(&params));
}

/// A new executor for `plan` with every parameter set to `params_for(plan)`.
pub fn executor_with_params(ctor: Ctor, plan: &Plan) -> Box<dyn Executor> {
    let mut exec = ctor(plan);
    ok(exec.set_params(&params_for(plan)));
    exec
}

/// `|a - b| <= atol + rtol * max(|a|, |b|)`.
pub fn close(a: f64, b: f64, tol: Tol) -> bool {
    (a - b).abs() <= f64::from(tol.atol) + f64::from(tol.rtol) * a.abs().max(b.abs())
}

/// Asserts `got` matches `want` element by element, naming the first mismatch.
pub fn assert_all_close(what: &str, got: &Array2<f32>, want: &Array2<f64>, tol: Tol) {
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            close(f64::from(*g), *w, tol),
            "{what}[{idx:?}]: got {g}, want {w} (rtol {}, atol {})\ngot:\n{got}\nwant:\n{want}",
            tol.rtol,
            tol.atol
        );
    }
}

/// A separable 3-class problem: three Gaussian blobs (σ = 0.5) in 2-D, 30 rows each,
/// centres 4 apart, rows interleaved by class.
pub fn blobs() -> Dataset {
    let centres = [(0.0f32, 2.5f32), (2.2, -1.3), (-2.2, -1.3)];
    let mut rng = Rng::new(3, 1);
    let n = 90;
    let mut x = Array2::zeros((n, 2));
    let mut y = Array1::zeros(n);
    for i in 0..n {
        let c = i % 3;
        x[[i, 0]] = centres[c].0 + 0.5 * rng.normal();
        x[[i, 1]] = centres[c].1 + 0.5 * rng.normal();
        y[i] = c as f32;
    }
    Dataset { x, y, w: None }
}

/// Fraction of rows whose arg-max prediction is the label.
pub fn accuracy(probs: &Array2<f32>, y: &Array1<f32>) -> f64 {
    let hits = probs
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                );
            best.0 == label as usize
        })
        .count();
    hits as f64 / y.len() as f64
}

/// All parameters as one flat vector.
pub fn flat(params: &[Array2<f32>]) -> Vec<f32> {
    params.iter().flat_map(|p| p.iter().copied()).collect()
}

pub fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

/// A `train:` value for models whose output is read as is (mse), trained with plain sgd.
pub const MSE_SGD: &str = "{loss: mse, optimizer: {sgd: {lr: 0.1}}}";

pub fn eye(n: usize) -> Array2<f32> {
    Array2::eye(n)
}

pub fn to64(a: &Array2<f32>) -> Array2<f64> {
    a.mapv(f64::from)
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Row-wise softmax, stable (the row maximum subtracted first).
pub fn softmax_rows(x: &Array2<f64>) -> Array2<f64> {
    let mut out = x.clone();
    for mut row in out.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}
