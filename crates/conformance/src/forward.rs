//! Forward values against references computed by hand (in f64): dense, activations,
//! merges, graph inputs, losses and prediction outputs.

use ndarray::{array, Array2};

use crate::support::{
    assert_all_close, classes, close, eye, ok, plan, regression, set_named, sigmoid, softmax_rows,
    to64, MSE_SGD,
};
use crate::tol::FORWARD;
use crate::Ctor;

/// Values spanning both signs, small and large (|x| up to 4).
fn spread() -> Array2<f32> {
    array![
        [-4.0, -1.5, -0.3],
        [0.0, 0.25, 0.9],
        [1.7, 3.0, 4.0],
        [-0.01, 2.2, -2.6]
    ]
}

pub fn dense(ctor: Ctor) {
    let p = plan("[{dense: {units: 2}}]", MSE_SGD, 3, classes(2));
    let mut exec = ctor(&p);
    let w = array![[0.5f32, -1.0], [2.0, 0.25], [-0.75, 1.5]];
    let b = array![[0.1f32, -0.2]];
    set_named(
        exec.as_mut(),
        &p,
        &[("dense_0.weight", w.clone()), ("dense_0.bias", b.clone())],
    );
    let x = spread();
    let want = to64(&x).dot(&to64(&w)) + to64(&b);
    assert_all_close("dense", &ok(exec.predict(x.view())), &want, FORWARD);
}

/// Every activation as a layer after an identity dense, against its formula.
pub fn activations(ctor: Ctor) {
    type F = fn(f64) -> f64;
    let cases: [(&str, F); 10] = [
        ("linear", |x| x),
        ("sigmoid", sigmoid),
        ("tanh", f64::tanh),
        ("softplus", |x| x.exp().ln_1p()),
        ("relu", |x| x.max(0.0)),
        ("{leaky_relu: {alpha: 0.1}}", |x| {
            if x > 0.0 {
                x
            } else {
                0.1 * x
            }
        }),
        ("{elu: {alpha: 0.7}}", |x| {
            if x > 0.0 {
                x
            } else {
                0.7 * x.exp_m1()
            }
        }),
        ("swish", |x| x * sigmoid(x)),
        // GELU is the tanh approximation (GPT-2, Keras `approximate=True`).
        ("gelu", |x| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }),
        // The published constants, in f64.
        ("selu", |x| {
            let (scale, alpha) = (1.050_700_987_355_480_5, 1.673_263_242_354_377_3);
            if x > 0.0 {
                scale * x
            } else {
                scale * alpha * x.exp_m1()
            }
        }),
    ];
    let x = spread();
    for (name, f) in cases {
        let model = format!("[{{dense: {{units: 3, use_bias: false}}}}, {{activation: {name}}}]");
        let p = plan(&model, MSE_SGD, 3, classes(3));
        let mut exec = ctor(&p);
        set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(3))]);
        assert_all_close(
            name,
            &ok(exec.predict(x.view())),
            &to64(&x).mapv(f),
            FORWARD,
        );
    }
}

pub fn softmax_rows_sum_to_one(ctor: Ctor) {
    let p = plan(
        "[{dense: {units: 3, use_bias: false}}, {activation: softmax}]",
        MSE_SGD,
        3,
        classes(3),
    );
    let mut exec = ctor(&p);
    set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(3))]);
    // The last row would overflow exp() in f32 without subtracting the row maximum.
    let x = array![
        [1.0f32, 2.0, 3.0],
        [-1.0, 0.0, 0.5],
        [0.0, 0.0, 0.0],
        [100.0, 101.0, 99.0]
    ];
    let y = ok(exec.predict(x.view()));
    for (i, row) in y.rows().into_iter().enumerate() {
        assert!(
            close(f64::from(row.sum()), 1.0, FORWARD),
            "row {i} sums to {}",
            row.sum()
        );
    }
    assert_all_close("softmax", &y, &softmax_rows(&to64(&x)), FORWARD);
}

pub fn add_and_concat(ctor: Ctor) {
    let wa = array![[1.0f32, -1.0], [0.5, 2.0]];
    let ba = array![[0.1f32, 0.2]];
    let wb = array![[-0.5f32, 0.0], [1.0, 1.5]];
    let bb = array![[0.0f32, -1.0]];
    let x = array![[1.0f32, 2.0], [-1.0, 0.5], [0.0, 0.0]];
    let a = to64(&x).dot(&to64(&wa)) + to64(&ba);
    let b = to64(&x).dot(&to64(&wb)) + to64(&bb);
    for (merge, classes_out, want) in [
        ("add", 2, &a + &b),
        ("concat", 4, ndarray::concatenate![ndarray::Axis(1), a, b]),
    ] {
        let model = format!(
            "{{inputs: {{x: features}}, nodes: {{a: {{dense: {{units: 2}}, input: x}}, b: {{dense: {{units: 2}}, input: x}}, m: {{{merge}: [a, b]}}}}, output: m}}"
        );
        let p = plan(&model, MSE_SGD, 2, classes(classes_out));
        let mut exec = ctor(&p);
        set_named(
            exec.as_mut(),
            &p,
            &[
                ("a.weight", wa.clone()),
                ("a.bias", ba.clone()),
                ("b.weight", wb.clone()),
                ("b.bias", bb.clone()),
            ],
        );
        assert_all_close(merge, &ok(exec.predict(x.view())), &want, FORWARD);
    }
}

