//! CPU kernels for activations, normalisation and losses, over row-major 2-D arrays.
//!
//! Loops run over contiguous slices so LLVM vectorises them, at the widest width the CPU
//! has (`simd.rs` picks it at run time); the expensive op (matmul) is in `matmul.rs`.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use weft_dsl::Activation;
use weft_planner::{LossKind, NormAxis, NormPart};

use super::simd::widest;

/// Resizes `out` to `(r, c)` when needed (buffers are reused between steps).
pub fn ensure(out: &mut Array2<f32>, r: usize, c: usize) {
    if out.dim() != (r, c) {
        *out = Array2::zeros((r, c));
    }
}

/// Contiguous slice of a standard-layout array.
pub fn flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("executor arrays are standard layout")
}

pub fn flat_mut(a: &mut Array2<f32>) -> &mut [f32] {
    a.as_slice_mut()
        .expect("executor arrays are standard layout")
}

/// Tensors at least this large are processed on all threads, in chunks of whole rows.
const PAR_MIN: usize = 1 << 16;
const PAR_CHUNK: usize = 1 << 14;

/// Applies `f` to chunks of whole rows of `out` (and the matching rows of `ins`), in
/// parallel for large tensors. Row-local work only, so results do not depend on threads.
pub fn rows_apply<const N: usize>(
    cols: usize,
    ins: [&[f32]; N],
    out: &mut [f32],
    f: impl Fn([&[f32]; N], &mut [f32]) + Sync,
) {
    if out.len() < PAR_MIN || cols == 0 {
        widest(|| f(ins, out));
        return;
    }
    let chunk = (PAR_CHUNK / cols).max(1) * cols;
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let start = i * chunk;
        widest(|| f(ins.map(|a| &a[start..start + o.len()]), o));
    });
}

/// `out[i] = f(x[i])`, in parallel for large tensors.
fn map1(xs: &[f32], ys: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    rows_apply(1, [xs], ys, |[xs], ys| {
        for (y, &x) in ys.iter_mut().zip(xs) {
            *y = f(x);
        }
    });
}

/// `out[i] = dy[i] * f(x[i], y[i])`, in parallel for large tensors.
fn map_grad(
    xs: &[f32],
    ys: &[f32],
    ds: &[f32],
    os: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    rows_apply(1, [xs, ys, ds], os, |[xs, ys, ds], os| {
        for (((o, &x), &y), &d) in os.iter_mut().zip(xs).zip(ys).zip(ds) {
            *o = d * f(x, y);
        }
    });
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2/pi)

/// GELU, tanh approximation (as in GPT-2 and Keras `approximate=True`).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (GELU_C * (x + 0.044_715 * x * x * x)).tanh())
}

fn gelu_grad(x: f32) -> f32 {
    let u = GELU_C * (x + 0.044_715 * x * x * x);
    let t = u.tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044_715 * x * x)
}

/// Expands to `$apply!(f)` with the elementwise function `f` of activation `$a`, or to
/// SELU's λ and α (Klambauer et al. 2017), as Keras and PyTorch use them.
pub const SELU_SCALE: f32 = 1.050_701;
pub const SELU_ALPHA: f32 = 1.673_263_2;

/// `$softmax` for the row-wise softmax: the one place the activation formulas are written.
macro_rules! elementwise {
    ($a:expr, $apply:ident, $softmax:expr) => {
        match $a {
            Activation::Linear => $apply!(|x: f32| x),
            Activation::Sigmoid => $apply!(sigmoid),
            Activation::Tanh => $apply!(f32::tanh),
            Activation::Softplus => $apply!(|x: f32| x.max(0.0) + (-x.abs()).exp().ln_1p()),
            Activation::Relu => $apply!(|x: f32| x.max(0.0)),
            Activation::LeakyRelu { alpha } => {
                let al = alpha as f32;
                $apply!(|x: f32| if x > 0.0 { x } else { al * x })
            }
            Activation::Elu { alpha } => {
                let al = alpha as f32;
                $apply!(|x: f32| if x > 0.0 { x } else { al * x.exp_m1() })
            }
            Activation::Swish => $apply!(|x: f32| x * sigmoid(x)),
            Activation::Gelu => $apply!(gelu),
            Activation::Selu => {
                $apply!(|x: f32| if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp_m1()
                })
            }
            Activation::Softmax => $softmax,
        }
    };
}

