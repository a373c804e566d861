//! Convolution and pooling of images stored one per row (NCHW: channel by channel, each row
//! by row). The convolution is im2col and a gemm per sample, the samples spread over the
//! cores (Caffe's scheme): one sample's columns `[c·kh·kw, P]` (a row per kernel cell, a
//! column per output position) stay in the cache, and `W [F, K] · cols [K, P]` is the
//! sample's `[F, P]` output in place, NCHW, with no reordering. The weights' gradient sums
//! `dy_b [F, P] · cols_bᵀ` over each of a fixed number of runs of samples, then over the
//! runs in order (the same bits on any number of threads); the input's
//! gradient is `Wᵀ · dy_b` put back by col2im. A 1×1 convolution of stride 1 reads the
//! image as its own columns. Pooling is a direct loop. Written here rather than taken from
//! a crate: kernels are weft's own (the GPU executor has the same ops in WGSL), and they
//! work on the executor's row-per-sample buffers without copies into another tensor type.

use std::cell::RefCell;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use weft_dsl::Activation;
use weft_planner::cost::CONV_WEIGHT_GRAD_PARTS;
use weft_planner::{ConvPart, PoolKind, Window};

use super::kernels::{activation_in_place, ensure, flat, flat_mut};
use super::matmul::matmul_into;

