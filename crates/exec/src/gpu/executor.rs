//! The `Executor` trait on the GPU: training steps, evaluation and prediction as runs of
//! the programs, and reading and writing the parameters and batch-norm statistics.

use std::time::Duration;

use ndarray::{Array2, ArrayView1, ArrayView2};
use weft_dsl::Optimizer;
use weft_planner::{Op, Plan, ScheduleKind};

use super::{write, GpuExecutor, Which};
use crate::error::ExecError;
use crate::optim::OptimState;
use crate::{check_params, Executor};

impl Executor for GpuExecutor {
    fn device_name(&self) -> String {
        format!("gpu: {}", self.ctx.name())
    }

    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<f32, ExecError> {
        // Losses of earlier deferred steps are kept for `deferred_losses`.
        let before = self.deferred_losses()?;
        self.carried = before;
        let rows = x.nrows();
        self.train_step_deferred(x, y, step, lr)?;
        self.pending_rows = 0;
        let sum = self.take_loss_sum()?;
        Ok(if rows == 0 {
            0.0
        } else {
            (sum / rows as f64) as f32
        })
    }

    fn train_step_deferred(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
        lr: f32,
    ) -> Result<Option<f32>, ExecError> {
        self.submit(
            Which::Schedule(ScheduleKind::Train),
            Some(x),
            Some(y),
            step,
            lr,
        )?;
        Ok(None)
    }

    fn deferred_losses(&mut self) -> Result<(f64, usize), ExecError> {
        let (mut sum, mut rows) = std::mem::take(&mut self.carried);
        if self.pending_rows > 0 {
            sum += self.take_loss_sum()?;
            rows += std::mem::take(&mut self.pending_rows);
        }
        Ok((sum, rows))
    }

    fn loss_and_grads(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        step: u64,
    ) -> Result<f32, ExecError> {
        let rows = x.nrows();
        self.submit(
            Which::Schedule(ScheduleKind::Gradients),
            Some(x),
            Some(y),
            step,
            0.0,
        )?;
        Ok(self.read_node(
            Which::Schedule(ScheduleKind::Gradients),
            self.plan.loss,
            rows,
        )?[[0, 0]])
    }

    fn eval_loss(&mut self, x: ArrayView2<f32>, y: ArrayView1<f32>) -> Result<f32, ExecError> {
        let rows = x.nrows();
        self.submit(
            Which::Schedule(ScheduleKind::Eval),
            Some(x),
            Some(y),
            0,
            0.0,
        )?;
        Ok(self.read_node(Which::Schedule(ScheduleKind::Eval), self.plan.loss, rows)?[[0, 0]])
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>, ExecError> {
        let rows = x.nrows();
        self.submit(
            Which::Schedule(ScheduleKind::Predict),
            Some(x),
            None,
            0,
            0.0,
        )?;
        self.read_node(
            Which::Schedule(ScheduleKind::Predict),
            self.plan.output,
            rows,
        )
    }

    fn params(&self) -> Result<Vec<Array2<f32>>, ExecError> {
        self.read_all(&self.params)
            .map_err(|e| ExecError::Gpu(format!("reading the parameters failed: {e}")))
    }

    fn grads(&self) -> Result<Vec<Array2<f32>>, ExecError> {
        self.read_all(&self.grads)
            .map_err(|e| ExecError::Gpu(format!("reading the gradients failed: {e}")))
    }

    fn set_params(&mut self, params: &[Array2<f32>]) -> Result<(), ExecError> {
        check_params(&self.plan, params, "parameters")?;
        self.write_all(&self.params, params);
        Ok(())
    }

    fn apply_grads(&mut self, grads: &[Array2<f32>], step: u64, lr: f32) -> Result<(), ExecError> {
        check_params(&self.plan, grads, "gradients")?;
        self.write_all(&self.grads, grads);
        self.submit(Which::Updates, None, None, step, lr)
    }

    fn buffers(&self) -> Result<Vec<(String, Array2<f32>)>, ExecError> {
        if !self.bn_trained {
            return Ok(Vec::new());
        }
        let mut ids: Vec<&usize> = self.running.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let (m, v) = &self.running[id];
            let c = running_len(&self.plan, *id);
            let name = &self.plan.nodes[*id].name;
            for (suffix, b) in [("running_mean", m), ("running_var", v)] {
                let vals = self.ctx.read(b, 4 * c as u64).map_err(|e| {
                    ExecError::Gpu(format!("reading the batch-norm statistics failed: {e}"))
                })?;
                out.push((
                    format!("{name}.{suffix}"),
                    Array2::from_shape_vec((1, c), vals).unwrap_or_default(),
                ));
            }
        }
        Ok(out)
    }

