//! Convolution and pooling: forward values against a direct f64 loop over the definition,
//! and every gradient against finite differences (`grad::check`), through shapes that
//! exercise stride, padding (`same`, cells), dilation, several channels and filters,
//! overlapping pooling windows, a residual `add` of two convolutions and a channel concat.

use ndarray::{Array2, Axis};

use crate::grad::{check, TRAIN_CE};
use crate::support::{
    assert_all_close, classes, inputs, ok, param_index, plan_image, set_named, to64,
};
use crate::tol::FORWARD;
use crate::Ctor;

/// One image `[c, h, w]` in NCHW order, in f64.
struct Img<'a> {
    v: &'a [f64],
    h: usize,
    w: usize,
}

impl Img<'_> {
    /// The value at (ci, y, x) with y, x possibly in the padding (0 there).
    fn at(&self, ci: usize, y: isize, x: isize) -> Option<f64> {
        (y >= 0 && x >= 0 && (y as usize) < self.h && (x as usize) < self.w)
            .then(|| self.v[(ci * self.h + y as usize) * self.w + x as usize])
    }
}

/// The definition: out[f, oy, ox] = b[f] + Σ x[ci, oy·s − p + i·d, ox·s − p + j·d] · w[f, ci, i, j].
#[allow(clippy::too_many_arguments)]
fn conv_reference(
    x: &Array2<f64>,
    (c, h, w): (usize, usize, usize),
    weight: &Array2<f64>,
    bias: &Array2<f64>,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    (dh, dw): (usize, usize),
    (oh, ow): (usize, usize),
) -> Array2<f64> {
    let f = weight.nrows();
    let mut out = Array2::zeros((x.nrows(), f * oh * ow));
    for (r, row) in x.axis_iter(Axis(0)).enumerate() {
        let v = row.to_vec();
        let img = Img { v: &v, h, w };
        for fi in 0..f {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias[[0, fi]];
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let y = (oy * sh + i * dh) as isize - ph as isize;
                                let xx = (ox * sw + j * dw) as isize - pw as isize;
                                if let Some(val) = img.at(ci, y, xx) {
                                    acc += val * weight[[fi, (ci * kh + i) * kw + j]];
                                }
                            }
                        }
                    }
                    out[[r, (fi * oh + oy) * ow + ox]] = acc;
                }
            }
        }
    }
    out
}

/// A convolution's shape for `forward_through_head`.
struct ConvCase<'a> {
    model: &'a str,
    image: (usize, usize, usize),
    filters: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    out: (usize, usize),
    rows: usize,
    act: fn(f64) -> f64,
}

/// Checks `predict` of a model whose only layers are the convolution, a `flatten` and a
/// bias-free dense head of 3 units selecting conv outputs (`head`: (output index, logit) pairs, at
/// most one per logit; a logit with none stays 0, so the softmax gives each selected value,
/// not only their gaps) against the definition.
fn forward_through_head(ctor: Ctor, case: &ConvCase, head: &[(usize, usize)], what: &str) {
    let (c, h, w) = case.image;
    let (oh, ow) = case.out;
    let (f, (kh, kw)) = (case.filters, case.kernel);
    // The model's head has 3 units.
    let logits = 3;
    let p = plan_image(case.model, TRAIN_CE, (c, h, w), classes(logits));
    let x = inputs(case.rows, c * h * w, 3);
    let mut exec = ctor(&p);
    let wt = inputs(f, c * kh * kw, 4);
    let b = inputs(1, f, 5);
    let mut sel = Array2::<f32>::zeros((f * oh * ow, logits));
    for &(at, logit) in head {
        sel[[at, logit]] = 1.0;
    }
    set_named(
        exec.as_mut(),
        &p,
        &[
            ("conv2d_0.weight", wt.clone()),
            ("conv2d_0.bias", b.clone()),
            ("dense_2.weight", sel.clone()),
        ],
    );
    let conv = conv_reference(
        &to64(&x),
        (c, h, w),
        &to64(&wt),
        &to64(&b),
        case.kernel,
        case.stride,
        case.pad,
        case.dil,
        case.out,
    )
    .mapv(case.act);
    let want = crate::support::softmax_rows(&conv.dot(&to64(&sel)));
    let got = ok(exec.predict(x.view()));
    assert_all_close(what, &got, &want, FORWARD);
}

