//! Plans print themselves: indented text (one line per node), Graphviz DOT, and JSON.

use std::fmt::Write;

use crate::op::{Op, Phase};
use crate::plan::DataParallelPlan;
use crate::plan::Plan;
use crate::plan::{ScheduleKind, Storage};
use crate::workflow::StageKind;
use weft_common::units::{human, human_bytes};
use weft_common::Task;

fn detail(plan: &Plan, id: usize) -> String {
    let n = &plan.nodes[id];
    let mut parts = vec![format!("name={}", n.name)];
    if !n.inputs.is_empty() {
        let ins: Vec<&str> = n
            .inputs
            .iter()
            .map(|i| plan.nodes[*i].name.as_str())
            .collect();
        parts.push(format!("in=[{}]", ins.join(", ")));
    }
    parts.push(format!("shape={}", n.shape));
    match &n.op {
        Op::Param { init } => {
            parts.push(format!("params={}", n.shape.numel(1)));
            parts.push(format!("init={}", init_name(init.init, init.fill)));
        }
        Op::Dropout { rate, .. } | Op::DropoutGrad { rate, .. } => {
            parts.push(format!("rate={rate}"))
        }
        Op::Norm { eps, .. } => parts.push(format!("eps={eps}")),
        Op::Input { columns } => parts.push(format!("columns={}", columns.len())),
        _ => {}
    }
    if n.flops > 0 {
        parts.push(format!("flops={}", human(n.flops)));
    }
    format!("{}: {}", n.op.name(), parts.join(", "))
}

fn init_name(init: weft_dsl::Init, fill: f32) -> String {
    match init {
        weft_dsl::Init::Zeros if fill == 1.0 => "ones".into(),
        weft_dsl::Init::Zeros if fill != 0.0 => format!("constant({fill})"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}

/// What the target does with activations: the memory plan's slots (GPU), or one buffer
/// per node kept between steps (CPU).
fn memory_line(plan: &Plan) -> String {
    let c = &plan.cost;
    let params_grads = human_bytes(2.0 * c.param_bytes as f64);
    match &plan.memory {
        Some(mem) => {
            let unshared: usize = mem
                .of(ScheduleKind::Train)
                .iter()
                .filter(|(_, s)| matches!(s, Storage::Slot(_)))
                .map(|(id, _)| plan.nodes[*id].shape.numel(c.batch_size))
                .fold(0, usize::saturating_add);
            format!(
                "Memory: buffers={} (reused by liveness), activations={} at batch {} ({} without reuse), params+grads={params_grads}",
                mem.slots.len(),
                human_bytes(4.0 * mem.slot_floats(c.batch_size) as f64),
                c.batch_size,
                human_bytes(4.0 * unshared as f64),
            )
        }
        None => {
            // Parameters and gradients are counted in params+grads.
            let held: std::collections::BTreeSet<usize> =
                plan.params.iter().flat_map(|p| [p.node, p.grad]).collect();
            let own: Vec<usize> = plan
                .schedules
                .train
                .iter()
                .copied()
                .filter(|id| !held.contains(id))
                .collect();
            let floats: usize = own
                .iter()
                .map(|id| plan.nodes[*id].shape.numel(c.batch_size))
                .fold(0, usize::saturating_add);
            let workspace = if c.workspace_bytes > 0 {
                format!(
                    ", im2col workspace={} per thread",
                    human_bytes(c.workspace_bytes as f64)
                )
            } else {
                String::new()
            };
            format!(
                "Memory: buffers={} (one per node, kept between steps), activations={} at batch {}, params+grads={params_grads}{workspace}",
                own.len(),
                human_bytes(4.0 * floats as f64),
                c.batch_size,
            )
        }
    }
}

/// A compute graph (between passes) as one line per node in topological order.
pub fn graph_text(g: &crate::graph::Graph) -> Result<String, crate::PlanError> {
    let mut out = String::new();
    for n in g.topo_order()? {
        let node = &g.g[n];
        let ins: Vec<&str> = g.inputs(n).iter().map(|i| g.g[*i].name.as_str()).collect();
        let ins = if ins.is_empty() {
            String::new()
        } else {
            format!(", in=[{}]", ins.join(", "))
        };
        let _ = writeln!(
            out,
            "{}: name={}{ins}, shape={}, phase={:?}",
            node.op.name(),
            node.name,
            node.shape,
            node.phase
        );
    }
    Ok(out)
}

/// DataFusion-style indented text: workflow stages, and inside Train the compute graph
/// grouped by phase, two spaces per level.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let c = &plan.cost;
    let task = match &plan.task {
        Task::Classification { classes } => format!("classification({classes} classes)"),
        Task::Regression { targets } => format!("regression({targets} targets)"),
    };
    let _ = writeln!(
        out,
        "Workflow: name={}, target={}, task={task}, features={}, params={}, train_flops/step={}, batch_size={}",
        plan.name,
        plan.device.name(),
        plan.features.len(),
        c.params,
        human(c.train_flops_per_step),
        c.batch_size
    );
    for stage in &plan.workflow {
        let details: Vec<String> = stage
            .details
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "  {}: {}", stage.kind, details.join(", "));
        if stage.kind == StageKind::Train {
            let _ = writeln!(out, "    {}", memory_line(plan));
            // Membership by id (a list search per node made 20,000 layers take seconds).
            let mut trains = vec![false; plan.nodes.len()];
            for &i in &plan.schedules.train {
                if let Some(t) = trains.get_mut(i) {
                    *t = true;
                }
            }
            let in_train = |i: usize| trains.get(i).copied().unwrap_or(false);
            for (phase, label) in [
                (Phase::Forward, "Forward"),
                (Phase::Backward, "Backward"),
                (Phase::Update, "Update"),
            ] {
                let ids: Vec<usize> = plan
                    .nodes
                    .iter()
                    .filter(|n| n.phase == phase)
                    .map(|n| n.id)
                    .collect();
                let flops: u64 = ids
                    .iter()
                    .filter(|i| in_train(**i))
                    .map(|i| plan.nodes[*i].flops)
                    .fold(0, u64::saturating_add);
                let _ = writeln!(
                    out,
                    "    {label}: nodes={}, flops={}",
                    ids.len(),
                    human(flops)
                );
                for id in ids {
                    let dead = if in_train(id) { "" } else { " (predict only)" };
                    let _ = writeln!(out, "      {}{dead}", detail(plan, id));
                }
            }
            if let Some(p) = &plan.parallel {
                data_parallel_text(&mut out, plan, p);
            }
        }
    }
    out
}

