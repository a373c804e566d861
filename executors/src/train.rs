//! The training loop: epochs of shuffled mini-batches (or full-batch L-BFGS), learning-rate
//! schedule, early stopping, divergence checks and progress reporting.

use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
use weft_data::Dataset;
use weft_dsl::Optimizer;
use weft_planner::rng::Rng;
use weft_planner::Plan;

use crate::error::ExecError;
use crate::lbfgs::{self, LbfgsState};
use crate::optim::learning_rate;
use crate::Executor;

/// One epoch's figures (a line of metrics.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f32>,
    pub lr: f32,
    pub seconds: f64,
    pub samples_per_sec: f64,
    /// A distributed run's throughput per worker (rank order; a lost worker is absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker_samples_per_sec: Vec<(usize, f64)>,
}

/// Receives progress; the CLI draws a bar, the notebook prints lines, tests ignore it.
pub trait Progress {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// Called every few steps with the running mean loss of the epoch.
    fn step(&mut self, _done: usize, _loss: f32) {}
    fn epoch_end(&mut self, _record: &EpochRecord) -> Result<(), ExecError> {
        Ok(())
    }
    /// Something the user should know that is not an error (a worker lost by an
    /// asynchronous run).
    fn note(&mut self, _message: &str) {}
}

/// Progress that ignores everything.
pub struct Quiet;
impl Progress for Quiet {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
    pub samples: u64,
    pub samples_per_sec: f64,
    pub steps: u64,
    /// Why training stopped before `epochs`, if it did.
    pub stopped_early: Option<String>,
}

/// Rows `idx` of a data set into reusable batch buffers.
pub fn gather(d: &Dataset, idx: &[usize], xb: &mut Array2<f32>, yb: &mut Array1<f32>) {
    let f = d.x.ncols();
    if xb.dim() != (idx.len(), f) {
        *xb = Array2::zeros((idx.len(), f));
        *yb = Array1::zeros(idx.len());
    }
    for (r, &i) in idx.iter().enumerate() {
        xb.row_mut(r).assign(&d.x.row(i));
        yb[r] = d.y[i];
    }
}

/// Mean loss over a data set in evaluation mode, in chunks.
pub fn mean_loss(exec: &mut dyn Executor, d: &Dataset, chunk: usize) -> Result<f32, ExecError> {
    let mut total = 0.0f64;
    for start in (0..d.len()).step_by(chunk.max(1)) {
        let end = (start + chunk).min(d.len());
        let l = exec.eval_loss(
            d.x.slice(ndarray::s![start..end, ..]),
            d.y.slice(ndarray::s![start..end]),
        )?;
        total += f64::from(l) * (end - start) as f64;
    }
    Ok((total / d.len().max(1) as f64) as f32)
}

