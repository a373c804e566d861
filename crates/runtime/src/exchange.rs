//! How a training step's gradients or weights are shared with other workers: the one thing
//! that differs between the single process, all-reduce, the parameter-server family, local
//! SGD and gossip. The training loop ([`crate::train::fit`]) is the same for all of them; a
//! mode only implements this trait (pipeline and tensor parallelism will too).

use ndarray::{Array1, Array2};
use weft_exec::Executor;

use crate::checkpoint::Snapshot;
use crate::error::RunError;

/// Where one step of the loop stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepAt {
    pub epoch: usize,
    /// The global step (the same on every worker).
    pub step: u64,
    pub lr: f32,
    /// Rows of the global batch this step, over every worker (the divisor of a mean gradient).
    pub global_rows: usize,
}

/// A data-parallel exchange. The loop gives worker `rank` of `world` rows
/// `[rank·b, (rank+1)·b)` of every global batch of `world·b` rows (PyTorch's
/// `DistributedSampler` order), so every worker runs the same number of steps.
pub trait Exchange {
    /// This worker's rank (0 for a single process).
    fn rank(&self) -> usize {
        0
    }

    /// The number of workers (1 for a single process).
    fn world(&self) -> usize {
        1
    }

    /// A short name for messages (`local`, `allreduce`, …).
    fn name(&self) -> &'static str;

    /// Called once before the first step: a mode may replace the model (a parameter server
    /// hands out its own, the resumed one).
    fn start(&mut self, _exec: &mut dyn Executor) -> Result<(), RunError> {
        Ok(())
    }

    /// One training step. `batch` is this worker's rows of the global batch, `None` when its
    /// slice is empty (it still takes part in a collective, with weight 0). Returns the
    /// batch's mean loss, or `None` when the executor keeps it on the device (the loop reads
    /// such losses with [`Executor::deferred_losses`]).
    fn step(
        &mut self,
        exec: &mut dyn Executor,
        batch: Option<(&Array2<f32>, &Array1<f32>)>,
        at: StepAt,
    ) -> Result<Option<f32>, RunError>;

    /// The epoch's loss sum (loss × rows) and rows over every worker. A synchronous mode
    /// reduces them so that every worker sees the same mean; the default keeps its own.
    fn epoch_loss(&mut self, sum: f64, rows: f64) -> Result<(f64, f64), RunError> {
        Ok((sum, rows))
    }

    /// Whether every worker holds the same model after every step, so that the validation
    /// loss and early stopping decide the same everywhere (single process, all-reduce).
    fn synchronous(&self) -> bool {
        true
    }

    /// The model and optimizer state to checkpoint after an epoch, or `None` on a worker
    /// that does not hold them (every rank but 0). Only asked for when it is saved.
    fn snapshot(&mut self, exec: &mut dyn Executor) -> Result<Option<Snapshot>, RunError> {
        (self.rank() == 0).then(|| Snapshot::read(exec)).transpose()
    }

    /// After the last epoch: leaves the final model in `exec` (gossip averages once; a
    /// parameter server's workers take the server's model).
    fn finish(&mut self, _exec: &mut dyn Executor) -> Result<(), RunError> {
        Ok(())
    }
}

/// The single process: the executor's own optimizer step, nothing shared.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Exchange for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn step(
        &mut self,
        exec: &mut dyn Executor,
        batch: Option<(&Array2<f32>, &Array1<f32>)>,
        at: StepAt,
    ) -> Result<Option<f32>, RunError> {
        match batch {
            // A GPU keeps the loss on the device; the loop reads it back every 16 steps.
            Some((x, y)) => Ok(exec.train_step_deferred(x.view(), y.view(), at.step, at.lr)?),
            None => Ok(Some(0.0)),
        }
    }
}