/// Parameter names of a bucket, shortened to the first four and last two when long.
fn bucket_params(plan: &Plan, params: &[usize]) -> String {
    let name = |i: &usize| plan.params.get(*i).map_or("?", |p| p.name.as_str());
    let names: Vec<&str> = if params.len() > 8 {
        let mut v: Vec<&str> = params[..4].iter().map(name).collect();
        v.push("…");
        v.extend(params[params.len() - 2..].iter().map(name));
        v
    } else {
        params.iter().map(name).collect()
    };
    format!("[{}]", names.join(", "))
}

/// The data-parallel section of the Train stage: buckets, then every strategy's traffic
/// (the chosen one starred) so strategies can be compared from the plan alone.
fn data_parallel_text(out: &mut String, plan: &Plan, p: &DataParallelPlan) {
    let _ = writeln!(
        out,
        "    DataParallel: workers={}, strategy={}, window={}, compression={}, buckets={}",
        p.workers,
        p.strategy,
        p.window,
        p.compression,
        p.buckets.len()
    );
    for b in &p.buckets {
        let _ = writeln!(
            out,
            "      Bucket: id={}, params={}, elements={}, size={}",
            b.id,
            bucket_params(plan, &b.params),
            b.elements,
            human_bytes(b.bytes as f64)
        );
    }
    let _ = writeln!(
        out,
        "      Traffic: bytes per worker per step, K={} of parameters, N={}",
        human_bytes(plan.cost.param_bytes as f64),
        p.workers
    );
    let width = p
        .traffic
        .iter()
        .map(|t| t.strategy.len())
        .max()
        .unwrap_or(0);
    for t in &p.traffic {
        let _ = writeln!(
            out,
            "      {} {:<width$}  {:>10}  {}",
            if t.chosen { "*" } else { " " },
            t.strategy,
            human_bytes(t.bytes_per_worker_per_step),
            t.formula
        );
    }
}

