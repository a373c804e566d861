//! Lowering of the reductions over a whole tensor: sums over the rows (bias and gamma
//! gradients, the batch-norm input gradient's two sums), batch-norm statistics and the
//! global gradient norm.
//!
//! A reduction over a large batch is split into chunks of rows: one workgroup per chunk
//! and 32 columns writes partial sums to a shared scratch buffer (`Buf::Partial`), and a
//! second, small `sum_rows` adds them up. In one pass a 2-column bias gradient at batch
//! 8192 would be a single workgroup whose threads each walk a thousand rows in a row; in
//! chunks it is 128 workgroups of 8 rows per thread. Small batches (≤ 128 rows) keep the
//! single pass, since there a second dispatch costs more than it saves. The gradient norm
//! is split the same way: each gradient's squares are summed by up to 256 workgroups,
//! then one workgroup adds every partial sum and takes the square root.

use super::call::{groups_1d, u, within, Buf, Call, Run};
use super::kernels::Kernel;
use super::uniforms::ReduceParams;
use crate::error::ExecError;

/// Batches of at most this many rows are reduced in one pass.
const SINGLE_PASS_ROWS: usize = 128;
/// Rows per chunk, at least (8 per thread of a 32 × 8 workgroup).
const CHUNK_ROWS: usize = 64;
/// Chunks, at most: the second pass then walks at most 128 partial rows per thread.
const MAX_CHUNKS: usize = 1024;
/// Values per thread of the first pass of `sum_squares`, and its workgroups at most.
const SQUARES_PER_THREAD: usize = 16;
const SQUARES_GROUPS: usize = 256;

/// (rows per chunk, chunks) of a reduction over `rows` rows.
pub fn chunking(rows: usize) -> (usize, usize) {
    if rows <= SINGLE_PASS_ROWS {
        return (rows.max(1), 1);
    }
    let per = CHUNK_ROWS.max(rows.div_ceil(MAX_CHUNKS));
    (per, rows.div_ceil(per))
}

/// A sum over the rows by one of reduce.wgsl's column kernels (`sum_rows`,
/// `norm_grad_gamma`, `norm_sums`): `params` has `rows` and `cols` set; each row gives
/// `width` sums (`cols`, or `2·cols` for `norm_sums`), written to `out` from `offset` on.
pub struct RowSum {
    pub kernel: Kernel,
    pub params: ReduceParams,
    pub reads: Vec<Buf>,
    pub width: usize,
    pub out: Buf,
    pub offset: usize,
    /// Go through the partial buffer even for one chunk (when `out` is also read).
    pub two_pass: bool,
}

/// The grid of a column kernel over `params.rows` rows of `params.cols` columns: 32
/// columns per workgroup in x, one chunk per workgroup in y (so y is the chunk count); and
/// the rows per chunk, set in the returned parameters.
fn chunk_grid(
    params: ReduceParams,
    run: Run,
) -> Result<(ReduceParams, (u32, u32, u32)), ExecError> {
    let (per, chunks) = chunking(params.rows as usize);
    let gx = column_groups(params.cols as usize, run)?;
    let gy = within(chunks, run, "a reduction over rows")?;
    Ok((
        ReduceParams {
            chunk_rows: u(per)?,
            ..params
        },
        (gx, gy, 1),
    ))
}

/// Workgroups of 32 columns.
fn column_groups(cols: usize, run: Run) -> Result<u32, ExecError> {
    within(cols.div_ceil(32), run, "a reduction over columns")
}