/// A convolution's forward values with stride, cell padding, dilation, 2 channels and 3
/// filters, read through a head that selects two of its outputs.
pub fn conv2d_forward(ctor: Ctor) {
    // oh = (6 + 2 − 3) / 2 + 1 = 3; ow = (5 + 2 − 3) / 1 + 1 = 5 (dilated kernel width 3).
    let case = ConvCase {
        model: "[{conv2d: {filters: 3, kernel: [3, 2], stride: [2, 1], padding: 1, dilation: [1, 2]}}, {flatten: {}}, {dense: {units: 3, use_bias: false}}]",
        image: (2, 6, 5),
        filters: 3,
        kernel: (3, 2),
        stride: (2, 1),
        pad: (1, 1),
        dil: (1, 2),
        out: (3, 5),
        rows: 4,
        act: |v| v,
    };
    forward_through_head(ctor, &case, &[(0, 0), (15 + 7, 1)], "conv2d");
}

/// A convolution larger than one GEMM tile on every axis (70 filters, 5 images of 4×4
/// positions, 27 kernel cells: the GPU's implicit GEMM spans two tiles of M and N and two
/// K steps), with its fused tanh: the first filter of the first position and the last
/// filter's last position.
pub fn conv2d_forward_over_tiles(ctor: Ctor) {
    let case = ConvCase {
        model: "[{conv2d: {filters: 70, kernel: 3, padding: same, activation: tanh}}, {flatten: {}}, {dense: {units: 3, use_bias: false}}]",
        image: (3, 4, 4),
        filters: 70,
        kernel: (3, 3),
        stride: (1, 1),
        pad: (1, 1),
        dil: (1, 1),
        out: (4, 4),
        rows: 5,
        act: f64::tanh,
    };
    forward_through_head(
        ctor,
        &case,
        &[(0, 0), (70 * 16 - 1, 1)],
        "conv2d over several tiles",
    );
}

/// Max and average pooling's forward values, with overlapping windows and `same` padding,
/// and without padding (windows of 2, stride 2, the last row and column left out).
pub fn pool2d_forward(ctor: Ctor) {
    let (c, h, w) = (2, 5, 5);
    // (window, output size, padding cells before): `same` gives ceil(5 / 2) = 3 outputs
    // and (3−1)·2 + 3 − 5 = 2 padding cells, one before.
    let cases = [
        (
            "max_pool2d",
            true,
            "size: 3, stride: 2, padding: same",
            3usize,
            1isize,
            3usize,
        ),
        (
            "avg_pool2d",
            false,
            "size: 3, stride: 2, padding: same",
            3,
            1,
            3,
        ),
        ("max_pool2d", true, "size: 2", 2, 0, 2),
        ("avg_pool2d", false, "size: 2", 2, 0, 2),
    ];
    for (layer, max, args, o, pad, k) in cases {
        let units = c * o * o;
        let model = format!("[{{{layer}: {{{args}}}}}, {{flatten: {{}}}}, {{dense: {{units: {units}, use_bias: false}}}}]");
        let p = plan_image(&model, TRAIN_CE, (c, h, w), classes(units));
        let x = inputs(3, c * h * w, 6);
        let mut exec = ctor(&p);
        let mut want = Array2::<f64>::zeros((3, c * o * o));
        let x64 = to64(&x);
        for r in 0..3 {
            let v = x64.row(r).to_vec();
            let img = Img { v: &v, h, w };
            for ci in 0..c {
                for oy in 0..o {
                    for ox in 0..o {
                        let cells: Vec<f64> = (0..k)
                            .flat_map(|i| (0..k).map(move |j| (i, j)))
                            .filter_map(|(i, j)| {
                                img.at(ci, (oy * 2 + i) as isize - pad, (ox * 2 + j) as isize - pad)
                            })
                            .collect();
                        want[[r, (ci * o + oy) * o + ox]] = if max {
                            cells.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        } else {
                            cells.iter().sum::<f64>() / cells.len() as f64
                        };
                    }
                }
            }
        }
        // An identity head: the logits are the pooled values.
        let eye = Array2::from_shape_fn((units, units), |(i, j)| f32::from(i == j));
        set_named(exec.as_mut(), &p, &[("dense_2.weight", eye)]);
        let got = ok(exec.predict(x.view()));
        let what = format!("{layer} {{{args}}}");
        assert_all_close(&what, &got, &crate::support::softmax_rows(&want), FORWARD);
    }
}

