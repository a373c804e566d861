//! Training behaviour through `train::fit` and `train_step`: determinism, gradient
//! clipping, learning-rate warmup and schedules, early stopping.

use ndarray::s;
use weft_data::Dataset;
use weft_runtime::train::{fit_local as fit, Quiet, TrainOutcome};

use crate::support::{blobs, classes, close, executor_with_params, flat, norm, ok, plan};
use crate::tol::{Tol, FORWARD};
use crate::Ctor;

const MODEL: &str =
    "[{dense: {units: 8, activation: relu}}, {dropout: {rate: 0.2}}, {dense: {units: 3}}]";

fn run(
    ctor: Ctor,
    p: &weft_planner::Plan,
    data: &Dataset,
    validation: Option<&Dataset>,
) -> (TrainOutcome, Vec<ndarray::Array2<f32>>) {
    let mut exec = ctor(p);
    let outcome = ok(fit(exec.as_mut(), p, data, validation, &mut Quiet));
    (outcome, ok(exec.params()))
}

/// Shuffling, initialisation and dropout all come from the plan's seed.
pub fn same_plan_same_data_gives_identical_parameters(ctor: Ctor) {
    let p = plan(
        MODEL,
        "{optimizer: {adam: {lr: 0.01}}, batch_size: 16, epochs: 3}",
        2,
        classes(3),
    );
    let data = blobs();
    let (a, pa) = run(ctor, &p, &data, None);
    let (b, pb) = run(ctor, &p, &data, None);
    assert_eq!(pa, pb, "parameters after two identical runs");
    let losses = |o: &TrainOutcome| {
        o.history
            .iter()
            .map(|r| r.train_loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        losses(&a),
        losses(&b),
        "train losses after two identical runs"
    );
}

pub fn other_seed_gives_other_parameters(ctor: Ctor) {
    let p = plan(
        MODEL,
        "{optimizer: {adam: {lr: 0.01}}, batch_size: 16, epochs: 3}",
        2,
        classes(3),
    );
    let mut q = p.clone();
    q.seed += 1;
    let data = blobs();
    let (_, pa) = run(ctor, &p, &data, None);
    let (_, pb) = run(ctor, &q, &data, None);
    for (i, (a, b)) in pa.iter().zip(&pb).enumerate() {
        assert_ne!(
            a, b,
            "parameter {} is the same under seeds {} and {}",
            p.params[i].name, p.seed, q.seed
        );
    }
}

/// One sgd step (lr 0.1) from the same parameters, without clipping and with
/// `clip_grad_norm` below the gradient's norm: the clipped update is the unclipped one
/// scaled to norm `lr * clip`; a bound above the norm changes nothing.
pub fn clip_grad_norm_bounds_the_update(ctor: Ctor) {
    let model = "[{dense: {units: 8, activation: tanh}}, {dense: {units: 3}}]";
    let lr = 0.1f32;
    let data = blobs();
    let (x, y) = (data.x.slice(s![..16, ..]), data.y.slice(s![..16]));
    let step = |clip: Option<f64>| -> (Vec<f32>, f64) {
        let train = match clip {
            Some(c) => format!("{{optimizer: {{sgd: {{lr: {lr}}}}}, clip_grad_norm: {c}}}"),
            None => format!("{{optimizer: {{sgd: {{lr: {lr}}}}}}}"),
        };
        let p = plan(model, &train, 2, classes(3));
        let mut exec = executor_with_params(ctor, &p);
        ok(exec.loss_and_grads(x, y, 0));
        let grad_norm = norm(&flat(&ok(exec.grads())));
        let before = flat(&ok(exec.params()));
        ok(exec.train_step(x, y, 0, lr));
        let delta = flat(&ok(exec.params()))
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        (delta, grad_norm)
    };
    let (free, grad_norm) = step(None);
    let clip = grad_norm / 4.0;
    assert!(
        close(norm(&free), f64::from(lr) * grad_norm, FORWARD),
        "unclipped update norm {} vs lr·|g| {}",
        norm(&free),
        f64::from(lr) * grad_norm
    );

    let (clipped, _) = step(Some(clip));
    let bound = f64::from(lr) * clip;
    let tight = Tol {
        rtol: 1e-4,
        atol: 0.0,
    };
    assert!(
        close(norm(&clipped), bound, tight),
        "clipped update norm {} vs lr·clip {bound}",
        norm(&clipped)
    );
    for (i, (c, f)) in clipped.iter().zip(&free).enumerate() {
        let want = f64::from(*f) * clip / grad_norm;
        assert!(
            close(f64::from(*c), want, FORWARD),
            "update[{i}]: clipped {c}, want unclipped {f} × {}",
            clip / grad_norm
        );
    }

    let (loose, _) = step(Some(grad_norm * 2.0));
    assert_eq!(
        loose, free,
        "a bound above the gradient norm must not change the update"
    );
}

fn lrs(o: &TrainOutcome) -> Vec<f32> {
    o.history.iter().map(|r| r.lr).collect()
}

fn assert_lrs(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: epochs {got:?}");
    for (e, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(f64::from(*g), *w, FORWARD),
            "{what}: epoch {} lr {g}, want {w}; all {got:?}",
            e + 1
        );
    }
}

