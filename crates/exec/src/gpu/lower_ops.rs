//! Lowering of one node: the kernel calls of each op, with its family's parameters.

use weft_dsl::Activation;
use weft_planner::target::takes_whole_batch;
use weft_planner::{ConvPart, NormAxis, NormPart, Op, Plan, PoolKind, Window};

use super::call::{groups_1d, per_row, u, Buf, Call, Run};
use super::codes::{act_code, loss_code, norm_axis_code, ActCode, ChannelSumsCode};
use super::kernels::Kernel;
use super::lower_matmul::{conv_gemm, matmul};
use super::reductions::{batch_stats, RowSum};
use super::uniforms::{
    ConvParams, ElementwiseParams, EmbeddingParams, LossParams, ReduceParams, Uniform,
};
use crate::error::ExecError;

fn rows_of(plan: &Plan, id: usize, rows: usize) -> usize {
    plan.nodes[id].shape.rows_at(rows)
}

/// One thread per item of `items`.
fn elementwise_call(
    kernel: Kernel,
    params: impl Into<Uniform>,
    items: u32,
    reads: Vec<Buf>,
    out: Buf,
    run: Run,
) -> Call {
    Call {
        kernel,
        groups: groups_1d(items as usize, run.max_dim),
        params: params.into(),
        reads,
        writes: vec![out],
    }
}