    fn optimizer_state(&self) -> Result<OptimState, ExecError> {
        if self.t == 0 {
            return Ok(OptimState::default());
        }
        let read = |bufs| {
            self.read_all(bufs)
                .map(|a| {
                    a.iter()
                        .flat_map(|t| t.iter().copied())
                        .collect::<Vec<f32>>()
                })
                .map_err(|e| ExecError::Gpu(format!("reading the optimizer state failed: {e}")))
        };
        Ok(OptimState {
            updates: self.t,
            m: read(&self.opt_m)?,
            v: read(&self.opt_v)?,
        })
    }

    fn set_optimizer_state(&mut self, state: &OptimState) -> Result<(), ExecError> {
        let (m, v) = if state.m.is_empty() && state.v.is_empty() {
            // Before the first update: zeros, and Adagrad's initial accumulator.
            let init = match &self.plan.train.optimizer {
                Optimizer::Adagrad(a) => a.initial_accumulator as f32,
                _ => 0.0,
            };
            let zeros = |x: f32| -> Vec<Array2<f32>> {
                self.plan
                    .params
                    .iter()
                    .map(|p| Array2::from_elem((p.shape.rows_at(1), p.shape.cols), x))
                    .collect()
            };
            (zeros(0.0), zeros(init))
        } else {
            (
                crate::split_flat(&self.plan, &state.m, "optimizer state (m)")?,
                crate::split_flat(&self.plan, &state.v, "optimizer state (v)")?,
            )
        };
        self.write_all(&self.opt_m, &m);
        self.write_all(&self.opt_v, &v);
        self.t = state.updates;
        Ok(())
    }

    fn set_sample_weights(&mut self, w: Option<&[f32]>) {
        crate::keep_weights(&mut self.sample_w, w);
    }

    fn set_buffers(&mut self, buffers: &[(String, Array2<f32>)]) {
        for (id, (m, v)) in &self.running {
            let name = &self.plan.nodes[*id].name;
            let find = |suffix: &str| {
                buffers
                    .iter()
                    .find(|(n, _)| *n == format!("{name}.{suffix}"))
                    .map(|(_, a)| a.iter().copied().collect::<Vec<f32>>())
            };
            if let (Some(mean), Some(var)) = (find("running_mean"), find("running_var")) {
                let c = running_len(&self.plan, *id);
                if mean.len() != c || var.len() != c {
                    tracing::warn!("`{name}` statistics of the wrong size ({} and {} values for {c} features or channels); ignored", mean.len(), var.len());
                    continue;
                }
                write(&self.ctx, m, 0, &mean);
                write(&self.ctx, v, 0, &var);
                self.bn_trained = true;
            }
        }
    }
}

impl Drop for GpuExecutor {
    fn drop(&mut self) {
        let t = self.timing;
        if t.steps > 0 {
            let per = |d: Duration| d.as_secs_f64() * 1e6 / t.steps as f64;
            tracing::debug!(
                "gpu executor: {} steps; per step {:.1} us encode, {:.1} us submit; {:.1} ms waiting for losses in all",
                t.steps,
                per(t.encode),
                per(t.submit),
                t.wait.as_secs_f64() * 1e3
            );
        }
    }
}

/// Values of a batch norm's running mean (or variance): one per feature, or one per channel
/// after a convolution.
pub(super) fn running_len(plan: &Plan, id: usize) -> usize {
    let node = &plan.nodes[id];
    match node.op {
        Op::Norm { axis, .. } => axis.params(node.shape.cols),
        _ => node.shape.cols,
    }
}
