//! Lowering: a plan's schedule at a given batch size becomes a list of kernel calls, each
//! with its parameters, the buffers it reads and writes, and its workgroup grid.
//!
//! The plan comes lowered for the GPU by the planner (`weft_planner::target`): its
//! `MatMulBias` nodes are matmul kernels with the bias and activation in their epilogue, and
//! its memory plan says where every activation lives.

use weft_dsl::{Activation, Optimizer};
use weft_planner::target::takes_whole_batch;
use weft_planner::{LossKind, NormAxis, NormPart, Op, Plan};

use super::kernels::{act_code, groups_1d, Kernel, MatmulCfg, Params};
use super::reductions::{batch_stats, grad_norm, per_row, RowSum};
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
    /// Column indices of an input node that selects columns.
    Columns(usize),
    /// Partial sums of a reduction split in chunks (`reductions.rs`): one buffer shared by
    /// every reduction, at least this many values long.
    Partial(usize),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub kernel: Kernel,
    pub params: Params,
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

/// The kernel calls of `ids` (in the GPU plan), with parameters in arenas of `arenas`
/// values each.
pub fn lower(
    plan: &Plan,
    ids: &[usize],
    run: Run,
    arenas: &[usize],
) -> Result<Vec<Call>, ExecError> {
    let is_update = |id: &usize| matches!(plan.nodes[*id].op, Op::Update { .. });
    let last_update = ids.iter().rposition(is_update);
    // The updates all run at the last one: nothing else may sit between them.
    if let Some(first) = ids.iter().position(is_update) {
        if !ids[first..].iter().all(is_update) {
            return Err(ExecError::Internal(
                "the schedule runs other nodes between parameter updates".into(),
            ));
        }
    }
    let mut calls = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        match plan.nodes[id].op {
            Op::GradNorm => grad_norm(arenas, Buf::Node(id), &mut calls)?,
            // Every parameter at once, after the last gradient is in.
            Op::Update { .. } if Some(k) == last_update => {
                update_all(plan, id, arenas, run, &mut calls)?
            }
            Op::Update { .. } => {}
            _ => node(plan, id, run, &mut calls)?,
        }
    }
    Ok(calls)
}

/// One optimizer dispatch per arena; `id` is an update node (its inputs give the gradient
/// norm when clipping).
fn update_all(
    plan: &Plan,
    id: usize,
    arenas: &[usize],
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    let mut p = optimizer_params(&plan.train.optimizer);
    let norm = match (plan.nodes[id].inputs.get(2), plan.train.clip_grad_norm) {
        (Some(norm), Some(max)) => {
            p.b = 1;
            p.f[0] = max as f32;
            Some(Buf::Node(*norm))
        }
        _ => None,
    };
    for (a, &len) in arenas.iter().enumerate() {
        let mut reads = vec![Buf::Grads(a)];
        reads.extend(norm);
        calls.push(Call {
            kernel: Kernel::optim(),
            groups: groups_1d(len, run.max_dim),
            params: Params { n: u(len)?, ..p },
            reads,
            writes: vec![Buf::Params(a), Buf::OptM(a), Buf::OptV(a)],
        });
    }
    Ok(())
}

fn rows_of(plan: &Plan, id: usize, rows: usize) -> usize {
    plan.nodes[id].shape.rows_at(rows)
}

pub(super) fn u(x: usize) -> Result<u32, ExecError> {
    u32::try_from(x).map_err(|_| {
        ExecError::Gpu(format!(
            "a tensor of {x} elements is too large for the GPU kernels (at most 2^32 − 1)"
        ))
    })
}

fn elementwise_call(kernel: Kernel, p: Params, reads: Vec<Buf>, out: Buf, run: Run) -> Call {
    Call {
        kernel,
        groups: groups_1d(p.n as usize, run.max_dim),
        params: p,
        reads,
        writes: vec![out],
    }
}

