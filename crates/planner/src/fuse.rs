//! Fusion pass: `BiasAdd → Act` becomes one `BiasAct` kernel, and `Conv2d → Act` a
//! convolution that applies its activation as it writes each sample's maps (one pass over
//! memory instead of two, forward and backward).
//!
//! Only activations whose derivative can be computed from their output are fused (relu,
//! leaky_relu, elu, sigmoid, tanh): the pre-activation is then never stored, and the
//! backward `ActGrad` reads the output in place of the input. Runs on the forward graph,
//! before autodiff; a `BiasAdd` or `Conv2d` read by anything besides its activation is left
//! alone.

use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use weft_dsl::Activation;

use crate::error::PlanError;
use crate::graph::Graph;
use crate::op::{Op, Phase};

/// True when dL/dx of the activation follows from y alone (so x need not be kept).
pub fn grad_from_output(a: Activation) -> bool {
    match a {
        Activation::Relu
        | Activation::Sigmoid
        | Activation::Tanh
        | Activation::Elu { .. }
        | Activation::Selu => true,
        Activation::LeakyRelu { alpha } => alpha >= 0.0,
        Activation::Linear
        | Activation::Softplus
        | Activation::Swish
        | Activation::Gelu
        | Activation::Softmax => false,
    }
}

/// The op a producer and its activation fuse into, if they do.
fn fused(producer: &Op, a: Activation) -> Option<Op> {
    match producer {
        Op::BiasAdd => Some(Op::BiasAct(a)),
        Op::Conv2d {
            win,
            filters,
            act: None,
        } => Some(Op::Conv2d {
            win: *win,
            filters: *filters,
            act: Some(a),
        }),
        _ => None,
    }
}

/// Fuses every eligible `BiasAdd → Act` and `Conv2d → Act` pair; returns (old act node,
/// new node) pairs so the caller can follow nodes it holds.
pub fn activations(g: &mut Graph) -> Result<Vec<(NodeIndex, NodeIndex)>, PlanError> {
    let mut replaced = Vec::new();
    for bias in g.topo_order()? {
        // A node fused earlier is gone (or its index reused by a fused node).
        if !g.g.contains_node(bias) || fused(&g.g[bias].op, Activation::Linear).is_none() {
            continue;
        }
        let readers: Vec<(NodeIndex, usize)> =
            g.g.edges_directed(bias, Direction::Outgoing)
                .map(|e| (e.target(), *e.weight()))
                .collect();
        let [(act, _)] = readers.as_slice() else {
            continue;
        };
        let Op::Act(a) = g.g[*act].op else { continue };
        let Some(op) = fused(&g.g[bias].op, a).filter(|_| grad_from_output(a)) else {
            continue;
        };
        let act = *act;
        let inputs = g.inputs(bias);
        let (name, origin) = (g.g[act].name.clone(), g.g[act].origin.clone());
        let fused = g.add(&name, op, &inputs, Phase::Forward, origin.as_deref())?;
        let outs: Vec<(NodeIndex, usize)> =
            g.g.edges_directed(act, Direction::Outgoing)
                .map(|e| (e.target(), *e.weight()))
                .collect();
        for (target, slot) in outs {
            g.g.add_edge(fused, target, slot);
        }
        g.g.remove_node(act);
        g.g.remove_node(bias);
        replaced.push((act, fused));
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use crate::{DataShape, Op, Plan, Task};

    fn ops(model: &str, loss: &str, classes: usize) -> Vec<String> {
        let yaml = format!("name: t\ndata: {{source: builtin:iris}}\nmodel: {model}\ntrain: {{loss: {loss}}}\nevaluate: [accuracy]\n");
        let (spec, _) = weft_dsl::load("t.yaml", &yaml, &[]).unwrap();
        let data = DataShape {
            features: vec!["a".into(), "b".into()],
            task: Task::Classification { classes },
            vocab: Default::default(),
        };
        let plan = Plan::new(&spec, &data).unwrap();
        plan.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::BiasAdd | Op::BiasAct(_) | Op::Act(_)))
            .map(|n| n.op.name())
            .collect()
    }

    #[test]
    fn fuses_bias_with_activations_whose_gradient_follows_from_the_output() {
        let got = ops("[dense: {units: 4, activation: relu}, dense: {units: 4, activation: gelu}, dense: {units: 3}]", "cross_entropy", 3);
        assert_eq!(
            got,
            [
                "BiasAct(relu)",
                "BiasAdd",
                "Act(gelu)",
                "BiasAdd",
                "Act(softmax)"
            ]
        );
    }

    #[test]
    fn keeps_a_bias_add_that_the_loss_also_reads() {
        // The sigmoid output is for predictions; the loss reads the logits (the BiasAdd).
        let got = ops(
            "[dense: {units: 1, activation: sigmoid}]",
            "binary_cross_entropy",
            2,
        );
        assert_eq!(got, ["BiasAdd", "Act(sigmoid)"]);
    }
}