/// The mean loss of each kind on logits / predictions equal to the inputs.
/// A class-weighted cross-entropy is the mean over rows of weight[label] × the row's loss.
pub fn class_weighted_cross_entropy(ctor: Ctor) {
    let x = spread();
    let y = array![0.0f32, 2.0, 1.0, 2.0];
    let w = [0.5f32, 2.0, 3.0];
    let lse = |r: ndarray::ArrayView1<f64>| {
        let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        m + r.mapv(|v| (v - m).exp()).sum().ln()
    };
    let want = to64(&x)
        .rows()
        .into_iter()
        .zip(&y)
        .map(|(r, &l)| f64::from(w[l as usize]) * (lse(r) - r[l as usize]))
        .sum::<f64>()
        / x.nrows() as f64;
    let model = format!("[{{dense: {{units: {}, use_bias: false}}}}]", x.ncols());
    let p =
        ok(plan(&model, "{loss: cross_entropy}", x.ncols(), classes(3))
            .with_class_weights(w.to_vec()));
    let mut exec = ctor(&p);
    set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(x.ncols()))]);
    let got = f64::from(ok(exec.eval_loss(x.view(), y.view())));
    assert!(close(got, want, FORWARD), "got {got}, want {want}");

    // With row weights too: each row's loss × its class's weight × its own.
    let rows = [2.0f32, 0.0, 0.5, 1.0];
    let want = to64(&x)
        .rows()
        .into_iter()
        .zip(&y)
        .zip(rows)
        .map(|((r, &l), rw)| f64::from(w[l as usize] * rw) * (lse(r) - r[l as usize]))
        .sum::<f64>()
        / x.nrows() as f64;
    let mut p = p;
    p.sample_weighted = true;
    let mut exec = ctor(&p);
    set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(x.ncols()))]);
    exec.set_sample_weights(Some(&rows));
    let got = f64::from(ok(exec.eval_loss(x.view(), y.view())));
    assert!(
        close(got, want, FORWARD),
        "with row weights: got {got}, want {want}"
    );
}

pub fn losses(ctor: Ctor) {
    let x3 = spread();
    let y3 = array![0.0f32, 2.0, 1.0, 2.0];
    let x1 = array![[-30.0f32], [-1.0], [0.0], [2.5], [30.0]];
    let y1 = array![1.0f32, 0.0, 1.0, 1.0, 0.0];
    let lse = |r: ndarray::ArrayView1<f64>| {
        let m = r.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        m + r.mapv(|v| (v - m).exp()).sum().ln()
    };
    let n3 = x3.nrows() as f64;
    let ce = to64(&x3)
        .rows()
        .into_iter()
        .zip(&y3)
        .map(|(r, &l)| lse(r) - r[l as usize])
        .sum::<f64>()
        / n3;
    // −(y ln σ(z) + (1 − y) ln(1 − σ(z))), with ln σ(z) = −softplus(−z) so that z = ±30 stays exact.
    let softplus = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
    let bce = x1
        .iter()
        .zip(&y1)
        .map(|(&z, &y)| {
            let (z, y) = (f64::from(z), f64::from(y));
            y * softplus(-z) + (1.0 - y) * softplus(z)
        })
        .sum::<f64>()
        / 5.0;
    let mse = x1
        .iter()
        .zip(&y1)
        .map(|(&p, &y)| f64::from(p - y).powi(2))
        .sum::<f64>()
        / 5.0;
    let one_hot = to64(&x3)
        .rows()
        .into_iter()
        .zip(&y3)
        .map(|(r, &l)| {
            r.iter()
                .enumerate()
                .map(|(j, v)| (v - f64::from(j == l as usize)).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / n3;
    let (ce_data, one_data) = ((&x3, &y3), (&x1, &y1));
    let cases = [
        ("cross_entropy", classes(3), ce_data, ce),
        ("binary_cross_entropy", classes(2), one_data, bce),
        ("mse", regression(), one_data, mse),
        ("mse", classes(3), ce_data, one_hot),
    ];
    for (loss, task, (x, y), want) in cases {
        // Identity weights: the logits (or predictions) are the inputs.
        let model = format!("[{{dense: {{units: {}, use_bias: false}}}}]", x.ncols());
        let p = plan(
            &model,
            &format!("{{loss: {loss}, optimizer: {{sgd: {{lr: 0.1}}}}}}"),
            x.ncols(),
            task,
        );
        let mut exec = ctor(&p);
        set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(x.ncols()))]);
        let got = f64::from(ok(exec.eval_loss(x.view(), y.view())));
        assert!(
            close(got, want, FORWARD),
            "{loss} ({} outputs): got {got}, want {want}",
            x.ncols()
        );
    }
}

