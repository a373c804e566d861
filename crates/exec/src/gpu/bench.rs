//! Runs one kernel on its own, for tests and `weft bench gpu`: the matmul outside any
//! plan.

use std::time::Instant;

use ndarray::Array2;

use super::codes::ActCode;
use super::kernels::{Kernel, MatmulCfg};
use super::lower_matmul::{matmul_groups, matmul_tile};
use super::uniforms::{MatmulParams, STEP_BYTES, UNIFORM_BYTES};
use super::{write, GpuContext, STORAGE};
use crate::error::ExecError;

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
        STEP_BYTES as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    let pbuf = ctx.buffer(
        "params",
        UNIFORM_BYTES as u64,
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
    let tile = tile.unwrap_or_else(|| matmul_tile(m, n));
    let cfg = MatmulCfg {
        tile,
        ta,
        tb,
        bias: false,
        act: ActCode::Linear,
    };
    let p = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        ..MatmulParams::default()
    };
    ctx.queue.write_buffer(&pbuf, 0, bytemuck::bytes_of(&p));
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
    let (gx, gy, _) = matmul_groups(m, n, tile);
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
