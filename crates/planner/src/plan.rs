//! The plan's types, and nothing that computes them: the flat, serializable list of nodes in
//! topological order, the schedules executors run, the target it is lowered for, its cost,
//! memory plan and data-parallel plan. A leaf module: the passes that fill these in
//! (`compile.rs` and the modules it calls) depend on it, never the other way round.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weft_dsl::{Metric, TrainSpec};

use crate::op::{Op, Phase, Shape};
use crate::workflow::Stage;
use weft_common::Task;

/// Plan JSON format version; bump on any incompatible change. 2: the target device
/// (`device`), its memory plan (`memory`) and the `MatMulBias` op.
pub const PLAN_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNode {
    pub id: usize,
    pub name: String,
    pub op: Op,
    pub inputs: Vec<usize>,
    pub shape: Shape,
    pub phase: Phase,
    /// Floating-point operations per training step at the spec's batch size.
    pub flops: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamRef {
    pub name: String,
    pub node: usize,
    pub grad: usize,
    pub shape: Shape,
    /// The spec path of the layer that made it (`model[0].dense`), for errors about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Schedules: the node ids each kind of step runs, in order (dead code removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedules {
    /// Forward, backward and updates (for L-BFGS: forward and backward only).
    pub train: Vec<usize>,
    /// Forward and backward to the loss and every gradient, no updates (L-BFGS, gradient checks).
    pub gradients: Vec<usize>,
    /// Forward in evaluation mode, with the loss.
    pub eval: Vec<usize>,
    /// Forward to the predictions, without labels.
    pub predict: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub name: String,
    pub seed: u64,
    pub workflow: Vec<Stage>,
    pub task: Task,
    pub features: Vec<String>,
    /// Ids each embedding column takes (the data's, as planned).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vocab: std::collections::BTreeMap<String, usize>,
    pub train: TrainSpec,
    pub evaluate: Vec<Metric>,
    pub nodes: Vec<PlanNode>,
    pub inputs: Vec<usize>,
    pub target: usize,
    pub loss: usize,
    pub output: usize,
    pub params: Vec<ParamRef>,
    pub schedules: Schedules,
    pub cost: Cost,
    /// Data-parallel training (`parallelism.data`, even with one worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<DataParallelPlan>,
    /// The device this plan is lowered for (`target.rs`): its passes have run.
    #[serde(default)]
    pub device: Target,
    /// Where every activation of every schedule lives (targets that plan memory: the GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryPlan>,
    /// The loss's weight of each class (`train.class_weight`, resolved against the train
    /// split's classes by [`Plan::with_class_weights`]); `None`: every class weighs 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    /// Each training row carries a weight (`data.weight_column`) that multiplies its loss.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sample_weighted: bool,
}

/// What one planner pass did, for `weft plan --verbose`: a summary line and the graph after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PassLog {
    pub pass: &'static str,
    pub summary: String,
    pub graph: String,
}

impl Plan {
    /// Total number of trainable values.
    /// The plan with the loss weighting class i by `w[i]` (one weight per class).
    pub fn with_class_weights(mut self, w: Vec<f32>) -> Result<Plan, crate::PlanError> {
        let classes = match self.task {
            Task::Classification { classes } => classes,
            Task::Regression { .. } => 0,
        };
        if w.len() != classes {
            return Err(crate::PlanError::Spec {
                path: "train.class_weight".into(),
                message: format!("{} class weights for {classes} classes", w.len()),
            });
        }
        if let Some(train) = self
            .workflow
            .iter_mut()
            .find(|s| s.kind == crate::workflow::StageKind::Train)
        {
            let shown: Vec<String> = w.iter().map(|v| format!("{v:.4}")).collect();
            train
                .details
                .push(("class_weights".into(), format!("[{}]", shown.join(", "))));
        }
        self.class_weights = Some(w);
        Ok(self)
    }

    pub fn num_params(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.shape.numel(1))
            .fold(0, usize::saturating_add)
    }
}

/// The device a plan is lowered for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Also the device-independent plan every other target is lowered from.
    #[default]
    Cpu,
    Gpu,
}

