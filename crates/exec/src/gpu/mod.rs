//! The GPU executor: the plan's schedules as WGSL compute kernels on wgpu.
//!
//! Weights, gradients, optimizer moments and batch-norm statistics stay on the GPU for the
//! whole run; activations live in the buffers the planner's memory plan decides. A training
//! step is one command buffer: the batch and the step's scalars are copied in through a
//! staging belt (a ring of mapped buffers, so the next batch is written while the GPU runs
//! the previous step), then forward, backward and update run in one compute pass. The loss
//! is added up on the GPU and read back only when the training loop asks
//! ([`Executor::deferred_losses`]).

pub mod arena;
pub mod context;
pub mod kernels;
pub mod lower;
pub mod reductions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView1, ArrayView2};
use weft_dsl::Optimizer;
use weft_planner::target::takes_whole_batch;
use weft_planner::{MemoryPlan, NormAxis, Op, Plan, ScheduleKind, Slot, Storage, Target};

use crate::error::ExecError;
use crate::init::init_param;
use crate::{check_batch, check_labels, check_params, Executor};
use arena::{Layout, Place};
pub use context::{adapters, chosen, AdapterSummary, GpuContext, Want};
use kernels::{Kernel, Params};
use lower::{Buf, Call, Run};

/// Which program: a schedule, or the update part of training alone (`apply_grads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Schedule(ScheduleKind),
    Updates,
}

/// One kernel launch: pipeline, bindings, workgroup grid.
type Dispatch = (Arc<wgpu::ComputePipeline>, wgpu::BindGroup, (u32, u32, u32));

/// A lowered schedule at one batch size: its bind groups are made once and reused.
struct Program {
    dispatches: Vec<Dispatch>,
    _params: wgpu::Buffer,
}

/// Time spent per training step, for `weft bench gpu` and `RUST_LOG=debug`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTiming {
    pub steps: u64,
    /// Recording the command buffer (batch copy, compute pass).
    pub encode: Duration,
    /// `queue.submit`.
    pub submit: Duration,
    /// Waiting for the GPU when the loss is read back.
    pub wait: Duration,
}

/// Buffers sized by the batch (reallocated when a larger batch comes).
struct BatchBuffers {
    rows: usize,
    slots: Vec<wgpu::Buffer>,
    scratch: HashMap<usize, wgpu::Buffer>,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
}

pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    /// The plan lowered for the GPU (matmul epilogues fused, its memory plan): what runs.
    plan: Plan,
    mem: MemoryPlan,
    /// Where each parameter, its gradient and moments live in the arenas below.
    arena: Layout,
    params: Vec<wgpu::Buffer>,
    grads: Vec<wgpu::Buffer>,
    opt_m: Vec<wgpu::Buffer>,
    opt_v: Vec<wgpu::Buffer>,
    running: HashMap<usize, (wgpu::Buffer, wgpu::Buffer)>,
    columns: HashMap<usize, wgpu::Buffer>,
    batch: Option<BatchBuffers>,
    /// Partial sums of the reductions split in chunks (`reductions.rs`).
    partial: Option<wgpu::Buffer>,
    loss_sum: wgpu::Buffer,
    step_buf: wgpu::Buffer,
    programs: HashMap<(Which, usize), Program>,
    belt: wgpu::util::StagingBelt,
    /// Optimizer steps taken (Adam's bias correction).
    t: u64,
    /// Rows of the training steps whose loss is still on the GPU.
    pending_rows: usize,
    /// Losses read back by `train_step` before their turn in `deferred_losses`.
    carried: (f64, usize),
    bn_trained: bool,
    timing: StepTiming,
    /// Reused encoding buffer of the batch uploads.
    bytes: Vec<u8>,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl GpuExecutor {
    /// Sets up the executor on `ctx`: parameters initialised from the plan's seed (the same
    /// values as on the CPU), optimizer state and gradients allocated.
    /// A plan not yet lowered for the GPU is lowered here (the planner's `gpu` passes).
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan) -> Result<GpuExecutor, ExecError> {
        let lowered = plan
            .clone()
            .lowered_for(Target::Gpu)
            .map_err(|e| ExecError::Internal(e.to_string()))?;
        let plan = &lowered;
        let mem = plan
            .memory
            .clone()
            .ok_or_else(|| ExecError::Internal("the GPU plan has no memory plan".into()))?;
        let lens: Vec<usize> = plan.params.iter().map(|p| p.shape.numel(1)).collect();
        let limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        let arena = Layout::new(
            &lens,
            (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1),
            (limit / 4) as usize,
        );
        let adagrad_init = match &plan.train.optimizer {
            Optimizer::Adagrad(a) => a.initial_accumulator as f32,
            _ => 0.0,
        };
        let (mut params, mut grads, mut opt_m, mut opt_v) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (a, &len) in arena.arenas.iter().enumerate() {
            let names: Vec<&str> = plan
                .params
                .iter()
                .zip(&arena.places)
                .filter(|(_, at)| at.arena == a)
                .map(|(p, _)| p.name.as_str())
                .collect();
            let what = |kind: &str| format!("{kind} of `{}`", names.join("`, `"));
            let bytes = 4 * len as u64;
            params.push(ctx.buffer(&what("parameters"), bytes, STORAGE)?);
            grads.push(ctx.buffer(&what("gradients"), bytes, STORAGE)?);
            opt_m.push(ctx.buffer(&what("optimizer state"), bytes, STORAGE)?);
            let v = ctx.buffer(&what("optimizer state"), bytes, STORAGE)?;
            if adagrad_init != 0.0 {
                write(&ctx, &v, 0, &vec![adagrad_init; len]);
            }
            opt_v.push(v);
        }
        for (p, at) in plan.params.iter().zip(&arena.places) {
            if let Op::Param { init } = &plan.nodes[p.node].op {
                let v = init_param(init, p.shape.rows_at(1), p.shape.cols, plan.seed);
                write(
                    &ctx,
                    &params[at.arena],
                    at.offset,
                    v.as_slice().unwrap_or(&[]),
                );
            }
        }
        let mut running = HashMap::new();
        let mut columns = HashMap::new();
        for n in &plan.nodes {
            match &n.op {
                Op::Norm {
                    axis: NormAxis::Batch,
                    ..
                } => {
                    let c = n.shape.cols;
                    let m =
                        ctx.buffer(&format!("`{}` running mean", n.name), 4 * c as u64, STORAGE)?;
                    let v = ctx.buffer(
                        &format!("`{}` running variance", n.name),
                        4 * c as u64,
                        STORAGE,
                    )?;
                    write(&ctx, &v, 0, &vec![1.0; c]);
                    running.insert(n.id, (m, v));
                }
                Op::Input { columns: cols } if !takes_whole_batch(cols, plan.features.len()) => {
                    let idx: Vec<f32> = cols.iter().map(|c| *c as f32).collect();
                    let b = ctx.buffer(
                        &format!("`{}` columns", n.name),
                        4 * idx.len() as u64,
                        STORAGE,
                    )?;
                    write(&ctx, &b, 0, &idx);
                    columns.insert(n.id, b);
                }
                _ => {}
            }
        }
        let uniform = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let exec = GpuExecutor {
            loss_sum: ctx.buffer("loss sum", 4, STORAGE)?,
            step_buf: ctx.buffer("step scalars", 32, uniform)?,
            belt: wgpu::util::StagingBelt::new(ctx.device.clone(), 1 << 20),
            ctx,
            plan: plan.clone(),
            mem,
            arena,
            params,
            grads,
            opt_m,
            opt_v,
            running,
            columns,
            batch: None,
            partial: None,
            programs: HashMap::new(),
            t: 0,
            pending_rows: 0,
            carried: (0.0, 0),
            bn_trained: false,
            timing: StepTiming::default(),
            bytes: Vec::new(),
        };
        exec.ctx.check()?;
        Ok(exec)
    }

    /// Where the parameters live: how many arenas, and each tensor's place.
    pub fn layout(&self) -> &Layout {
        &self.arena
    }

    /// Time spent recording, submitting and waiting, over the training steps so far.
    pub fn timing(&self) -> StepTiming {
        self.timing
    }

    /// Makes sure the batch-sized buffers hold `rows` rows: room for the spec's batch size
    /// rounded up to a power of two when the adapter allows it, else exactly `rows`.
    fn ensure_rows(&mut self, rows: usize) -> Result<(), ExecError> {
        if self.batch.as_ref().is_some_and(|b| b.rows >= rows) {
            return Ok(());
        }
        // Drop the old buffers (and the programs that bind them) before making new ones.
        self.programs.clear();
        self.batch = None;
        let roomy = rows
            .max(self.plan.train.batch_size.min(1 << 16))
            .next_power_of_two();
        match self.allocate(roomy) {
            Ok(b) => self.batch = Some(b),
            Err(_) if roomy > rows => self.batch = Some(self.allocate(rows)?),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn allocate(&self, rows: usize) -> Result<BatchBuffers, ExecError> {
        let ctx = &self.ctx;
        let mut slots = Vec::new();
        for (i, s) in self.mem.slots.iter().enumerate() {
            let what = match s {
                Slot::PerRow(c) => format!("activation buffer {i} ({rows} rows × {c})"),
                Slot::Fixed(n) => format!("buffer {i} ({n} values)"),
            };
            slots.push(ctx.buffer(&what, 4 * s.len(rows) as u64, STORAGE)?);
        }
        let mut scratch = HashMap::new();
        for n in &self.plan.nodes {
            let floats = match &n.op {
                // Mean and 1/std per group; a batch-norm input gradient also keeps
                // Σ dy and Σ dy·x̂ per column after them.
                Op::Norm { axis, .. } | Op::NormGrad { axis, .. } => match axis {
                    NormAxis::Batch if matches!(n.op, Op::NormGrad { .. }) => {
                        4 * self.plan.nodes[n.inputs[0]].shape.cols
                    }
                    NormAxis::Batch => 2 * self.plan.nodes[n.inputs[0]].shape.cols,
                    NormAxis::Layer => 2 * rows,
                },
                Op::Loss(_) => rows,
                _ => continue,
            };
            scratch.insert(
                n.id,
                ctx.buffer(&format!("`{}` scratch", n.name), 4 * floats as u64, STORAGE)?,
            );
        }
        let features = self.plan.features.len();
        let x = ctx.buffer(
            &format!("input batch ({rows} rows × {features})"),
            4 * (rows * features) as u64,
            STORAGE,
        )?;
        let y = ctx.buffer(
            &format!("label batch ({rows} rows)"),
            4 * rows as u64,
            STORAGE,
        )?;
        Ok(BatchBuffers {
            rows,
            slots,
            scratch,
            x,
            y,
        })
    }

    fn storage(&self, which: Which) -> &std::collections::BTreeMap<usize, Storage> {
        match which {
            Which::Schedule(k) => self.mem.of(k),
            Which::Updates => self.mem.of(ScheduleKind::Train),
        }
    }

    /// The buffer range behind `b`: a parameter or gradient is its range of an arena, the
    /// rest whole buffers.
    fn resolve(&self, which: Which, b: Buf) -> Result<wgpu::BufferBinding<'_>, ExecError> {
        let batch = self
            .batch
            .as_ref()
            .ok_or_else(|| ExecError::Internal("GPU batch buffers missing".into()))?;
        let missing = || ExecError::Internal(format!("no GPU buffer for {b:?}"));
        let place = |i: usize| self.arena.places.get(i).copied().ok_or_else(missing);
        let buf = match b {
            Buf::Node(id) => match self.storage(which).get(&id) {
                Some(Storage::Param(i)) => {
                    let at = place(*i)?;
                    return Ok(arena_range(&self.params[at.arena], at));
                }
                Some(Storage::Grad(i)) => {
                    let at = place(*i)?;
                    return Ok(arena_range(&self.grads[at.arena], at));
                }
                Some(Storage::Slot(s)) => &batch.slots[*s],
                Some(Storage::External) => match self.plan.nodes[id].op {
                    Op::Target => &batch.y,
                    Op::Input { .. } => &batch.x,
                    _ => return Err(missing()),
                },
                None => return Err(missing()),
            },
            Buf::Params(a) => self.params.get(a).ok_or_else(missing)?,
            Buf::Grads(a) => self.grads.get(a).ok_or_else(missing)?,
            Buf::OptM(a) => self.opt_m.get(a).ok_or_else(missing)?,
            Buf::OptV(a) => self.opt_v.get(a).ok_or_else(missing)?,
            Buf::Scratch(id) => batch.scratch.get(&id).ok_or_else(missing)?,
            Buf::RunningMean(id) => &self.running.get(&id).ok_or_else(missing)?.0,
            Buf::RunningVar(id) => &self.running.get(&id).ok_or_else(missing)?.1,
            Buf::X => &batch.x,
            Buf::LossSum => &self.loss_sum,
            Buf::Columns(id) => self.columns.get(&id).ok_or_else(missing)?,
            Buf::Partial(_) => self.partial.as_ref().ok_or_else(missing)?,
        };
        Ok(buf.as_entire_buffer_binding())
    }

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
        let calls = lower::lower(&self.plan, &self.ids(which), run, &self.arena.arenas)?;
        self.grow_partial(&calls)?;
        tracing::debug!(
            "GPU program {which:?} at {rows} rows: {} dispatches",
            calls.len()
        );
        let stride = u64::from(self.ctx.limits.min_uniform_buffer_offset_alignment)
            .max(Params::BYTES as u64);
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
            let at = i * stride as usize;
            bytes[at..at + Params::BYTES].copy_from_slice(&call.params.bytes());
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
                size: wgpu::BufferSize::new(Params::BYTES as u64),
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
    fn submit(
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
        let step_bytes = self.step_scalars(t, step, lr);
        let batch = self
            .batch
            .as_ref()
            .ok_or_else(|| ExecError::Internal("no batch buffers".into()))?;
        upload(&mut self.belt, &mut enc, &self.step_buf, &step_bytes);
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
    fn step_scalars(&self, t: u64, step: u64, lr: f32) -> [u8; 32] {
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
        let words: [u32; 8] = [
            lr.to_bits(),
            adam_step.to_bits(),
            inv_bc2.to_bits(),
            decay.to_bits(),
            step as u32,
            (step >> 32) as u32,
            seed as u32,
            (seed >> 32) as u32,
        ];
        let mut out = [0u8; 32];
        for (i, w) in words.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads a node's output after `which` ran at `rows` rows.
    fn read_node(&self, which: Which, id: usize, rows: usize) -> Result<Array2<f32>, ExecError> {
        let shape = self.plan.nodes[id].shape;
        let (r, c) = (shape.rows_at(rows), shape.cols);
        let b = self.resolve(which, Buf::Node(id))?;
        let v = self.ctx.read_at(b.buffer, b.offset, 4 * (r * c) as u64)?;
        Array2::from_shape_vec((r, c), v).map_err(|e| ExecError::Internal(e.to_string()))
    }

    /// Every parameter's values (or gradient's, with the gradient arenas): one read per
    /// arena.
    fn read_all(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Array2<f32>>, ExecError> {
        let arenas: Vec<Vec<f32>> = bufs
            .iter()
            .zip(&self.arena.arenas)
            .map(|(b, len)| self.ctx.read(b, 4 * *len as u64))
            .collect::<Result<_, _>>()?;
        self.plan
            .params
            .iter()
            .zip(&self.arena.places)
            .map(|(p, at)| {
                let v = arenas[at.arena][at.offset..at.offset + at.len].to_vec();
                Array2::from_shape_vec((p.shape.rows_at(1), p.shape.cols), v)
                    .map_err(|e| ExecError::Internal(e.to_string()))
            })
            .collect()
    }

    /// Writes every parameter's values (or gradient's, into the gradient arenas); the
    /// callers have checked them with `check_params`.
    fn write_all(&self, bufs: &[wgpu::Buffer], values: &[Array2<f32>]) {
        for (at, v) in self.arena.places.iter().zip(values) {
            let v = v.as_standard_layout();
            write(
                &self.ctx,
                &bufs[at.arena],
                at.offset,
                v.as_slice().unwrap_or(&[]),
            );
        }
    }

    /// Reads and resets the GPU's sum of training losses.
    fn take_loss_sum(&mut self) -> Result<f64, ExecError> {
        let started = Instant::now();
        let v = self.ctx.read(&self.loss_sum, 4)?;
        self.timing.wait += started.elapsed();
        write(&self.ctx, &self.loss_sum, 0, &[0.0]);
        Ok(f64::from(v.first().copied().unwrap_or(f32::NAN)))
    }
}

/// A tensor's range of an arena buffer.
fn arena_range(buf: &wgpu::Buffer, at: Place) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer: buf,
        offset: 4 * at.offset as u64,
        size: wgpu::BufferSize::new(4 * at.len.max(1) as u64),
    }
}

/// Writes `values` into `buf` from the value at `offset` on.
fn write(ctx: &GpuContext, buf: &wgpu::Buffer, offset: usize, values: &[f32]) {
    if !values.is_empty() {
        ctx.queue
            .write_buffer(buf, 4 * offset as u64, bytemuck::cast_slice(values));
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
            let c = self.plan.nodes[*id].shape.cols;
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
                let c = self.plan.nodes[*id].shape.cols;
                if mean.len() != c || var.len() != c {
                    tracing::warn!("`{name}` statistics of the wrong size ({} and {} values for {c} features); ignored", mean.len(), var.len());
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

/// Runs kernel `k` once, for tests and `weft bench gpu`: exposes the matmul on its own.
pub mod bench {
    use super::*;
    use kernels::MatmulCfg;

    /// C = op(A)·op(B) on the GPU (`tile` forces 64 or 128; None picks as the executor
    /// does). Returns C and the GPU time of `reps` back-to-back runs, in seconds.
    pub fn matmul(
        ctx: &GpuContext,
        a: &Array2<f32>,
        b: &Array2<f32>,
        ta: bool,
        tb: bool,
        tile: Option<u32>,
        reps: usize,
    ) -> Result<(Array2<f32>, f64), ExecError> {
        let (m, k) = if ta {
            (a.ncols(), a.nrows())
        } else {
            (a.nrows(), a.ncols())
        };
        let (kb, n) = if tb {
            (b.ncols(), b.nrows())
        } else {
            (b.nrows(), b.ncols())
        };
        if k != kb {
            return Err(ExecError::Shape(format!("matmul of {m}×{k} by {kb}×{n}")));
        }
        let bytes = |x: usize| 4 * x as u64;
        let abuf = ctx.buffer("matmul A", bytes(a.len()), STORAGE)?;
        let bbuf = ctx.buffer("matmul B", bytes(b.len()), STORAGE)?;
        let cbuf = ctx.buffer("matmul C", bytes(m * n), STORAGE)?;
        let step = ctx.buffer(
            "step",
            32,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        let pbuf = ctx.buffer(
            "params",
            64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        write(
            ctx,
            &abuf,
            0,
            &a.as_standard_layout().iter().copied().collect::<Vec<_>>(),
        );
        write(
            ctx,
            &bbuf,
            0,
            &b.as_standard_layout().iter().copied().collect::<Vec<_>>(),
        );
        let tile = tile.unwrap_or_else(|| lower::matmul_tile(m, n));
        let cfg = MatmulCfg {
            tile,
            ta,
            tb,
            bias: false,
            act: 0,
        };
        let p = Params {
            n: (m * n) as u32,
            rows: m as u32,
            cols: n as u32,
            k: k as u32,
            ..Params::default()
        };
        ctx.queue.write_buffer(&pbuf, 0, &p.bytes());
        let pipeline = Kernel::matmul(cfg).pipeline(ctx)?;
        let group = ctx.bind_group(
            "matmul",
            pbuf.as_entire_buffer_binding(),
            &step,
            &[
                abuf.as_entire_buffer_binding(),
                bbuf.as_entire_buffer_binding(),
            ],
            &[cbuf.as_entire_buffer_binding()],
        )?;
        let (gx, gy, _) = lower::matmul_groups(m, n, tile);
        let run = |times: usize| -> Result<f64, ExecError> {
            let started = Instant::now();
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &group, &[]);
                for _ in 0..times {
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
            Ok(started.elapsed().as_secs_f64())
        };
        run(1)?; // warm-up (pipeline creation, first-touch of memory)
        let seconds = if reps > 0 { run(reps)? } else { 0.0 };
        let c = ctx.read(&cbuf, bytes(m * n))?;
        Ok((
            Array2::from_shape_vec((m, n), c).map_err(|e| ExecError::Internal(e.to_string()))?,
            seconds,
        ))
    }
}
