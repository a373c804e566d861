//! Convolution and pooling of images stored one per row (NCHW: channel by channel, each row
//! by row). The convolution is im2col and one gemm over the whole batch (`matmul`); its
//! gradients are the same products transposed, and col2im. Pooling is a direct loop. Both
//! run over the batch's samples in parallel. Written here rather than taken from a crate:
//! kernels are weft's own (the GPU executor has the same ops in WGSL), and they work on
//! the executor's row-per-sample buffers without copies into another tensor type.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use weft_planner::{ConvPart, PoolKind, Window};

use super::kernels::{ensure, flat, flat_mut};
use super::matmul::matmul;

/// `[B·P, c·kh·kw]`: row `b·P + p` holds the input cells output position `p` of sample `b`
/// reads (zeros for padding), in the weights' order (channel, kernel row, kernel column).
fn im2col(x: &[f32], rows: usize, win: &Window) -> Vec<f32> {
    let (p, k) = (win.positions(), win.patch());
    let image = win.input().numel();
    let mut cols = vec![0.0f32; rows * p * k];
    cols.par_chunks_mut((p * k).max(1))
        .zip(x.par_chunks(image.max(1)))
        .for_each(|(c, img)| {
            for (pos, row) in c.chunks_exact_mut(k.max(1)).enumerate() {
                let (oy, ox) = (pos / win.ow, pos % win.ow);
                for (idx, v) in row.iter_mut().enumerate() {
                    if let Some(at) = cell(win, oy, ox, idx) {
                        *v = img[at];
                    }
                }
            }
        });
    cols
}

/// The input cell (index within one image) that column `idx` of output position (oy, ox)
/// reads, or `None` in the padding.
#[inline]
fn cell(win: &Window, oy: usize, ox: usize, idx: usize) -> Option<usize> {
    let area = win.kh * win.kw;
    let (ci, r) = (idx / area, idx % area);
    let (i, j) = (r / win.kw, r % win.kw);
    let y = (oy * win.sh + i * win.dh).checked_sub(win.ph)?;
    let x = (ox * win.sw + j * win.dw).checked_sub(win.pw)?;
    (y < win.h && x < win.w).then(|| (ci * win.h + y) * win.w + x)
}

/// dy `[B, F·P]` as `[B·P, F]` (the layout of the gemm's output).
fn positions_by_filter(dy: &[f32], rows: usize, p: usize, f: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * p * f];
    t.par_chunks_mut((p * f).max(1))
        .zip(dy.par_chunks((p * f).max(1)))
        .for_each(|(t, d)| {
            for fi in 0..f {
                for pos in 0..p {
                    t[pos * f + fi] = d[fi * p + pos];
                }
            }
        });
    t
}

fn view(v: &[f32], r: usize, c: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((r, c), v).expect("sizes computed from the window")
}

/// `out = conv(x, w) + b`: inputs x `[B, c·h·w]`, w `[F, c·kh·kw]`, b `[1, F]` or none.
pub fn conv2d(
    x: &Array2<f32>,
    w: &Array2<f32>,
    b: Option<&Array2<f32>>,
    win: &Window,
    filters: usize,
    out: &mut Array2<f32>,
) {
    let (rows, p, k) = (x.nrows(), win.positions(), win.patch());
    let cols = im2col(flat(x), rows, win);
    let mut y = Array2::zeros((0, 0));
    matmul(view(&cols, rows * p, k), w.view(), false, true, &mut y);
    let y = flat(&y);
    ensure(out, rows, filters * p);
    let bias = b.map(flat);
    flat_mut(out)
        .par_chunks_mut((filters * p).max(1))
        .zip(y.par_chunks((p * filters).max(1)))
        .for_each(|(o, y)| {
            for fi in 0..filters {
                let add = bias.map_or(0.0, |b| b[fi]);
                for pos in 0..p {
                    o[fi * p + pos] = y[pos * filters + fi] + add;
                }
            }
        });
}

