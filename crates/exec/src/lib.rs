//! weft-exec: runs plans. The [`Executor`] trait, the CPU executor (ndarray + gemm), the GPU
//! executor (wgpu, feature `gpu`) and the optimizer update rules. The training loop that
//! drives an executor is weft-runtime's; the conformance suite every executor passes is
//! weft-conformance.

pub mod cpu;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod init;
pub mod optim;

pub use error::ExecError;

use ndarray::{Array2, ArrayView1, ArrayView2};
use weft_planner::Plan;

/// A device that runs plans. Chosen at run time by [`Device`]; every implementation passes
/// the same conformance suite.
pub trait Executor {
    /// Human-readable device name (`cpu (2 threads)`).
    fn device_name(&self) -> String;
    /// The plan this executor runs (parameter names and shapes, without a read-back).
    fn plan(&self) -> &Plan;
    /// Forward, backward and optimizer update on one batch; returns the batch's mean loss.
    fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<f32, ExecError>;
    /// [`Executor::train_step`] without waiting for the loss: `Some(loss)` when the executor
    /// has it at hand (CPU), `None` when it stays on the device and is added to what
    /// [`Executor::deferred_losses`] returns (GPU, so a step never waits for a read-back).
    fn train_step_deferred(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<Option<f32>, ExecError> {
        self.train_step(x, y, step, lr).map(Some)
    }
    /// The sum of loss × rows, and the rows, of the deferred training steps since the last
    /// call (waits for the device).
    fn deferred_losses(&mut self) -> Result<(f64, usize), ExecError> {
        Ok((0.0, 0))
    }
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
        for (i, g) in self.grads()?.iter().enumerate().rev() {
            ready(i, g);
        }
        Ok(loss)
    }
    /// Mean loss in evaluation mode (no dropout, running batch-norm statistics).
    fn eval_loss(&mut self, x: ArrayView2<f32>, y: ArrayView1<f32>) -> Result<f32, ExecError>;
    /// Predictions (class probabilities or values), one row per input row.
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>, ExecError>;
    /// [`Executor::predict`] and [`Executor::eval_loss`] of the same rows (evaluation): an
    /// executor that can share their forward pass runs it once.
    fn predict_and_loss(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
    ) -> Result<(Array2<f32>, f32), ExecError> {
        let probs = self.predict(x)?;
        Ok((probs, self.eval_loss(x, y)?))
    }
    /// Parameter values, in the plan's `params` order; an error when they cannot be read
    /// (a GPU read-back that failed or timed out).
    fn params(&self) -> Result<Vec<Array2<f32>>, ExecError>;
    /// Gradients from the last backward pass, in the plan's `params` order; an error when
    /// they cannot be read.
    fn grads(&self) -> Result<Vec<Array2<f32>>, ExecError>;
    fn set_params(&mut self, params: &[Array2<f32>]) -> Result<(), ExecError>;
    /// Runs the optimizer update (with clipping) on the given gradients, in the plan's
    /// `params` order, instead of the executor's own: data-parallel training reduces the
    /// gradients of every worker first.
    fn apply_grads(&mut self, grads: &[Array2<f32>], step: u64, lr: f32) -> Result<(), ExecError>;
    /// Non-trainable state saved with the model (batch-norm running statistics).
    /// (An error when they cannot be read from the device.)
    fn buffers(&self) -> Result<Vec<(String, Array2<f32>)>, ExecError>;
    fn set_buffers(&mut self, buffers: &[(String, Array2<f32>)]);
    /// The optimizer's moments and update count, for a checkpoint (an error when they
    /// cannot be read from the device).
    fn optimizer_state(&self) -> Result<optim::OptimState, ExecError>;
    /// Restores what [`Executor::optimizer_state`] returned (resuming a run).
    fn set_optimizer_state(&mut self, state: &optim::OptimState) -> Result<(), ExecError>;
    /// The weights of the next batches' rows (`data.weight_column`), used by every loss until
    /// set again; `None`: every row weighs 1. Only a plan with `sample_weighted` uses them.
    fn set_sample_weights(&mut self, w: Option<&[f32]>);
}

/// Keeps a batch's row weights in `slot` (every step sets them: the buffer is reused).
pub(crate) fn keep_weights(slot: &mut Option<Vec<f32>>, w: Option<&[f32]>) {
    match (w, slot.as_mut()) {
        (Some(w), Some(buf)) => {
            buf.clear();
            buf.extend_from_slice(w);
        }
        (w, _) => *slot = w.map(<[f32]>::to_vec),
    }
}