/// Predictions for a whole data set, in chunks.
pub fn predict_all(
    exec: &mut dyn Executor,
    x: &Array2<f32>,
    chunk: usize,
) -> Result<Array2<f32>, ExecError> {
    let mut parts = Vec::new();
    for start in (0..x.nrows()).step_by(chunk.max(1)) {
        let end = (start + chunk).min(x.nrows());
        parts.push(exec.predict(x.slice(ndarray::s![start..end, ..]))?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    if views.is_empty() {
        return Ok(Array2::zeros((0, 0)));
    }
    ndarray::concatenate(Axis(0), &views).map_err(|e| ExecError::Internal(e.to_string()))
}

/// The spec's `train.stop` rules: a target loss, and patience on the validation loss (the
/// train loss without a validation split).
pub struct EarlyStop {
    stop: weft_dsl::StopSpec,
    best: f32,
    since_best: usize,
}

impl EarlyStop {
    pub fn new(stop: &weft_dsl::StopSpec) -> EarlyStop {
        EarlyStop {
            stop: stop.clone(),
            best: f32::INFINITY,
            since_best: 0,
        }
    }

    /// Why to stop after `epoch`, if training should.
    pub fn check(
        &mut self,
        epoch: usize,
        train_loss: f32,
        validation_loss: Option<f32>,
    ) -> Option<String> {
        if let Some(target) = self.stop.target_loss {
            if f64::from(train_loss) <= target {
                return Some(format!(
                    "train loss {train_loss:.4} reached the target {target} at epoch {epoch}"
                ));
            }
        }
        let patience = self.stop.patience?;
        let monitored = validation_loss.unwrap_or(train_loss);
        if monitored < self.best - self.stop.min_delta as f32 {
            self.best = monitored;
            self.since_best = 0;
            return None;
        }
        self.since_best += 1;
        let what = if validation_loss.is_some() {
            "validation"
        } else {
            "train"
        };
        (self.since_best >= patience).then(|| {
            format!(
                "{what} loss did not improve for {patience} epochs (best {:.4}); stopped at epoch {epoch}",
                self.best
            )
        })
    }
}

/// Where training starts: epoch 1, step 0, unless resuming from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub epoch: usize,
    pub step: u64,
}

impl Default for Start {
    fn default() -> Start {
        Start { epoch: 1, step: 0 }
    }
}

/// Called after every epoch with the epoch, the global step and the model (flat).
pub type Checkpoint<'a> = &'a mut dyn FnMut(usize, u64, &[f32]) -> Result<(), ExecError>;

/// Trains `exec` on `train` as the plan says; `validation` drives early stopping if given.
pub fn fit(
    exec: &mut dyn Executor,
    plan: &Plan,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome, ExecError> {
    fit_from(
        exec,
        plan,
        train,
        validation,
        progress,
        Start::default(),
        None,
    )
}

/// [`fit`] from `start` (resuming: `exec` holds the checkpoint's model), calling
/// `checkpoint` after every epoch. The data order is the same as an uninterrupted run's.
pub fn fit_from(
    exec: &mut dyn Executor,
    plan: &Plan,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &mut dyn Progress,
    start: Start,
    mut checkpoint: Option<Checkpoint>,
) -> Result<TrainOutcome, ExecError> {
    let t = &plan.train;
    let n = train.len();
    if n == 0 {
        return Err(ExecError::Internal("the train split is empty".into()));
    }
    let batch = t.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(batch) as u64;
    let total_steps = steps_per_epoch * t.epochs as u64;
    let mut history = Vec::new();
    let mut step: u64 = start.step;
    let mut samples: u64 = 0;
    let mut train_seconds = 0.0;
    let mut stopper = EarlyStop::new(&t.stop);
    let mut stopped_early = None;
    let mut lbfgs_state = LbfgsState::default();
    let (mut xb, mut yb) = (Array2::zeros((0, 0)), Array1::zeros(0));
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..start.epoch {
        Rng::new(plan.seed, 10_000 + epoch as u64).shuffle(&mut order);
    }

    for epoch in start.epoch..=t.epochs {
        let started = Instant::now();
        let (train_loss, lr) = if let Optimizer::Lbfgs(cfg) = &t.optimizer {
            progress.epoch_start(epoch, t.epochs, cfg.max_iter);
            let mut evals = 0usize;
            let x0 = get_flat(exec);
            let mut f = |flat: &[f32]| -> Result<(f32, Vec<f32>), ExecError> {
                set_flat(exec, flat)?;
                let (loss, grads) = full_batch(exec, train, batch.max(1024), step)?;
                evals += 1;
                progress.step(evals.min(cfg.max_iter), loss);
                Ok((loss, grads))
            };
            let (x, loss, iters) = lbfgs::minimize(cfg, &mut lbfgs_state, x0, &mut f)?;
            set_flat(exec, &x)?;
            samples += (evals * n) as u64;
            step += iters as u64;
            (loss, cfg.lr as f32)
        } else {
            progress.epoch_start(epoch, t.epochs, steps_per_epoch as usize);
            Rng::new(plan.seed, 10_000 + epoch as u64).shuffle(&mut order);
            let mut sum = 0.0f64;
            let mut lr = 0.0;
            for (i, idx) in order.chunks(batch).enumerate() {
                gather(train, idx, &mut xb, &mut yb);
                lr = learning_rate(t, step, steps_per_epoch, total_steps);
                // A GPU keeps the loss on the device; it is read back every 16 steps.
                if let Some(loss) = exec.train_step_deferred(xb.view(), yb.view(), step, lr)? {
                    if !loss.is_finite() {
                        return Err(ExecError::Diverged { epoch, step, loss });
                    }
                    sum += f64::from(loss) * idx.len() as f64;
                }
                step += 1;
                samples += idx.len() as u64;
                if i % 16 == 15 || i + 1 == steps_per_epoch as usize {
                    let (deferred, rows) = exec.deferred_losses()?;
                    if rows > 0 && !deferred.is_finite() {
                        // Somewhere in the last (up to 16) steps: report the block's end.
                        let loss = (deferred / rows as f64) as f32;
                        return Err(ExecError::Diverged { epoch, step, loss });
                    }
                    sum += deferred;
                    progress.step(i + 1, (sum / ((i * batch + idx.len()) as f64)) as f32);
                }
            }
            ((sum / n as f64) as f32, lr)
        };
        if !train_loss.is_finite() {
            return Err(ExecError::Diverged {
                epoch,
                step,
                loss: train_loss,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        train_seconds += seconds;
        let validation_loss = match validation {
            Some(v) if !v.is_empty() => Some(mean_loss(exec, v, 4096)?),
            _ => None,
        };
        let record = EpochRecord {
            epoch,
            train_loss,
            validation_loss,
            lr,
            seconds,
            samples_per_sec: if matches!(t.optimizer, Optimizer::Lbfgs(_)) {
                f64::NAN
            } else {
                n as f64 / seconds.max(1e-9)
            },
            worker_samples_per_sec: Vec::new(),
        };
        if let Some(save) = checkpoint.as_mut() {
            let flat = get_flat(exec);
            // A failed read-back (a lost GPU) must not replace the last good checkpoint.
            exec.check_health()?;
            if let Some(bad) = flat.iter().find(|v| !v.is_finite()) {
                return Err(ExecError::NonFiniteParams {
                    epoch,
                    step,
                    value: *bad,
                });
            }
            save(epoch, step, &flat)?;
        }
        progress.epoch_end(&record)?;
        history.push(record);

        if let Some(reason) = stopper.check(epoch, train_loss, validation_loss) {
            stopped_early = Some(reason);
            break;
        }
    }
    Ok(TrainOutcome {
        history,
        seconds: train_seconds,
        samples,
        samples_per_sec: samples as f64 / train_seconds.max(1e-9),
        steps: step,
        stopped_early,
    })
}

/// Every parameter, flattened in the plan's `params` order.
pub fn get_flat(exec: &dyn Executor) -> Vec<f32> {
    flatten(&exec.params())
}

/// The gradients of the last backward pass, flattened in the plan's `params` order.
pub fn get_flat_grads(exec: &dyn Executor) -> Vec<f32> {
    flatten(&exec.grads())
}

fn flatten(tensors: &[Array2<f32>]) -> Vec<f32> {
    tensors.iter().flat_map(|t| t.iter().copied()).collect()
}

/// Sets every parameter from one flat vector in the plan's `params` order.
pub fn set_flat(exec: &mut dyn Executor, flat: &[f32]) -> Result<(), ExecError> {
    let params = split_flat(exec, flat)?;
    exec.set_params(&params)
}

/// A flat vector (parameters or gradients, in the plan's `params` order) cut into the
/// parameters' shapes.
pub fn split_flat(exec: &dyn Executor, flat: &[f32]) -> Result<Vec<Array2<f32>>, ExecError> {
    // Shapes from the plan: reading the parameters back would stall a GPU on every step.
    let shapes: Vec<(usize, usize)> = exec
        .plan()
        .params
        .iter()
        .map(|p| (p.shape.rows_at(1), p.shape.cols))
        .collect();
    let want: usize = shapes.iter().map(|(r, c)| r * c).sum();
    if flat.len() != want {
        return Err(ExecError::Shape(format!(
            "{} parameter values given, the model has {want}",
            flat.len()
        )));
    }
    let mut at = 0;
    shapes
        .into_iter()
        .map(|(r, c)| {
            let a = Array2::from_shape_vec((r, c), flat[at..at + r * c].to_vec());
            at += r * c;
            a.map_err(|e| ExecError::Internal(e.to_string()))
        })
        .collect()
}

/// Mean loss and gradient over the whole data set (chunked, weighted by chunk size).
fn full_batch(
    exec: &mut dyn Executor,
    d: &Dataset,
    chunk: usize,
    step: u64,
) -> Result<(f32, Vec<f32>), ExecError> {
    let n = d.len();
    let mut loss = 0.0f64;
    let mut grad: Vec<f64> = Vec::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let w = (end - start) as f64 / n as f64;
        let l = exec.loss_and_grads(
            d.x.slice(ndarray::s![start..end, ..]),
            d.y.slice(ndarray::s![start..end]),
            step,
        )?;
        loss += f64::from(l) * w;
        let g = get_flat_grads(exec);
        if grad.is_empty() {
            grad = vec![0.0; g.len()];
        }
        for (a, b) in grad.iter_mut().zip(&g) {
            *a += f64::from(*b) * w;
        }
    }
    Ok((loss as f32, grad.into_iter().map(|v| v as f32).collect()))
}
