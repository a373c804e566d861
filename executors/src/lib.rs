//! weft-executors: runs plans. The CPU executor (ndarray + gemm), the training loop,
//! optimizers, metrics, and run directories (checkpoints written atomically).

pub mod cpu;
pub mod error;
pub mod init;
pub mod lbfgs;
pub mod metrics;
pub mod optim;
pub mod rundir;
pub mod train;

pub use error::ExecError;

use ndarray::{Array2, ArrayView1, ArrayView2};
use weft_planner::Plan;

/// A device that runs plans. Chosen at run time by [`Device`]; every implementation passes
/// the same conformance suite.
pub trait Executor {
    /// Human-readable device name (`cpu (2 threads)`).
    fn device_name(&self) -> String;
    /// Forward, backward and optimizer update on one batch; returns the batch's mean loss.
    fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<f32, ExecError>;
    /// Forward and backward only (training mode); returns the loss, gradients via [`Executor::grads`].
    fn loss_and_grads(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
    ) -> Result<f32, ExecError>;
    /// [`Executor::loss_and_grads`], calling `ready(i, gradient)` as soon as parameter i's
    /// gradient is final (in backward order), so data-parallel training can send it while
    /// backward goes on. This default reports them all at the end.
    fn loss_and_grads_streaming(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        ready: &mut dyn FnMut(usize, &Array2<f32>),
    ) -> Result<f32, ExecError> {
        let loss = self.loss_and_grads(x, y, step)?;
        for (i, g) in self.grads().iter().enumerate().rev() {
            ready(i, g);
        }
        Ok(loss)
    }
    /// Mean loss in evaluation mode (no dropout, running batch-norm statistics).
    fn eval_loss(&mut self, x: ArrayView2<f32>, y: ArrayView1<f32>) -> Result<f32, ExecError>;
    /// Predictions (class probabilities or values), one row per input row.
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>, ExecError>;
    /// Parameter values, in the plan's `params` order.
    fn params(&self) -> Vec<Array2<f32>>;
    /// Gradients from the last backward pass, in the plan's `params` order.
    fn grads(&self) -> Vec<Array2<f32>>;
    fn set_params(&mut self, params: &[Array2<f32>]) -> Result<(), ExecError>;
    /// Runs the optimizer update (with clipping) on the given gradients, in the plan's
    /// `params` order, instead of the executor's own: data-parallel training reduces the
    /// gradients of every worker first.
    fn apply_grads(&mut self, grads: &[Array2<f32>], step: u64, lr: f32) -> Result<(), ExecError>;
    /// Non-trainable state saved with the model (batch-norm running statistics).
    fn buffers(&self) -> Vec<(String, Array2<f32>)>;
    fn set_buffers(&mut self, buffers: &[(String, Array2<f32>)]);
}

/// Where a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
}

impl Device {
    /// Picks the device for a spec's `executor.device`.
    pub fn select(spec: weft_dsl::Device) -> Result<Device, ExecError> {
        match spec {
            weft_dsl::Device::Auto | weft_dsl::Device::Cpu => Ok(Device::Cpu),
            weft_dsl::Device::Gpu => Err(ExecError::Unsupported {
                path: "executor.device".into(),
                message: "this build of weft has no GPU executor yet; use `cpu` or `auto`".into(),
            }),
        }
    }

    /// An executor for `plan` on this device.
    pub fn executor(self, plan: &Plan) -> Box<dyn Executor> {
        match self {
            Device::Cpu => Box::new(cpu::CpuExecutor::new(plan)),
        }
    }
}
