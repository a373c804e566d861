//! Cost model: FLOPs per node and per step, parameters, activation memory.

use crate::op::{ConvPart, LossKind, Op, Shape};
use crate::plan::{Cost, ParamRef, Plan, PlanNode, Schedules};

/// Floating-point operations of one node at batch `batch` (multiply-add = 2). Products
/// saturate at `u64::MAX`: a spec can ask for any size, and an absurd one must plan (and
/// then be refused by the memory preflight), not overflow.
pub fn flops(op: &Op, inputs: &[Shape], out: &Shape, batch: usize) -> u64 {
    let m = |a: u64, b: u64| a.saturating_mul(b);
    let n = out.numel(batch) as u64;
    let first = inputs.first().map(|s| s.numel(batch) as u64).unwrap_or(0);
    let inner = |ta: bool| {
        let a = inputs[0];
        (if ta { a.rows_at(batch) } else { a.cols }) as u64
    };
    match op {
        Op::Input { .. } | Op::Target | Op::Param { .. } | Op::Slice { .. } | Op::LbfgsStep => 0,
        Op::MatMul { ta, .. } => m(m(2, n), inner(*ta)),
        Op::BiasAdd | Op::Add | Op::Dropout { .. } | Op::DropoutGrad { .. } => {
            m(n, inputs.len().saturating_sub(1).max(1) as u64)
        }
        Op::Concat | Op::Flatten => 0,
        // A multiply-add per weight per output position (+ the bias); the input's and the
        // weights' gradients are the same products again.
        Op::Conv2d { win, filters, .. }
        | Op::Conv2dGrad {
            win,
            filters,
            part: ConvPart::Input | ConvPart::Weight,
        } => {
            let rows = inputs.first().map_or(0, |s| s.rows_at(batch)) as u64;
            let rows = if matches!(
                op,
                Op::Conv2dGrad {
                    part: ConvPart::Weight,
                    ..
                } | Op::Conv2d { .. }
            ) {
                rows
            } else {
                inputs.get(1).map_or(0, |s| s.rows_at(batch)) as u64
            };
            m(
                m(m(2, rows), (win.positions() * filters) as u64),
                win.patch() as u64,
            )
        }
        Op::Conv2dGrad {
            part: ConvPart::Bias,
            ..
        } => first,
        Op::Pool2d { win, .. } | Op::Pool2dGrad { win, .. } => {
            let rows = inputs.first().map_or(0, |s| s.rows_at(batch)) as u64;
            m(
                m(rows, (win.c * win.positions()) as u64),
                (win.kh * win.kw) as u64,
            )
        }
        // A row copy per id; the gradient clears the table, then adds a row per id.
        Op::Embedding => n,
        Op::EmbeddingGrad { .. } => {
            n.saturating_add(inputs.get(1).map_or(0, |s| s.numel(batch) as u64))
        }
        Op::Act(_) => m(4, n),
        Op::BiasAct(_) => m(5, n),
        Op::MatMulBias { ta, act, .. } => {
            let epilogue = if *act == weft_dsl::Activation::Linear {
                1
            } else {
                5
            };
            m(m(2, n), inner(*ta)).saturating_add(m(epilogue, n))
        }
        Op::ActGrad(_) => m(6, n),
        Op::Norm { .. } => m(8, n),
        Op::NormGrad { .. } => m(12, first),
        Op::SumRows => first,
        Op::Loss(k) | Op::LossGrad(k) => match k {
            LossKind::SoftmaxCrossEntropy => m(6, first),
            LossKind::SigmoidBinaryCrossEntropy => m(6, first),
            LossKind::Mse { .. } => m(3, first),
        },
        Op::GradNorm => m(
            2,
            inputs
                .iter()
                .map(|s| s.numel(batch) as u64)
                .fold(0, u64::saturating_add),
        ),
        Op::Update { .. } => m(10, n),
    }
}

/// Values the optimizer keeps per parameter value (moments, momentum; L-BFGS's history).
pub fn optimizer_slots(opt: &weft_dsl::Optimizer) -> u64 {
    use weft_dsl::Optimizer;
    match opt {
        Optimizer::Sgd(s) => u64::from(s.momentum > 0.0),
        Optimizer::Adagrad(_) => 1,
        Optimizer::Rmsprop(r) => 1 + u64::from(r.momentum > 0.0),
        Optimizer::Adam(_) | Optimizer::Adamw(_) => 2,
        Optimizer::Lbfgs(l) => 2 * l.history as u64 + 2,
    }
}

/// Bytes of every tensor a training step writes at batch `batch` (activations, gradients),
/// fp32, saturating.
pub fn activation_bytes(nodes: &[PlanNode], s: &Schedules, batch: usize) -> u64 {
    s.train
        .iter()
        .filter(|i| !matches!(nodes[**i].op, Op::Param { .. } | Op::Update { .. }))
        .map(|i| 4u64.saturating_mul(nodes[*i].shape.numel(batch) as u64))
        .fold(0, u64::saturating_add)
}

impl Plan {
    /// Bytes a training step at batch `batch` holds: parameters, their gradients and the
    /// optimizer's state, and the activations (saturating).
    pub fn train_bytes(&self, batch: usize) -> u64 {
        self.cost
            .param_bytes
            .saturating_mul(2 + optimizer_slots(&self.train.optimizer))
            .saturating_add(activation_bytes(&self.nodes, &self.schedules, batch))
    }
}

impl Cost {
    pub fn of(nodes: &[PlanNode], params: &[ParamRef], s: &Schedules, batch: usize) -> Cost {
        let sum = |ids: &[usize]| {
            ids.iter()
                .map(|i| nodes[*i].flops)
                .fold(0, u64::saturating_add)
        };
        let per_row = if batch > 0 {
            sum(&s.predict) / batch as u64
        } else {
            0
        };
        let n_params: usize = params
            .iter()
            .map(|p| p.shape.numel(1))
            .fold(0, usize::saturating_add);
        let activation_bytes = activation_bytes(nodes, s, batch);
        Cost {
            params: n_params,
            batch_size: batch,
            train_flops_per_step: sum(&s.train),
            predict_flops_per_row: per_row,
            activation_bytes,
            param_bytes: 4u64.saturating_mul(n_params as u64),
        }
    }
}