thread_local! {
    /// One sample's columns (or their gradient), kept between calls: sizes repeat every
    /// step, so the steady state neither allocates nor faults in fresh pages.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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

/// Kernel cell `idx`'s (channel, input-row offset, input-column offset).
fn cell(win: &Window, idx: usize) -> (usize, isize, isize) {
    let area = win.kh * win.kw;
    let (ci, i, j) = (idx / area, (idx % area) / win.kw, idx % win.kw);
    (
        ci,
        (i * win.dh) as isize - win.ph as isize,
        (j * win.dw) as isize - win.pw as isize,
    )
}

/// Fills `cols` (`[c·kh·kw, P]`) from one image.
fn im2col(img: &[f32], win: &Window, cols: &mut [f32]) {
    let p = win.positions();
    for (idx, dst) in cols.chunks_exact_mut(p.max(1)).enumerate() {
        let (ci, offy, offx) = cell(win, idx);
        let plane = &img[ci * win.h * win.w..][..win.h * win.w];
        let (ylo, yhi) = valid(win.oh, win.sh, offy, win.h);
        let (xlo, xhi) = valid(win.ow, win.sw, offx, win.w);
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
}

/// Adds one sample's `dcols` (`[c·kh·kw, P]`) back into the cells they were read from:
/// `dx` (`[c·h·w]`, overwritten).
fn col2im(dcols: &[f32], win: &Window, dx: &mut [f32]) {
    let p = win.positions();
    dx.fill(0.0);
    for (idx, src) in dcols.chunks_exact(p.max(1)).enumerate() {
        let (ci, offy, offx) = cell(win, idx);
        let (ylo, yhi) = valid(win.oh, win.sh, offy, win.h);
        let (xlo, xhi) = valid(win.ow, win.sw, offx, win.w);
        let plane = &mut dx[ci * win.h * win.w..][..win.h * win.w];
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
}

fn view(v: &[f32], r: usize, c: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((r, c), v).expect("sizes computed from the window")
}

fn view_mut(v: &mut [f32], r: usize, c: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((r, c), v).expect("sizes computed from the window")
}

/// Runs `f` with one image's columns (`[K, P]`): the image itself for a pointwise
/// convolution, else the thread's scratch filled by im2col.
fn with_cols<R>(img: &[f32], win: &Window, f: impl FnOnce(&[f32]) -> R) -> R {
    if win.pointwise() {
        return f(img);
    }
    COLS.with_borrow_mut(|cols| {
        cols.resize(win.patch() * win.positions(), 0.0);
        im2col(img, win, cols);
        f(cols)
    })
}

/// `out = act(conv(x, w) + b)`: inputs x `[B, c·h·w]`, w `[F, c·kh·kw]`, b `[1, F]` or
/// none; the bias and the (fused) activation are applied while the sample's maps are in
/// the cache.
pub fn conv2d(
    x: &Array2<f32>,
    w: &Array2<f32>,
    b: Option<&Array2<f32>>,
    win: &Window,
    (filters, act): (usize, Option<Activation>),
    out: &mut Array2<f32>,
) {
    let (rows, p, k) = (x.nrows(), win.positions(), win.patch());
    let image = win.input().numel();
    ensure(out, rows, filters * p);
    let bias = b.map(flat);
    flat_mut(out)
        .par_chunks_mut((filters * p).max(1))
        .zip(flat(x).par_chunks(image.max(1)))
        .for_each(|(o, img)| {
            with_cols(img, win, |cols| {
                matmul_into(
                    w.view(),
                    view(cols, k, p),
                    false,
                    false,
                    view_mut(o, filters, p),
                    false,
                    1,
                );
            });
            if let Some(bias) = bias {
                for (map, add) in o.chunks_exact_mut(p.max(1)).zip(bias) {
                    map.iter_mut().for_each(|v| *v += add);
                }
            }
            if let Some(a) = act {
                activation_in_place(a, o);
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
    let image = win.input().numel();
    let per = (filters * p).max(1);
    match part {
        ConvPart::Bias => {
            ensure(out, 1, filters);
            let o = flat_mut(out);
            o.fill(0.0);
            for d in flat(dy).chunks_exact(per) {
                for (fi, v) in o.iter_mut().enumerate() {
                    *v += d[fi * p..(fi + 1) * p].iter().sum::<f32>();
                }
            }
        }
        ConvPart::Weight => {
            // dy_b [F, P] · cols_bᵀ [P, K] summed over each of a fixed number of runs of
            // samples in parallel, then the runs in order: the same bits on any number of
            // threads.
            let chunk = rows.div_ceil(CONV_WEIGHT_GRAD_PARTS).max(1);
            let sums: Vec<Array2<f32>> = flat(a)
                .par_chunks((image * chunk).max(1))
                .zip(flat(dy).par_chunks(per * chunk))
                .map(|(xs, ds)| {
                    let mut acc = Array2::<f32>::zeros((filters, k));
                    for (img, d) in xs.chunks_exact(image.max(1)).zip(ds.chunks_exact(per)) {
                        with_cols(img, win, |cols| {
                            matmul_into(
                                view(d, filters, p),
                                view(cols, k, p),
                                false,
                                true,
                                acc.view_mut(),
                                true,
                                1,
                            );
                        });
                    }
                    acc
                })
                .collect();
            ensure(out, filters, k);
            out.fill(0.0);
            for s in &sums {
                *out += s;
            }
        }
        ConvPart::Input => {
            // dcols_b = Wᵀ [K, F] · dy_b [F, P], then each value back to the cell it read.
            ensure(out, rows, image);
            flat_mut(out)
                .par_chunks_mut(image.max(1))
                .zip(flat(dy).par_chunks(per))
                .for_each(|(dx, d)| {
                    let (wt, dyv) = (a.view(), view(d, filters, p));
                    if win.pointwise() {
                        matmul_into(wt, dyv, true, false, view_mut(dx, k, p), false, 1);
                        return;
                    }
                    COLS.with_borrow_mut(|dcols| {
                        dcols.resize(k * p, 0.0);
                        matmul_into(wt, dyv, true, false, view_mut(dcols, k, p), false, 1);
                        col2im(dcols, win, dx);
                    });
                });
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The weights' gradient has the same bits on 1, 2 and 3 threads (a run resumed on
    /// another machine stays exact).
    #[test]
    fn the_weight_gradient_does_not_depend_on_the_thread_count() {
        let win = Window {
            c: 2,
            h: 9,
            w: 9,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: 1,
            pw: 1,
            dh: 1,
            dw: 1,
            oh: 9,
            ow: 9,
        };
        let (rows, filters) = (37, 4);
        // Values of many magnitudes, so a different order of the sums changes the bits.
        let val = |i: usize| ((i * 7919 % 1013) as f32 - 500.0) * 10f32.powi((i % 7) as i32 - 3);
        let x = Array2::from_shape_fn((rows, 2 * 81), |(r, c)| val(r * 1000 + c));
        let dy = Array2::from_shape_fn((rows, filters * 81), |(r, c)| val(r * 991 + c + 5));
        let grad = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut out = Array2::zeros((0, 0));
            pool.install(|| conv2d_grad(ConvPart::Weight, &x, &dy, &win, filters, &mut out));
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let one = grad(1);
        assert_eq!(one, grad(2));
        assert_eq!(one, grad(3));
    }
}
