//! The compile driver: a validated spec and the data's shape into a plan, by an ordered list
//! of passes — build the forward graph (`build.rs`), fuse bias + activation (`fuse.rs`),
//! autodiff (`autodiff.rs`), optimizer updates, then flatten into nodes and schedules with
//! their cost (`cost.rs`) and data-parallel plan (`parallel.rs`), and lower for the target
//! device (`target.rs`). `weft plan --verbose` prints the graph after each pass.

use std::collections::{BTreeMap, HashMap};

use petgraph::stable_graph::NodeIndex;
use weft_common::{DataShape, Task};
use weft_dsl::{Metric, Optimizer, Spec, TrainSpec};

use crate::autodiff;
use crate::build;
use crate::cost;
use crate::display;
use crate::error::PlanError;
use crate::fuse;
use crate::graph::Graph;
use crate::op::{Op, Phase, Shape};
use crate::plan::Cost;
use crate::plan::{
    DataParallelPlan, ParamRef, PassLog, Plan, PlanNode, Schedules, Target, PLAN_VERSION,
};
use crate::target;
use crate::workflow;

impl Plan {
    /// Plans a validated spec for data of the given shape, lowered for the target of its
    /// `executor.device` ([`Target::of`]).
    pub fn new(spec: &Spec, data: &DataShape) -> Result<Plan, PlanError> {
        Plan::for_target(spec, data, Target::of(spec.executor.device))
    }

    /// Plans a validated spec for data of the given shape, lowered for `target`.
    pub fn for_target(spec: &Spec, data: &DataShape, target: Target) -> Result<Plan, PlanError> {
        Ok(target::lower(Plan::build(spec, data, None)?, target)?.0)
    }

    /// [`Plan::new`], recording the graph after every pass (build, fusion, autodiff,
    /// updates, then the target's passes).
    pub fn traced(spec: &Spec, data: &DataShape) -> Result<(Plan, Vec<PassLog>), PlanError> {
        let mut log = Vec::new();
        let plan = Plan::build(spec, data, Some(&mut log))?;
        let target = Target::of(spec.executor.device);
        let (plan, passes) = target::lower(plan, target)?;
        for (pass, summary) in passes {
            log.push(PassLog {
                pass,
                summary: format!("{}: {summary}", target.name()),
                graph: display::text(&plan),
            });
        }
        Ok((plan, log))
    }

    /// This plan lowered for `target` (itself when it already is): a run under
    /// `executor.device: auto` that finds a GPU, or a worker that runs on one.
    pub fn lowered_for(self, target: Target) -> Result<Plan, PlanError> {
        Ok(target::lower(self, target)?.0)
    }

    fn build(
        spec: &Spec,
        data: &DataShape,
        mut log: Option<&mut Vec<PassLog>>,
    ) -> Result<Plan, PlanError> {
        let mut record =
            |pass: &'static str, summary: String, g: &Graph| -> Result<(), PlanError> {
                if let Some(log) = log.as_deref_mut() {
                    log.push(PassLog {
                        pass,
                        summary,
                        graph: display::graph_text(g)?,
                    });
                }
                Ok(())
            };
        let mut fwd = build::forward(spec, data)?;
        check_metrics(spec, &fwd.task)?;
        record(
            "build",
            format!(
                "forward graph with shapes: {} nodes",
                fwd.graph.g.node_count()
            ),
            &fwd.graph,
        )?;
        let fused = fuse::activations(&mut fwd.graph)?;
        for (old, new) in &fused {
            if fwd.output == *old {
                fwd.output = *new;
            }
        }
        let summary = match fused.len() {
            0 => "no change (no BiasAdd → activation pair to fuse)".to_string(),
            n => format!("fused {n} BiasAdd → activation pair(s) into BiasAct"),
        };
        record("fusion", summary, &fwd.graph)?;
        let mut g = fwd.graph;
        let before = g.g.node_count();
        let grads = autodiff::backward(&mut g, fwd.loss, &fwd.params)?;
        record(
            "autodiff",
            format!(
                "added {} backward nodes for {} parameters",
                g.g.node_count() - before,
                grads.len()
            ),
            &g,
        )?;
        let before = g.g.node_count();
        let ends = updates(&mut g, &spec.train, &fwd.params, &fwd.penalties, &grads)?;
        record(
            "updates",
            format!(
                "added {} {} node(s)",
                g.g.node_count() - before,
                spec.train.optimizer.name()
            ),
            &g,
        )?;