/// A workgroup count checked against the adapter's per-dimension limit.
pub(super) fn within(groups: usize, run: Run, what: &str) -> Result<u32, ExecError> {
    match u32::try_from(groups) {
        Ok(g) if g <= run.max_dim => Ok(g),
        _ => Err(ExecError::Gpu(format!(
            "{what} at batch {} needs {groups} workgroups in one dimension; this adapter allows {} (max_compute_workgroups_per_dimension); use a smaller batch_size",
            run.rows, run.max_dim
        ))),
    }
}

fn node(plan: &Plan, id: usize, run: Run, calls: &mut Vec<Call>) -> Result<(), ExecError> {
    let n = &plan.nodes[id];
    let rows = rows_of(plan, id, run.rows);
    let cols = n.shape.cols;
    let numel = rows * cols;
    let base = Params {
        n: u(numel)?,
        rows: u(rows)?,
        cols: u(cols)?,
        ..Params::default()
    };
    let input = |i: usize| n.inputs[i];
    let in_cols = |i: usize| plan.nodes[n.inputs[i]].shape.cols;
    let out = Buf::Node(id);
    match &n.op {
        Op::Input { columns } => {
            if !takes_whole_batch(columns, plan.features.len()) {
                let p = Params {
                    a: u(plan.features.len())?,
                    ..base
                };
                calls.push(elementwise_call(
                    Kernel::elementwise("gather_cols"),
                    p,
                    vec![Buf::X, Buf::Columns(id)],
                    out,
                    run,
                ));
            }
        }
        Op::Param { .. } | Op::Target | Op::LbfgsStep => {}
        Op::MatMul { ta, tb } => {
            calls.push(matmul(
                plan,
                input(0),
                input(1),
                None,
                (*ta, *tb),
                0,
                0.0,
                out,
                run,
            )?);
        }
        Op::MatMulBias { ta, tb, act } => {
            let (code, alpha) = act_code(*act).ok_or_else(|| {
                ExecError::Internal(format!("{} has no matmul epilogue", act.name()))
            })?;
            calls.push(matmul(
                plan,
                input(0),
                input(1),
                Some(input(2)),
                (*ta, *tb),
                code,
                alpha,
                out,
                run,
            )?);
        }
        Op::BiasAdd | Op::BiasAct(_) | Op::Act(_) => {
            let a = match n.op {
                Op::BiasAct(a) | Op::Act(a) => a,
                _ => Activation::Linear,
            };
            let has_bias = !matches!(n.op, Op::Act(_));
            match act_code(a) {
                Some((code, alpha)) => {
                    let mut p = Params {
                        a: code,
                        b: u32::from(has_bias),
                        ..base
                    };
                    p.f[0] = alpha;
                    let mut reads = vec![Buf::Node(input(0))];
                    if has_bias {
                        reads.push(Buf::Node(input(1)));
                    }
                    calls.push(elementwise_call(
                        Kernel::elementwise("bias_act"),
                        p,
                        reads,
                        out,
                        run,
                    ));
                }
                None if has_bias => {
                    return Err(ExecError::Internal(
                        "BiasAct(softmax) is never planned; the GPU executor does not run it"
                            .into(),
                    ))
                }
                None => calls.push(Call {
                    kernel: Kernel::elementwise("softmax_rows"),
                    params: base,
                    reads: vec![Buf::Node(input(0))],
                    writes: vec![out],
                    groups: groups_1d(rows, run.max_dim),
                }),
            }
        }
        Op::Dropout { rate, stream } | Op::DropoutGrad { rate, stream } => {
            if !run.train_mode || *rate == 0.0 {
                calls.push(copy_cols(input(0), cols, 0, cols, 0, rows, cols, out, run)?);
            } else {
                let mut p = Params {
                    a: *stream as u32,
                    b: (*stream >> 32) as u32,
                    ..base
                };
                p.f[0] = *rate;
                p.f[1] = 1.0 / (1.0 - rate);
                calls.push(elementwise_call(
                    Kernel::elementwise("dropout"),
                    p,
                    vec![Buf::Node(input(0))],
                    out,
                    run,
                ));
            }
        }
        Op::Norm {
            axis,
            eps,
            momentum,
        } => {
            let mut p = Params {
                a: u32::from(*axis == NormAxis::Layer),
                ..base
            };
            p.f[0] = *eps;
            p.f[1] = *momentum;
            let x = Buf::Node(input(0));
            match (axis, run.train_mode) {
                (NormAxis::Batch, false) => calls.push(elementwise_call(
                    Kernel::reduce("stats_from_running"),
                    Params { n: u(cols)?, ..p },
                    vec![Buf::RunningMean(id), Buf::RunningVar(id)],
                    Buf::Scratch(id),
                    run,
                )),
                _ => stats(*axis, x, id, p, rows, run, calls)?,
            }
            calls.push(elementwise_call(
                Kernel::reduce("norm_apply"),
                p,
                vec![
                    x,
                    Buf::Scratch(id),
                    Buf::Node(input(1)),
                    Buf::Node(input(2)),
                ],
                out,
                run,
            ));
            if *axis == NormAxis::Batch && run.train_mode {
                calls.push(Call {
                    kernel: Kernel::reduce("running_update"),
                    groups: groups_1d(cols, run.max_dim),
                    params: p,
                    reads: vec![Buf::Scratch(id)],
                    writes: vec![Buf::RunningMean(id), Buf::RunningVar(id)],
                });
            }
        }
        Op::Add => {
            calls.push(elementwise_call(
                Kernel::elementwise("add2"),
                base,
                vec![Buf::Node(input(0)), Buf::Node(input(1))],
                out,
                run,
            ));
            for i in 2..n.inputs.len() {
                calls.push(elementwise_call(
                    Kernel::elementwise("add_into"),
                    base,
                    vec![Buf::Node(input(i))],
                    out,
                    run,
                ));
            }
        }
        Op::Concat => {
            let mut start = 0;
            for i in 0..n.inputs.len() {
                let w = in_cols(i);
                calls.push(copy_cols(input(i), w, 0, cols, start, rows, w, out, run)?);
                start += w;
            }
        }
        Op::Slice { start, end } => {
            calls.push(copy_cols(
                input(0),
                in_cols(0),
                *start,
                cols,
                0,
                rows,
                end - start,
                out,
                run,
            )?);
        }
        Op::Loss(kind) => {
            let (pred, rows) = (input(0), rows_of(plan, input(0), run.rows));
            let p = Params {
                a: loss_code(*kind),
                rows: u(rows)?,
                cols: u(plan.nodes[pred].shape.cols)?,
                d: u32::from(run.accumulate),
                ..base
            };
            calls.push(Call {
                kernel: Kernel::loss("loss_rows"),
                params: p,
                reads: vec![Buf::Node(pred), Buf::Node(input(1))],
                writes: vec![Buf::Scratch(id)],
                groups: groups_1d(rows, run.max_dim),
            });
            calls.push(Call {
                kernel: Kernel::loss("loss_mean"),
                params: p,
                reads: vec![Buf::Scratch(id)],
                writes: if run.accumulate {
                    vec![out, Buf::LossSum]
                } else {
                    vec![out]
                },
                groups: (1, 1, 1),
            });
        }
        Op::ActGrad(a) => {
            let (x, y, dy) = (input(0), input(1), input(2));
            match act_code(*a) {
                Some((code, alpha)) => {
                    let mut p = Params { a: code, ..base };
                    p.f[0] = alpha;
                    calls.push(elementwise_call(
                        Kernel::elementwise("act_backward"),
                        p,
                        vec![Buf::Node(x), Buf::Node(y), Buf::Node(dy)],
                        out,
                        run,
                    ));
                }
                None => calls.push(Call {
                    kernel: Kernel::elementwise("softmax_backward"),
                    params: base,
                    reads: vec![Buf::Node(x), Buf::Node(y), Buf::Node(dy)],
                    writes: vec![out],
                    groups: groups_1d(rows, run.max_dim),
                }),
            }
        }
        Op::SumRows => RowSum {
            kernel: Kernel::reduce("sum_rows"),
            params: Params {
                rows: u(rows_of(plan, input(0), run.rows))?,
                ..base
            },
            reads: vec![Buf::Node(input(0))],
            width: cols,
            out,
            offset: 0,
            two_pass: false,
        }
        .lower(run, calls)?,
        Op::NormGrad { axis, eps, part } => {
            let (x, gamma, dy) = (input(0), input(1), input(2));
            let r = rows_of(plan, x, run.rows);
            let c = plan.nodes[x].shape.cols;
            let mut p = Params {
                n: u(r * c)?,
                rows: u(r)?,
                cols: u(c)?,
                a: u32::from(*axis == NormAxis::Layer),
                ..Params::default()
            };
            p.f[0] = *eps;
            stats(*axis, Buf::Node(x), id, p, r, run, calls)?;
            match (part, axis) {
                (NormPart::Gamma, _) => RowSum {
                    kernel: Kernel::reduce("norm_grad_gamma"),
                    params: p,
                    reads: vec![Buf::Node(x), Buf::Scratch(id), Buf::Node(dy)],
                    width: c,
                    out,
                    offset: 0,
                    two_pass: false,
                }
                .lower(run, calls)?,
                // Σ dy and Σ dy·x̂ per column go after the statistics in the scratch,
                // then every element takes its gradient from them.
                (NormPart::Input, NormAxis::Batch) => {
                    RowSum {
                        kernel: Kernel::reduce("norm_sums"),
                        params: p,
                        reads: vec![Buf::Node(x), Buf::Scratch(id), Buf::Node(dy)],
                        width: 2 * c,
                        out: Buf::Scratch(id),
                        offset: 2 * c,
                        two_pass: true,
                    }
                    .lower(run, calls)?;
                    calls.push(elementwise_call(
                        Kernel::reduce("batch_norm_grad_input"),
                        p,
                        vec![
                            Buf::Node(x),
                            Buf::Scratch(id),
                            Buf::Node(gamma),
                            Buf::Node(dy),
                        ],
                        out,
                        run,
                    ));
                }
                (NormPart::Input, NormAxis::Layer) => calls.push(Call {
                    kernel: Kernel::reduce("layer_norm_grad_input"),
                    params: p,
                    reads: vec![
                        Buf::Node(x),
                        Buf::Scratch(id),
                        Buf::Node(gamma),
                        Buf::Node(dy),
                    ],
                    writes: vec![out],
                    groups: per_row(r, run.max_dim),
                }),
            }
        }
        Op::LossGrad(kind) => {
            let p = Params {
                a: loss_code(*kind),
                ..base
            };
            calls.push(Call {
                kernel: Kernel::loss("loss_backward"),
                params: p,
                reads: vec![Buf::Node(input(0)), Buf::Node(input(1))],
                writes: vec![out],
                groups: groups_1d(rows, run.max_dim),
            });
        }
        Op::GradNorm | Op::Update { .. } => {
            return Err(ExecError::Internal(
                "the gradient norm and the updates are lowered per arena".into(),
            ))
        }
    }
    Ok(())
}

