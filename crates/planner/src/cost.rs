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

/// Runs of samples whose convolution weight gradients the CPU executor sums separately
/// (in parallel), then adds in order: a fixed number, so the gradient's bits do not depend
/// on how many threads the machine has (a run resumed elsewhere stays exact).
pub const CONV_WEIGHT_GRAD_PARTS: usize = 16;

/// Scratch bytes one CPU thread holds while a training step runs: the largest of the
/// convolutions' im2col columns of one image `[c·kh·kw, P]` (the CPU executor convolves an
/// image at a time, reusing them between steps). A pointwise convolution reads the image as
/// its columns. The GPU executor's kernels need none.
pub fn workspace_bytes(nodes: &[PlanNode], s: &Schedules) -> u64 {
    largest_train_floats(nodes, s, |op| match op {
        Op::Conv2d { win, .. }
        | Op::Conv2dGrad {
            win,
            part: ConvPart::Input | ConvPart::Weight,
            ..
        } if !win.pointwise() => win.patch() * win.positions(),
        _ => 0,
    })
}

/// Bytes of the largest convolution weight gradient's partial sums
/// ([`CONV_WEIGHT_GRAD_PARTS`] of `[F, c·kh·kw]`).
fn partial_sum_bytes(nodes: &[PlanNode], s: &Schedules) -> u64 {
    largest_train_floats(nodes, s, |op| match op {
        Op::Conv2dGrad {
            win,
            filters,
            part: ConvPart::Weight,
        } => CONV_WEIGHT_GRAD_PARTS * filters * win.patch(),
        _ => 0,
    })
}

/// Bytes (fp32) of the largest `floats(op)` over a training step's nodes.
fn largest_train_floats(nodes: &[PlanNode], s: &Schedules, floats: impl Fn(&Op) -> usize) -> u64 {
    s.train
        .iter()
        .map(|i| floats(&nodes[*i].op))
        .max()
        .map_or(0, |f| 4u64.saturating_mul(f as u64))
}

impl Plan {
    /// Bytes a training step at batch `batch` holds on `threads` CPU threads: parameters,
    /// their gradients and the optimizer's state, the activations, each thread's
    /// convolution workspace and the weight gradients' partial sums (saturating).
    pub fn train_bytes(&self, batch: usize, threads: usize) -> u64 {
        self.cost
            .param_bytes
            .saturating_mul(2 + optimizer_slots(&self.train.optimizer))
            .saturating_add(activation_bytes(&self.nodes, &self.schedules, batch))
            .saturating_add(self.cost.workspace_bytes.saturating_mul(threads as u64))
            .saturating_add(partial_sum_bytes(&self.nodes, &self.schedules))
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
            workspace_bytes: workspace_bytes(nodes, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;
    use weft_common::{DataShape, Task};

    fn plan(model: &str) -> Plan {
        let text = format!(
            "name: t\ndata: {{source: builtin:iris, image: {{channels: 1, height: 8, width: 8}}}}\nmodel:\n{model}\ntrain: {{batch_size: 4, optimizer: {{sgd: {{lr: 0.1}}}}}}\n"
        );
        let (spec, _) = weft_dsl::load("t.yaml", &text, &[]).expect("spec");
        let data = DataShape {
            features: (0..64).map(|i| format!("p{i}")).collect(),
            task: Task::Classification { classes: 3 },
            vocab: Default::default(),
        };
        Plan::new(&spec, &data).expect("plan")
    }

    #[test]
    fn the_workspace_is_the_largest_convolution_scratch_of_one_image() {
        // conv 4@3×3 same on 1×8×8: columns 9×64; conv 6@3×3 valid on 4×8×8: columns
        // 36×36 (the largest), and its weight gradient's 16 partial sums of 6×36.
        let p = plan(
            "  - conv2d: {filters: 4, kernel: 3, padding: same}\n  - conv2d: {filters: 6, kernel: 3}\n  - flatten: {}\n  - dense: {units: 3, activation: softmax}",
        );
        assert_eq!(p.cost.workspace_bytes, 4 * 36 * 36);
        let one = p.train_bytes(4, 1);
        assert_eq!(p.train_bytes(4, 3) - one, 2 * p.cost.workspace_bytes);
        let no_partials = p.cost.param_bytes * 2 + p.cost.activation_bytes;
        assert_eq!(
            one - no_partials - p.cost.workspace_bytes,
            4 * (super::CONV_WEIGHT_GRAD_PARTS * 6 * 36) as u64
        );
        // A pointwise convolution reads the image as its columns.
        let p = plan(
            "  - conv2d: {filters: 5, kernel: 1}\n  - flatten: {}\n  - dense: {units: 3, activation: softmax}",
        );
        assert_eq!(p.cost.workspace_bytes, 0);
        // Dense models have none (and the plan's JSON does not mention it).
        let p = plan("  - flatten: {}\n  - dense: {units: 3, activation: softmax}");
        assert_eq!(p.cost.workspace_bytes, 0);
        let json = serde_json::to_string(&p.cost).expect("json");
        assert!(!json.contains("workspace"), "{json}");
    }
}
