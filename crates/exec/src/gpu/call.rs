//! A kernel call, what lowering makes and the executor binds: its kernel, parameters,
//! buffers and workgroup grid, with the size checks and grid shapes every lowering uses.

use super::kernels::Kernel;
use super::uniforms::Uniform;
use crate::error::ExecError;

/// Where a kernel argument lives (resolved by the executor through the memory plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buf {
    /// A node's output, wherever the memory plan put it.
    Node(usize),
    /// A node's own scratch (normalisation statistics, per-row losses).
    Scratch(usize),
    RunningMean(usize),
    RunningVar(usize),
    /// Arena i (`arena.rs`) whole: parameters, gradients, optimizer moments.
    Params(usize),
    Grads(usize),
    OptM(usize),
    OptV(usize),
    /// The step's input batch.
    X,
    /// Sum of training losses since the last read-back.
    LossSum,
    /// The loss's class weights.
    ClassWeights,
    /// The batch rows' weights.
    SampleWeights,
    /// Column indices of an input node that selects columns.
    Columns(usize),
    /// Partial sums of a reduction split in chunks (`reductions.rs`): one buffer shared by
    /// every reduction, at least this many values long.
    Partial(usize),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub kernel: Kernel,
    /// Of the kernel's family (the executor checks).
    pub params: Uniform,
    pub reads: Vec<Buf>,
    pub writes: Vec<Buf>,
    pub groups: (u32, u32, u32),
}

/// How a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub rows: usize,
    pub train_mode: bool,
    /// Add the loss to `Buf::LossSum` (training steps).
    pub accumulate: bool,
    /// Largest workgroup count per grid dimension.
    pub max_dim: u32,
}

/// A size as the kernels' u32 indices take it.
pub fn u(x: usize) -> Result<u32, ExecError> {
    u32::try_from(x).map_err(|_| {
        ExecError::Gpu(format!(
            "a tensor of {x} elements is too large for the GPU kernels (at most 2^32 − 1)"
        ))
    })
}

/// A workgroup count checked against the adapter's per-dimension limit.
pub fn within(groups: usize, run: Run, what: &str) -> Result<u32, ExecError> {
    match u32::try_from(groups) {
        Ok(g) if g <= run.max_dim => Ok(g),
        _ => Err(ExecError::Gpu(format!(
            "{what} at batch {} needs {groups} workgroups in one dimension; this adapter allows {} (max_compute_workgroups_per_dimension); use a smaller batch_size",
            run.rows, run.max_dim
        ))),
    }
}

/// Workgroups for one thread per item in 256-wide groups, spread over y when x would
/// exceed the per-dimension limit (see `flat_index` in common.wgsl).
pub fn groups_1d(items: usize, max_per_dim: u32) -> (u32, u32, u32) {
    let g = items.div_ceil(256) as u64;
    if g == 0 {
        return (0, 1, 1);
    }
    let x = g.min(u64::from(max_per_dim));
    (x as u32, g.div_ceil(x) as u32, 1)
}

/// One workgroup per row (`row_of` in reduce.wgsl), spread over y past the grid limit.
pub fn per_row(rows: usize, max_dim: u32) -> (u32, u32, u32) {
    if rows == 0 {
        return (0, 1, 1);
    }
    let x = rows.min(max_dim as usize);
    (x as u32, rows.div_ceil(x).min(u32::MAX as usize) as u32, 1)
}
