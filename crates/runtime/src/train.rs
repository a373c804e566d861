//! The training loop, one for every mode ([`fit`]), and what it reports: epoch records,
//! progress, early stopping; plus evaluation in chunks and the flat model helpers.

use std::time::Instant;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};
use weft_data::Dataset;
use weft_dsl::Optimizer;
use weft_planner::Plan;

use weft_exec::optim::learning_rate;
use weft_exec::{ExecError, Executor};

pub use crate::checkpoint::Start;
use crate::checkpoint::{Resume, Snapshot};
use crate::error::RunError;
use crate::exchange::{Exchange, Local, StepAt};
use crate::feed::Feed;
pub use crate::feed::{each_batch, Rows};
use crate::lbfgs::{self, LbfgsState};

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
    fn epoch_end(&mut self, _record: &EpochRecord) -> Result<(), RunError> {
        Ok(())
    }
    /// Asked before every step: `Some(why)` stops the run with [`RunError::Aborted`] (a
    /// driver's stop, an interrupted notebook).
    fn stop_requested(&self) -> Option<String> {
        None
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
    // Whole rows with memcpy (libc picks its vector width at run time) when both sides are
    // contiguous, as the prepared data and the batch buffers are.
    match (d.x.as_slice(), xb.as_slice_mut()) {
        (Some(src), Some(dst)) => {
            for (row, &i) in dst.chunks_exact_mut(f.max(1)).zip(idx) {
                row.copy_from_slice(&src[i * f..(i + 1) * f]);
            }
        }
        _ => {
            for (r, &i) in idx.iter().enumerate() {
                xb.row_mut(r).assign(&d.x.row(i));
            }
        }
    }
    for (r, &i) in idx.iter().enumerate() {
        yb[r] = d.y[i];
    }
}

/// Mean loss over a data set in evaluation mode, in chunks.
pub fn mean_loss(exec: &mut dyn Executor, d: &Dataset, chunk: usize) -> Result<f32, RunError> {
    mean_loss_of(exec, Rows::Memory(d), chunk)
}

/// Mean loss over rows in memory or streamed, in evaluation mode, in chunks.
pub fn mean_loss_of(exec: &mut dyn Executor, rows: Rows, chunk: usize) -> Result<f32, RunError> {
    let (mut total, mut n) = (0.0f64, 0usize);
    each_batch(rows, chunk, |x, y, w| {
        if let Some(w) = w {
            exec.set_sample_weights(Some(w));
        }
        let l = exec.eval_loss(x, y)?;
        total += f64::from(l) * y.len() as f64;
        n += y.len();
        Ok(())
    })?;
    Ok((total / n.max(1) as f64) as f32)
}

/// Tells the executor the weights of rows `rows` of `d` (`data.weight_column`), if it has any.
fn set_weights(exec: &mut dyn Executor, d: &Dataset, rows: std::ops::Range<usize>) {
    if let Some(w) = &d.w {
        let part = w.slice(ndarray::s![rows]);
        match part.as_slice() {
            Some(s) => exec.set_sample_weights(Some(s)),
            None => exec.set_sample_weights(Some(&part.to_vec())),
        }
    }
}