/// A flat vector (parameters, gradients or optimizer slots, in the plan's `params` order)
/// cut into the parameters' shapes; `what` names the values in the error.
pub fn split_flat(plan: &Plan, flat: &[f32], what: &str) -> Result<Vec<Array2<f32>>, ExecError> {
    let shapes: Vec<(usize, usize)> = plan
        .params
        .iter()
        .map(|p| (p.shape.rows_at(1), p.shape.cols))
        .collect();
    let want = shapes
        .iter()
        .fold(0usize, |n, (r, c)| n.saturating_add(r.saturating_mul(*c)));
    if flat.len() != want {
        return Err(ExecError::Shape(format!(
            "{} {what} values given, the model has {want}",
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

/// Errors unless the batch has the plan's feature columns.
pub(crate) fn check_batch(plan: &Plan, x: &ArrayView2<f32>) -> Result<(), ExecError> {
    let want = plan.features.len();
    if x.ncols() != want {
        return Err(ExecError::Shape(format!(
            "input has {} feature columns, the model expects {want}",
            x.ncols()
        )));
    }
    Ok(())
}

/// Errors unless there is one label per row.
pub(crate) fn check_labels(x: &ArrayView2<f32>, y: &ArrayView1<f32>) -> Result<(), ExecError> {
    if x.nrows() != y.len() {
        return Err(ExecError::Shape(format!(
            "{} input rows but {} labels",
            x.nrows(),
            y.len()
        )));
    }
    Ok(())
}

/// Errors unless there is one value per parameter, each of its parameter's shape;
/// `what` names the values (`parameters`, `gradients`).
pub(crate) fn check_params(
    plan: &Plan,
    values: &[Array2<f32>],
    what: &str,
) -> Result<(), ExecError> {
    if values.len() != plan.params.len() {
        return Err(ExecError::Shape(format!(
            "{} {what} given, the model has {} parameters",
            values.len(),
            plan.params.len()
        )));
    }
    for (p, v) in plan.params.iter().zip(values) {
        let want = (p.shape.rows_at(1), p.shape.cols);
        if v.dim() != want {
            return Err(ExecError::Shape(format!(
                "{what} of `{}` are {:?}, the model expects {want:?}",
                p.name,
                v.dim()
            )));
        }
    }
    Ok(())
}

/// Where a plan runs.
#[derive(Clone)]
pub enum Device {
    Cpu,
    #[cfg(feature = "gpu")]
    Gpu(std::sync::Arc<gpu::GpuContext>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "Cpu"),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => write!(f, "Gpu({})", ctx.name()),
        }
    }
}

/// What choosing a device has to tell the user (a software GPU, a fallback to the CPU).
pub type DeviceNote = Option<String>;

impl Device {
    /// Picks the device for a spec's `executor.device`: `auto` takes a real GPU when wgpu
    /// finds one and the CPU otherwise; `gpu` takes a real GPU, else a software one (with a
    /// note saying so), else fails; `cpu` is the CPU.
    pub fn select(spec: weft_dsl::Device) -> Result<(Device, DeviceNote), ExecError> {
        Device::select_for(spec, 0)
    }

    /// [`Device::select`] for the `local`-th worker of a machine: on a machine with several
    /// GPUs, worker i takes GPU i (modulo their number).
    pub fn select_for(
        spec: weft_dsl::Device,
        #[cfg_attr(not(feature = "gpu"), allow(unused_variables))] local: usize,
    ) -> Result<(Device, DeviceNote), ExecError> {
        match spec {
            weft_dsl::Device::Cpu => Ok((Device::Cpu, None)),
            #[cfg(feature = "gpu")]
            weft_dsl::Device::Auto => match gpu::GpuContext::shared(gpu::Want::Hardware, local) {
                Ok(Some(ctx)) => Ok((Device::Gpu(ctx), None)),
                Ok(None) => Ok((Device::Cpu, None)),
                Err(e) => Ok((Device::Cpu, Some(format!("the GPU could not be opened ({e}); running on the CPU")))),
            },
            #[cfg(feature = "gpu")]
            weft_dsl::Device::Gpu => match gpu::GpuContext::shared(gpu::Want::Any, local)? {
                Some(ctx) if ctx.is_software() => {
                    let note = format!(
                        "no GPU found; running on the software adapter {} (slow: for tests only)",
                        ctx.name()
                    );
                    Ok((Device::Gpu(ctx), Some(note)))
                }
                Some(ctx) => Ok((Device::Gpu(ctx), None)),
                None => Err(ExecError::Unsupported {
                    path: "executor.device".into(),
                    message: "`gpu` asked for, but wgpu finds no GPU adapter (Vulkan, Metal or DX12); install a GPU driver, or Mesa's software Vulkan driver (`mesa-vulkan-drivers`) to test, or use `auto` or `cpu`".into(),
                }),
            },
            #[cfg(not(feature = "gpu"))]
            weft_dsl::Device::Auto => Ok((Device::Cpu, None)),
            #[cfg(not(feature = "gpu"))]
            weft_dsl::Device::Gpu => Err(ExecError::Unsupported {
                path: "executor.device".into(),
                message: "this build of weft has no GPU executor (built without the `gpu` feature); use `cpu` or `auto`".into(),
            }),
        }
    }

    /// The target plans for this device are lowered for.
    pub fn target(&self) -> weft_planner::Target {
        match self {
            Device::Cpu => weft_planner::Target::Cpu,
            #[cfg(feature = "gpu")]
            Device::Gpu(_) => weft_planner::Target::Gpu,
        }
    }

    /// An executor for `plan` on this device (a GPU lowers a plan not yet lowered for it).
    pub fn executor(&self, plan: &Plan) -> Result<Box<dyn Executor>, ExecError> {
        match self {
            Device::Cpu => Ok(Box::new(cpu::CpuExecutor::new(plan))),
            #[cfg(feature = "gpu")]
            Device::Gpu(ctx) => Ok(Box::new(gpu::GpuExecutor::new(ctx.clone(), plan)?)),
        }
    }
}