impl Target {
    /// The target a spec's `executor.device` plans for: `gpu` is the GPU; `cpu` and `auto`
    /// plan for the CPU (a run under `auto` that finds a GPU lowers its plan again).
    pub fn of(device: weft_dsl::Device) -> Target {
        match device {
            weft_dsl::Device::Gpu => Target::Gpu,
            weft_dsl::Device::Cpu | weft_dsl::Device::Auto => Target::Cpu,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Gpu => "gpu",
        }
    }
}

/// Whole-plan figures shown by `weft plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub params: usize,
    pub batch_size: usize,
    /// FLOPs of one training step at `batch_size`.
    pub train_flops_per_step: u64,
    /// FLOPs of one prediction per row.
    pub predict_flops_per_row: u64,
    /// Bytes of every tensor a training step writes (activations, gradients), fp32.
    pub activation_bytes: u64,
    /// Bytes of parameters (fp32).
    pub param_bytes: u64,
    /// Scratch bytes one CPU thread holds besides the tensors (the convolutions' im2col
    /// columns of one image); 0 for dense models.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workspace_bytes: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A reusable buffer: `cols` floats per batch row, or a fixed number of floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    PerRow(usize),
    Fixed(usize),
}

impl Slot {
    /// Floats at batch `batch`.
    pub fn len(&self, batch: usize) -> usize {
        match *self {
            Slot::PerRow(c) => c.saturating_mul(batch),
            Slot::Fixed(n) => n,
        }
    }
}

/// Where a node's output lives while one schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Storage {
    /// Parameter `i` (in the plan's `params` order), in place.
    Param(usize),
    /// The gradient of parameter `i`, kept after the step (data parallel, `grads()`).
    Grad(usize),
    /// Reused slot `s`.
    Slot(usize),
    /// Held by the executor itself (an input batch bound as is, an in-place update).
    External,
}

/// Which schedule of the plan (`Plan::schedules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScheduleKind {
    Train,
    Gradients,
    Eval,
    Predict,
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 4] = [
        ScheduleKind::Train,
        ScheduleKind::Gradients,
        ScheduleKind::Eval,
        ScheduleKind::Predict,
    ];

    pub fn ids(self, plan: &Plan) -> &[usize] {
        match self {
            ScheduleKind::Train => &plan.schedules.train,
            ScheduleKind::Gradients => &plan.schedules.gradients,
            ScheduleKind::Eval => &plan.schedules.eval,
            ScheduleKind::Predict => &plan.schedules.predict,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPlan {
    pub slots: Vec<Slot>,
    /// Per schedule (in `ScheduleKind::ALL` order), the storage of every node it runs.
    pub storage: Vec<BTreeMap<usize, Storage>>,
}

/// How the workers of a data-parallel run stay in step, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataParallelPlan {
    pub workers: usize,
    /// `allreduce`, `parameter_server/downpour`, `local_sgd`, `gossip`.
    pub strategy: String,
    /// Steps between exchanges: the spec's `communication_window`, or 1 for allreduce and
    /// the synchronous parameter server, which exchange every step.
    pub window: usize,
    /// `none`, `fp16`, `int8`, `topk(ratio=0.01, error_feedback)`.
    pub compression: String,
    /// All-reduce fusion buckets, in the order they are ready during backward.
    pub buckets: Vec<Bucket>,
    /// Bytes per worker per step of every strategy (the spec's one is `chosen`).
    pub traffic: Vec<Traffic>,
}

/// Gradients reduced together as soon as the last of them is computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: usize,
    /// Indices into `Plan::params`, in the order their gradients are ready.
    pub params: Vec<usize>,
    pub elements: usize,
    /// fp32 bytes before compression (4 per element).
    pub bytes: u64,
}

/// One strategy's bytes on the wire per worker per training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// `allreduce`, `parameter_server/<algorithm>`, `local_sgd` or `gossip`.
    pub strategy: String,
    /// With compression applied and window-spread; 0 with one worker. Peer strategies count
    /// what a worker sends (it receives as much); the parameter server counts push + pull.
    pub bytes_per_worker_per_step: f64,
    pub chosen: bool,
    /// The formula in K (parameter bytes) and N (workers), with the window w written out:
    /// `2(N-1)K/N`, `push K (pulls K) every w=5 steps`; compression scales every row.
    pub formula: String,
}
