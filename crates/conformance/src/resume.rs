//! Resuming is exact on every executor: a run continued from any checkpoint it wrote (at an
//! epoch's end, or mid-epoch when stopped) ends with the parameters, batch-norm statistics
//! of the run that was never stopped, and its losses, for every optimizer.

use std::cell::Cell;

use weft_runtime::checkpoint::Resume;
use weft_runtime::train::{fit, EpochEnd, Progress, Splits, TrainOutcome};
use weft_runtime::{Local, RunError};

use crate::support::{blobs, classes, ok, plan};
use crate::Ctor;

const MODEL: &str = "[{dense: {units: 8, activation: relu}}, {batch_norm: {}}, {dropout: {rate: 0.2}}, {dense: {units: 3}}]";

/// Asks the loop to stop before its `after`-th step (never when `after` is 0).
struct StopAfter {
    after: usize,
    asked: Cell<usize>,
}

impl Progress for StopAfter {
    fn stop_requested(&self) -> Option<String> {
        self.asked.set(self.asked.get() + 1);
        (self.after > 0 && self.asked.get() == self.after).then(|| "stop".to_string())
    }
}

type Final = (
    Vec<ndarray::Array2<f32>>,
    Vec<(String, ndarray::Array2<f32>)>,
    Vec<u32>,
);

/// Trains (from `resume` if given), collecting every checkpoint; the final state, or `None`
/// when the run was stopped.
fn train(
    ctor: Ctor,
    p: &weft_planner::Plan,
    resume: Option<&Resume>,
    stop_after: usize,
    saved: &mut Vec<Resume>,
) -> Option<Final> {
    let data = blobs();
    let mut exec = ctor(p);
    let mut save = |e: &EpochEnd| -> Result<(), RunError> {
        if let Some(s) = e.snapshot {
            saved.push(Resume {
                at: e.next,
                snapshot: s.clone(),
            });
        }
        Ok(())
    };
    let mut progress = StopAfter {
        after: stop_after,
        asked: Cell::new(0),
    };
    let splits = Splits::memory(&data, None);
    let r = fit(
        exec.as_mut(),
        p,
        splits,
        &mut Local,
        &mut progress,
        resume,
        Some(&mut save),
    );
    let outcome: TrainOutcome = match r {
        Err(RunError::Interrupted { .. }) => return None,
        r => ok(r),
    };
    let losses = outcome
        .history
        .iter()
        .map(|h| h.train_loss.to_bits())
        .collect();
    Some((ok(exec.params()), ok(exec.buffers()), losses))
}

fn exact(ctor: Ctor, optimizer: &str) {
    let train_spec = format!(
        "{{optimizer: {optimizer}, batch_size: 10, epochs: 4, schedule: {{cosine: {{}}}}}}"
    );
    let p = plan(MODEL, &train_spec, 2, classes(3));
    let mut none = Vec::new();
    let (params, buffers, losses) = train(ctor, &p, None, 0, &mut none).expect("not stopped");
    // Stopped in epoch 2 (9 batches an epoch): checkpoints after epoch 1 and mid-epoch 2.
    let mut saved = Vec::new();
    let stopped = train(ctor, &p, None, 13, &mut saved);
    let lbfgs = optimizer.contains("lbfgs");
    assert_eq!(
        stopped.is_none(),
        !lbfgs,
        "{optimizer}: the stop is honoured mid-epoch"
    );
    assert!(!saved.is_empty(), "{optimizer}: checkpoints were written");
    for r in saved.iter().filter(|r| r.at.epoch <= 4) {
        let mut more = Vec::new();
        let (p2, b2, l2) = train(ctor, &p, Some(r), 0, &mut more).expect("not stopped");
        let at = r.at.describe();
        assert_eq!(p2, params, "{optimizer}: parameters after resuming {at}");
        assert_eq!(
            b2, buffers,
            "{optimizer}: batch-norm statistics after resuming {at}"
        );
        // The epoch stopped in adds its loss in other groups on a GPU (which sums a block of
        // steps on the device): its record may differ in the last bits, never the model.
        for (a, b) in l2.iter().zip(&losses[losses.len() - l2.len()..]) {
            let (a, b) = (f32::from_bits(*a), f32::from_bits(*b));
            assert!(
                (a - b).abs() <= 1e-6 * b.abs(),
                "{optimizer}: loss {a} vs {b} after resuming {at}"
            );
        }
    }
}

pub fn adam_resumes_exactly(ctor: Ctor) {
    exact(ctor, "{adam: {lr: 0.01}}");
}

pub fn adagrad_resumes_exactly(ctor: Ctor) {
    exact(ctor, "adagrad");
}

pub fn rmsprop_momentum_resumes_exactly(ctor: Ctor) {
    exact(ctor, "{rmsprop: {momentum: 0.5}}");
}

pub fn sgd_nesterov_resumes_exactly(ctor: Ctor) {
    exact(ctor, "{sgd: {momentum: 0.9, nesterov: true}}");
}

pub fn lbfgs_resumes_exactly(ctor: Ctor) {
    exact(ctor, "lbfgs");
}

/// A run early stopping ended, killed before it wrote its summary, resumes to no more
/// epochs: the checkpoint says it stopped.
pub fn early_stopped_run_resumes_to_no_more_epochs(ctor: Ctor) {
    let p = plan(
        MODEL,
        "{optimizer: {adam: {lr: 0.01}}, batch_size: 10, epochs: 50, stop: {target_loss: 0.5}}",
        2,
        classes(3),
    );
    let mut saved = Vec::new();
    let (params, _, losses) = train(ctor, &p, None, 0, &mut saved).expect("not stopped");
    assert!(losses.len() < 50, "the target loss stops the run early");
    let last = saved.last().expect("checkpoints").clone();
    assert!(last.at.stopped, "the last checkpoint says the run stopped");
    let mut more = Vec::new();
    let (again, _, extra) = train(ctor, &p, Some(&last), 0, &mut more).expect("not stopped");
    assert!(extra.is_empty(), "no epoch after the stop: {extra:?}");
    assert_eq!(again, params);
}