/// An activation applied to `ys` in place (softmax over all of `ys`, as one row).
pub fn activation_in_place(a: Activation, ys: &mut [f32]) {
    macro_rules! map {
        ($f:expr) => {{
            let f = $f;
            ys.iter_mut().for_each(|y| *y = f(*y));
        }};
    }
    elementwise!(a, map, {
        let m = ys.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0;
        for y in ys.iter_mut() {
            *y = (*y - m).exp();
            s += *y;
        }
        ys.iter_mut().for_each(|y| *y /= s);
    })
}

pub fn activation(a: Activation, x: &Array2<f32>, out: &mut Array2<f32>) {
    ensure(out, x.nrows(), x.ncols());
    let c = x.ncols();
    let (xs, ys) = (flat(x), flat_mut(out));
    macro_rules! map {
        ($f:expr) => {
            map1(xs, ys, $f)
        };
    }
    elementwise!(
        a,
        map,
        rows_apply(c, [xs], ys, |[xs], ys| {
            for (xr, yr) in xs.chunks_exact(c).zip(ys.chunks_exact_mut(c)) {
                let m = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0.0;
                for (y, &x) in yr.iter_mut().zip(xr) {
                    *y = (x - m).exp();
                    s += *y;
                }
                let inv = 1.0 / s;
                yr.iter_mut().for_each(|y| *y *= inv);
            }
        })
    )
}

/// `out = x + bias`, the bias broadcast over rows.
pub fn bias_add(x: &Array2<f32>, bias: &Array2<f32>, out: &mut Array2<f32>) {
    let c = x.ncols();
    ensure(out, x.nrows(), c);
    let b = flat(bias);
    rows_apply(c, [flat(x)], flat_mut(out), |[xs], os| {
        for (orow, xrow) in os.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            for ((o, x), b) in orow.iter_mut().zip(xrow).zip(b) {
                *o = x + b;
            }
        }
    });
}

/// `out = act(x + bias)` in one pass (any elementwise activation).
pub fn bias_activation(a: Activation, x: &Array2<f32>, bias: &Array2<f32>, out: &mut Array2<f32>) {
    let c = x.ncols();
    ensure(out, x.nrows(), c);
    let b = flat(bias);
    macro_rules! fused {
        ($f:expr) => {
            rows_apply(c, [flat(x)], flat_mut(out), |[xs], os| {
                for (orow, xrow) in os.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                    for ((o, x), b) in orow.iter_mut().zip(xrow).zip(b) {
                        *o = $f(x + b);
                    }
                }
            })
        };
    }
    // Softmax is row-wise, not elementwise: two steps (the fusion pass never asks for it).
    elementwise!(a, fused, {
        let mut pre = Array2::zeros((0, 0));
        bias_add(x, bias, &mut pre);
        activation(a, &pre, out);
    })
}

/// `out = act(out + bias)` in place (a matmul's epilogue).
pub fn bias_activation_in_place(a: Activation, bias: &Array2<f32>, out: &mut Array2<f32>) {
    let c = out.ncols();
    let b = flat(bias);
    macro_rules! fused {
        ($f:expr) => {
            rows_apply(c, [], flat_mut(out), |[], os| {
                for orow in os.chunks_exact_mut(c) {
                    for (o, b) in orow.iter_mut().zip(b) {
                        *o = $f(*o + b);
                    }
                }
            })
        };
    }
    elementwise!(a, fused, {
        let pre = out.clone();
        bias_activation(a, &pre, bias, out);
    })
}