pub fn conv2d_grad(ctor: Ctor) {
    let model = "[{conv2d: {filters: 2, kernel: 3, padding: same, activation: tanh}}, {flatten: {}}, {dense: {units: 3}}]";
    let p = plan_image(model, TRAIN_CE, (1, 4, 4), classes(3));
    check(ctor, &p, |_, _| {});
}

pub fn conv2d_strided_dilated_grad(ctor: Ctor) {
    let model = "[{conv2d: {filters: 3, kernel: [3, 2], stride: [2, 1], padding: 1, dilation: [1, 2], activation: tanh}}, {conv2d: {filters: 2, kernel: 2, use_bias: false}}, {flatten: {}}, {dense: {units: 3}}]";
    let p = plan_image(model, TRAIN_CE, (2, 6, 5), classes(3));
    check(ctor, &p, |_, _| {});
}

/// Pooling's gradient reaches the conv before it. The conv is 1×1 with one filter over
/// one channel, so its output orders the cells as the image does whatever its (positive)
/// weight: a finite-difference step never moves a window's largest cell.
fn check_pool(ctor: Ctor, pool: &str) {
    let model = format!("[{{conv2d: {{filters: 1, kernel: 1}}}}, {pool}, {{flatten: {{}}}}, {{dense: {{units: 3}}}}]");
    let p = plan_image(&model, TRAIN_CE, (1, 5, 5), classes(3));
    check(ctor, &p, |plan, params| {
        params[param_index(plan, "conv2d_0.weight")] = Array2::from_elem((1, 1), 0.8);
    });
}

pub fn max_pool2d_grad(ctor: Ctor) {
    check_pool(ctor, "{max_pool2d: {size: 3, stride: 2, padding: same}}");
    // Without padding (the loops over whole windows), overlapping and not.
    check_pool(ctor, "{max_pool2d: {size: 3, stride: 2}}");
    check_pool(ctor, "{max_pool2d: {size: 2}}");
}

pub fn avg_pool2d_grad(ctor: Ctor) {
    check_pool(ctor, "{avg_pool2d: {size: 2, stride: 1}}");
}

pub fn global_avg_pool2d_grad(ctor: Ctor) {
    let model = "[{conv2d: {filters: 3, kernel: 3, padding: same, activation: tanh}}, {global_avg_pool2d: {}}, {dense: {units: 3}}]";
    let p = plan_image(model, TRAIN_CE, (2, 4, 4), classes(3));
    check(ctor, &p, |_, _| {});
}

/// A residual block (two convolutions added to their input) and a channel concat.
pub fn residual_and_concat_grad(ctor: Ctor) {
    let model = "{inputs: {x: features}, nodes: {
        a: {conv2d: {filters: 2, kernel: 3, padding: same, activation: tanh}, input: x},
        b: {conv2d: {filters: 2, kernel: 3, padding: same}, input: a},
        s: {add: [a, b]},
        c: {concat: [s, a]},
        m: {conv2d: {filters: 1, kernel: 1}, input: c},
        f: {flatten: {}, input: m},
        out: {dense: {units: 3}, input: f}}, output: out}";
    let p = plan_image(model, TRAIN_CE, (1, 4, 4), classes(3));
    let m = p
        .nodes
        .iter()
        .find(|n| n.name == "m.conv")
        .map(|n| n.shape.to_string());
    assert_eq!(m.as_deref(), Some("[B,1,4,4]"));
    check(ctor, &p, |_, _| {});
}

