//! Cost model: FLOPs per node and per step, parameters, activation memory.

use crate::op::{LossKind, Op, Shape};
use crate::plan::{Cost, ParamRef, PlanNode, Schedules};

/// Floating-point operations of one node at batch `batch` (multiply-add = 2).
pub fn flops(op: &Op, inputs: &[Shape], out: &Shape, batch: usize) -> u64 {
    let n = out.numel(batch) as u64;
    let first = inputs.first().map(|s| s.numel(batch) as u64).unwrap_or(0);
    match op {
        Op::Input { .. } | Op::Target | Op::Param { .. } | Op::Slice { .. } | Op::LbfgsStep => 0,
        Op::MatMul { ta, .. } => {
            let a = inputs[0];
            let k = if *ta { a.rows_at(batch) } else { a.cols };
            2 * n * k as u64
        }
        Op::BiasAdd | Op::Add | Op::Dropout { .. } | Op::DropoutGrad { .. } => {
            n * inputs.len().saturating_sub(1).max(1) as u64
        }
        Op::Concat => 0,
        Op::Act(_) => 4 * n,
        Op::BiasAct(_) => 5 * n,
        Op::MatMulBias { ta, act, .. } => {
            let a = inputs[0];
            let k = if *ta { a.rows_at(batch) } else { a.cols };
            let epilogue = if *act == weft_dsl::Activation::Linear {
                1
            } else {
                5
            };
            2 * n * k as u64 + epilogue * n
        }
        Op::ActGrad(_) => 6 * n,
        Op::Norm { .. } => 8 * n,
        Op::NormGrad { .. } => 12 * first,
        Op::SumRows => first,
        Op::Loss(k) | Op::LossGrad(k) => match k {
            LossKind::SoftmaxCrossEntropy => 6 * first,
            LossKind::SigmoidBinaryCrossEntropy => 6 * first,
            LossKind::Mse { .. } => 3 * first,
        },
        Op::GradNorm => 2 * inputs.iter().map(|s| s.numel(batch) as u64).sum::<u64>(),
        Op::Update { .. } => 10 * n,
    }
}

impl Cost {
    pub fn of(nodes: &[PlanNode], params: &[ParamRef], s: &Schedules, batch: usize) -> Cost {
        let sum = |ids: &[usize]| ids.iter().map(|i| nodes[*i].flops).sum::<u64>();
        let per_row = if batch > 0 {
            sum(&s.predict) / batch as u64
        } else {
            0
        };
        let n_params: usize = params.iter().map(|p| p.shape.numel(1)).sum();
        let activation_bytes = s
            .train
            .iter()
            .filter(|i| !matches!(nodes[**i].op, Op::Param { .. } | Op::Update { .. }))
            .map(|i| 4 * nodes[*i].shape.numel(batch) as u64)
            .sum();
        Cost {
            params: n_params,
            batch_size: batch,
            train_flops_per_step: sum(&s.train),
            predict_flops_per_row: per_row,
            activation_bytes,
            param_bytes: 4 * n_params as u64,
        }
    }
}