/// The calls of node `id` (any op but the gradient norm and the updates, which `lower`
/// lowers per arena).
pub fn node(plan: &Plan, id: usize, run: Run, calls: &mut Vec<Call>) -> Result<(), ExecError> {
    let n = &plan.nodes[id];
    let rows = rows_of(plan, id, run.rows);
    let cols = n.shape.cols;
    let numel = rows * cols;
    let ew = ElementwiseParams {
        n: u(numel)?,
        rows: u(rows)?,
        cols: u(cols)?,
        ..ElementwiseParams::default()
    };
    let input = |i: usize| n.inputs[i];
    let in_cols = |i: usize| plan.nodes[n.inputs[i]].shape.cols;
    let out = Buf::Node(id);
    match &n.op {
        Op::Input { columns } => {
            if !takes_whole_batch(columns, plan.features.len()) {
                let p = ElementwiseParams {
                    src_cols: u(plan.features.len())?,
                    ..ew
                };
                calls.push(elementwise_call(
                    Kernel::elementwise("gather_cols"),
                    p,
                    p.n,
                    vec![Buf::X, Buf::Columns(id)],
                    out,
                    run,
                ));
            }
        }
        Op::Param { .. } | Op::Target | Op::LbfgsStep => {}
        Op::Conv2d { win, filters, act } => {
            let mut reads = vec![Buf::Node(input(0)), Buf::Node(input(1))];
            if n.inputs.len() == 3 {
                reads.push(Buf::Node(input(2)));
            }
            // Only activations whose gradient follows from the output are fused (never
            // softmax, which has no code).
            let (code, alpha) = act.and_then(act_code).unwrap_or((ActCode::Linear, 0.0));
            let p = ConvParams {
                n: u(numel)?,
                bias: u32::from(n.inputs.len() == 3),
                act: code.code(),
                alpha,
                ..conv_params(win, *filters)?
            };
            calls.push(conv_gemm(win, p, rows, reads, out, run)?);
        }
        Op::Conv2dGrad { win, filters, part } => {
            let (entry, reads) = match part {
                ConvPart::Input => (
                    "conv_grad_input",
                    vec![Buf::Node(input(0)), Buf::Node(input(1))],
                ),
                ConvPart::Weight => (
                    "conv_grad_weight",
                    vec![Buf::Node(input(0)), Buf::Node(input(1))],
                ),
                // dy at binding 3, as the other gradients read it.
                ConvPart::Bias => (
                    "conv_grad_bias",
                    vec![Buf::Node(input(0)), Buf::Node(input(0))],
                ),
            };
            // The batch's rows: dy's (the last input).
            let batch = rows_of(plan, *n.inputs.last().unwrap_or(&id), run.rows);
            let p = ConvParams {
                n: u(numel)?,
                rows: u(batch)?,
                ..conv_params(win, *filters)?
            };
            calls.push(elementwise_call(
                Kernel::conv(entry),
                p,
                p.n,
                reads,
                out,
                run,
            ));
        }
        Op::Pool2d { kind, win } | Op::Pool2dGrad { kind, win } => {
            let (entry, reads) = match n.op {
                Op::Pool2d { .. } => ("pool_forward", vec![Buf::Node(input(0))]),
                _ => (
                    "pool_backward",
                    vec![Buf::Node(input(0)), Buf::Node(input(1))],
                ),
            };
            let p = ConvParams {
                n: u(numel)?,
                rows: u(rows)?,
                bias: u32::from(*kind == PoolKind::Max),
                ..conv_params(win, win.c)?
            };
            calls.push(elementwise_call(
                Kernel::conv(entry),
                p,
                p.n,
                reads,
                out,
                run,
            ));
        }
        Op::Flatten => {
            // The same values: a copy (the arena gives every node its own buffer).
            calls.push(copy_cols(input(0), cols, 0, cols, 0, rows, cols, out, run)?);
        }
        Op::Embedding => {
            let vocab = plan.nodes[input(1)].shape.rows_at(0);
            let p = EmbeddingParams {
                n: u(numel)?,
                dim: u(cols)?,
                vocab: u(vocab)?,
                ..EmbeddingParams::default()
            };
            calls.push(elementwise_call(
                Kernel::embedding("embed_forward"),
                p,
                p.n,
                vec![Buf::Node(input(0)), Buf::Node(input(1))],
                out,
                run,
            ));
        }
        Op::EmbeddingGrad { vocab } => {
            // Cleared, then every row of dy added into the row of its id.
            let batch = rows_of(plan, input(1), run.rows);
            let p = EmbeddingParams {
                n: u(numel)?,
                dim: u(cols)?,
                vocab: u(*vocab)?,
                ..EmbeddingParams::default()
            };
            calls.push(elementwise_call(
                Kernel::embedding("embed_zero"),
                p,
                p.n,
                vec![],
                out,
                run,
            ));
            let p = EmbeddingParams {
                n: u(batch * cols)?,
                ..p
            };
            calls.push(elementwise_call(
                Kernel::embedding("embed_backward"),
                p,
                p.n,
                vec![Buf::Node(input(0)), Buf::Node(input(1))],
                out,
                run,
            ));
        }
        Op::MatMul { ta, tb } => {
            calls.push(matmul(
                plan,
                input(0),
                input(1),
                None,
                (*ta, *tb),
                ActCode::Linear,
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
                    let p = ElementwiseParams {
                        act: code.code(),
                        alpha,
                        has_bias: u32::from(has_bias),
                        ..ew
                    };
                    let mut reads = vec![Buf::Node(input(0))];
                    if has_bias {
                        reads.push(Buf::Node(input(1)));
                    }
                    calls.push(elementwise_call(
                        Kernel::elementwise("bias_act"),
                        p,
                        p.n,
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
                    params: ew.into(),
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
                let p = ElementwiseParams {
                    stream_lo: *stream as u32,
                    stream_hi: (*stream >> 32) as u32,
                    rate: *rate,
                    scale: 1.0 / (1.0 - rate),
                    ..ew
                };
                calls.push(elementwise_call(
                    Kernel::elementwise("dropout"),
                    p,
                    p.n,
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
            let p = ReduceParams {
                n: ew.n,
                rows: ew.rows,
                cols: ew.cols,
                axis: norm_axis_code(*axis).code(),
                eps: *eps,
                momentum: *momentum,
                area: norm_area(*axis)?,
                ..ReduceParams::default()
            };
            let x = Buf::Node(input(0));
            let groups = axis.params(cols);
            match (axis.running(), run.train_mode) {
                (true, false) => {
                    let p = ReduceParams { n: u(groups)?, ..p };
                    calls.push(elementwise_call(
                        Kernel::reduce("stats_from_running"),
                        p,
                        p.n,
                        vec![Buf::RunningMean(id), Buf::RunningVar(id)],
                        Buf::Scratch(id),
                        run,
                    ))
                }
                _ => stats(*axis, x, id, p, rows, run, calls)?,
            }
            calls.push(elementwise_call(
                Kernel::reduce("norm_apply"),
                p,
                p.n,
                vec![
                    x,
                    Buf::Scratch(id),
                    Buf::Node(input(1)),
                    Buf::Node(input(2)),
                ],
                out,
                run,
            ));
            if axis.running() && run.train_mode {
                calls.push(Call {
                    kernel: Kernel::reduce("running_update"),
                    groups: groups_1d(groups, run.max_dim),
                    params: p.into(),
                    reads: vec![Buf::Scratch(id)],
                    writes: vec![Buf::RunningMean(id), Buf::RunningVar(id)],
                });
            }
        }
        Op::Add => {
            calls.push(elementwise_call(
                Kernel::elementwise("add2"),
                ew,
                ew.n,
                vec![Buf::Node(input(0)), Buf::Node(input(1))],
                out,
                run,
            ));
            for i in 2..n.inputs.len() {
                calls.push(elementwise_call(
                    Kernel::elementwise("add_into"),
                    ew,
                    ew.n,
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
            let p = LossParams {
                rows: u(rows)?,
                cols: u(plan.nodes[pred].shape.cols)?,
                kind: loss_code(*kind).code(),
                accumulate: u32::from(run.accumulate),
                weighted: u32::from(plan.class_weights.is_some()),
                row_weighted: u32::from(plan.sample_weighted),
                ..LossParams::default()
            };
            let reads = loss_reads(plan, pred, input(1));
            calls.push(Call {
                kernel: Kernel::loss("loss_rows"),
                params: p.into(),
                reads,
                writes: vec![Buf::Scratch(id)],
                groups: groups_1d(rows, run.max_dim),
            });
            calls.push(Call {
                kernel: Kernel::loss("loss_mean"),
                params: p.into(),
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
                    let p = ElementwiseParams {
                        act: code.code(),
                        alpha,
                        ..ew
                    };
                    calls.push(elementwise_call(
                        Kernel::elementwise("act_backward"),
                        p,
                        p.n,
                        vec![Buf::Node(x), Buf::Node(y), Buf::Node(dy)],
                        out,
                        run,
                    ));
                }
                None => calls.push(Call {
                    kernel: Kernel::elementwise("softmax_backward"),
                    params: ew.into(),
                    reads: vec![Buf::Node(x), Buf::Node(y), Buf::Node(dy)],
                    writes: vec![out],
                    groups: groups_1d(rows, run.max_dim),
                }),
            }
        }
        Op::SumRows => RowSum {
            kernel: Kernel::reduce("sum_rows"),
            params: ReduceParams {
                n: ew.n,
                rows: u(rows_of(plan, input(0), run.rows))?,
                cols: ew.cols,
                ..ReduceParams::default()
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
            let p = ReduceParams {
                n: u(r * c)?,
                rows: u(r)?,
                cols: u(c)?,
                axis: norm_axis_code(*axis).code(),
                eps: *eps,
                area: norm_area(*axis)?,
                ..ReduceParams::default()
            };
            stats(*axis, Buf::Node(x), id, p, r, run, calls)?;
            if let NormAxis::Channel { .. } = axis {
                return channel_norm_grad(*part, [x, gamma, dy], id, out, p, run, calls);
            }
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
                    calls.push(batch_norm_grad_input([x, gamma, dy], id, out, p, run));
                }
                (NormPart::Beta, _) | (NormPart::Input, NormAxis::Channel { .. }) => {
                    return Err(ExecError::Internal(format!(
                        "`{}`: a {part:?} gradient of a {axis:?} norm is lowered elsewhere",
                        plan.nodes[id].name
                    )))
                }
                (NormPart::Input, NormAxis::Layer) => calls.push(Call {
                    kernel: Kernel::reduce("layer_norm_grad_input"),
                    params: p.into(),
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
            let p = LossParams {
                rows: ew.rows,
                cols: ew.cols,
                kind: loss_code(*kind).code(),
                weighted: u32::from(plan.class_weights.is_some()),
                row_weighted: u32::from(plan.sample_weighted),
                ..LossParams::default()
            };
            let reads = loss_reads(plan, input(0), input(1));
            calls.push(Call {
                kernel: Kernel::loss("loss_backward"),
                params: p.into(),
                reads,
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

/// A loss kernel's reads: predictions, targets, then the class weights (bound whenever rows
/// are weighted at all) and the rows' weights, in the bindings loss.wgsl declares.
fn loss_reads(plan: &Plan, pred: usize, target: usize) -> Vec<Buf> {
    let mut reads = vec![Buf::Node(pred), Buf::Node(target)];
    if plan.class_weights.is_some() || plan.sample_weighted {
        reads.push(Buf::ClassWeights);
    }
    if plan.sample_weighted {
        reads.push(Buf::SampleWeights);
    }
    reads
}

/// Normalisation statistics of x into the node's scratch.
fn stats(
    axis: NormAxis,
    x: Buf,
    id: usize,
    p: ReduceParams,
    rows: usize,
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    match axis {
        NormAxis::Batch => batch_stats(x, Buf::Scratch(id), p, run, calls)?,
        NormAxis::Channel { area } => calls.push(Call {
            kernel: Kernel::reduce("channel_stats"),
            params: p.into(),
            reads: vec![x],
            writes: vec![Buf::Scratch(id)],
            groups: per_row(p.cols as usize / area, run.max_dim),
        }),
        NormAxis::Layer => calls.push(Call {
            kernel: Kernel::reduce("row_stats"),
            params: p.into(),
            reads: vec![x],
            writes: vec![Buf::Scratch(id)],
            groups: per_row(rows, run.max_dim),
        }),
    }
    Ok(())
}

/// A batch norm's input gradient, every element from the statistics and the sums Σ dy and
/// Σ dy·x̂ that follow them in the node's scratch (per column, or per channel).
fn batch_norm_grad_input(
    [x, gamma, dy]: [usize; 3],
    id: usize,
    out: Buf,
    p: ReduceParams,
    run: Run,
) -> Call {
    let reads = vec![
        Buf::Node(x),
        Buf::Scratch(id),
        Buf::Node(gamma),
        Buf::Node(dy),
    ];
    elementwise_call(
        Kernel::reduce("batch_norm_grad_input"),
        p,
        p.n,
        reads,
        out,
        run,
    )
}

/// A channel norm's pixels per channel (1 for the other norms: the kernels divide by it).
fn norm_area(axis: NormAxis) -> Result<u32, ExecError> {
    match axis {
        NormAxis::Channel { area } => u(area),
        _ => Ok(1),
    }
}

/// A channel batch norm's gradients (the statistics are already in the node's scratch):
/// per-channel sums, one workgroup a channel; the input's gradient first puts Σ dy and
/// Σ dy·x̂ after the statistics (through the partial-sums buffer: a kernel cannot read and
/// write the scratch at once), then takes every element's gradient from them.
fn channel_norm_grad(
    part: NormPart,
    [x, gamma, dy]: [usize; 3],
    id: usize,
    out: Buf,
    p: ReduceParams,
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    let channels = p.cols / p.area.max(1);
    let groups = per_row(channels as usize, run.max_dim);
    let reads = vec![Buf::Node(x), Buf::Scratch(id), Buf::Node(dy)];
    let sums = |sums: ChannelSumsCode, to: Buf| Call {
        kernel: Kernel::reduce("channel_sums"),
        params: ReduceParams {
            sums: sums.code(),
            ..p
        }
        .into(),
        reads: reads.clone(),
        writes: vec![to],
        groups,
    };
    match part {
        NormPart::Gamma => calls.push(sums(ChannelSumsCode::Gamma, out)),
        NormPart::Beta => calls.push(sums(ChannelSumsCode::Beta, out)),
        NormPart::Input => {
            let both = 2 * channels as usize;
            calls.push(sums(ChannelSumsCode::Both, Buf::Partial(both)));
            // A one-row sum is a copy: the sums go to the scratch after the statistics.
            calls.push(Call {
                kernel: Kernel::reduce("sum_rows"),
                params: ReduceParams {
                    n: u(both)?,
                    rows: 1,
                    cols: u(both)?,
                    chunk_rows: 1,
                    out_offset: u(both)?,
                    ..ReduceParams::default()
                }
                .into(),
                reads: vec![Buf::Partial(both)],
                writes: vec![Buf::Scratch(id)],
                groups: (u(both.div_ceil(32))?, 1, 1),
            });
            calls.push(batch_norm_grad_input([x, gamma, dy], id, out, p, run));
        }
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
    let p = ElementwiseParams {
        n: u(rows * width)?,
        rows: u(rows)?,
        cols: u(width)?,
        src_cols: u(src_cols)?,
        src_off: u(src_off)?,
        dst_cols: u(dst_cols)?,
        dst_off: u(dst_off)?,
        ..ElementwiseParams::default()
    };
    Ok(elementwise_call(
        Kernel::elementwise("copy_cols"),
        p,
        p.n,
        vec![Buf::Node(src)],
        out,
        run,
    ))
}

/// A window's parameters (the caller sets `n`, `rows` and `bias`).
fn conv_params(win: &Window, filters: usize) -> Result<ConvParams, ExecError> {
    let pack = |h: usize, w: usize| -> Result<u32, ExecError> {
        if h > 0xffff || w > 0xffff {
            return Err(ExecError::Shape(format!(
                "a window of {h}×{w} is over the GPU kernels' 65535"
            )));
        }
        Ok(h as u32 | (w as u32) << 16)
    };
    Ok(ConvParams {
        c: u(win.c)?,
        h: u(win.h)?,
        w: u(win.w)?,
        kh: u(win.kh)?,
        kw: u(win.kw)?,
        stride: pack(win.sh, win.sw)?,
        pad: pack(win.ph, win.pw)?,
        dil: pack(win.dh, win.dw)?,
        oh: u(win.oh)?,
        ow: u(win.ow)?,
        filters: u(filters)?,
        ..ConvParams::default()
    })
}
