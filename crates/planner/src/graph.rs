//! The compute graph (a petgraph `StableGraph`) and shape inference for every op.

use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use petgraph::Direction;
use std::collections::BinaryHeap;

use crate::error::PlanError;
use crate::op::{ConvPart, Image, NormPart, Op, Phase, Rows, Shape, Window};

#[derive(Debug, Clone, PartialEq)]
pub struct GNode {
    pub name: String,
    pub op: Op,
    pub shape: Shape,
    pub phase: Phase,
    /// Spec path of the layer this node comes from (`model[2].dense`), for errors.
    pub origin: Option<String>,
}

/// Ops as nodes; an edge's weight is the input slot it feeds.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub g: StableGraph<GNode, usize>,
}

impl Graph {
    /// Adds a leaf (input, target, parameter) whose shape is given.
    pub fn leaf(&mut self, name: &str, op: Op, shape: Shape, origin: Option<&str>) -> NodeIndex {
        self.g.add_node(GNode {
            name: name.to_string(),
            op,
            shape,
            phase: Phase::Forward,
            origin: origin.map(str::to_string),
        })
    }

    /// Adds an op over `inputs`, inferring its shape; a mismatch is a spec error at `origin`.
    pub fn add(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[NodeIndex],
        phase: Phase,
        origin: Option<&str>,
    ) -> Result<NodeIndex, PlanError> {
        let shapes: Vec<(String, Shape)> = inputs
            .iter()
            .map(|i| (self.g[*i].name.clone(), self.g[*i].shape))
            .collect();
        let shape = infer(&op, &shapes).map_err(|message| match origin {
            Some(path) => PlanError::Spec {
                path: path.to_string(),
                message,
            },
            None => PlanError::Internal(format!("{name}: {message}")),
        })?;
        let n = self.g.add_node(GNode {
            name: name.to_string(),
            op,
            shape,
            phase,
            origin: origin.map(str::to_string),
        });
        for (slot, i) in inputs.iter().enumerate() {
            self.g.add_edge(*i, n, slot);
        }
        Ok(n)
    }

    /// A node's inputs, sorted by slot.
    pub fn inputs(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut edges: Vec<(usize, NodeIndex)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort();
        edges.into_iter().map(|(_, s)| s).collect()
    }

