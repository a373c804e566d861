//! Lowers the spec's model (list or graph form) and loss into the forward compute graph.

use std::collections::BTreeMap;

use petgraph::stable_graph::NodeIndex;
use weft_dsl::{
    suggest, Activation, GraphNode, GraphSpec, Init, InputSource, Layer, Loss, Merge, ModelSpec,
    Padding, Spec,
};

use crate::error::PlanError;
use crate::graph::Graph;
use crate::op::{Image, LossKind, NormAxis, Op, ParamInit, Phase, PoolKind, Shape, Window};
use weft_common::{DataShape, Task};

/// The forward graph and its named ends.
#[derive(Debug, Clone)]
pub struct Forward {
    pub graph: Graph,
    pub inputs: Vec<NodeIndex>,
    pub target: NodeIndex,
    pub loss: NodeIndex,
    /// Predictions: class probabilities (classification) or values (regression).
    pub output: NodeIndex,
    pub params: Vec<NodeIndex>,
    /// Penalties on parameters (`dense: {l1, l2}` on its weights).
    pub penalties: std::collections::HashMap<NodeIndex, crate::op::Penalty>,
    /// The task as planned (classes taken from the model when the data did not say).
    pub task: Task,
}

struct Builder<'a> {
    g: Graph,
    params: Vec<NodeIndex>,
    penalties: std::collections::HashMap<NodeIndex, crate::op::Penalty>,
    streams: u64,
    data: &'a DataShape,
    /// Columns of embedding inputs (not part of `features` inputs).
    embedded: Vec<String>,
    /// `data.image`: how the feature columns make an image.
    image: Option<weft_dsl::ImageSpec>,
}