impl RowSum {
    pub fn lower(self, run: Run, calls: &mut Vec<Call>) -> Result<(), ExecError> {
        let (params, groups) = chunk_grid(self.params, run)?;
        let chunks = groups.1 as usize;
        let direct = chunks == 1 && !self.two_pass;
        let partial = Buf::Partial(chunks * self.width.max(1));
        calls.push(Call {
            kernel: self.kernel,
            params: ReduceParams {
                out_offset: if direct { u(self.offset)? } else { 0 },
                ..params
            }
            .into(),
            reads: self.reads,
            writes: vec![if direct { self.out } else { partial }],
            groups,
        });
        if direct {
            return Ok(());
        }
        // The chunks' partial sums are rows of their own, added up in a single chunk.
        calls.push(Call {
            kernel: Kernel::reduce("sum_rows"),
            params: ReduceParams {
                n: u(chunks * self.width)?,
                rows: u(chunks)?,
                cols: u(self.width)?,
                chunk_rows: u(chunks)?,
                out_offset: u(self.offset)?,
                ..ReduceParams::default()
            }
            .into(),
            reads: vec![partial],
            writes: vec![self.out],
            groups: (column_groups(self.width, run)?, 1, 1),
        });
        Ok(())
    }
}

/// The global norm of the gradients into `out[0]`: every gradient arena (`Buf::Grads`),
/// of `arenas` values each (their padding is zero).
pub fn grad_norm(arenas: &[usize], out: Buf, calls: &mut Vec<Call>) -> Result<(), ExecError> {
    let mut offset = 0;
    for (a, &len) in arenas.iter().enumerate() {
        let groups = len
            .div_ceil(256 * SQUARES_PER_THREAD)
            .clamp(1, SQUARES_GROUPS);
        calls.push(Call {
            kernel: Kernel::reduce("sum_squares"),
            params: ReduceParams {
                n: u(len)?,
                out_offset: u(offset)?,
                ..ReduceParams::default()
            }
            .into(),
            reads: vec![Buf::Grads(a)],
            writes: vec![Buf::Partial(offset + groups)],
            groups: (u(groups)?, 1, 1),
        });
        offset += groups;
    }
    calls.push(Call {
        kernel: Kernel::reduce("sqrt_of_sum"),
        params: ReduceParams {
            n: u(offset)?,
            ..ReduceParams::default()
        }
        .into(),
        // At least one value, so a plan without gradients still has a buffer to bind.
        reads: vec![Buf::Partial(offset.max(1))],
        writes: vec![out],
        groups: (1, 1, 1),
    });
    Ok(())
}

/// Batch-norm statistics of `x` (`params`: rows, cols, eps) into `out`: mean in
/// `[0, cols)`, 1/std in `[cols, 2·cols)`. Over a large batch each chunk's mean and sum of
/// squared deviations go to the partial buffer and are merged per column (Chan et al.'s
/// pairwise update, exact up to rounding and stable, unlike Σx and Σx²).
pub fn batch_stats(
    x: Buf,
    out: Buf,
    params: ReduceParams,
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    let (params, groups) = chunk_grid(params, run)?;
    let chunks = groups.1 as usize;
    if chunks == 1 {
        calls.push(Call {
            kernel: Kernel::reduce("col_stats"),
            params: params.into(),
            reads: vec![x],
            writes: vec![out],
            groups,
        });
        return Ok(());
    }
    let partial = Buf::Partial(chunks * 2 * params.cols as usize);
    calls.push(Call {
        kernel: Kernel::reduce("col_moments"),
        params: params.into(),
        reads: vec![x],
        writes: vec![partial],
        groups,
    });
    calls.push(Call {
        kernel: Kernel::reduce("merge_moments"),
        groups: groups_1d(params.cols as usize, run.max_dim),
        params: params.into(),
        reads: vec![partial],
        writes: vec![out],
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_take_one_pass_and_large_ones_bounded_chunks() {
        assert_eq!(chunking(0), (1, 1));
        assert_eq!(chunking(32), (32, 1));
        assert_eq!(chunking(128), (128, 1));
        assert_eq!(chunking(129), (64, 3));
        assert_eq!(chunking(8192), (64, 128));
        assert_eq!(chunking(1 << 20), (1024, 1024));
        for rows in [129, 1000, 65_536, 1 << 20, 3_000_017] {
            let (per, chunks) = chunking(rows);
            assert!(per * chunks >= rows && per * (chunks - 1) < rows, "{rows}");
            assert!(chunks <= MAX_CHUNKS && per >= CHUNK_ROWS, "{rows}");
        }
    }
}