/// dx from x, y = act(x) and dy.
pub fn activation_grad(
    a: Activation,
    x: &Array2<f32>,
    y: &Array2<f32>,
    dy: &Array2<f32>,
    out: &mut Array2<f32>,
) {
    ensure(out, x.nrows(), x.ncols());
    let (xs, ys, ds, os) = (flat(x), flat(y), flat(dy), flat_mut(out));
    macro_rules! map {
        ($f:expr) => {
            map_grad(xs, ys, ds, os, $f)
        };
    }
    match a {
        Activation::Linear => os.copy_from_slice(ds),
        Activation::Sigmoid => map!(|_x, y: f32| y * (1.0 - y)),
        Activation::Tanh => map!(|_x, y: f32| 1.0 - y * y),
        Activation::Softplus => map!(|x: f32, _y| sigmoid(x)),
        Activation::Relu => map!(|x: f32, _y| if x > 0.0 { 1.0 } else { 0.0 }),
        Activation::LeakyRelu { alpha } => {
            let al = alpha as f32;
            map!(|x: f32, _y| if x > 0.0 { 1.0 } else { al })
        }
        Activation::Elu { alpha } => {
            let al = alpha as f32;
            map!(|x: f32, y: f32| if x > 0.0 { 1.0 } else { y + al })
        }
        Activation::Swish => map!(|x: f32, _y| {
            let s = sigmoid(x);
            s + x * s * (1.0 - s)
        }),
        Activation::Gelu => map!(|x: f32, _y| gelu_grad(x)),
        Activation::Selu => {
            map!(|x: f32, y: f32| if x > 0.0 {
                SELU_SCALE
            } else {
                y + SELU_SCALE * SELU_ALPHA
            })
        }
        Activation::Softmax => rows_apply(x.ncols(), [ys, ds], os, |[ys, ds], os| {
            let c = x.ncols();
            for ((yr, dr), or) in ys
                .chunks_exact(c)
                .zip(ds.chunks_exact(c))
                .zip(os.chunks_exact_mut(c))
            {
                let dot: f32 = yr.iter().zip(dr).map(|(y, d)| y * d).sum();
                for ((o, y), d) in or.iter_mut().zip(yr).zip(dr) {
                    *o = y * (d - dot);
                }
            }
        }),
    }
}

/// Per-normalisation-group mean and 1/std: per column (batch norm), per row (layer norm)
/// or per channel (batch norm of an image), two passes for accuracy.
pub fn norm_stats(axis: NormAxis, x: ArrayView2<f32>, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let (r, c) = x.dim();
    let groups = axis.groups(r, c);
    let n = axis.count(r, c).max(1) as f32;
    let each = |f: &mut dyn FnMut(usize, f32)| {
        for (i, row) in x.outer_iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                f(axis.group(i, j), *v);
            }
        }
    };
    let mut mean = vec![0.0f32; groups];
    each(&mut |g, v| mean[g] += v);
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f32; groups];
    each(&mut |g, v| var[g] += (v - mean[g]) * (v - mean[g]));
    let inv = var.iter().map(|v| 1.0 / (v / n + eps).sqrt()).collect();
    (mean, inv)
}

/// `gamma * (x - mean) * inv + beta` with per-group statistics.
pub fn norm_apply(
    axis: NormAxis,
    x: &Array2<f32>,
    mean: &[f32],
    inv: &[f32],
    gamma: &Array2<f32>,
    beta: &Array2<f32>,
    out: &mut Array2<f32>,
) {
    ensure(out, x.nrows(), x.ncols());
    let c = x.ncols();
    let (g, b) = (flat(gamma), flat(beta));
    for (i, (xr, or)) in flat(x)
        .chunks_exact(c)
        .zip(flat_mut(out).chunks_exact_mut(c))
        .enumerate()
    {
        for j in 0..c {
            let (k, p) = (axis.group(i, j), axis.param(j));
            or[j] = g[p] * (xr[j] - mean[k]) * inv[k] + b[p];
        }
    }
}