        let order = g.topo_order()?;
        let id: HashMap<NodeIndex, usize> =
            order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let ids = |v: Vec<NodeIndex>| v.into_iter().map(|n| id[&n]).collect::<Vec<_>>();
        let batch = spec.train.batch_size;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let nodes: Vec<PlanNode> = order
            .iter()
            .map(|&n| {
                let node = &g.g[n];
                let count = seen.entry(node.name.clone()).or_insert(0);
                *count += 1;
                let name = if *count == 1 {
                    node.name.clone()
                } else {
                    format!("{}#{count}", node.name)
                };
                let inputs = g.inputs(n);
                let in_shapes: Vec<Shape> = inputs.iter().map(|i| g.g[*i].shape).collect();
                PlanNode {
                    id: id[&n],
                    name,
                    flops: cost::flops(&node.op, &in_shapes, &node.shape, batch),
                    op: node.op.clone(),
                    inputs: ids(inputs),
                    shape: node.shape,
                    phase: node.phase,
                }
            })
            .collect();
        let params: Vec<ParamRef> = fwd
            .params
            .iter()
            .map(|p| ParamRef {
                name: g.g[*p].name.clone(),
                node: id[p],
                grad: id[&grads[p]],
                shape: g.g[*p].shape,
                origin: g.g[*p].origin.clone(),
            })
            .collect();
        let gradient_ends: Vec<NodeIndex> = fwd
            .params
            .iter()
            .map(|p| grads[p])
            .chain([fwd.loss])
            .collect();
        let schedules = Schedules {
            train: ids(g.needed(&ends)?),
            gradients: ids(g.needed(&gradient_ends)?),
            eval: ids(g.needed(&[fwd.output, fwd.loss])?),
            predict: ids(g.needed(&[fwd.output])?),
        };
        let cost = Cost::of(&nodes, &params, &schedules, batch);
        let parallel = spec
            .parallelism
            .data
            .as_ref()
            .map(|d| DataParallelPlan::new(d, &params));
        Ok(Plan {
            version: PLAN_VERSION,
            name: spec.name.clone(),
            seed: spec.seed,
            workflow: workflow::stages(spec),
            task: fwd.task.clone(),
            features: data.features.clone(),
            vocab: data.vocab.clone(),
            train: spec.train.clone(),
            evaluate: spec.evaluate.clone(),
            inputs: ids(fwd.inputs),
            target: id[&fwd.target],
            loss: id[&fwd.loss],
            output: id[&fwd.output],
            nodes,
            params,
            schedules,
            cost,
            parallel,
            device: Target::Cpu,
            memory: None,
            class_weights: None,
            sample_weighted: spec.data.weight_column.is_some(),
        })
    }
}

/// Adds the optimizer's nodes; returns the nodes a training step must reach.
fn updates(
    g: &mut Graph,
    train: &TrainSpec,
    params: &[NodeIndex],
    penalties: &std::collections::HashMap<NodeIndex, crate::op::Penalty>,
    grads: &BTreeMap<NodeIndex, NodeIndex>,
) -> Result<Vec<NodeIndex>, PlanError> {
    let all_grads: Vec<NodeIndex> = params.iter().map(|p| grads[p]).collect();
    if let Optimizer::Lbfgs(_) = train.optimizer {
        if !penalties.is_empty() {
            return Err(PlanError::Spec {
                path: "train.optimizer.lbfgs".into(),
                message: "L-BFGS minimises the loss alone; a dense layer's l1 / l2 penalty needs a gradient optimizer (sgd, adam, …)".into(),
            });
        }
        let inputs: Vec<NodeIndex> = params
            .iter()
            .copied()
            .chain(all_grads.iter().copied())
            .collect();
        // The L-BFGS loop evaluates loss and gradients itself; the step node shows it in plans.
        g.add("lbfgs", Op::LbfgsStep, &inputs, Phase::Update, None)?;
        let mut ends = all_grads;
        ends.extend(
            g.g.node_indices()
                .filter(|n| matches!(g.g[*n].op, Op::Loss(_))),
        );
        return Ok(ends);
    }
    let norm = match train.clip_grad_norm {
        Some(_) => Some(g.add("grad_norm", Op::GradNorm, &all_grads, Phase::Update, None)?),
        None => None,
    };
    let mut ends = Vec::new();
    for p in params {
        let name = g.g[*p].name.clone();
        let mut inputs = vec![*p, grads[p]];
        inputs.extend(norm);
        ends.push(g.add(
            &format!("{name}.update"),
            Op::Update {
                param: name,
                penalty: penalties.get(p).copied().unwrap_or_default(),
            },
            &inputs,
            Phase::Update,
            None,
        )?);
    }
    // The loss is computed in the step too (it is what the progress bar shows).
    ends.extend(
        g.g.node_indices()
            .filter(|n| matches!(g.g[*n].op, Op::Loss(_))),
    );
    Ok(ends)
}

fn check_metrics(spec: &Spec, task: &Task) -> Result<(), PlanError> {
    for (i, m) in spec.evaluate.iter().enumerate() {
        let path = format!("evaluate[{i}]");
        match (m, task) {
            (Metric::Auc, Task::Classification { classes }) if *classes != 2 => {
                return Err(PlanError::spec(
                    path,
                    format!("auc needs a binary problem; the data has {classes} classes"),
                ));
            }
            (Metric::Mse | Metric::Mae | Metric::R2, Task::Classification { .. }) => {
                return Err(PlanError::spec(
                    path,
                    format!("{} is a regression metric; for classification use accuracy, precision, recall, f1, auc or confusion_matrix", m.name()),
                ));
            }
            (
                Metric::Accuracy
                | Metric::Precision
                | Metric::Recall
                | Metric::F1
                | Metric::Auc
                | Metric::ConfusionMatrix,
                Task::Regression { .. },
            ) => {
                return Err(PlanError::spec(
                    path,
                    format!(
                        "{} is a classification metric; for regression use mse, mae or r2",
                        m.name()
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
