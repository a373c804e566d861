//! Setting the executor up, and the buffers it owns: the parameter arenas, the batch-sized
//! buffers, and which buffer range each kernel argument resolves to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use ndarray::Array2;
use weft_dsl::Optimizer;
use weft_planner::target::takes_whole_batch;
use weft_planner::{NormAxis, Op, Plan, ScheduleKind, Slot, Storage, Target};

use super::arena::{Layout, Place};
use super::call::Buf;
use super::uniforms::STEP_BYTES;
use super::{write, BatchBuffers, GpuContext, GpuExecutor, StepTiming, Which, STORAGE};
use crate::error::ExecError;
use crate::init::init_param;

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
                Op::Norm { axis, .. } if axis.running() => {
                    let c = super::executor::running_len(plan, n.id);
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
            // Bound whenever rows are weighted at all (the loss kernels read the class
            // weights before the row weights); ones when only the rows have weights.
            class_weights: match (&plan.class_weights, plan.sample_weighted) {
                (Some(w), _) if !w.is_empty() => {
                    let b = ctx.buffer("class weights", 4 * w.len() as u64, STORAGE)?;
                    write(&ctx, &b, 0, w);
                    Some(b)
                }
                (_, true) => {
                    let b = ctx.buffer("class weights", 4, STORAGE)?;
                    write(&ctx, &b, 0, &[1.0]);
                    Some(b)
                }
                _ => None,
            },
            sample_w: None,
            step_buf: ctx.buffer("step scalars", STEP_BYTES as u64, uniform)?,
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
    pub(super) fn ensure_rows(&mut self, rows: usize) -> Result<(), ExecError> {
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
                // Σ dy and Σ dy·x̂ per group after them.
                Op::Norm { axis, .. } | Op::NormGrad { axis, .. } => {
                    let groups = axis.groups(rows, self.plan.nodes[n.inputs[0]].shape.cols);
                    match axis {
                        NormAxis::Layer => 2 * groups,
                        _ if matches!(n.op, Op::NormGrad { .. }) => 4 * groups,
                        _ => 2 * groups,
                    }
                }
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
        // The rows' weights (`data.weight_column`); one value when the plan has none.
        let w = ctx.buffer(
            &format!("row weights ({rows} rows)"),
            4 * if self.plan.sample_weighted { rows } else { 1 } as u64,
            STORAGE,
        )?;
        Ok(BatchBuffers {
            rows,
            slots,
            scratch,
            x,
            y,
            w,
        })
    }

    fn storage(&self, which: Which) -> &BTreeMap<usize, Storage> {
        match which {
            Which::Schedule(k) => self.mem.of(k),
            Which::Updates => self.mem.of(ScheduleKind::Train),
        }
    }

    /// The buffer range behind `b`: a parameter or gradient is its range of an arena, the
    /// rest whole buffers.
    pub(super) fn resolve(
        &self,
        which: Which,
        b: Buf,
    ) -> Result<wgpu::BufferBinding<'_>, ExecError> {
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
            Buf::ClassWeights => self.class_weights.as_ref().ok_or_else(missing)?,
            Buf::SampleWeights => &batch.w,
            Buf::Columns(id) => self.columns.get(&id).ok_or_else(missing)?,
            Buf::Partial(_) => self.partial.as_ref().ok_or_else(missing)?,
        };
        Ok(buf.as_entire_buffer_binding())
    }

    /// Reads a node's output after `which` ran at `rows` rows.
    pub(super) fn read_node(
        &self,
        which: Which,
        id: usize,
        rows: usize,
    ) -> Result<Array2<f32>, ExecError> {
        let shape = self.plan.nodes[id].shape;
        let (r, c) = (shape.rows_at(rows), shape.cols);
        let b = self.resolve(which, Buf::Node(id))?;
        let v = self.ctx.read_at(b.buffer, b.offset, 4 * (r * c) as u64)?;
        Array2::from_shape_vec((r, c), v).map_err(|e| ExecError::Internal(e.to_string()))
    }

    /// Every parameter's values (or gradient's, with the gradient arenas): one read per
    /// arena.
    pub(super) fn read_all(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Array2<f32>>, ExecError> {
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
    pub(super) fn write_all(&self, bufs: &[wgpu::Buffer], values: &[Array2<f32>]) {
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
    pub(super) fn take_loss_sum(&mut self) -> Result<f64, ExecError> {
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