fn loss_code(kind: LossKind) -> u32 {
    match kind {
        LossKind::SoftmaxCrossEntropy => 0,
        LossKind::SigmoidBinaryCrossEntropy => 1,
        LossKind::Mse { one_hot: false } => 2,
        LossKind::Mse { one_hot: true } => 3,
    }
}

/// Normalisation statistics of x into the node's scratch.
fn stats(
    axis: NormAxis,
    x: Buf,
    id: usize,
    p: Params,
    rows: usize,
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    match axis {
        NormAxis::Batch => batch_stats(x, Buf::Scratch(id), p, run, calls)?,
        NormAxis::Layer => calls.push(Call {
            kernel: Kernel::reduce("row_stats"),
            params: p,
            reads: vec![x],
            writes: vec![Buf::Scratch(id)],
            groups: per_row(rows, run.max_dim),
        }),
    }
    Ok(())
}

/// out[r, dst_off + j] = src[r, src_off + j] for j < width.
#[allow(clippy::too_many_arguments)]
fn copy_cols(
    src: usize,
    src_cols: usize,
    src_off: usize,
    dst_cols: usize,
    dst_off: usize,
    rows: usize,
    width: usize,
    out: Buf,
    run: Run,
) -> Result<Call, ExecError> {
    let p = Params {
        n: u(rows * width)?,
        rows: u(rows)?,
        cols: u(width)?,
        a: u(src_cols)?,
        b: u(src_off)?,
        c: u(dst_cols)?,
        d: u(dst_off)?,
        ..Params::default()
    };
    Ok(elementwise_call(
        Kernel::elementwise("copy_cols"),
        p,
        vec![Buf::Node(src)],
        out,
        run,
    ))
}