/// One step per epoch (batch = rows), so `EpochRecord.lr` is the rate of step `epoch - 1`:
/// linear warmup over 3 steps, then ×0.5 every 2 epochs.
pub fn warmup_and_step_schedule_show_in_epoch_lr(ctor: Ctor) {
    let train = "{optimizer: {sgd: {lr: 0.1}}, batch_size: 90, epochs: 7, warmup_steps: 3, schedule: {step: {every_epochs: 2, gamma: 0.5}}}";
    let p = plan("[{dense: {units: 3}}]", train, 2, classes(3));
    let (o, _) = run(ctor, &p, &blobs(), None);
    assert_lrs(
        "warmup + step",
        &lrs(&o),
        &[0.1 / 3.0, 0.2 / 3.0, 0.1, 0.05, 0.025, 0.025, 0.0125],
    );
}

/// Cosine decay over 10 steps from 0.1 towards 0.01, no warmup.
pub fn cosine_schedule_decays_to_min_lr(ctor: Ctor) {
    let train = "{optimizer: {sgd: {lr: 0.1}}, batch_size: 90, epochs: 10, schedule: {cosine: {min_lr: 0.01}}}";
    let p = plan("[{dense: {units: 3}}]", train, 2, classes(3));
    let (o, _) = run(ctor, &p, &blobs(), None);
    let want: Vec<f64> = (0..10)
        .map(|k| 0.01 + 0.045 * (1.0 + (std::f64::consts::PI * f64::from(k) / 10.0).cos()))
        .collect();
    assert_lrs("cosine", &lrs(&o), &want);
}

pub fn target_loss_stops_early_and_says_why(ctor: Ctor) {
    let train =
        "{optimizer: {adam: {lr: 0.02}}, batch_size: 10, epochs: 500, stop: {target_loss: 0.3}}";
    let p = plan(
        "[{dense: {units: 8, activation: tanh}}, {dense: {units: 3}}]",
        train,
        2,
        classes(3),
    );
    let (o, _) = run(ctor, &p, &blobs(), None);
    let n = o.history.len();
    assert!(n < 500, "ran all {n} epochs");
    let losses: Vec<f32> = o.history.iter().map(|r| r.train_loss).collect();
    assert!(
        losses[n - 1] <= 0.3 && losses[..n - 1].iter().all(|l| *l > 0.3),
        "{losses:?}"
    );
    let why = o.stopped_early.unwrap_or_default();
    assert!(
        why.contains("reached the target 0.3") && why.contains(&format!("epoch {n}")),
        "{why:?}"
    );
}

/// With `min_delta` larger than any loss, only the first epoch counts as an improvement:
/// training stops after `patience` more, monitoring validation loss when there is some.
pub fn patience_stops_early_and_says_why(ctor: Ctor) {
    let train = "{optimizer: {adam: {lr: 0.02}}, batch_size: 10, epochs: 50, stop: {patience: 3, min_delta: 1000}}";
    let p = plan("[{dense: {units: 3}}]", train, 2, classes(3));
    let data = blobs();
    let (o, _) = run(ctor, &p, &data, None);
    assert_eq!(o.history.len(), 4);
    let why = o.stopped_early.unwrap_or_default();
    assert!(
        why.starts_with("train loss did not improve for 3 epochs")
            && why.ends_with("stopped at epoch 4"),
        "{why:?}"
    );

    let validation = data.select(&(0..30).collect::<Vec<_>>());
    let (o, _) = run(ctor, &p, &data, Some(&validation));
    assert_eq!(o.history.len(), 4);
    assert!(o.history.iter().all(|r| r.validation_loss.is_some()));
    let why = o.stopped_early.unwrap_or_default();
    assert!(
        why.starts_with("validation loss did not improve for 3 epochs"),
        "{why:?}"
    );
}
