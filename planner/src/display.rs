//! Plans print themselves: indented text (one line per node), Graphviz DOT, and JSON.

use std::fmt::Write;

use crate::build::Task;
use crate::cost::human;
use crate::op::{Op, Phase};
use crate::plan::Plan;

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
        "Workflow: name={}, task={task}, features={}, params={}, train_flops/step={}, batch_size={}",
        plan.name,
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
        if stage.kind == "Train" {
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
                    .filter(|i| plan.schedules.train.contains(i))
                    .map(|i| plan.nodes[*i].flops)
                    .sum();
                let _ = writeln!(
                    out,
                    "    {label}: nodes={}, flops={}",
                    ids.len(),
                    human(flops)
                );
                for id in ids {
                    let dead = if plan.schedules.train.contains(&id) {
                        ""
                    } else {
                        " (predict only)"
                    };
                    let _ = writeln!(out, "      {}{dead}", detail(plan, id));
                }
            }
        }
    }
    out
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
    let _ = writeln!(out, "}}");
    out
}

/// The plan as pretty JSON (versioned: `version` is `PLAN_VERSION`).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
