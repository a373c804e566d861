//! The GPU executor: the plan's schedules as WGSL compute kernels on wgpu.
//!
//! Weights, gradients, optimizer moments and batch-norm statistics stay on the GPU for the
//! whole run; activations live in the buffers the planner's memory plan decides. A training
//! step is one command buffer: the batch and the step's scalars are copied in through a
//! staging belt (a ring of mapped buffers, so the next batch is written while the GPU runs
//! the previous step), then forward, backward and update run in one compute pass. The loss
//! is added up on the GPU and read back only when the training loop asks
//! ([`crate::Executor::deferred_losses`]).
//!
//! In processing order: `context` (the device), `arena` (where parameters live), `codes`
//! and `uniforms` (what crosses into WGSL), `kernels` (the WGSL modules), `call`, `lower`,
//! `lower_ops`, `lower_matmul` and `reductions` (a schedule becomes kernel calls), then
//! `buffers`, `program` and `executor` (the executor that binds and runs them).

pub mod arena;
pub mod bench;
mod buffers;
pub mod call;
pub mod codes;
pub mod context;
mod executor;
pub mod kernels;
pub mod lower;
pub mod lower_matmul;
pub mod lower_ops;
mod program;
pub mod reductions;
pub mod uniforms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use weft_planner::{MemoryPlan, Plan, ScheduleKind};

use arena::Layout;
pub use context::{adapters, chosen, AdapterSummary, GpuContext, Want};

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
    /// The rows' weights.
    w: wgpu::Buffer,
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
    /// The loss's class weights (`plan.class_weights`), when there are some.
    class_weights: Option<wgpu::Buffer>,
    /// The batch rows' weights (`set_sample_weights`), uploaded with each batch.
    sample_w: Option<Vec<f32>>,
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

/// Writes `values` into `buf` from the value at `offset` on.
fn write(ctx: &GpuContext, buf: &wgpu::Buffer, offset: usize, values: &[f32]) {
    if !values.is_empty() {
        ctx.queue
            .write_buffer(buf, 4 * offset as u64, bytemuck::cast_slice(values));
    }
}