/// Graphviz DOT: one cluster per phase, edges labelled with shapes.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", plan.name);
    let _ = writeln!(
        out,
        "  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    for (phase, label, color) in [
        (Phase::Forward, "forward", "#dbeafe"),
        (Phase::Backward, "backward", "#fee2e2"),
        (Phase::Update, "update", "#dcfce7"),
    ] {
        let _ = writeln!(out, "  subgraph cluster_{label} {{\n    label=\"{label}\"; style=filled; color=\"{color}\";");
        for n in plan.nodes.iter().filter(|n| n.phase == phase) {
            let _ = writeln!(
                out,
                "    n{} [label=\"{}\\n{}\\n{}\"];",
                n.id,
                n.name.replace('"', "'"),
                n.op.name().replace('"', "'"),
                n.shape
            );
        }
        let _ = writeln!(out, "  }}");
    }
    for n in &plan.nodes {
        for i in &n.inputs {
            let _ = writeln!(
                out,
                "  n{i} -> n{} [label=\"{}\"];",
                n.id, plan.nodes[*i].shape
            );
        }
    }
    if let Some(p) = &plan.parallel {
        collective_dot(&mut out, plan, p);
    }
    let _ = writeln!(out, "}}");
    out
}

/// The node that applies parameter `i`'s update (its `Update`, or the L-BFGS step).
fn update_node(plan: &Plan, i: usize) -> Option<usize> {
    let name = &plan.params.get(i)?.name;
    plan.nodes
        .iter()
        .find(|n| match &n.op {
            Op::Update { param, .. } => param == name,
            Op::LbfgsStep => true,
            _ => false,
        })
        .map(|n| n.id)
}

/// The data-parallel exchange as its own cluster: one all-reduce node per fusion bucket fed
/// by its gradients (dashed on to the updates), or one node for a strategy that exchanges
/// every few steps — fed by the gradients when it pushes gradients (sync, downpour, adag,
/// dynsgd, hogwild), by the updates when it averages parameters (easgd family, local_sgd,
/// gossip).
fn collective_dot(out: &mut String, plan: &Plan, p: &DataParallelPlan) {
    let _ = writeln!(
        out,
        "  subgraph cluster_collective {{\n    label=\"{} ({} workers, compression {})\"; style=filled; color=\"#fef3c7\";",
        p.strategy, p.workers, p.compression
    );
    let all: Vec<usize> = (0..plan.params.len()).collect();
    // (node name, label, the params it carries)
    let exchanges: Vec<(String, String, &[usize])> = if p.strategy == "allreduce" {
        p.buckets
            .iter()
            .map(|b| {
                (
                    format!("c{}", b.id),
                    format!(
                        "AllReduce bucket {}\\n{}",
                        b.id,
                        human_bytes(b.bytes as f64)
                    ),
                    b.params.as_slice(),
                )
            })
            .collect()
    } else {
        let what = match p.strategy.as_str() {
            "local_sgd" => "AllReduce average of parameters".to_string(),
            "gossip" => "Gossip average with neighbours".to_string(),
            ps => format!(
                "ParameterServer push/pull ({})",
                ps.trim_start_matches("parameter_server/")
            ),
        };
        let every = match p.window {
            1 => "every step".to_string(),
            w => format!("every {w} steps"),
        };
        vec![(
            "c0".to_string(),
            format!("{what}\\n{every}"),
            all.as_slice(),
        )]
    };
    for (node, label, _) in &exchanges {
        let _ = writeln!(out, "    {node} [label=\"{label}\", shape=ellipse];");
    }
    let _ = writeln!(out, "  }}");
    let averages_params = matches!(
        p.strategy.as_str(),
        "local_sgd"
            | "gossip"
            | "parameter_server/easgd"
            | "parameter_server/aeasgd"
            | "parameter_server/eamsgd"
    );
    for (node, _, params) in &exchanges {
        let mut edges: Vec<String> = Vec::new();
        for &i in *params {
            let grad = plan.params.get(i).map(|p| p.grad);
            let lines = match (averages_params, grad, update_node(plan, i)) {
                (true, _, Some(u)) => vec![format!("  n{u} -> {node};")],
                (false, Some(g), Some(u)) => vec![
                    format!("  n{g} -> {node};"),
                    format!("  {node} -> n{u} [style=dashed];"),
                ],
                (_, Some(g), _) => vec![format!("  n{g} -> {node};")],
                _ => vec![],
            };
            // The L-BFGS step serves every parameter: one edge to it is enough.
            for line in lines {
                if !edges.contains(&line) {
                    edges.push(line);
                }
            }
        }
        for e in edges {
            let _ = writeln!(out, "{e}");
        }
    }
}

/// The plan as pretty JSON (versioned: `version` is `PLAN_VERSION`).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