/// Predictions for a whole data set, in chunks.
pub fn predict_all(
    exec: &mut dyn Executor,
    x: &Array2<f32>,
    chunk: usize,
) -> Result<Array2<f32>, RunError> {
    let mut parts = Vec::new();
    for start in (0..x.nrows()).step_by(chunk.max(1)) {
        let end = (start + chunk).min(x.nrows());
        parts.push(exec.predict(x.slice(ndarray::s![start..end, ..]))?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    if views.is_empty() {
        return Ok(Array2::zeros((0, 0)));
    }
    ndarray::concatenate(Axis(0), &views).map_err(|e| RunError::Internal(e.to_string()))
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

    /// The start of `epoch` with the counters as they stand (step and the rest are the
    /// caller's).
    fn position(&self, epoch: usize) -> Start {
        Start {
            epoch,
            best: self.best.is_finite().then_some(self.best),
            since_best: self.since_best,
            ..Start::default()
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

/// What the loop hands to its checkpoint hook after every epoch (and when a single
/// process is stopped mid-epoch).
#[derive(Debug)]
pub struct EpochEnd<'a> {
    /// The epoch's record; `None` when the run was stopped mid-epoch.
    pub record: Option<&'a EpochRecord>,
    /// Where a resumed run continues.
    pub next: Start,
    /// Rows this worker trained on in the epoch.
    pub samples: u64,
    /// The model and optimizer state (parameters checked finite); `None` on a worker that
    /// does not hold them.
    pub snapshot: Option<&'a Snapshot>,
}

/// Called after every epoch, after [`Progress::epoch_end`] wrote its record (a checkpoint,
/// or a worker's report to its driver): a kill between the two leaves a record the resumed
/// run rewrites, never a checkpoint whose epoch has no record.
pub type Checkpoint<'a> = &'a mut dyn FnMut(&EpochEnd) -> Result<(), RunError>;

/// The data a run trains on: the train split, and the validation split that drives early
/// stopping if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Splits<'a> {
    pub train: Rows<'a>,
    pub validation: Option<Rows<'a>>,
}

impl<'a> Splits<'a> {
    /// Splits in memory.
    pub fn memory(train: &'a Dataset, validation: Option<&'a Dataset>) -> Splits<'a> {
        Splits {
            train: Rows::Memory(train),
            validation: validation.map(Rows::Memory),
        }
    }
}

/// [`fit`] in a single process, from the start, without checkpoints.
pub fn fit_local(
    exec: &mut dyn Executor,
    plan: &Plan,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome, RunError> {
    let data = Splits::memory(train, validation);
    fit(exec, plan, data, &mut Local, progress, None, None)
}

/// The training loop, the one every mode runs: epochs of shuffled mini-batches (or
/// full-batch L-BFGS), the learning-rate schedule, divergence checks, validation, early
/// stopping, progress and checkpoints. `exchange` is what differs between modes (see
/// [`Exchange`]). `resume` restores a checkpoint into `exec` and continues where it stopped
/// (the data order, dropout and learning rate are those of an uninterrupted run).
/// `checkpoint` is called after every epoch with the model and optimizer state, which are
/// only read back from the device when it is given; a single process stopped by
/// [`Progress::stop_requested`] checkpoints where it stands before returning.
pub fn fit(
    exec: &mut dyn Executor,
    plan: &Plan,
    data: Splits,
    exchange: &mut dyn Exchange,
    progress: &mut dyn Progress,
    resume: Option<&Resume>,
    mut checkpoint: Option<Checkpoint>,
) -> Result<TrainOutcome, RunError> {
    let start = resume.map(|r| r.at).unwrap_or_default();
    let t = &plan.train;
    let train = data.train;
    let n = train.len();
    let (rank, world) = (exchange.rank(), exchange.world().max(1));
    if n == 0 {
        return Err(RunError::Internal("the train split is empty".into()));
    }
    let lbfgs_cfg = match (&t.optimizer, train) {
        (Optimizer::Lbfgs(_), Rows::Stream { .. }) => {
            return Err(RunError::Internal(
                "L-BFGS takes full-batch steps over rows in memory, not streamed ones".into(),
            ))
        }
        (Optimizer::Lbfgs(cfg), Rows::Memory(_)) if world > 1 => {
            return Err(RunError::Internal(format!(
                "L-BFGS is full-batch and runs in one process, not under `{}`",
                exchange.name()
            )))
        }
        (Optimizer::Lbfgs(cfg), Rows::Memory(d)) => Some((cfg, d)),
        _ => None,
    };
    // Each worker takes `b` rows a step (no more than the whole split).
    let mut feed = Feed::new(train, (rank, world), t.batch_size, plan.seed, start.epoch);
    let b = feed.batch_rows();
    let steps_per_epoch = feed.steps() as u64;
    let total_steps = steps_per_epoch.saturating_mul(t.epochs as u64);
    let mut history = Vec::new();
    let mut step: u64 = start.step;
    let mut samples: u64 = 0;
    let mut train_seconds = 0.0;
    let mut stopper = EarlyStop::new(&t.stop);
    stopper.best = start.best.unwrap_or(f32::INFINITY);
    stopper.since_best = start.since_best;
    let mut stopped_early = None;
    let mut lbfgs_state = LbfgsState::default();
    if let Some(r) = resume {
        if start.batch > 0 && world > 1 {
            return Err(RunError::Aborted(format!(
                "the checkpoint was written {} by a single process; its batches are not those of {world} workers: resume it without `parallelism.data` (it continues from the next epoch on any number of workers after that)",
                start.describe()
            )));
        }
        r.snapshot.restore(exec)?;
        lbfgs_state = r.snapshot.lbfgs_state();
    }
    let (mut xb, mut yb) = (Array2::zeros((0, 0)), Array1::zeros(0));
    let mut wb: Vec<f32> = Vec::new();
    exchange.start(exec)?;

    // A run early stopping ended (and was killed before it finished writing) trains no more.
    let first = if start.stopped {
        t.epochs + 1
    } else {
        start.epoch
    };
    if start.stopped {
        stopped_early = Some("early stopping ended the run before it was interrupted".into());
    }
    for epoch in first..=t.epochs {
        let started = Instant::now();
        let mut epoch_samples = 0u64;
        let (sum, rows, lr) = if let Some((cfg, train)) = lbfgs_cfg {
            // L-BFGS runs a whole epoch at once: a stop is honoured between epochs.
            if let Some(why) = progress.stop_requested() {
                if let Some(save) = checkpoint.as_mut() {
                    let next = Start {
                        step,
                        ..stopper.position(epoch)
                    };
                    let mut snapshot = checked_snapshot(exchange, exec, epoch, step)?;
                    if let Some(s) = snapshot.as_mut() {
                        s.set_lbfgs(&lbfgs_state);
                    }
                    save(&EpochEnd {
                        record: None,
                        next,
                        samples: 0,
                        snapshot: snapshot.as_ref(),
                    })?;
                    return Err(RunError::Interrupted { why, at: next });
                }
                return Err(RunError::Aborted(why));
            }
            progress.epoch_start(epoch, t.epochs, cfg.max_iter);
            let mut evals = 0usize;
            let x0 = get_flat(exec)?;
            let mut f = |flat: &[f32]| -> Result<(f32, Vec<f32>), RunError> {
                set_flat(exec, flat)?;
                let (loss, grads) = full_batch(exec, train, b.max(1024), step)?;
                evals += 1;
                progress.step(evals.min(cfg.max_iter), loss);
                Ok((loss, grads))
            };
            let (x, loss, iters) = lbfgs::minimize(cfg, &mut lbfgs_state, x0, &mut f)?;
            set_flat(exec, &x)?;
            epoch_samples += (evals * n) as u64;
            step += iters as u64;
            (f64::from(loss) * n as f64, n as f64, cfg.lr as f32)
        } else {
            progress.epoch_start(epoch, t.epochs, steps_per_epoch as usize);
            let (mut sum, mut rows) = (0.0f64, 0.0f64);
            let mut first = 0;
            if epoch == start.epoch && start.batch > 0 {
                // Resuming mid-epoch: the batches before were trained.
                first = start.batch;
                sum = f64::from_bits(start.loss_sum_bits);
                // Mid-epoch checkpoints are a single process's: its rows are its samples.
                rows = start.samples as f64;
                epoch_samples = start.samples;
            }
            feed.start_epoch(plan.seed, epoch, world, first)?;
            let mut lr = 0.0;
            for k in first..steps_per_epoch as usize {
                if let Some(why) = progress.stop_requested() {
                    if world == 1 {
                        if let Some(save) = checkpoint.as_mut() {
                            let (deferred, _) = exec.deferred_losses()?;
                            sum += deferred;
                            let next = Start {
                                epoch,
                                step,
                                batch: k,
                                loss_sum_bits: sum.to_bits(),
                                samples: epoch_samples,
                                ..stopper.position(epoch)
                            };
                            let snapshot = checked_snapshot(exchange, exec, epoch, step)?;
                            save(&EpochEnd {
                                record: None,
                                next,
                                samples: epoch_samples,
                                snapshot: snapshot.as_ref(),
                            })?;
                            return Err(RunError::Interrupted { why, at: next });
                        }
                    }
                    return Err(RunError::Aborted(why));
                }
                lr = learning_rate(t, step, steps_per_epoch, total_steps);
                let has = feed.batch(k, &mut xb, &mut yb, &mut wb, exec)?;
                let mine = feed.last_rows();
                let at = StepAt {
                    epoch,
                    step,
                    lr,
                    global_rows: feed.global_rows(k),
                };
                let batch = has.then_some((&xb, &yb));
                if let Some(loss) = exchange.step(exec, batch, at)? {
                    if !loss.is_finite() {
                        return Err(RunError::Diverged { epoch, step, loss });
                    }
                    sum += f64::from(loss) * mine as f64;
                }
                rows += mine as f64;
                step += 1;
                epoch_samples += mine as u64;
                if k % 16 == 15 || k + 1 == steps_per_epoch as usize {
                    let (deferred, deferred_rows) = exec.deferred_losses()?;
                    if deferred_rows > 0 && !deferred.is_finite() {
                        // Somewhere in the last (up to 16) steps: report the block's end.
                        let loss = (deferred / deferred_rows as f64) as f32;
                        return Err(RunError::Diverged { epoch, step, loss });
                    }
                    sum += deferred;
                    progress.step(k + 1, (sum / rows.max(1.0)) as f32);
                }
            }
            let (sum, rows) = exchange.epoch_loss(sum, rows)?;
            (sum, rows, lr)
        };
        samples += epoch_samples;
        let train_loss = (sum / rows.max(1.0)) as f32;
        if !train_loss.is_finite() {
            return Err(RunError::Diverged {
                epoch,
                step,
                loss: train_loss,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        train_seconds += seconds;
        let validation_loss = match data.validation {
            Some(v) if !v.is_empty() && exchange.synchronous() => {
                Some(mean_loss_of(exec, v, 4096)?)
            }
            _ => None,
        };
        let record = EpochRecord {
            epoch,
            train_loss,
            validation_loss,
            lr,
            seconds,
            samples_per_sec: if lbfgs_cfg.is_some() {
                f64::NAN
            } else {
                epoch_samples as f64 / seconds.max(1e-9)
            },
            worker_samples_per_sec: Vec::new(),
        };
        // Read (and checked finite) before the record is written: a diverged model is
        // neither recorded nor saved, and the last good checkpoint is kept.
        let snapshot = match checkpoint {
            Some(_) => {
                let mut s = checked_snapshot(exchange, exec, epoch, step)?;
                if let (Some(s), true) = (s.as_mut(), lbfgs_cfg.is_some()) {
                    s.set_lbfgs(&lbfgs_state);
                }
                s
            }
            None => None,
        };
        progress.epoch_end(&record)?;
        let stop = if exchange.synchronous() {
            stopper.check(epoch, train_loss, validation_loss)
        } else {
            None
        };
        if let Some(save) = checkpoint.as_mut() {
            save(&EpochEnd {
                record: Some(&record),
                next: Start {
                    step,
                    stopped: stop.is_some(),
                    ..stopper.position(epoch + 1)
                },
                samples: epoch_samples,
                snapshot: snapshot.as_ref(),
            })?;
        }
        history.push(record);
        if let Some(reason) = stop {
            stopped_early = Some(reason);
            break;
        }
    }
    exchange.finish(exec)?;
    Ok(TrainOutcome {
        history,
        seconds: train_seconds,
        samples,
        samples_per_sec: samples as f64 / train_seconds.max(1e-9),
        steps: step,
        stopped_early,
    })
}

/// The exchange's snapshot for a checkpoint, refused when a parameter is not finite.
fn checked_snapshot(
    exchange: &mut dyn Exchange,
    exec: &mut dyn Executor,
    epoch: usize,
    step: u64,
) -> Result<Option<Snapshot>, RunError> {
    let snapshot = exchange.snapshot(exec)?;
    if let Some(value) = snapshot.as_ref().and_then(Snapshot::non_finite) {
        return Err(RunError::NonFiniteParams { epoch, step, value });
    }
    Ok(snapshot)
}

/// Every parameter, flattened in the plan's `params` order.
pub fn get_flat(exec: &dyn Executor) -> Result<Vec<f32>, ExecError> {
    Ok(flatten(&exec.params()?))
}

/// The gradients of the last backward pass, flattened in the plan's `params` order.
pub fn get_flat_grads(exec: &dyn Executor) -> Result<Vec<f32>, ExecError> {
    Ok(flatten(&exec.grads()?))
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
/// parameters' shapes (from the plan: reading the parameters back would stall a GPU on
/// every step).
pub fn split_flat(exec: &dyn Executor, flat: &[f32]) -> Result<Vec<Array2<f32>>, ExecError> {
    weft_exec::split_flat(exec.plan(), flat, "parameter")
}

/// Mean loss and gradient over the whole data set (chunked, weighted by chunk size).
fn full_batch(
    exec: &mut dyn Executor,
    d: &Dataset,
    chunk: usize,
    step: u64,
) -> Result<(f32, Vec<f32>), RunError> {
    let n = d.len();
    let mut loss = 0.0f64;
    let mut grad: Vec<f64> = Vec::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        let w = (end - start) as f64 / n as f64;
        set_weights(exec, d, start..end);
        let l = exec.loss_and_grads(
            d.x.slice(ndarray::s![start..end, ..]),
            d.y.slice(ndarray::s![start..end]),
            step,
        )?;
        loss += f64::from(l) * w;
        let g = get_flat_grads(exec)?;
        if grad.is_empty() {
            grad = vec![0.0; g.len()];
        }
        for (a, b) in grad.iter_mut().zip(&g) {
            *a += f64::from(*b) * w;
        }
    }
    Ok((loss as f32, grad.into_iter().map(|v| v as f32).collect()))
}