/// Gradient of a normalisation in training mode (statistics recomputed from x).
pub fn norm_grad(
    axis: NormAxis,
    part: NormPart,
    eps: f32,
    x: &Array2<f32>,
    gamma: &Array2<f32>,
    dy: &Array2<f32>,
    out: &mut Array2<f32>,
) {
    let (r, c) = x.dim();
    let (mean, inv) = norm_stats(axis, x.view(), eps);
    let xhat = |i: usize, j: usize| {
        let k = axis.group(i, j);
        (x[[i, j]] - mean[k]) * inv[k]
    };
    match part {
        NormPart::Gamma | NormPart::Beta => {
            ensure(out, 1, axis.params(c));
            let o = flat_mut(out);
            o.fill(0.0);
            for i in 0..r {
                for j in 0..c {
                    let h = if part == NormPart::Gamma {
                        xhat(i, j)
                    } else {
                        1.0
                    };
                    o[axis.param(j)] += dy[[i, j]] * h;
                }
            }
        }
        NormPart::Input => {
            ensure(out, r, c);
            let g = flat(gamma);
            let groups = mean.len();
            let (mut s1, mut s2) = (vec![0.0f32; groups], vec![0.0f32; groups]);
            for i in 0..r {
                for j in 0..c {
                    let k = axis.group(i, j);
                    let dxh = dy[[i, j]] * g[axis.param(j)];
                    s1[k] += dxh;
                    s2[k] += dxh * xhat(i, j);
                }
            }
            let n = axis.count(r, c) as f32;
            for i in 0..r {
                for j in 0..c {
                    let k = axis.group(i, j);
                    let dxh = dy[[i, j]] * g[axis.param(j)];
                    out[[i, j]] = inv[k] / n * (n * dxh - s1[k] - xhat(i, j) * s2[k]);
                }
            }
        }
    }
}

/// How a loss weighs its rows: by their class (`train.class_weight`) and by their own
/// weight (`data.weight_column`); each row's loss is multiplied by both, the mean stays over
/// rows (as Keras).
#[derive(Debug, Clone, Copy, Default)]
pub struct LossWeights<'a> {
    pub class: Option<&'a [f32]>,
    pub rows: Option<&'a [f32]>,
}

impl LossWeights<'_> {
    /// The weight of row `i` with label `label`.
    fn of(&self, i: usize, label: f32) -> f32 {
        let class = self
            .class
            .and_then(|w| w.get(label as usize))
            .copied()
            .unwrap_or(1.0);
        self.row(i) * class
    }

    /// Row `i`'s own weight.
    fn row(&self, i: usize) -> f32 {
        self.rows.and_then(|w| w.get(i)).copied().unwrap_or(1.0)
    }
}

/// Mean loss over rows. `target` holds class indices ([B,1]) or values ([B,k]); `w` weighs
/// the rows.
pub fn loss(kind: LossKind, pred: &Array2<f32>, target: &Array2<f32>, w: LossWeights) -> f32 {
    let (r, c) = pred.dim();
    if r == 0 {
        return 0.0;
    }
    let p = flat(pred);
    let t = flat(target);
    let weight = |i: usize, label: f32| f64::from(w.of(i, label));
    let total: f64 = match kind {
        LossKind::SoftmaxCrossEntropy => p
            .chunks_exact(c)
            .zip(t)
            .enumerate()
            .map(|(i, (row, &label))| {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
                f64::from(lse - row[label as usize]) * weight(i, label)
            })
            .sum(),
        LossKind::SigmoidBinaryCrossEntropy => p
            .iter()
            .zip(t)
            .enumerate()
            .map(|(k, (&z, &y))| {
                f64::from(z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()) * weight(k / c.max(1), y)
            })
            .sum(),
        LossKind::Mse { one_hot } => p
            .chunks_exact(c)
            .enumerate()
            .map(|(i, row)| {
                let e = row
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let y = target_at(one_hot, t, c, i, j);
                        f64::from((v - y) * (v - y))
                    })
                    .sum::<f64>();
                if one_hot {
                    e * weight(i, t[i])
                } else {
                    e * f64::from(w.row(i))
                }
            })
            .sum(),
    };
    (total / r as f64) as f32
}