/// Batch norm after a convolution: statistics per channel over the batch and the pixels,
/// its gamma and beta per channel; the gradients of the conv before it, of gamma and beta,
/// and a layer norm of the image (over all of a row's values) in the same model.
pub fn batch_norm2d_grad(ctor: Ctor) {
    let model = "[{conv2d: {filters: 2, kernel: 3, padding: same}}, {batch_norm: {}}, {activation: tanh}, {layer_norm: {}}, {flatten: {}}, {dense: {units: 3}}]";
    let p = plan_image(model, TRAIN_CE, (1, 4, 4), classes(3));
    let gamma = p
        .nodes
        .iter()
        .find(|n| n.name == "batch_norm_1.gamma")
        .map(|n| n.shape.to_string());
    assert_eq!(gamma.as_deref(), Some("[1,2]"), "one gamma per channel");
    check(ctor, &p, |plan, params| {
        params[param_index(plan, "batch_norm_1.gamma")] =
            Array2::from_shape_vec((1, 2), vec![0.7, 1.3]).unwrap_or_default();
        params[param_index(plan, "batch_norm_1.beta")] =
            Array2::from_shape_vec((1, 2), vec![0.2, -0.1]).unwrap_or_default();
    });
}

/// Three training steps with learning rate 0 keep running statistics per channel (over
/// the batch and the channel's pixels, momentum 0.1); eval mode normalises each channel's
/// pixels with them, and gamma and beta apply per channel.
pub fn batch_norm2d_running_statistics(ctor: Ctor) {
    let (c, h, w) = (2, 2, 3);
    let model = "[{batch_norm: {momentum: 0.1, epsilon: 0.001}}, {flatten: {}}, {dense: {units: 12, use_bias: false}}]";
    let p = plan_image(model, TRAIN_CE, (c, h, w), classes(12));
    let mut exec = ctor(&p);
    let x = inputs(4, c * h * w, 8);
    let y = ndarray::Array1::from_shape_fn(4, |i| i as f32);
    let eye = Array2::from_shape_fn((12, 12), |(i, j)| f32::from(i == j));
    let gamma = Array2::from_shape_vec((1, 2), vec![0.5f32, 2.0]).unwrap_or_default();
    let beta = Array2::from_shape_vec((1, 2), vec![0.25f32, -1.0]).unwrap_or_default();
    set_named(
        exec.as_mut(),
        &p,
        &[
            ("dense_2.weight", eye),
            ("batch_norm_0.gamma", gamma.clone()),
            ("batch_norm_0.beta", beta.clone()),
        ],
    );
    for step in 0..3 {
        ok(exec.train_step(x.view(), y.view(), step, 0.0));
    }
    let x64 = to64(&x);
    let area = h * w;
    let keep = 0.9f64.powi(3);
    let (mut mean, mut var) = (vec![0.0f64; c], vec![0.0f64; c]);
    for ch in 0..c {
        let vals: Vec<f64> = x64
            .rows()
            .into_iter()
            .flat_map(|r| {
                r.iter()
                    .skip(ch * area)
                    .take(area)
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let v = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
        mean[ch] = (1.0 - keep) * m;
        var[ch] = keep + (1.0 - keep) * v;
    }
    let buffers = ok(exec.buffers());
    let find = |suffix: &str| {
        buffers
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    let row = |v: &[f64]| Array2::from_shape_vec((1, c), v.to_vec()).unwrap_or_default();
    assert_all_close(
        "running_mean per channel",
        &find(".running_mean"),
        &row(&mean),
        FORWARD,
    );
    assert_all_close(
        "running_var per channel",
        &find(".running_var"),
        &row(&var),
        FORWARD,
    );
    let (g64, b64) = (to64(&gamma), to64(&beta));
    let want = Array2::from_shape_fn(x64.dim(), |(i, j)| {
        let ch = j / area;
        g64[[0, ch]] * (x64[[i, j]] - mean[ch]) / (var[ch] + 1e-3).sqrt() + b64[[0, ch]]
    });
    let got = ok(exec.predict(x.view()));
    assert_all_close(
        "batch_norm over channels (eval)",
        &got,
        &crate::support::softmax_rows(&want),
        FORWARD,
    );
}
