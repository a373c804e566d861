//! Lowering: a plan's schedule at a given batch size becomes a list of kernel calls
//! (`call.rs`); this file holds the walk over the schedule and the optimizer's updates.
//!
//! The plan comes lowered for the GPU by the planner (`weft_planner::target`): its
//! `MatMulBias` nodes are matmul kernels with the bias and activation in their epilogue, and
//! its memory plan says where every activation lives. Each node becomes calls in
//! `lower_ops.rs` (matmuls in `lower_matmul.rs`, reductions in `reductions.rs`).

use weft_dsl::Optimizer;
use weft_planner::{Op, Plan};

use super::arena::Layout;
use super::call::{groups_1d, u, Buf, Call, Run};
use super::codes::OptimCode;
use super::kernels::Kernel;
use super::lower_ops::node;
use super::reductions::grad_norm;
use super::uniforms::OptimParams;
use crate::error::ExecError;
use weft_planner::op::Penalty;

/// The kernel calls of `ids` (in the GPU plan), with parameters placed by `layout`.
pub fn lower(
    plan: &Plan,
    ids: &[usize],
    run: Run,
    layout: &Layout,
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
            Op::GradNorm => grad_norm(&layout.arenas, Buf::Node(id), &mut calls)?,
            // Every parameter at once, after the last gradient is in.
            Op::Update { .. } if Some(k) == last_update => {
                update_all(plan, id, layout, run, &mut calls)?
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
    arenas: &Layout,
    run: Run,
    calls: &mut Vec<Call>,
) -> Result<(), ExecError> {
    let mut p = optimizer_params(&plan.train.optimizer);
    let norm = match (plan.nodes[id].inputs.get(2), plan.train.clip_grad_norm) {
        (Some(norm), Some(max)) => {
            p.clip = 1;
            p.max_norm = max as f32;
            Some(Buf::Node(*norm))
        }
        _ => None,
    };
    for (a, (offset, len, penalty)) in ranges(plan, arenas) {
        let mut reads = vec![Buf::Grads(a)];
        reads.extend(norm);
        calls.push(Call {
            kernel: Kernel::optim(),
            groups: groups_1d(len, run.max_dim),
            params: OptimParams {
                n: u(len)?,
                offset: u(offset)?,
                l1: penalty.l1,
                l2: penalty.l2,
                ..p
            }
            .into(),
            reads,
            writes: vec![Buf::Params(a), Buf::OptM(a), Buf::OptV(a)],
        });
    }
    Ok(())
}

/// The optimizer's dispatches: `(arena, offset, len, penalty)`. Without penalties, one per
/// arena; with them, one per run of neighbouring parameters under the same penalty.
fn ranges(plan: &Plan, layout: &Layout) -> Vec<(usize, (usize, usize, Penalty))> {
    let penalties: std::collections::HashMap<&str, Penalty> = plan
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Update { param, penalty } => Some((param.as_str(), *penalty)),
            _ => None,
        })
        .collect();
    if penalties.values().all(Penalty::is_zero) {
        return layout
            .arenas
            .iter()
            .enumerate()
            .map(|(a, &len)| (a, (0, len, Penalty::default())))
            .collect();
    }
    let mut out: Vec<(usize, (usize, usize, Penalty))> = Vec::new();
    for (param, place) in plan.params.iter().zip(&layout.places) {
        let penalty = penalties
            .get(param.name.as_str())
            .copied()
            .unwrap_or_default();
        let end = place.offset + place.len.max(1);
        match out.last_mut() {
            Some((a, (offset, len, p))) if *a == place.arena && *p == penalty => {
                *len = end - *offset;
            }
            _ => out.push((place.arena, (place.offset, end - place.offset, penalty))),
        }
    }
    out
}

/// The optimizer's rule and constants for optim.wgsl.
fn optimizer_params(opt: &Optimizer) -> OptimParams {
    let p = OptimParams::default();
    match opt {
        Optimizer::Sgd(s) => OptimParams {
            kind: if s.momentum == 0.0 {
                OptimCode::Sgd
            } else if s.nesterov {
                OptimCode::SgdNesterov
            } else {
                OptimCode::SgdMomentum
            }
            .code(),
            weight_decay: s.weight_decay as f32,
            momentum: s.momentum as f32,
            ..p
        },
        Optimizer::Adagrad(a) => OptimParams {
            kind: OptimCode::Adagrad.code(),
            weight_decay: a.weight_decay as f32,
            epsilon: a.epsilon as f32,
            ..p
        },
        Optimizer::Rmsprop(r) => OptimParams {
            kind: OptimCode::Rmsprop.code(),
            weight_decay: r.weight_decay as f32,
            rho: r.rho as f32,
            epsilon: r.epsilon as f32,
            momentum: r.momentum as f32,
            ..p
        },
        Optimizer::Adam(a) | Optimizer::Adamw(a) => OptimParams {
            kind: if matches!(opt, Optimizer::Adamw(_)) {
                OptimCode::Adamw
            } else {
                OptimCode::Adam
            }
            .code(),
            weight_decay: crate::optim::adam_weight_decay(opt).unwrap_or(0.0),
            beta1: a.beta1 as f32,
            beta2: a.beta2 as f32,
            epsilon: a.epsilon as f32,
            ..p
        },
        // An L-BFGS plan has no update nodes: its loop takes the steps itself.
        Optimizer::Lbfgs(_) => p,
    }
}
