//! Reverse-mode autodiff as a graph pass: adds the backward nodes of a loss.
//!
//! Precondition: the graph is a DAG (checked by `topo_order`). Walks the forward nodes in
//! reverse topological order; each op has one `match` arm that adds the nodes computing its
//! inputs' gradients; contributions to the same node are summed by an `Add` node. Only nodes
//! that depend on a parameter get gradients. Every rule is checked against finite
//! differences in the executors' conformance tests.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::NodeIndex;

use crate::error::PlanError;
use crate::graph::Graph;
use crate::op::{ConvPart, NormAxis, NormPart, Op, Phase};

/// Adds the backward graph of `loss`; returns each parameter's gradient node.
pub fn backward(
    g: &mut Graph,
    loss: NodeIndex,
    params: &[NodeIndex],
) -> Result<BTreeMap<NodeIndex, NodeIndex>, PlanError> {
    let order = g.needed(&[loss])?;
    // Nodes downstream of a parameter: only those need gradients.
    let mut requires: BTreeSet<NodeIndex> = params.iter().copied().collect();
    for &n in &order {
        if g.inputs(n).iter().any(|i| requires.contains(i)) {
            requires.insert(n);
        }
    }
    let mut contributions: BTreeMap<NodeIndex, Vec<NodeIndex>> = BTreeMap::new();
    let bwd = Phase::Backward;
    for &n in order.iter().rev() {
        if !requires.contains(&n) {
            continue;
        }
        let node = g.g[n].clone();
        let ins = g.inputs(n);
        let names: Vec<String> = ins
            .iter()
            .map(|i| format!("{}.grad", g.g[*i].name))
            .collect();
        let name = |i: usize| names[i].clone();
        let give = |c: &mut BTreeMap<NodeIndex, Vec<NodeIndex>>, to: NodeIndex, grad: NodeIndex| {
            c.entry(to).or_default().push(grad)
        };

        if n == loss {
            let Op::Loss(kind) = node.op else {
                return Err(PlanError::Internal("the loss node is not a loss".into()));
            };
            let d = g.add(&name(0), Op::LossGrad(kind), &[ins[0], ins[1]], bwd, None)?;
            give(&mut contributions, ins[0], d);
            continue;
        }
        let Some(dy) = sum(g, n, contributions.remove(&n))? else {
            continue;
        };
        let needs = |i: usize| requires.contains(&ins[i]);
        match &node.op {
            Op::Input { .. } | Op::Target | Op::Param { .. } => {
                // Leaves: a parameter's summed gradient is put back for the caller.
                contributions.insert(n, vec![dy]);
            }
            Op::MatMul {
                ta: false,
                tb: false,
            } => {
                if needs(0) {
                    let d = g.add(
                        &name(0),
                        Op::MatMul {
                            ta: false,
                            tb: true,
                        },
                        &[dy, ins[1]],
                        bwd,
                        None,
                    )?;
                    give(&mut contributions, ins[0], d);
                }
                if needs(1) {
                    let d = g.add(
                        &name(1),
                        Op::MatMul {
                            ta: true,
                            tb: false,
                        },
                        &[ins[0], dy],
                        bwd,
                        None,
                    )?;
                    give(&mut contributions, ins[1], d);
                }
            }
            Op::BiasAdd => {
                if needs(0) {
                    give(&mut contributions, ins[0], dy);
                }
                if needs(1) {
                    let d = g.add(&name(1), Op::SumRows, &[dy], bwd, None)?;
                    give(&mut contributions, ins[1], d);
                }
            }
            Op::Act(a) => {
                let d = g.add(&name(0), Op::ActGrad(*a), &[ins[0], n, dy], bwd, None)?;
                give(&mut contributions, ins[0], d);
            }
            Op::BiasAct(a) => {
                // The pre-activation is not kept: these activations' gradients follow from
                // the output, so the output stands in for the input (see fuse.rs).
                let dpre = g.add(&name(0), Op::ActGrad(*a), &[n, n, dy], bwd, None)?;
                if needs(0) {
                    give(&mut contributions, ins[0], dpre);
                }
                if needs(1) {
                    let d = g.add(&name(1), Op::SumRows, &[dpre], bwd, None)?;
                    give(&mut contributions, ins[1], d);
                }
            }
            Op::Dropout { rate, stream } => {
                let d = g.add(
                    &name(0),
                    Op::DropoutGrad {
                        rate: *rate,
                        stream: *stream,
                    },
                    &[dy],
                    bwd,
                    None,
                )?;
                give(&mut contributions, ins[0], d);
            }
            Op::Norm { axis, eps, .. } => {
                if needs(0) {
                    let op = Op::NormGrad {
                        axis: *axis,
                        eps: *eps,
                        part: NormPart::Input,
                    };
                    let d = g.add(&name(0), op, &[ins[0], ins[1], dy], bwd, None)?;
                    give(&mut contributions, ins[0], d);
                }
                let op = Op::NormGrad {
                    axis: *axis,
                    eps: *eps,
                    part: NormPart::Gamma,
                };
                let dgamma = g.add(&name(1), op, &[ins[0], ins[1], dy], bwd, None)?;
                give(&mut contributions, ins[1], dgamma);
                let dbeta = match axis {
                    NormAxis::Channel { .. } => {
                        let op = Op::NormGrad {
                            axis: *axis,
                            eps: *eps,
                            part: NormPart::Beta,
                        };
                        g.add(&name(2), op, &[ins[0], ins[1], dy], bwd, None)?
                    }
                    _ => g.add(&name(2), Op::SumRows, &[dy], bwd, None)?,
                };
                give(&mut contributions, ins[2], dbeta);
            }
            Op::Add => {
                for (i, input) in ins.iter().enumerate() {
                    if needs(i) {
                        give(&mut contributions, *input, dy);
                    }
                }
            }
            Op::Conv2d { win, filters, act } => {
                // A fused activation's gradient first, from the output (see fuse.rs).
                let dy = match act {
                    Some(a) => g.add(
                        &format!("{}.pre.grad", node.name),
                        Op::ActGrad(*a),
                        &[n, n, dy],
                        bwd,
                        None,
                    )?,
                    None => dy,
                };
                let grad = |part| Op::Conv2dGrad {
                    win: *win,
                    filters: *filters,
                    part,
                };
                if needs(0) {
                    let d = g.add(&name(0), grad(ConvPart::Input), &[ins[1], dy], bwd, None)?;
                    give(&mut contributions, ins[0], d);
                }
                if needs(1) {
                    let d = g.add(&name(1), grad(ConvPart::Weight), &[ins[0], dy], bwd, None)?;
                    give(&mut contributions, ins[1], d);
                }
                if ins.len() == 3 && needs(2) {
                    let d = g.add(&name(2), grad(ConvPart::Bias), &[dy], bwd, None)?;
                    give(&mut contributions, ins[2], d);
                }
            }
            Op::Pool2d { kind, win } => {
                let op = Op::Pool2dGrad {
                    kind: *kind,
                    win: *win,
                };
                let d = g.add(&name(0), op, &[ins[0], dy], bwd, None)?;
                give(&mut contributions, ins[0], d);
            }
            // The same values: the gradient is dy (its image shape is the input's again
            // wherever it is summed with another contribution).
            Op::Flatten => give(&mut contributions, ins[0], dy),
            Op::Embedding => {
                // Ids are data: only the table has a gradient.
                if needs(1) {
                    let vocab = g.g[ins[1]].shape.rows_at(0);
                    let d = g.add(
                        &name(1),
                        Op::EmbeddingGrad { vocab },
                        &[ins[0], dy],
                        bwd,
                        None,
                    )?;
                    give(&mut contributions, ins[1], d);
                }
            }
            Op::Concat => {
                let mut start = 0;
                for (i, input) in ins.iter().enumerate() {
                    let w = g.g[*input].shape.cols;
                    if needs(i) {
                        let d = g.add(
                            &name(i),
                            Op::Slice {
                                start,
                                end: start + w,
                            },
                            &[dy],
                            bwd,
                            None,
                        )?;
                        give(&mut contributions, *input, d);
                    }
                    start += w;
                }
            }
            op @ (Op::MatMul { .. }
            | Op::MatMulBias { .. }
            | Op::Loss(_)
            | Op::ActGrad(_)
            | Op::DropoutGrad { .. }
            | Op::SumRows
            | Op::NormGrad { .. }
            | Op::Slice { .. }
            | Op::EmbeddingGrad { .. }
            | Op::Conv2dGrad { .. }
            | Op::Pool2dGrad { .. }
            | Op::LossGrad(_)
            | Op::GradNorm
            | Op::Update { .. }
            | Op::LbfgsStep) => {
                return Err(PlanError::BackwardNotSupported { op: op.name() });
            }
        }
    }
    let mut grads = BTreeMap::new();
    for &p in params {
        let d = contributions
            .remove(&p)
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| PlanError::spec(
                g.g[p].origin.clone().unwrap_or_default(),
                format!("parameter `{}` does not affect the loss (is this layer connected to the output?)", g.g[p].name),
            ))?;
        grads.insert(p, d);
    }
    Ok(grads)
}

/// The sum of a node's gradient contributions (an `Add` node when there are several).
fn sum(
    g: &mut Graph,
    n: NodeIndex,
    parts: Option<Vec<NodeIndex>>,
) -> Result<Option<NodeIndex>, PlanError> {
    match parts.as_deref() {
        None | Some([]) => Ok(None),
        Some([one]) => Ok(Some(*one)),
        Some(many) => {
            let name = format!("{}.grad", g.g[n].name);
            Ok(Some(g.add(&name, Op::Add, many, Phase::Backward, None)?))
        }
    }
}
