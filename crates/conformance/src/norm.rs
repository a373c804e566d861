//! Normalisation layers: layer norm standardises rows; batch norm keeps running
//! statistics in training and uses them (and only them) in evaluation.

use ndarray::{array, Array2};

use crate::support::{assert_all_close, classes, ok, plan, set_named, to64, MSE_SGD};
use crate::tol::FORWARD;
use crate::Ctor;

pub fn layer_norm_standardises_rows(ctor: Ctor) {
    let p = plan("[{layer_norm: {epsilon: 0.00001}}]", MSE_SGD, 4, classes(4));
    let mut exec = ctor(&p);
    let x = array![
        [1.0f32, 2.0, 3.0, 6.0],
        [-0.5, 0.5, -0.5, 0.5],
        [10.0, 10.5, 9.0, 11.0]
    ];
    let y = ok(exec.predict(x.view()));
    for (i, row) in y.rows().into_iter().enumerate() {
        let mean = row.iter().map(|v| f64::from(*v)).sum::<f64>() / 4.0;
        let var = row
            .iter()
            .map(|v| (f64::from(*v) - mean).powi(2))
            .sum::<f64>()
            / 4.0;
        assert!(mean.abs() < 1e-5, "row {i}: mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "row {i}: variance {var}");
    }
    let gamma = array![[0.5f32, 1.0, 2.0, -1.0]];
    let beta = array![[0.0f32, 0.1, -0.2, 0.3]];
    set_named(
        exec.as_mut(),
        &p,
        &[
            ("layer_norm_0.gamma", gamma.clone()),
            ("layer_norm_0.beta", beta.clone()),
        ],
    );
    let mut want = to64(&x);
    for mut row in want.rows_mut() {
        let mean = row.mean().unwrap_or(0.0);
        let var = row.mapv(|v| (v - mean).powi(2)).mean().unwrap_or(0.0);
        row.mapv_inplace(|v| (v - mean) / (var + 1e-5).sqrt());
    }
    let want = want * to64(&gamma) + to64(&beta);
    assert_all_close("layer_norm", &ok(exec.predict(x.view())), &want, FORWARD);
}

/// Three training steps (lr 0, so parameters stay) update the running statistics with
/// momentum 0.1 (`running = 0.9 running + 0.1 batch`, variance biased as in Keras); eval
/// mode normalises with them, not with the batch's own statistics.
pub fn batch_norm_eval_uses_running_statistics(ctor: Ctor) {
    let p = plan(
        "[{batch_norm: {momentum: 0.1, epsilon: 0.001}}]",
        MSE_SGD,
        2,
        classes(2),
    );
    let mut exec = ctor(&p);
    let x = array![[1.0f32, -2.0], [2.0, 0.0], [3.0, 4.0], [6.0, 2.0]];
    let y = array![0.0f32, 1.0, 0.0, 1.0];
    for step in 0..3 {
        ok(exec.train_step(x.view(), y.view(), step, 0.0));
    }
    let keep = 0.9f64.powi(3);
    let mean = [3.0, 1.0];
    let var = [3.5, 5.0]; // biased: mean of squared deviations
    let running_mean: Vec<f64> = mean.iter().map(|m| (1.0 - keep) * m).collect();
    let running_var: Vec<f64> = var.iter().map(|v| keep + (1.0 - keep) * v).collect();

    let buffers = ok(exec.buffers());
    let find = |suffix: &str| -> Array2<f32> {
        buffers
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| {
                panic!(
                    "no `*{suffix}` buffer in {:?}",
                    buffers.iter().map(|b| &b.0).collect::<Vec<_>>()
                )
            })
    };
    assert_all_close(
        "running_mean",
        &find(".running_mean"),
        &Array2::from_shape_vec((1, 2), running_mean.clone()).unwrap_or_default(),
        FORWARD,
    );
    assert_all_close(
        "running_var",
        &find(".running_var"),
        &Array2::from_shape_vec((1, 2), running_var.clone()).unwrap_or_default(),
        FORWARD,
    );

    let probe = array![[0.0f32, 1.0], [4.0, -1.0]];
    let want = Array2::from_shape_fn((2, 2), |(i, j)| {
        (f64::from(probe[[i, j]]) - running_mean[j]) / (running_var[j] + 1e-3).sqrt()
    });
    assert_all_close(
        "batch_norm (eval)",
        &ok(exec.predict(probe.view())),
        &want,
        FORWARD,
    );
}

/// Before any training step, eval mode uses the initial running statistics (mean 0,
/// variance 1): a row's prediction does not depend on the other rows of its batch.
pub fn batch_norm_eval_before_training_uses_initial_statistics(ctor: Ctor) {
    let p = plan("[{batch_norm: {epsilon: 0.001}}]", MSE_SGD, 2, classes(2));
    let mut exec = ctor(&p);
    let x = array![[1.0f32, -2.0], [2.0, 0.0], [3.0, 4.0]];
    let want = to64(&x) / (1.0f64 + 1e-3).sqrt();
    assert_all_close(
        "batch_norm (eval, untrained)",
        &ok(exec.predict(x.view())),
        &want,
        FORWARD,
    );
    let alone = ok(exec.predict(x.slice(ndarray::s![..1, ..])));
    assert_all_close(
        "batch_norm (eval, one row)",
        &alone,
        &want.slice(ndarray::s![..1, ..]).to_owned(),
        FORWARD,
    );
}

/// Running statistics saved with `buffers()` and restored with `set_buffers()` into a new
/// executor give the same eval predictions.
pub fn batch_norm_buffers_round_trip(ctor: Ctor) {
    let p = plan(
        "[{dense: {units: 3}}, {batch_norm: {}}, {dense: {units: 2}}]",
        MSE_SGD,
        2,
        classes(2),
    );
    let mut a = ctor(&p);
    let x = array![[1.0f32, -2.0], [2.0, 0.0], [3.0, 4.0], [6.0, 2.0]];
    let y = array![0.0f32, 1.0, 0.0, 1.0];
    for step in 0..4 {
        ok(a.train_step(x.view(), y.view(), step, 0.1));
    }
    let mut b = ctor(&p);
    ok(b.set_params(&ok(a.params())));
    b.set_buffers(&ok(a.buffers()));
    assert_eq!(ok(b.buffers()), ok(a.buffers()));
    let probe = array![[0.5f32, 0.5], [-1.0, 3.0]];
    let want = to64(&ok(a.predict(probe.view())));
    assert_all_close(
        "predictions after set_buffers",
        &ok(b.predict(probe.view())),
        &want,
        FORWARD,
    );
}
