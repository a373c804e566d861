//! Convolution and pooling of images stored one per row (NCHW: channel by channel, each row
//! by row). The convolution is im2col and one gemm over the whole batch (`matmul`): the
//! columns are laid out `[c·kh·kw, B·P]` (a row per kernel cell, a column per output
//! position of every sample), so im2col copies runs of a row at stride 1, the forward's
//! output comes out as `[F, B·P]` (each sample's map a contiguous run per filter), and the
//! weights' gradient is one gemm with the whole batch as its inner dimension. Pooling is a
//! direct loop. Written here rather than taken from a crate: kernels are weft's own (the
//! GPU executor has the same ops in WGSL), and they work on the executor's row-per-sample
//! buffers without copies into another tensor type.

use std::cell::RefCell;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use weft_planner::{ConvPart, PoolKind, Window};

use super::kernels::{ensure, flat, flat_mut};
use super::matmul::matmul;

thread_local! {
    /// The columns and the `[F, B·P]` maps, kept between calls: their allocations are
    /// reused (sizes repeat every step), so the steady state neither allocates nor faults
    /// in fresh pages.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// For kernel row `i` (or column), the output positions `o` in `0..out` whose input
/// `o·s + i·d − p` lies in `0..len`: the range `[lo, hi)`.
fn valid(out: usize, s: usize, off: isize, len: usize) -> (usize, usize) {
    // o·s + off >= 0  and  o·s + off < len.
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(s)
    };
    let hi = if (len as isize) <= off {
        0
    } else {
        ((len as isize - off) as usize).div_ceil(s)
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// Fills `cols` (`[c·kh·kw, rows·P]`) from the batch `x`.
fn im2col(x: &[f32], rows: usize, win: &Window, cols: &mut Vec<f32>) {
    let (p, k) = (win.positions(), win.patch());
    let image = win.input().numel();
    cols.resize(k * rows * p, 0.0);
    let area = win.kh * win.kw;
    cols.par_chunks_mut((rows * p).max(1))
        .enumerate()
        .for_each(|(idx, row)| {
            let (ci, i, j) = (idx / area, (idx % area) / win.kw, idx % win.kw);
            let offy = (i * win.dh) as isize - win.ph as isize;
            let offx = (j * win.dw) as isize - win.pw as isize;
            let (ylo, yhi) = valid(win.oh, win.sh, offy, win.h);
            let (xlo, xhi) = valid(win.ow, win.sw, offx, win.w);
            for b in 0..rows {
                let plane = &x[b * image + ci * win.h * win.w..][..win.h * win.w];
                let dst = &mut row[b * p..(b + 1) * p];
                for oy in 0..win.oh {
                    let d = &mut dst[oy * win.ow..(oy + 1) * win.ow];
                    if oy < ylo || oy >= yhi {
                        d.fill(0.0);
                        continue;
                    }
                    let y = (oy * win.sh) as isize + offy;
                    let src = &plane[y as usize * win.w..][..win.w];
                    d[..xlo].fill(0.0);
                    d[xhi..].fill(0.0);
                    let x0 = (xlo * win.sw) as isize + offx;
                    if win.sw == 1 {
                        d[xlo..xhi].copy_from_slice(&src[x0 as usize..x0 as usize + (xhi - xlo)]);
                    } else {
                        for (n, v) in d[xlo..xhi].iter_mut().enumerate() {
                            *v = src[x0 as usize + n * win.sw];
                        }
                    }
                }
            }
        });
}

/// Adds `dcols` (`[c·kh·kw, rows·P]`) back into the cells they were read from: `dx`
/// (`[rows, c·h·w]`, overwritten).
fn col2im(dcols: &[f32], rows: usize, win: &Window, dx: &mut [f32]) {
    let (p, k) = (win.positions(), win.patch());
    let image = win.input().numel();
    let area = win.kh * win.kw;
    dx.par_chunks_mut(image.max(1))
        .enumerate()
        .for_each(|(b, img)| {
            img.fill(0.0);
            for idx in 0..k {
                let (ci, i, j) = (idx / area, (idx % area) / win.kw, idx % win.kw);
                let offy = (i * win.dh) as isize - win.ph as isize;
                let offx = (j * win.dw) as isize - win.pw as isize;
                let (ylo, yhi) = valid(win.oh, win.sh, offy, win.h);
                let (xlo, xhi) = valid(win.ow, win.sw, offx, win.w);
                let src = &dcols[idx * rows * p + b * p..][..p];
                let plane = &mut img[ci * win.h * win.w..][..win.h * win.w];
                for oy in ylo..yhi {
                    let y = ((oy * win.sh) as isize + offy) as usize;
                    let s = &src[oy * win.ow..(oy + 1) * win.ow];
                    let x0 = ((xlo * win.sw) as isize + offx) as usize;
                    let row = &mut plane[y * win.w..(y + 1) * win.w];
                    for (n, v) in s[xlo..xhi].iter().enumerate() {
                        row[x0 + n * win.sw] += v;
                    }
                }
            }
        });
}

fn view(v: &[f32], r: usize, c: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((r, c), v).expect("sizes computed from the window")
}

/// `[rows, F·P]` (a sample per row) as `[F, rows·P]` (a filter per row): runs of P values.
fn by_filter(src: &[f32], rows: usize, f: usize, p: usize, dst: &mut [f32]) {
    dst.par_chunks_mut((rows * p).max(1))
        .enumerate()
        .for_each(|(fi, d)| {
            for b in 0..rows {
                d[b * p..(b + 1) * p].copy_from_slice(&src[(b * f + fi) * p..][..p]);
            }
        });
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
    SCRATCH.with_borrow_mut(|(cols, maps, _)| {
        im2col(flat(x), rows, win, cols);
        let mut m = as_array(maps, filters, rows * p);
        matmul(w.view(), view(cols, k, rows * p), false, false, &mut m);
        *maps = m.into_raw_vec_and_offset().0;
        ensure(out, rows, filters * p);
        let bias = b.map(flat);
        flat_mut(out)
            .par_chunks_mut((filters * p).max(1))
            .enumerate()
            .for_each(|(r, o)| {
                for fi in 0..filters {
                    let add = bias.map_or(0.0, |b| b[fi]);
                    let src = &maps[fi * rows * p + r * p..][..p];
                    for (d, s) in o[fi * p..(fi + 1) * p].iter_mut().zip(src) {
                        *d = s + add;
                    }
                }
            });
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
        ConvPart::Weight => SCRATCH.with_borrow_mut(|(cols, _, dmaps)| {
            // dW = dy [F, B·P] · colsᵀ [B·P, K]: the batch is the gemm's inner dimension.
            im2col(flat(a), rows, win, cols);
            dmaps.resize(filters * rows * p, 0.0);
            by_filter(flat(dy), rows, filters, p, dmaps);
            matmul(
                view(dmaps, filters, rows * p),
                view(cols, k, rows * p),
                false,
                true,
                out,
            );
        }),
        ConvPart::Input => SCRATCH.with_borrow_mut(|(cols, _, dmaps)| {
            // dcols = Wᵀ [K, F] · dy [F, B·P], then each value back to the cell it read.
            dmaps.resize(filters * rows * p, 0.0);
            by_filter(flat(dy), rows, filters, p, dmaps);
            let mut dcols = as_array(cols, k, rows * p);
            matmul(
                a.view(),
                view(dmaps, filters, rows * p),
                true,
                false,
                &mut dcols,
            );
            ensure(out, rows, win.input().numel());
            col2im(flat(&dcols), rows, win, flat_mut(out));
            *cols = dcols.into_raw_vec_and_offset().0;
        }),
    }
}

/// The scratch vector as an array of `r × c` (its allocation reused for a gemm's output;
/// give it back with `into_raw_vec_and_offset`).
fn as_array(v: &mut Vec<f32>, r: usize, c: usize) -> Array2<f32> {
    let mut buf = std::mem::take(v);
    buf.resize(r * c, 0.0);
    Array2::from_shape_vec((r, c), buf).expect("sized above")
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
                let plane = &img[ci * win.h * win.w..][..win.h * win.w];
                for oy in 0..win.oh {
                    let (y0, y1) = span(oy, win.sh, win.ph, win.kh, win.h);
                    for ox in 0..win.ow {
                        let (x0, x1) = span(ox, win.sw, win.pw, win.kw, win.w);
                        let mut acc = match kind {
                            PoolKind::Max => f32::NEG_INFINITY,
                            PoolKind::Avg => 0.0,
                        };
                        for y in y0..y1 {
                            for v in &plane[y * win.w + x0..y * win.w + x1] {
                                acc = match kind {
                                    PoolKind::Max => acc.max(*v),
                                    PoolKind::Avg => acc + v,
                                };
                            }
                        }
                        if kind == PoolKind::Avg {
                            acc /= ((y1 - y0) * (x1 - x0)).max(1) as f32;
                        }
                        o[(ci * win.oh + oy) * win.ow + ox] = acc;
                    }
                }
            }
        });
}