/// The matmul kernel for C = op(A)·op(B) (+ bias, activation).
#[allow(clippy::too_many_arguments)]
fn matmul(
    plan: &Plan,
    a: usize,
    b: usize,
    bias: Option<usize>,
    (ta, tb): (bool, bool),
    act: u32,
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
    let mut p = Params {
        n: u(m * n)?,
        rows: u(m)?,
        cols: u(n)?,
        k: u(k)?,
        ..Params::default()
    };
    p.f[0] = alpha;
    let mut reads = vec![Buf::Node(a), Buf::Node(b)];
    reads.extend(bias.map(Buf::Node));
    let (gx, gy, _) = matmul_groups(m, n, cfg.tile);
    within(gx as usize, run, "a matmul")?;
    within(gy as usize, run, "a matmul")?;
    Ok(Call {
        kernel: Kernel::matmul(cfg),
        params: p,
        reads,
        writes: vec![out],
        groups: (gx, gy, 1),
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

/// Workgroups of a matmul (saturated at u32::MAX; `lower` checks the adapter's limit).
pub fn matmul_groups(m: usize, n: usize, tile: u32) -> (u32, u32, u32) {
    let t = tile as usize;
    let g = |x: usize| u32::try_from(x.div_ceil(t)).unwrap_or(u32::MAX);
    (g(n), g(m), 1)
}

/// The optimizer's kind and constants for optim.wgsl.
fn optimizer_params(opt: &Optimizer) -> Params {
    let mut p = Params::default();
    match opt {
        Optimizer::Sgd(s) => {
            p.a = if s.momentum == 0.0 {
                0
            } else if s.nesterov {
                2
            } else {
                1
            };
            p.f[1] = s.weight_decay as f32;
            p.f[2] = s.momentum as f32;
        }
        Optimizer::Adagrad(a) => {
            p.a = 3;
            p.f[1] = a.weight_decay as f32;
            p.f[3] = a.epsilon as f32;
        }
        Optimizer::Rmsprop(r) => {
            p.a = 4;
            p.f[1] = r.weight_decay as f32;
            p.f[2] = r.rho as f32;
            p.f[3] = r.epsilon as f32;
            p.f[4] = r.momentum as f32;
        }
        Optimizer::Adam(a) | Optimizer::Adamw(a) => {
            let decoupled = matches!(opt, Optimizer::Adamw(_));
            p.a = if decoupled { 6 } else { 5 };
            p.f[1] = crate::optim::adam_weight_decay(opt).unwrap_or(0.0);
            p.f[2] = a.beta1 as f32;
            p.f[3] = a.epsilon as f32;
            p.f[4] = a.beta2 as f32;
        }
        Optimizer::Lbfgs(_) => {}
    }
    p
}
