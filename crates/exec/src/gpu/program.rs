//! Programs: a schedule lowered and bound at one batch size, and the recording and
//! submission of one run of it (batch upload, step scalars, one compute pass).

use std::time::Instant;

use ndarray::{ArrayView1, ArrayView2};
use weft_dsl::Optimizer;
use weft_planner::{Op, ScheduleKind};

use super::call::{Buf, Call, Run};
use super::lower;
use super::uniforms::{Step, UNIFORM_BYTES};
use super::{GpuExecutor, Program, Which, STORAGE};
use crate::error::ExecError;
use crate::{check_batch, check_labels};

impl GpuExecutor {
    /// The nodes `which` runs, in order.
    fn ids(&self, which: Which) -> Vec<usize> {
        let p = &self.plan;
        match which {
            Which::Schedule(k) => k.ids(p).to_vec(),
            Which::Updates => p
                .schedules
                .train
                .iter()
                .copied()
                .filter(|id| matches!(p.nodes[*id].op, Op::GradNorm | Op::Update { .. }))
                .collect(),
        }
    }

    /// The program for `which` at `rows` rows, lowered and bound on first use.
    fn program(&mut self, which: Which, rows: usize) -> Result<(), ExecError> {
        if self.programs.contains_key(&(which, rows)) {
            return Ok(());
        }
        if self.programs.len() > 32 {
            self.programs.clear();
        }
        let run = Run {
            rows,
            train_mode: matches!(
                which,
                Which::Schedule(ScheduleKind::Train | ScheduleKind::Gradients) | Which::Updates
            ),
            accumulate: which == Which::Schedule(ScheduleKind::Train),
            max_dim: self.ctx.limits.max_compute_workgroups_per_dimension,
        };
        let calls = lower::lower(&self.plan, &self.ids(which), run, &self.arena)?;
        self.grow_partial(&calls)?;
        tracing::debug!(
            "GPU program {which:?} at {rows} rows: {} dispatches",
            calls.len()
        );
        let stride = u64::from(self.ctx.limits.min_uniform_buffer_offset_alignment)
            .max(UNIFORM_BYTES as u64);
        let params = self.ctx.buffer(
            "kernel parameters",
            stride * calls.len().max(1) as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut bytes = vec![0u8; (stride as usize) * calls.len()];
        let mut dispatches = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            let (gx, gy, gz) = call.groups;
            if gx == 0 || gy == 0 || gz == 0 {
                continue; // nothing to do (an empty batch or tensor)
            }
            // The kernel would read another struct's fields without complaint.
            if !call.params.fits(call.kernel.family) {
                return Err(ExecError::Internal(format!(
                    "the {} kernel was lowered with parameters of another family",
                    call.kernel.entry
                )));
            }
            let at = i * stride as usize;
            bytes[at..at + UNIFORM_BYTES].copy_from_slice(call.params.bytes());
            let group = self.bind(which, call, &params, at as u64)?;
            dispatches.push((call.kernel.pipeline(&self.ctx)?, group, call.groups));
        }
        self.ctx.queue.write_buffer(&params, 0, &bytes);
        self.ctx.check()?;
        self.programs.insert(
            (which, rows),
            Program {
                dispatches,
                _params: params,
            },
        );
        Ok(())
    }