/// The image rows (or columns) `[start, end)` of window `o`: its cells less the padding.
#[inline]
fn span(o: usize, s: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * s).saturating_sub(pad);
    let end = (o * s + k).saturating_sub(pad).min(len);
    (start.min(end), end)
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
                let base = ci * win.h * win.w;
                for oy in 0..win.oh {
                    let (y0, y1) = span(oy, win.sh, win.ph, win.kh, win.h);
                    for ox in 0..win.ow {
                        let (x0, x1) = span(ox, win.sw, win.pw, win.kw, win.w);
                        let g = d[(ci * win.oh + oy) * win.ow + ox];
                        match kind {
                            PoolKind::Max => {
                                // The first of the window's largest cells, as the forward's max.
                                let mut best = usize::MAX;
                                for y in y0..y1 {
                                    for xx in x0..x1 {
                                        let at = base + y * win.w + xx;
                                        if best == usize::MAX || img[at] > img[best] {
                                            best = at;
                                        }
                                    }
                                }
                                if best != usize::MAX {
                                    dx[best] += g;
                                }
                            }
                            PoolKind::Avg => {
                                let share = g / ((y1 - y0) * (x1 - x0)).max(1) as f32;
                                for y in y0..y1 {
                                    for v in &mut dx[base + y * win.w + x0..base + y * win.w + x1] {
                                        *v += share;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
}
