//! What the viewer draws: the workflow stages and, when the train stage is open, its
//! compute graph in three groups (forward, backward, optimizer update), each of which can be
//! collapsed to one box. Built from a plan alone, so it is the same natively and in wasm.

use serde::Serialize;
use weft_planner::workflow::StageKind;
use weft_planner::{Op, Phase, Plan};

/// Which parts are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Open {
    pub train: bool,
    pub forward: bool,
    pub backward: bool,
    pub update: bool,
}

impl Default for Open {
    fn default() -> Open {
        Open {
            train: true,
            forward: true,
            backward: true,
            update: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A workflow stage (Load, Preprocess, Split, Train, Evaluate).
    Stage,
    /// A collapsed group of the train stage.
    Group,
    /// One node of the compute graph.
    Op,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Stable across redraws: `stage:2`, `group:backward`, `op:17`.
    pub key: String,
    pub kind: Kind,
    pub name: String,
    /// `MatMul`, `Load`, `Backward (34 nodes)`.
    pub op: String,
    pub shape: String,
    /// The train stage's group (by phase) an op or a collapsed group belongs to.
    pub group: Option<Phase>,
    pub params: u64,
    pub flops: u64,
    /// A kernel the planner fused (bias + activation).
    pub fused: bool,
    /// The all-reduce bucket its gradient travels in, if any.
    pub bucket: Option<usize>,
    /// Details shown in the side panel.
    pub details: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// The tensor's shape (`[B,500]`), empty between stages.
    pub label: String,
    /// Bytes per row-batch of 1 (the width of the line grows with it).
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// A group's name in keys, attributes and headers.
pub fn group_of(p: Phase) -> &'static str {
    match p {
        Phase::Forward => "forward",
        Phase::Backward => "backward",
        Phase::Update => "update",
    }
}

fn is_open(open: &Open, g: &str) -> bool {
    match g {
        "forward" => open.forward,
        "backward" => open.backward,
        _ => open.update,
    }
}

/// The view of `plan` with the parts in `open` expanded. Nodes come in a topological order
/// (stages before the graph, the graph in plan order, stages after it).
pub fn build(plan: &Plan, open: Open) -> View {
    let mut nodes: Vec<Node> = Vec::new();
    let mut edges = Edges::default();
    let train_stage = plan
        .workflow
        .iter()
        .position(|s| s.kind == StageKind::Train);
    // Where each stage and each plan node ended up in `nodes`.
    let mut stage_at: Vec<usize> = Vec::new();
    let mut op_at: Vec<Option<usize>> = vec![None; plan.nodes.len()];
    let mut group_at: Vec<(&'static str, usize)> = Vec::new();
    let param_nodes: std::collections::HashMap<usize, usize> = plan
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| (p.node, i))
        .collect();
    let bucket_of = |param: usize| -> Option<usize> {
        plan.parallel
            .as_ref()?
            .buckets
            .iter()
            .find(|b| b.params.contains(&param))
            .map(|b| b.id)
    };
    let mut train_entry: Vec<usize> = Vec::new();
    let mut train_exit: Vec<usize> = Vec::new();
    for (si, st) in plan.workflow.iter().enumerate() {
        if Some(si) == train_stage && open.train {
            stage_at.push(usize::MAX);
            for (id, n) in plan.nodes.iter().enumerate() {
                let g = group_of(n.phase);
                if is_open(&open, g) {
                    let param = match n.op {
                        Op::Param { .. } => param_nodes.get(&id).copied(),
                        _ => plan.params.iter().position(|p| p.grad == id),
                    };
                    let params = match n.op {
                        Op::Param { .. } => n.shape.numel(1) as u64,
                        _ => 0,
                    };
                    op_at[id] = Some(nodes.len());
                    nodes.push(Node {
                        key: format!("op:{id}"),
                        kind: Kind::Op,
                        name: n.name.clone(),
                        op: n.op.name(),
                        shape: n.shape.to_string(),
                        group: Some(n.phase),
                        params,
                        flops: n.flops,
                        fused: matches!(n.op, Op::BiasAct(_) | Op::MatMulBias { .. }),
                        bucket: param
                            .and_then(bucket_of)
                            .filter(|_| n.phase == Phase::Backward),
                        details: vec![(
                            "inputs".into(),
                            n.inputs
                                .iter()
                                .map(|i| plan.nodes[*i].name.clone())
                                .collect::<Vec<_>>()
                                .join(", "),
                        )],
                    });
                } else {
                    let at = match group_at.iter().find(|(name, _)| *name == g) {
                        Some((_, at)) => *at,
                        None => {
                            let at = nodes.len();
                            let members: Vec<&weft_planner::PlanNode> =
                                plan.nodes.iter().filter(|m| m.phase == n.phase).collect();
                            nodes.push(Node {
                                key: format!("group:{g}"),
                                kind: Kind::Group,
                                name: g.to_string(),
                                op: format!("{} ({} nodes)", capital(g), members.len()),
                                shape: String::new(),
                                group: Some(n.phase),
                                params: 0,
                                flops: members.iter().map(|m| m.flops).sum(),
                                fused: false,
                                bucket: None,
                                details: Vec::new(),
                            });
                            group_at.push((g, at));
                            at
                        }
                    };
                    op_at[id] = Some(at);
                }
            }
            // The graph starts at its inputs and ends at its updates (or loss and output).
            for (id, n) in plan.nodes.iter().enumerate() {
                let Some(at) = op_at[id] else { continue };
                if matches!(n.op, Op::Input { .. } | Op::Target) && !train_entry.contains(&at) {
                    train_entry.push(at);
                }
                if (n.phase == Phase::Update || id == plan.output) && !train_exit.contains(&at) {
                    train_exit.push(at);
                }
            }
        } else {
            stage_at.push(nodes.len());
            nodes.push(Node {
                key: format!("stage:{}", st.id),
                kind: Kind::Stage,
                name: st.kind.name().to_lowercase(),
                op: st.kind.name().to_string(),
                shape: String::new(),
                group: None,
                params: if st.kind == StageKind::Train {
                    plan.cost.params as u64
                } else {
                    0
                },
                flops: if st.kind == StageKind::Train {
                    plan.cost.train_flops_per_step
                } else {
                    0
                },
                fused: false,
                bucket: None,
                details: st.details.clone(),
            });
        }
    }
    // Stage edges; into and out of an open train stage they attach to its graph.
    for (si, st) in plan.workflow.iter().enumerate() {
        for &from in &st.inputs {
            let Some(fi) = plan.workflow.iter().position(|s| s.id == from) else {
                continue;
            };
            let froms = if stage_at[fi] == usize::MAX {
                train_exit.clone()
            } else {
                vec![stage_at[fi]]
            };
            let tos = if stage_at[si] == usize::MAX {
                train_entry.clone()
            } else {
                vec![stage_at[si]]
            };
            for &a in &froms {
                for &b in &tos {
                    edges.push(a, b, String::new(), 0);
                }
            }
        }
    }
    for (id, n) in plan.nodes.iter().enumerate() {
        let Some(b) = op_at[id] else { continue };
        for &i in &n.inputs {
            if let Some(a) = op_at[i] {
                let s = &plan.nodes[i].shape;
                edges.push(a, b, s.to_string(), 4 * s.numel(1) as u64);
            }
        }
    }
    View {
        nodes,
        edges: edges.list,
    }
}

/// Edges without repeats or loops (a collapsed group gathers many into one).
#[derive(Default)]
struct Edges {
    list: Vec<Edge>,
    seen: std::collections::HashSet<(usize, usize)>,
}

impl Edges {
    fn push(&mut self, from: usize, to: usize, label: String, bytes: u64) {
        if from != to && self.seen.insert((from, to)) {
            self.list.push(Edge {
                from,
                to,
                label,
                bytes,
            });
        }
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