fn target_at(one_hot: bool, t: &[f32], c: usize, i: usize, j: usize) -> f32 {
    if one_hot {
        f32::from(t[i] as usize == j)
    } else {
        t[i * c + j]
    }
}

/// d(mean loss)/d(pred) (weighted as [`loss`] is).
pub fn loss_grad(
    kind: LossKind,
    pred: &Array2<f32>,
    target: &Array2<f32>,
    w: LossWeights,
    out: &mut Array2<f32>,
) {
    let (r, c) = pred.dim();
    ensure(out, r, c);
    let scale = 1.0 / r.max(1) as f32;
    let (p, t, o) = (flat(pred), flat(target), flat_mut(out));
    match kind {
        LossKind::SoftmaxCrossEntropy => {
            for (i, ((row, orow), &label)) in p
                .chunks_exact(c)
                .zip(o.chunks_exact_mut(c))
                .zip(t)
                .enumerate()
            {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
                let k = scale * w.of(i, label);
                for j in 0..c {
                    orow[j] = ((row[j] - m).exp() / s - f32::from(label as usize == j)) * k;
                }
            }
        }
        LossKind::SigmoidBinaryCrossEntropy => {
            for i in 0..o.len() {
                o[i] = (sigmoid(p[i]) - t[i]) * scale * w.of(i / c.max(1), t[i]);
            }
        }
        LossKind::Mse { one_hot } => {
            for i in 0..r {
                let k = if one_hot {
                    scale * w.of(i, t[i])
                } else {
                    scale * w.row(i)
                };
                for j in 0..c {
                    o[i * c + j] = 2.0 * (p[i * c + j] - target_at(one_hot, t, c, i, j)) * k;
                }
            }
        }
    }
}

/// The row of an embedding table an id (stored as f32) names, if it is one.
fn embedding_row(id: f32, vocab: usize) -> Option<usize> {
    (id >= 0.0 && id.fract() == 0.0 && (id as usize) < vocab).then_some(id as usize)
}

/// `out[r] = table[ids[r]]` (zeros for an id outside the table).
pub fn embedding(ids: &Array2<f32>, table: &Array2<f32>, out: &mut Array2<f32>) {
    let (rows, (vocab, dim)) = (ids.nrows(), table.dim());
    ensure(out, rows, dim);
    let (t, o) = (flat(table), flat_mut(out));
    for (r, orow) in o.chunks_exact_mut(dim.max(1)).enumerate().take(rows) {
        match embedding_row(ids[[r, 0]], vocab) {
            Some(k) => orow.copy_from_slice(&t[k * dim..(k + 1) * dim]),
            None => orow.fill(0.0),
        }
    }
}

/// The table's gradient: `out[ids[r]] += dy[r]` over a cleared `[vocab, dim]`.
pub fn embedding_grad(ids: &Array2<f32>, dy: &Array2<f32>, vocab: usize, out: &mut Array2<f32>) {
    let dim = dy.ncols();
    ensure(out, vocab, dim);
    let (g, o) = (flat(dy), flat_mut(out));
    o.fill(0.0);
    for r in 0..dy.nrows() {
        if let Some(k) = embedding_row(ids[[r, 0]], vocab) {
            for (a, b) in o[k * dim..(k + 1) * dim]
                .iter_mut()
                .zip(&g[r * dim..(r + 1) * dim])
            {
                *a += b;
            }
        }
    }
}
