//! Lowering of the GEMMs: the kernel variant (tile size, transposes, fused epilogue) and
//! the workgroup grid of C = op(A)·op(B) (+ bias, activation), and of the convolutions
//! run as implicit GEMMs.

use weft_planner::{Plan, Window};

use super::call::{u, within, Buf, Call, Run};
use super::codes::ActCode;
use super::kernels::{ConvGemmCfg, Kernel, MatmulCfg};
use super::uniforms::{ConvParams, MatmulParams};
use crate::error::ExecError;

/// The matmul kernel for C = op(A)·op(B) (+ bias, activation).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    plan: &Plan,
    a: usize,
    b: usize,
    bias: Option<usize>,
    (ta, tb): (bool, bool),
    act: ActCode,
    alpha: f32,
    out: Buf,
    run: Run,
) -> Result<Call, ExecError> {
    let dims = |id: usize| {
        let s = plan.nodes[id].shape;
        (s.rows_at(run.rows), s.cols)
    };
    let ((ar, ac), (br, bc)) = (dims(a), dims(b));
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let n = if tb { br } else { bc };
    let cfg = MatmulCfg {
        tile: matmul_tile(m, n),
        ta,
        tb,
        bias: bias.is_some(),
        act,
    };
    // The kernel indexes C's elements with u32.
    u(m * n)?;
    let p = MatmulParams {
        m: u(m)?,
        n: u(n)?,
        k: u(k)?,
        alpha,
        ..MatmulParams::default()
    };
    let mut reads = vec![Buf::Node(a), Buf::Node(b)];
    reads.extend(bias.map(Buf::Node));
    let (gx, gy, _) = matmul_groups(m, n, cfg.tile);
    within(gx as usize, run, "a matmul")?;
    within(gy as usize, run, "a matmul")?;
    Ok(Call {
        kernel: Kernel::matmul(cfg),
        params: p.into(),
        reads,
        writes: vec![out],
        groups: (gx, gy, 1),
    })
}

/// A convolution over `rows` images (reads x, w and the bias if bound) as an implicit GEMM
/// (conv_gemm.wgsl); `p` holds the window, the bias flag and the fused activation.
pub fn conv_gemm(
    win: &Window,
    p: ConvParams,
    rows: usize,
    reads: Vec<Buf>,
    out: Buf,
    run: Run,
) -> Result<Call, ExecError> {
    let (m, n) = (p.filters as usize, rows.saturating_mul(win.positions()));
    // The kernel indexes the output and the input with u32.
    u(n.saturating_mul(m))?;
    u(rows.saturating_mul(win.input().numel()))?;
    // Tiles as tall as the filters need (16, 32 or 64 rows), wider when short.
    let bm = match m {
        0..=16 => 16,
        17..=32 => 32,
        _ => 64,
    };
    let bn = if bm <= 32 { 128 } else { 64 };
    // A batch of large images has more column tiles than one dimension holds: they spread
    // over x and z (tiles past the last one compute nothing).
    let tiles = n.div_ceil(bn as usize);
    let gz = tiles.div_ceil((run.max_dim as usize).max(1)).max(1);
    let gx = within(tiles.div_ceil(gz), run, "a convolution")?;
    let gz = within(gz, run, "a convolution")?;
    let gy = within(m.div_ceil(bm as usize), run, "a convolution")?;
    Ok(Call {
        kernel: Kernel::conv_gemm(ConvGemmCfg { bm, bn }),
        params: ConvParams {
            rows: u(rows)?,
            ..p
        }
        .into(),
        reads,
        writes: vec![out],
        groups: (gx, gy, gz),
    })
}

/// 128-tiles (8×8 per thread) when there are enough of them to fill a large GPU, else
/// 64-tiles, which keep more workgroups busy on small products.
pub fn matmul_tile(m: usize, n: usize) -> u32 {
    if m.div_ceil(128) * n.div_ceil(128) >= 128 {
        128
    } else {
        64
    }
}

/// Workgroups of a matmul (saturated at u32::MAX; `matmul` checks the adapter's limit).
pub fn matmul_groups(m: usize, n: usize, tile: u32) -> (u32, u32, u32) {
    let t = tile as usize;
    let g = |x: usize| u32::try_from(x.div_ceil(t)).unwrap_or(u32::MAX);
    (g(n), g(m), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::uniforms::ConvParams;

    /// More column tiles than a grid dimension holds spread over x and z, covering each.
    #[test]
    fn a_wide_convolution_spreads_its_tiles_over_x_and_z() {
        let win = Window {
            c: 1,
            h: 28,
            w: 28,
            kh: 5,
            kw: 5,
            sh: 1,
            sw: 1,
            ph: 0,
            pw: 0,
            dh: 1,
            dw: 1,
            oh: 24,
            ow: 24,
        };
        let p = ConvParams {
            filters: 6,
            ..ConvParams::default()
        };
        let run = |max_dim| Run {
            rows: 64,
            train_mode: true,
            accumulate: false,
            max_dim,
        };
        // 64 images × 576 positions = 36,864 columns: 288 tiles of 128.
        let call = |max_dim| {
            conv_gemm(&win, p, 64, vec![], Buf::X, run(max_dim))
                .expect("lowers")
                .groups
        };
        assert_eq!(call(65_535), (288, 1, 1));
        let (gx, gy, gz) = call(100);
        assert!(gx <= 100 && gz <= 100 && gy == 1, "{gx} {gy} {gz}");
        assert!(gx * gz >= 288, "{gx} × {gz} tiles");
        // A grid that cannot hold them even so is an error, not a wrong result.
        assert!(conv_gemm(&win, p, 64, vec![], Buf::X, run(10)).is_err());
    }
}