/// A gradient of [`conv2d`]: `Input` from (w, dy), `Weight` from (x, dy), `Bias` from (dy).
pub fn conv2d_grad(
    part: ConvPart,
    a: &Array2<f32>,
    dy: &Array2<f32>,
    win: &Window,
    filters: usize,
    out: &mut Array2<f32>,
) {
    let (rows, p, k) = (dy.nrows(), win.positions(), win.patch());
    match part {
        ConvPart::Bias => {
            ensure(out, 1, filters);
            let o = flat_mut(out);
            o.fill(0.0);
            for d in flat(dy).chunks_exact((filters * p).max(1)) {
                for (fi, v) in o.iter_mut().enumerate() {
                    *v += d[fi * p..(fi + 1) * p].iter().sum::<f32>();
                }
            }
        }
        ConvPart::Weight => {
            // dW = dyᵀ · cols, over every position of every sample.
            let cols = im2col(flat(a), rows, win);
            let t = positions_by_filter(flat(dy), rows, p, filters);
            matmul(
                view(&t, rows * p, filters),
                view(&cols, rows * p, k),
                true,
                false,
                out,
            );
        }
        ConvPart::Input => {
            // dcols = dy · W, then each column's value added back to the cell it read.
            let t = positions_by_filter(flat(dy), rows, p, filters);
            let mut dcols = Array2::zeros((0, 0));
            matmul(
                view(&t, rows * p, filters),
                a.view(),
                false,
                false,
                &mut dcols,
            );
            let dcols = flat(&dcols);
            let image = win.input().numel();
            ensure(out, rows, image);
            flat_mut(out)
                .par_chunks_mut(image.max(1))
                .zip(dcols.par_chunks((p * k).max(1)))
                .for_each(|(dx, dc)| {
                    dx.fill(0.0);
                    for (pos, row) in dc.chunks_exact(k.max(1)).enumerate() {
                        let (oy, ox) = (pos / win.ow, pos % win.ow);
                        for (idx, v) in row.iter().enumerate() {
                            if let Some(at) = cell(win, oy, ox, idx) {
                                dx[at] += v;
                            }
                        }
                    }
                });
        }
    }
}

/// The image cells of channel `ci`'s window at (oy, ox), as indices within one image.
fn window_cells(win: &Window, ci: usize, oy: usize, ox: usize) -> impl Iterator<Item = usize> + '_ {
    let y0 = (oy * win.sh) as isize - win.ph as isize;
    let x0 = (ox * win.sw) as isize - win.pw as isize;
    (0..win.kh).flat_map(move |i| {
        (0..win.kw).filter_map(move |j| {
            let (y, x) = (y0 + i as isize, x0 + j as isize);
            (y >= 0 && x >= 0 && (y as usize) < win.h && (x as usize) < win.w)
                .then(|| (ci * win.h + y as usize) * win.w + x as usize)
        })
    })
}

pub fn pool2d(kind: PoolKind, x: &Array2<f32>, win: &Window, out: &mut Array2<f32>) {
    let (rows, p) = (x.nrows(), win.positions());
    let image = win.input().numel();
    ensure(out, rows, win.c * p);
    flat_mut(out)
        .par_chunks_mut((win.c * p).max(1))
        .zip(flat(x).par_chunks(image.max(1)))
        .for_each(|(o, img)| {
            for ci in 0..win.c {
                for pos in 0..p {
                    let cells = window_cells(win, ci, pos / win.ow, pos % win.ow);
                    o[ci * p + pos] = match kind {
                        PoolKind::Max => cells.map(|at| img[at]).fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Avg => {
                            let (sum, n) =
                                cells.fold((0.0f32, 0u32), |(s, n), at| (s + img[at], n + 1));
                            sum / n.max(1) as f32
                        }
                    };
                }
            }
        });
}

/// dL/dx of [`pool2d`] (inputs x, dy).
pub fn pool2d_grad(
    kind: PoolKind,
    x: &Array2<f32>,
    dy: &Array2<f32>,
    win: &Window,
    out: &mut Array2<f32>,
) {
    let (rows, p) = (x.nrows(), win.positions());
    let image = win.input().numel();
    ensure(out, rows, image);
    flat_mut(out)
        .par_chunks_mut(image.max(1))
        .zip(flat(x).par_chunks(image.max(1)))
        .zip(flat(dy).par_chunks((win.c * p).max(1)))
        .for_each(|((dx, img), d)| {
            dx.fill(0.0);
            for ci in 0..win.c {
                for pos in 0..p {
                    let g = d[ci * p + pos];
                    let cells = window_cells(win, ci, pos / win.ow, pos % win.ow);
                    match kind {
                        PoolKind::Max => {
                            // The first of the window's largest cells, as the forward's max.
                            let mut best: Option<usize> = None;
                            for at in cells {
                                if best.is_none_or(|b| img[at] > img[b]) {
                                    best = Some(at);
                                }
                            }
                            if let Some(b) = best {
                                dx[b] += g;
                            }
                        }
                        PoolKind::Avg => {
                            let cells: Vec<usize> = cells.collect();
                            let share = g / cells.len().max(1) as f32;
                            for at in cells {
                                dx[at] += share;
                            }
                        }
                    }
                }
            }
        });
}