    /// Makes the reductions' shared partial-sum buffer as large as `calls` need. Programs
    /// lowered before keep the (smaller) buffer they were bound to, which fits them.
    fn grow_partial(&mut self, calls: &[Call]) -> Result<(), ExecError> {
        let need = calls
            .iter()
            .flat_map(|c| c.reads.iter().chain(&c.writes))
            .filter_map(|b| match b {
                Buf::Partial(n) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let have = self.partial.as_ref().map_or(0, |b| b.size() / 4);
        if need as u64 > have {
            self.partial = Some(self.ctx.buffer(
                &format!("reduction partial sums ({need} values)"),
                4 * need as u64,
                STORAGE,
            )?);
        }
        Ok(())
    }

    fn bind(
        &self,
        which: Which,
        call: &Call,
        params: &wgpu::Buffer,
        offset: u64,
    ) -> Result<wgpu::BindGroup, ExecError> {
        let resolve = |bufs: &[Buf]| -> Result<Vec<wgpu::BufferBinding<'_>>, ExecError> {
            bufs.iter().map(|b| self.resolve(which, *b)).collect()
        };
        self.ctx.bind_group(
            call.kernel.entry,
            wgpu::BufferBinding {
                buffer: params,
                offset,
                size: wgpu::BufferSize::new(UNIFORM_BYTES as u64),
            },
            &self.step_buf,
            &resolve(&call.reads)?,
            &resolve(&call.writes)?,
        )
    }

    /// Records and submits one run of `which` on a batch: the batch and the step's scalars
    /// go in through the staging belt, the kernels run in one compute pass.
    ///
    /// `t` is the optimizer step this run makes (Adam's bias correction); it, the rows of a
    /// training step's deferred loss and the batch-norm flag change only once the work is
    /// submitted, so a refused batch leaves the executor as it was.
    pub(super) fn submit(
        &mut self,
        which: Which,
        x: Option<ArrayView2<f32>>,
        y: Option<ArrayView1<f32>>,
        step: u64,
        lr: f32,
    ) -> Result<(), ExecError> {
        let rows = x.as_ref().map_or(0, |x| x.nrows());
        if let Some(x) = &x {
            check_batch(&self.plan, x)?;
        }
        if let (Some(x), Some(y)) = (&x, &y) {
            check_labels(x, y)?;
        }
        let t = match which {
            Which::Schedule(ScheduleKind::Train) | Which::Updates => self.t + 1,
            Which::Schedule(_) => self.t,
        };
        self.ensure_rows(rows.max(1))?;
        self.program(which, rows)?;
        let started = Instant::now();
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        let scalars = self.step_scalars(t, step, lr);
        let batch = self
            .batch
            .as_ref()
            .ok_or_else(|| ExecError::Internal("no batch buffers".into()))?;
        upload(
            &mut self.belt,
            &mut enc,
            &self.step_buf,
            bytemuck::bytes_of(&scalars),
        );
        if let Some(x) = &x {
            upload_f32(
                &mut self.belt,
                &mut enc,
                &batch.x,
                &mut self.bytes,
                x.as_slice(),
                x.iter(),
            );
        }
        if let Some(y) = &y {
            upload_f32(
                &mut self.belt,
                &mut enc,
                &batch.y,
                &mut self.bytes,
                y.as_slice(),
                y.iter(),
            );
            if self.plan.sample_weighted {
                // The rows' weights, or ones when none were set for this batch.
                let ones;
                let w = match &self.sample_w {
                    Some(w) if w.len() == rows => w.as_slice(),
                    _ => {
                        ones = vec![1.0f32; rows];
                        ones.as_slice()
                    }
                };
                upload_f32(
                    &mut self.belt,
                    &mut enc,
                    &batch.w,
                    &mut self.bytes,
                    Some(w),
                    w.iter(),
                );
            }
        }
        let program = &self.programs[&(which, rows)];
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("kernels"),
                timestamp_writes: None,
            });
            for (pipeline, group, (gx, gy, gz)) in &program.dispatches {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(*gx, *gy, *gz);
            }
        }
        self.belt.finish();
        let cmd = enc.finish();
        let encoded = Instant::now();
        self.ctx.queue.submit([cmd]);
        self.belt.recall();
        self.t = t;
        if matches!(
            which,
            Which::Schedule(ScheduleKind::Train | ScheduleKind::Gradients)
        ) {
            self.bn_trained = true;
        }
        if matches!(which, Which::Schedule(ScheduleKind::Train)) {
            self.pending_rows += rows;
            self.timing.steps += 1;
            self.timing.encode += encoded - started;
            self.timing.submit += encoded.elapsed();
        }
        self.ctx.check()
    }

    /// The Step uniform (common.wgsl) of optimizer step `t` and dropout step `step`.
    fn step_scalars(&self, t: u64, step: u64, lr: f32) -> Step {
        let (mut adam_step, mut inv_bc2, mut decay) = (lr, 1.0f32, 1.0f32);
        if let Optimizer::Adam(a) | Optimizer::Adamw(a) = &self.plan.train.optimizer {
            let t = t.clamp(1, i32::MAX as u64) as i32;
            let bc1 = 1.0 - (a.beta1 as f32).powi(t);
            let bc2 = 1.0 - (a.beta2 as f32).powi(t);
            adam_step = lr / bc1;
            inv_bc2 = 1.0 / bc2;
            if matches!(self.plan.train.optimizer, Optimizer::Adamw(_)) {
                decay = 1.0
                    - lr * crate::optim::adam_weight_decay(&self.plan.train.optimizer)
                        .unwrap_or(0.0);
            }
        }
        let seed = self.plan.seed;
        Step {
            lr,
            adam_step,
            inv_bc2,
            decay,
            step_lo: step as u32,
            step_hi: (step >> 32) as u32,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
        }
    }
}

fn upload(
    belt: &mut wgpu::util::StagingBelt,
    enc: &mut wgpu::CommandEncoder,
    target: &wgpu::Buffer,
    bytes: &[u8],
) {
    if let Some(size) = wgpu::BufferSize::new(bytes.len() as u64) {
        belt.write_buffer(enc, target, 0, size)
            .copy_from_slice(bytes);
    }
}

/// Writes floats to `target` through the staging belt. A contiguous batch (what the
/// training loop's gather makes) goes in without a copy; another view is packed into
/// `bytes` first (kept by the executor, so a step allocates nothing).
fn upload_f32<'a>(
    belt: &mut wgpu::util::StagingBelt,
    enc: &mut wgpu::CommandEncoder,
    target: &wgpu::Buffer,
    bytes: &mut Vec<u8>,
    contiguous: Option<&'a [f32]>,
    values: impl Iterator<Item = &'a f32>,
) {
    match contiguous {
        Some(v) => upload(belt, enc, target, bytemuck::cast_slice(v)),
        None => {
            bytes.clear();
            for v in values {
                bytes.extend_from_slice(bytemuck::bytes_of(v));
            }
            upload(belt, enc, target, bytes);
        }
    }
}