/// With a linear output layer, predictions are still probabilities: softmax for
/// cross-entropy, sigmoid for binary cross-entropy.
pub fn predictions_are_probabilities(ctor: Ctor) {
    let x = spread();
    let p = plan(
        "[{dense: {units: 3, use_bias: false}}]",
        "{loss: cross_entropy}",
        3,
        classes(3),
    );
    let mut exec = ctor(&p);
    set_named(exec.as_mut(), &p, &[("dense_0.weight", eye(3))]);
    assert_all_close(
        "cross_entropy predictions",
        &ok(exec.predict(x.view())),
        &softmax_rows(&to64(&x)),
        FORWARD,
    );

    let p = plan(
        "[{dense: {units: 1, use_bias: false}}]",
        "{loss: binary_cross_entropy}",
        3,
        classes(2),
    );
    let mut exec = ctor(&p);
    let w = array![[1.0f32], [-0.5], [0.25]];
    set_named(exec.as_mut(), &p, &[("dense_0.weight", w.clone())]);
    let want = to64(&x).dot(&to64(&w)).mapv(sigmoid);
    assert_all_close(
        "binary_cross_entropy predictions",
        &ok(exec.predict(x.view())),
        &want,
        FORWARD,
    );
}

/// Graph inputs pick their feature columns by name, in the order given.
pub fn graph_inputs_select_columns(ctor: Ctor) {
    let model = "{inputs: {u: [f2, f0], w: [f1]}, nodes: {c: {concat: [u, w]}, out: {dense: {units: 3, use_bias: false}, input: c}}, output: out}";
    let p = plan(model, MSE_SGD, 3, classes(3));
    let mut exec = ctor(&p);
    set_named(exec.as_mut(), &p, &[("out.weight", eye(3))]);
    let x = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let want = array![[3.0, 1.0, 2.0], [6.0, 4.0, 5.0]];
    assert_all_close(
        "selected columns",
        &ok(exec.predict(x.view())),
        &want,
        FORWARD,
    );
}

/// An embedding input reads the table row of each row's id; an id outside the table reads
/// zeros. The output layer is the identity, so predictions are the rows themselves.
pub fn embedding_looks_up_rows(ctor: Ctor) {
    let model = "{inputs: {c: {embedding: {column: f1, dim: 3}}}, nodes: {out: {dense: {units: 3, use_bias: false}, input: c}}, output: out}";
    let p = crate::support::plan_with_vocab(model, MSE_SGD, 2, classes(3), &[("f1", 4)]);
    let mut exec = ctor(&p);
    let table = array![
        [0.5f32, -1.0, 2.0],
        [1.5, 0.25, -3.0],
        [-0.75, 4.0, 0.125],
        [2.5, -2.5, 1.0]
    ];
    set_named(
        exec.as_mut(),
        &p,
        &[("c.table", table.clone()), ("out.weight", eye(3))],
    );
    // Column f0 is another feature; f1 holds the ids 2, 0, 2, 3 and 7 (outside the table).
    let x = array![
        [9.0f32, 2.0],
        [9.0, 0.0],
        [-9.0, 2.0],
        [0.0, 3.0],
        [1.0, 7.0]
    ];
    let want = array![
        [-0.75f64, 4.0, 0.125],
        [0.5, -1.0, 2.0],
        [-0.75, 4.0, 0.125],
        [2.5, -2.5, 1.0],
        [0.0, 0.0, 0.0]
    ];
    assert_all_close(
        "looked-up rows",
        &ok(exec.predict(x.view())),
        &want,
        FORWARD,
    );
}

/// Evaluation's one call gives what prediction and the evaluation loss give apart (batch
/// norm's running statistics and an inactive dropout included).
pub fn predict_and_loss_match_their_separate_calls(ctor: Ctor) {
    let model = "[{dense: {units: 4, activation: tanh}}, {batch_norm: {}}, {dropout: {rate: 0.3}}, {dense: {units: 3, activation: softmax}}]";
    let p = plan(
        model,
        "{loss: cross_entropy, optimizer: sgd}",
        3,
        classes(3),
    );
    let mut exec = crate::support::executor_with_params(ctor, &p);
    let x = crate::support::inputs(6, 3, 1);
    let y = crate::support::labels(6, &p.task);
    let (probs, loss) = ok(exec.predict_and_loss(x.view(), y.view()));
    let apart = ok(exec.predict(x.view()));
    let loss_apart = ok(exec.eval_loss(x.view(), y.view()));
    assert_all_close("predictions", &probs, &to64(&apart), FORWARD);
    assert!(
        close(f64::from(loss), f64::from(loss_apart), FORWARD),
        "loss {loss} vs {loss_apart}"
    );
}