    /// A deterministic topological order (smallest index first among ready nodes).
    /// A cycle is an error, never a hang or a panic.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, PlanError> {
        let mut indegree: Vec<usize> = vec![0; self.g.node_bound()];
        for e in (&self.g).edge_references() {
            indegree[e.target().index()] += 1;
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<usize>> = self
            .g
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .map(|n| std::cmp::Reverse(n.index()))
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            let n = NodeIndex::new(i);
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let t = e.target().index();
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(std::cmp::Reverse(t));
                }
            }
        }
        if order.len() != self.g.node_count() {
            let stuck: Vec<&str> = self
                .g
                .node_indices()
                .filter(|n| indegree[n.index()] > 0)
                .map(|n| self.g[n].name.as_str())
                .collect();
            return Err(PlanError::Internal(format!(
                "the compute graph has a cycle through {}",
                stuck.join(", ")
            )));
        }
        Ok(order)
    }

    /// All ancestors of `roots` (inclusive), in topological order: dead-code elimination.
    pub fn needed(&self, roots: &[NodeIndex]) -> Result<Vec<NodeIndex>, PlanError> {
        let mut keep = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeIndex> = roots.to_vec();
        while let Some(n) = stack.pop() {
            if !keep[n.index()] {
                keep[n.index()] = true;
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        Ok(self
            .topo_order()?
            .into_iter()
            .filter(|n| keep[n.index()])
            .collect())
    }
}

fn dims(s: &Shape, transposed: bool) -> (Rows, Rows) {
    if transposed {
        (Rows::Fixed(s.cols), s.rows)
    } else {
        (s.rows, Rows::Fixed(s.cols))
    }
}

fn show(r: Rows) -> String {
    match r {
        Rows::Batch => "B".into(),
        Rows::Fixed(n) => n.to_string(),
    }
}

/// The output shape of `op` over inputs (name, shape); an error says what does not fit.
pub fn infer(op: &Op, inputs: &[(String, Shape)]) -> Result<Shape, String> {
    let arity = |n: usize| -> Result<(), String> {
        if inputs.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{} takes {n} inputs, got {}",
                op.name(),
                inputs.len()
            ))
        }
    };
    let s = |i: usize| inputs[i].1;
    match op {
        Op::Input { .. } | Op::Target | Op::Param { .. } => {
            Err(format!("{} is a leaf and has no inferred shape", op.name()))
        }
        Op::MatMul { ta, tb } => {
            arity(2)?;
            let (m, k1) = dims(&s(0), *ta);
            let (k2, n) = dims(&s(1), *tb);
            if k1 != k2 {
                return Err(format!(
                    "matmul inner sizes differ: {} is {} and {} is {}",
                    inputs[0].0,
                    s(0),
                    inputs[1].0,
                    s(1)
                ));
            }
            match n {
                Rows::Fixed(cols) => Ok(Shape {
                    rows: m,
                    cols,
                    image: None,
                }),
                Rows::Batch => Err("matmul output columns cannot be the batch".into()),
            }
        }
        Op::MatMulBias { ta, tb, .. } => {
            arity(3)?;
            let (m, k1) = dims(&s(0), *ta);
            let (k2, n) = dims(&s(1), *tb);
            match n {
                Rows::Fixed(cols) if k1 == k2 && s(2) == Shape::fixed(1, cols) => Ok(Shape {
                    rows: m,
                    cols,
                    image: None,
                }),
                _ => Err(format!(
                    "matmul with bias: {} × {} + {} do not fit",
                    s(0),
                    s(1),
                    s(2)
                )),
            }
        }
        Op::BiasAdd | Op::BiasAct(_) => {
            arity(2)?;
            if s(1) != Shape::fixed(1, s(0).cols) {
                return Err(format!("bias {} does not fit {}", s(1), s(0)));
            }
            Ok(s(0))
        }
        Op::Act(_) | Op::Dropout { .. } | Op::DropoutGrad { .. } => {
            arity(1)?;
            Ok(s(0))
        }
        Op::Norm { axis, .. } => {
            arity(3)?;
            let p = Shape::fixed(1, axis.params(s(0).cols));
            if s(1) != p || s(2) != p {
                return Err(format!("norm parameters must be {p}"));
            }
            Ok(s(0))
        }
        Op::Add => {
            if inputs.len() < 2 {
                return Err("add needs at least 2 inputs".into());
            }
            // Images add as their rows do (a flattened image adds to the image).
            if let Some((name, shape)) = inputs.iter().find(|(_, sh)| sh.flat() != s(0).flat()) {
                return Err(format!(
                    "add needs inputs of the same shape, but {} is {} and {name} is {shape}",
                    inputs[0].0,
                    s(0)
                ));
            }
            Ok(s(0))
        }
        Op::Concat => {
            if inputs.len() < 2 {
                return Err("concat needs at least 2 inputs".into());
            }
            if let Some((name, shape)) = inputs.iter().find(|(_, sh)| sh.rows != s(0).rows) {
                return Err(format!(
                    "concat needs the same rows, but {} has {} and {name} has {}",
                    inputs[0].0,
                    show(s(0).rows),
                    show(shape.rows)
                ));
            }
            // Images of one height and width concatenate along their channels (NCHW rows
            // side by side); anything else is a row of features.
            let first = s(0).image;
            let image = match first {
                Some(f)
                    if inputs
                        .iter()
                        .all(|(_, sh)| matches!(sh.image, Some(i) if (i.h, i.w) == (f.h, f.w))) =>
                {
                    Some(Image {
                        c: inputs
                            .iter()
                            .filter_map(|(_, sh)| sh.image)
                            .map(|i| i.c)
                            .sum(),
                        ..f
                    })
                }
                _ => None,
            };
            Ok(Shape {
                rows: s(0).rows,
                cols: inputs.iter().map(|(_, sh)| sh.cols).sum(),
                image,
            })
        }
        Op::Loss(_) => {
            arity(2)?;
            Ok(Shape::scalar())
        }
        Op::ActGrad(_) => {
            arity(3)?;
            Ok(s(0))
        }
        Op::SumRows => {
            arity(1)?;
            Ok(Shape::fixed(1, s(0).cols))
        }
        Op::NormGrad { part, axis, .. } => {
            arity(3)?;
            Ok(match part {
                NormPart::Input => s(0),
                NormPart::Gamma | NormPart::Beta => Shape::fixed(1, axis.params(s(0).cols)),
            })
        }
        Op::Slice { start, end } => {
            arity(1)?;
            if start >= end || *end > s(0).cols {
                return Err(format!("slice {start}..{end} out of {}", s(0)));
            }
            Ok(Shape {
                rows: s(0).rows,
                cols: end - start,
                image: None,
            })
        }
        Op::LossGrad(_) => {
            arity(2)?;
            Ok(s(0))
        }
        Op::Embedding => {
            arity(2)?;
            if s(0).cols != 1 {
                return Err(format!("embedding ids must be one column, found {}", s(0)));
            }
            Ok(Shape {
                rows: s(0).rows,
                cols: s(1).cols,
                image: None,
            })
        }
        Op::EmbeddingGrad { vocab } => {
            arity(2)?;
            Ok(Shape::fixed(*vocab, s(1).cols))
        }
        Op::Conv2d { win, filters, .. } => {
            if inputs.len() != 2 && inputs.len() != 3 {
                return Err(format!("Conv2d takes 2 or 3 inputs, got {}", inputs.len()));
            }
            image_in(&inputs[0], win)?;
            let w = Shape::fixed(*filters, win.patch());
            if s(1) != w {
                return Err(format!("conv2d weights {} do not fit {w}", s(1)));
            }
            if inputs.len() == 3 && s(2) != Shape::fixed(1, *filters) {
                return Err(format!("conv2d bias {} does not fit [1,{filters}]", s(2)));
            }
            Ok(Shape {
                rows: s(0).rows,
                ..Shape::images(Image {
                    c: *filters,
                    h: win.oh,
                    w: win.ow,
                })
            })
        }
        Op::Pool2d { win, .. } => {
            arity(1)?;
            image_in(&inputs[0], win)?;
            Ok(Shape {
                rows: s(0).rows,
                ..Shape::images(Image {
                    c: win.c,
                    h: win.oh,
                    w: win.ow,
                })
            })
        }
        Op::Flatten => {
            arity(1)?;
            Ok(s(0).flat())
        }
        Op::Conv2dGrad { win, filters, part } => Ok(match part {
            ConvPart::Input => {
                arity(2)?;
                Shape {
                    rows: s(1).rows,
                    ..Shape::images(win.input())
                }
            }
            ConvPart::Weight => {
                arity(2)?;
                Shape::fixed(*filters, win.patch())
            }
            ConvPart::Bias => {
                arity(1)?;
                Shape::fixed(1, *filters)
            }
        }),
        Op::Pool2dGrad { win, .. } => {
            arity(2)?;
            Ok(Shape {
                rows: s(0).rows,
                ..Shape::images(win.input())
            })
        }
        Op::GradNorm | Op::LbfgsStep => Ok(Shape::scalar()),
        Op::Update { .. } => {
            if inputs.len() < 2 || s(0) != s(1) {
                return Err("update needs a parameter and a gradient of the same shape".into());
            }
            Ok(s(0))
        }
    }
}

/// Checks that `input` is the image `win` reads.
fn image_in((name, shape): &(String, Shape), win: &Window) -> Result<(), String> {
    if shape.cols != win.input().numel() {
        return Err(format!(
            "{name} is {shape}, but the window reads images of {}",
            win.input()
        ));
    }
    Ok(())
}