impl Builder<'_> {
    fn stream(&mut self) -> u64 {
        self.streams += 1;
        self.streams
    }

    fn param(
        &mut self,
        name: &str,
        shape: Shape,
        init: Init,
        fill: f32,
        origin: &str,
    ) -> NodeIndex {
        let fan_in = match shape.rows {
            crate::op::Rows::Fixed(r) => r,
            crate::op::Rows::Batch => 1,
        };
        self.param_fans(name, shape, init, fill, origin, (fan_in, shape.cols))
    }

    /// A parameter whose initializer's fan-in and fan-out are `fans` (a convolution's
    /// weights are `[filters, c·kh·kw]`: fan-in `c·kh·kw`, fan-out `filters·kh·kw`).
    fn param_fans(
        &mut self,
        name: &str,
        shape: Shape,
        init: Init,
        fill: f32,
        origin: &str,
        (fan_in, fan_out): (usize, usize),
    ) -> NodeIndex {
        let stream = self.stream();
        let p = ParamInit {
            init,
            fan_in,
            fan_out,
            fill,
            stream,
        };
        let n = self
            .g
            .leaf(name, Op::Param { init: p }, shape, Some(origin));
        self.params.push(n);
        n
    }

    fn layer(
        &mut self,
        name: &str,
        layer: &Layer,
        x: NodeIndex,
        path: &str,
    ) -> Result<NodeIndex, PlanError> {
        let width = self.g.g[x].shape.cols;
        let image = self.g.g[x].shape.image;
        let fwd = Phase::Forward;
        if let (Some(_), Layer::Dense(_)) = (image, layer) {
            let shape = self.g.g[x].shape;
            return Err(PlanError::spec(
                format!("{path}.dense"),
                format!(
                    "`dense` reads the image {shape} and takes a row of features; put `flatten: {{}}` (or `global_avg_pool2d: {{}}`) before it"
                ),
            ));
        }
        Ok(match layer {
            Layer::Conv2d(k) => self.conv2d(name, k, x, path)?,
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                let origin = format!("{path}.{}", layer.kind());
                let img = need_image(image, &origin, layer.kind(), self.g.g[x].shape)?;
                let kind = match layer {
                    Layer::MaxPool2d(_) => PoolKind::Max,
                    _ => PoolKind::Avg,
                };
                let win = window(
                    &origin,
                    img,
                    p.size.hw(),
                    p.stride.unwrap_or(p.size).hw(),
                    p.padding,
                    (1, 1),
                    true,
                )?;
                self.g
                    .add(name, Op::Pool2d { kind, win }, &[x], fwd, Some(&origin))?
            }
            Layer::GlobalAvgPool2d(_) => {
                let origin = format!("{path}.global_avg_pool2d");
                let img = need_image(image, &origin, layer.kind(), self.g.g[x].shape)?;
                let win = window(
                    &origin,
                    img,
                    (img.h, img.w),
                    (1, 1),
                    Padding::Valid,
                    (1, 1),
                    true,
                )?;
                let kind = PoolKind::Avg;
                let pooled = self.g.add(
                    &format!("{name}.pool"),
                    Op::Pool2d { kind, win },
                    &[x],
                    fwd,
                    Some(&origin),
                )?;
                self.g
                    .add(name, Op::Flatten, &[pooled], fwd, Some(&origin))?
            }
            Layer::Flatten(_) => {
                let origin = format!("{path}.flatten");
                need_image(image, &origin, layer.kind(), self.g.g[x].shape)?;
                self.g.add(name, Op::Flatten, &[x], fwd, Some(&origin))?
            }
            Layer::Dense(d) => {
                let origin = format!("{path}.dense");
                let init = d.init.unwrap_or(default_init(d.activation));
                let w = self.param(
                    &format!("{name}.weight"),
                    Shape::fixed(width, d.units),
                    init,
                    0.0,
                    &origin,
                );
                let penalty = crate::op::Penalty {
                    l1: d.l1 as f32,
                    l2: d.l2 as f32,
                };
                if !penalty.is_zero() {
                    self.penalties.insert(w, penalty);
                }
                let mut h = self.g.add(
                    &format!("{name}.matmul"),
                    Op::MatMul {
                        ta: false,
                        tb: false,
                    },
                    &[x, w],
                    fwd,
                    Some(&origin),
                )?;
                if d.use_bias {
                    let b = self.param(
                        &format!("{name}.bias"),
                        Shape::fixed(1, d.units),
                        Init::Zeros,
                        0.0,
                        &origin,
                    );
                    h = self.g.add(
                        &format!("{name}.bias_add"),
                        Op::BiasAdd,
                        &[h, b],
                        fwd,
                        Some(&origin),
                    )?;
                }
                self.activate(name, d.activation, h, &origin)?
            }
            Layer::Dropout(d) => {
                let stream = self.stream();
                self.g.add(
                    name,
                    Op::Dropout {
                        rate: d.rate as f32,
                        stream,
                    },
                    &[x],
                    fwd,
                    Some(&format!("{path}.dropout")),
                )?
            }
            Layer::BatchNorm(n) | Layer::LayerNorm(n) => {
                // After a convolution, batch statistics are per channel over the batch
                // and the pixels (PyTorch's BatchNorm2d); a layer norm of an image is over
                // all of a row's C·H·W values with a gamma and beta per value.
                let (axis, key) = match (layer, image) {
                    (Layer::BatchNorm(_), Some(img)) => (
                        NormAxis::Channel {
                            area: img.h * img.w,
                        },
                        "batch_norm",
                    ),
                    (Layer::BatchNorm(_), None) => (NormAxis::Batch, "batch_norm"),
                    _ => (NormAxis::Layer, "layer_norm"),
                };
                let origin = format!("{path}.{key}");
                let gamma = self.param(
                    &format!("{name}.gamma"),
                    Shape::fixed(1, axis.params(width)),
                    Init::Zeros,
                    1.0,
                    &origin,
                );
                let beta = self.param(
                    &format!("{name}.beta"),
                    Shape::fixed(1, axis.params(width)),
                    Init::Zeros,
                    0.0,
                    &origin,
                );
                let op = Op::Norm {
                    axis,
                    eps: n.epsilon as f32,
                    momentum: n.momentum as f32,
                };
                self.g
                    .add(name, op, &[x, gamma, beta], fwd, Some(&origin))?
            }
            Layer::Activation(a) => self.g.add(
                name,
                Op::Act(*a),
                &[x],
                fwd,
                Some(&format!("{path}.activation")),
            )?,
        })
    }

    /// A convolution, its bias and its activation.
    fn conv2d(
        &mut self,
        name: &str,
        k: &weft_dsl::Conv2d,
        x: NodeIndex,
        path: &str,
    ) -> Result<NodeIndex, PlanError> {
        let origin = format!("{path}.conv2d");
        let shape = self.g.g[x].shape;
        let img = need_image(shape.image, &origin, "conv2d", shape)?;
        let win = window(
            &origin,
            img,
            k.kernel.hw(),
            k.stride.hw(),
            k.padding,
            k.dilation.hw(),
            false,
        )?;
        let init = k.init.unwrap_or(default_init(k.activation));
        let area = win.kh * win.kw;
        let w = self.param_fans(
            &format!("{name}.weight"),
            Shape::fixed(k.filters, win.patch()),
            init,
            0.0,
            &origin,
            (win.patch(), k.filters * area),
        );
        let mut ins = vec![x, w];
        if k.use_bias {
            ins.push(self.param(
                &format!("{name}.bias"),
                Shape::fixed(1, k.filters),
                Init::Zeros,
                0.0,
                &origin,
            ));
        }
        let op = Op::Conv2d {
            win,
            filters: k.filters,
            act: None,
        };
        let h = self.g.add(
            &format!("{name}.conv"),
            op,
            &ins,
            Phase::Forward,
            Some(&origin),
        )?;
        self.activate(name, k.activation, h, &origin)
    }

    /// A layer's activation after `h` (none for `linear`).
    fn activate(
        &mut self,
        name: &str,
        act: Activation,
        h: NodeIndex,
        origin: &str,
    ) -> Result<NodeIndex, PlanError> {
        if act == Activation::Linear {
            return Ok(h);
        }
        self.g.add(
            &format!("{name}.{}", act.name()),
            Op::Act(act),
            &[h],
            Phase::Forward,
            Some(origin),
        )
    }

    /// An input's leaf (the feature columns it reads) and the node the graph uses (the same,
    /// or for an embedding the looked-up vectors).
    fn input(
        &mut self,
        name: &str,
        source: &InputSource,
        path: &str,
    ) -> Result<(NodeIndex, NodeIndex), PlanError> {
        let all = &self.data.features;
        let columns: Vec<usize> = match source {
            // Every feature but the ids of embedding inputs.
            InputSource::All(_) => (0..all.len())
                .filter(|&i| !self.embedded.contains(&all[i]))
                .collect(),
            InputSource::Embedding { embedding: e } => {
                let col = all.iter().position(|f| *f == e.column).ok_or_else(|| {
                    let valid: Vec<&str> = all.iter().map(String::as_str).collect();
                    PlanError::spec(
                        format!("{path}.embedding.column"),
                        format!(
                            "unknown feature column `{}`{}",
                            e.column,
                            suggest::hint(&e.column, &valid)
                        ),
                    )
                })?;
                let vocab = self.data.vocab.get(&e.column).copied().ok_or_else(|| {
                    PlanError::spec(
                        format!("{path}.embedding.column"),
                        format!("the ids of column `{}` are not known before its rows are read (plan with the data, or give `buckets`)", e.column),
                    )
                })?;
                let origin = format!("{path}.embedding");
                let ids = self.g.leaf(
                    &format!("{name}.ids"),
                    Op::Input { columns: vec![col] },
                    Shape::batch(1),
                    Some(&origin),
                );
                let table = self.param(
                    &format!("{name}.table"),
                    Shape::fixed(vocab, e.dim),
                    Init::Uniform,
                    0.0,
                    &origin,
                );
                let out = self.g.add(
                    name,
                    Op::Embedding,
                    &[ids, table],
                    Phase::Forward,
                    Some(&origin),
                )?;
                return Ok((ids, out));
            }
            InputSource::Columns(cols) => {
                let valid: Vec<&str> = all.iter().map(String::as_str).collect();
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        all.iter().position(|f| f == c).ok_or_else(|| {
                            PlanError::spec(
                                format!("{path}[{i}]"),
                                format!("unknown feature column `{c}`{}", suggest::hint(c, &valid)),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let width = columns.len();
        let shape = match (self.image, source) {
            (Some(img), InputSource::All(_)) => {
                let image = Image {
                    c: img.channels,
                    h: img.height,
                    w: img.width,
                };
                if image.numel() != width {
                    return Err(PlanError::spec(
                        "data.image",
                        format!(
                            "an image of {image} (channels × height × width) is {} values, but the model reads {width} feature columns",
                            image.numel()
                        ),
                    ));
                }
                Shape::images(image)
            }
            _ => Shape::batch(width),
        };
        let n = self.g.leaf(name, Op::Input { columns }, shape, Some(path));
        Ok((n, n))
    }

    fn graph_node(
        &mut self,
        spec: &GraphSpec,
        name: &str,
        done: &mut BTreeMap<String, NodeIndex>,
    ) -> Result<NodeIndex, PlanError> {
        if let Some(n) = done.get(name) {
            return Ok(*n);
        }
        let node = spec
            .nodes
            .get(name)
            .ok_or_else(|| PlanError::Internal(format!("graph node `{name}` vanished")))?;
        let path = format!("model.nodes.{name}");
        let mut ins = Vec::new();
        for i in weft_dsl::node_inputs(node) {
            ins.push(self.graph_node(spec, i, done)?);
        }
        let n = match node {
            GraphNode::Layer { layer, .. } => self.layer(name, layer, ins[0], &path)?,
            GraphNode::Merge(Merge::Add(refs)) => {
                let origin = format!("{path}.add");
                // Said here in the spec's names (the op would name internal graph nodes).
                let shapes: Vec<Shape> = ins.iter().map(|i| self.g.g[*i].shape).collect();
                if shapes.iter().any(|s| s.cols != shapes[0].cols) {
                    let listed: Vec<String> = refs
                        .iter()
                        .zip(&shapes)
                        .map(|(r, s)| match s.image {
                            Some(_) => format!("`{r}` is {s}"),
                            None => format!("`{r}` has {}", s.cols),
                        })
                        .collect();
                    return Err(PlanError::spec(
                        origin,
                        format!(
                            "`add` needs inputs of the same width, but {}; use `concat` to put them side by side",
                            listed.join(", ")
                        ),
                    ));
                }
                self.g
                    .add(name, Op::Add, &ins, Phase::Forward, Some(&origin))?
            }
            GraphNode::Merge(Merge::Concat(_)) => self.g.add(
                name,
                Op::Concat,
                &ins,
                Phase::Forward,
                Some(&format!("{path}.concat")),
            )?,
        };
        done.insert(name.to_string(), n);
        Ok(n)
    }
}

/// Builds the forward graph: inputs, layers, loss, and the prediction output.
pub fn forward(spec: &Spec, data: &DataShape) -> Result<Forward, PlanError> {
    let mut b = Builder {
        g: Graph::default(),
        params: Vec::new(),
        penalties: Default::default(),
        streams: 0,
        data,
        embedded: spec.embeddings().iter().map(|e| e.column.clone()).collect(),
        image: spec.data.image,
    };
    let (inputs, out) = match &spec.model {
        ModelSpec::Sequential(layers) => {
            let (x, _) = b.input("x", &InputSource::All("features".into()), "data.features")?;
            let mut h = x;
            for (i, layer) in layers.iter().enumerate() {
                h = b.layer(
                    &format!("{}_{i}", layer.kind()),
                    layer,
                    h,
                    &format!("model[{i}]"),
                )?;
            }
            (vec![x], h)
        }
        ModelSpec::Graph(gs) => {
            let mut done = BTreeMap::new();
            let mut inputs = Vec::new();
            for (name, source) in &gs.inputs {
                let (leaf, n) = b.input(name, source, &format!("model.inputs.{name}"))?;
                done.insert(name.clone(), n);
                inputs.push(leaf);
            }
            let out = b.graph_node(gs, &gs.output, &mut done)?;
            (inputs, out)
        }
    };
    if let Some(shape) = Some(b.g.g[out].shape).filter(|s| s.image.is_some()) {
        let origin = b.g.g[out].origin.clone().unwrap_or_else(|| "model".into());
        return Err(PlanError::spec(
            origin,
            format!("the model ends in the image {shape}; end it with `flatten: {{}}` (or `global_avg_pool2d: {{}}`) and a `dense` layer"),
        ));
    }
    let target_cols = match data.task {
        Task::Classification { .. } => 1,
        Task::Regression { targets } => targets,
    };
    let target =
        b.g.leaf("target", Op::Target, Shape::batch(target_cols), None);
    let task = match data.task {
        Task::Classification { classes: 0 } => Task::Classification {
            classes: match spec.train.loss {
                Loss::BinaryCrossEntropy => 2,
                _ => b.g.g[out].shape.cols,
            },
        },
        ref t => t.clone(),
    };
    let (loss, output) = attach_loss(&mut b.g, spec.train.loss, &task, out, target)?;
    Ok(Forward {
        task,
        graph: b.g,
        inputs,
        target,
        loss,
        output,
        params: b.params,
        penalties: b.penalties,
    })
}

/// The spec path that sets a layer's width: a dense layer's `units`, else the layer itself.
pub fn units_path(origin: &str) -> String {
    if origin.ends_with(".dense") {
        format!("{origin}.units")
    } else {
        origin.to_string()
    }
}

/// Fuses the final softmax/sigmoid into the loss and checks the output width against the data.
fn attach_loss(
    g: &mut Graph,
    loss: Loss,
    task: &Task,
    out: NodeIndex,
    target: NodeIndex,
) -> Result<(NodeIndex, NodeIndex), PlanError> {
    let (final_act, logits) = match &g.g[out].op {
        Op::Act(a) => (*a, g.inputs(out)[0]),
        _ => (Activation::Linear, out),
    };
    let origin = g.g[out].origin.clone().unwrap_or_else(|| "model".into());
    let act_path = if origin.ends_with(".activation") {
        origin.clone()
    } else {
        format!("{origin}.activation")
    };
    let units_path = units_path(&origin);
    let width = g.g[out].shape.cols;
    let fwd = Phase::Forward;
    let want = |what: &str, n: usize| -> Result<(), PlanError> {
        if width == n {
            Ok(())
        } else {
            Err(PlanError::spec(
                units_path.clone(),
                format!("the output layer has {width} units but {what}"),
            ))
        }
    };
    match (loss, task) {
        (Loss::CrossEntropy, Task::Classification { classes }) => {
            want(&format!("the data has {classes} classes"), *classes)?;
            let probe = Activation::Softmax;
            check_output(final_act, probe, "cross_entropy", act_path)?;
            fused_loss(
                g,
                LossKind::SoftmaxCrossEntropy,
                probe,
                final_act,
                logits,
                target,
                out,
            )
        }
        (Loss::BinaryCrossEntropy, Task::Classification { classes }) => {
            if *classes != 2 {
                return Err(PlanError::spec(
                    "train.loss",
                    format!("binary_cross_entropy needs 2 classes, the data has {classes}; use cross_entropy"),
                ));
            }
            want(
                "binary_cross_entropy needs 1 (the probability of class 1)",
                1,
            )?;
            let probe = Activation::Sigmoid;
            check_output(final_act, probe, "binary_cross_entropy", act_path)?;
            fused_loss(
                g,
                LossKind::SigmoidBinaryCrossEntropy,
                probe,
                final_act,
                logits,
                target,
                out,
            )
        }
        (Loss::Mse, Task::Classification { classes }) => {
            want(
                &format!("the data has {classes} classes (mse compares with one-hot labels)"),
                *classes,
            )?;
            let l = g.add(
                "loss",
                Op::Loss(LossKind::Mse { one_hot: true }),
                &[out, target],
                fwd,
                None,
            )?;
            Ok((l, out))
        }
        (Loss::Mse, Task::Regression { targets }) => {
            want(
                &format!("the data has {targets} target column(s)"),
                *targets,
            )?;
            let l = g.add(
                "loss",
                Op::Loss(LossKind::Mse { one_hot: false }),
                &[out, target],
                fwd,
                None,
            )?;
            Ok((l, out))
        }
        (_, Task::Regression { .. }) => Err(PlanError::spec(
            "train.loss",
            "a numeric (regression) label needs `loss: mse`",
        )),
    }
}

/// The output activation must be the loss's own (fused into it) or linear (logits).
fn check_output(
    final_act: Activation,
    probe: Activation,
    loss: &str,
    act_path: String,
) -> Result<(), PlanError> {
    if final_act == probe || final_act == Activation::Linear {
        return Ok(());
    }
    Err(PlanError::spec(
        act_path,
        format!(
            "{loss} needs a {} (or linear) output, found {}",
            probe.name(),
            final_act.name()
        ),
    ))
}

/// A loss that reads logits, with `probe` (softmax or sigmoid) kept for predictions: the
/// model's own output node when it ends in `probe`, else a new `probs` node.
fn fused_loss(
    g: &mut Graph,
    kind: LossKind,
    probe: Activation,
    final_act: Activation,
    logits: NodeIndex,
    target: NodeIndex,
    out: NodeIndex,
) -> Result<(NodeIndex, NodeIndex), PlanError> {
    let fwd = Phase::Forward;
    let loss = g.add("loss", Op::Loss(kind), &[logits, target], fwd, None)?;
    let probs = if final_act == probe {
        out
    } else {
        g.add("probs", Op::Act(probe), &[logits], fwd, None)?
    };
    Ok((loss, probs))
}

/// A layer's weight initializer when the spec gives none: He before relu-like activations,
/// Glorot otherwise.
fn default_init(a: Activation) -> Init {
    match a {
        Activation::Relu
        | Activation::LeakyRelu { .. }
        | Activation::Elu { .. }
        | Activation::Gelu
        | Activation::Swish => Init::HeUniform,
        _ => Init::GlorotUniform,
    }
}

/// The image a layer at `origin` reads, or an error saying it reads a row of features.
fn need_image(
    image: Option<Image>,
    origin: &str,
    kind: &str,
    shape: Shape,
) -> Result<Image, PlanError> {
    image.ok_or_else(|| {
        PlanError::spec(
            origin,
            format!("`{kind}` needs an image, but reads the row of features {shape}; set `data.image: {{channels, height, width}}` for image inputs (and keep `flatten` after the image layers)"),
        )
    })
}

/// The window of a convolution or pooling over `img` (`pool`: every window must hold an
/// image cell, so padding stays below the kernel).
fn window(
    origin: &str,
    img: Image,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    padding: Padding,
    (dh, dw): (usize, usize),
    pool: bool,
) -> Result<Window, PlanError> {
    let (eh, ew) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1);
    let (ph, pw, oh, ow) = match padding {
        Padding::Same => {
            let (oh, ow) = (img.h.div_ceil(sh), img.w.div_ceil(sw));
            let th = ((oh - 1) * sh + eh).saturating_sub(img.h);
            let tw = ((ow - 1) * sw + ew).saturating_sub(img.w);
            (th / 2, tw / 2, oh, ow)
        }
        Padding::Valid | Padding::Cells(_) => {
            let (ph, pw) = match padding {
                Padding::Cells(p) => p.hw(),
                _ => (0, 0),
            };
            if pool && (ph >= kh || pw >= kw) {
                return Err(PlanError::spec(
                    format!("{origin}.padding"),
                    format!("padding [{ph}, {pw}] leaves windows of {kh}×{kw} with no image cell; use less than the window"),
                ));
            }
            let (hh, ww) = (img.h + 2 * ph, img.w + 2 * pw);
            if eh > hh || ew > ww {
                let dilated = if (dh, dw) != (1, 1) {
                    format!(" ({eh}×{ew} dilated)")
                } else {
                    String::new()
                };
                return Err(PlanError::spec(
                    origin,
                    format!(
                        "the window {kh}×{kw}{dilated} is larger than its input image {img}{}; use `padding: same` or a smaller window",
                        if (ph, pw) != (0, 0) { format!(" padded to {hh}×{ww}") } else { String::new() }
                    ),
                ));
            }
            (ph, pw, (hh - eh) / sh + 1, (ww - ew) / sw + 1)
        }
    };
    Ok(Window {
        c: img.c,
        h: img.h,
        w: img.w,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        oh,
        ow,
    })
}
