//! The closed set of compute-graph ops, their shapes, and small kind enums.
//!
//! Every tensor is 2-D: rows are the batch (`B`) or a fixed count, columns are features.
//! Passes and executors `match` exhaustively on `Op`, so a new op cannot be forgotten.

use std::fmt;

use serde::{Deserialize, Serialize};
use weft_dsl::{Activation, Init};

/// Rows of a tensor: the (symbolic) batch, or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rows {
    Batch,
    Fixed(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub rows: Rows,
    pub cols: usize,
    /// When each row is an image: its channels, height and width (`cols = c·h·w`, NCHW:
    /// channel by channel, each row by row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

/// One sample's image: `c` channels of `h × w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Image {
    pub fn numel(&self) -> usize {
        self.c.saturating_mul(self.h).saturating_mul(self.w)
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.c, self.h, self.w)
    }
}

/// A convolution's or pooling's window over an image: the input's `c × h × w`, the kernel
/// `kh × kw`, strides, the padding cells before the first row and column (`ph`, `pw`; the
/// rest is after the last), dilations, and the output's `oh × ow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window {
    /// Output positions of one channel.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }
    /// Values one output position reads from all channels (`c·kh·kw`: a column of im2col).
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Whether the image is its own im2col columns (a 1×1 kernel, stride 1, no padding).
    pub fn pointwise(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)
    }
    pub fn input(&self) -> Image {
        Image {
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }
}

/// Which of a convolution's gradients a backward node computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvPart {
    /// dL/dx (inputs w, dy).
    Input,
    /// dL/dw (inputs x, dy).
    Weight,
    /// dL/db (input dy): dy summed over rows and positions, per filter.
    Bias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    Max,
    Avg,
}

impl Shape {
    pub fn batch(cols: usize) -> Shape {
        Shape {
            rows: Rows::Batch,
            cols,
            image: None,
        }
    }
    /// A batch of images.
    pub fn images(image: Image) -> Shape {
        Shape {
            rows: Rows::Batch,
            cols: image.numel(),
            image: Some(image),
        }
    }
    pub fn fixed(rows: usize, cols: usize) -> Shape {
        Shape {
            rows: Rows::Fixed(rows),
            cols,
            image: None,
        }
    }
    /// The same rows and columns, without the image (what `flatten` makes).
    pub fn flat(&self) -> Shape {
        Shape {
            image: None,
            ..*self
        }
    }
    pub fn scalar() -> Shape {
        Shape::fixed(1, 1)
    }
    /// Number of elements when the batch is `batch`.
    /// Elements at batch `batch` (saturating: sizes come from specs).
    pub fn numel(&self, batch: usize) -> usize {
        self.rows_at(batch).saturating_mul(self.cols)
    }
    pub fn rows_at(&self, batch: usize) -> usize {
        match self.rows {
            Rows::Batch => batch,
            Rows::Fixed(r) => r,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = match self.image {
            Some(i) => format!("{},{},{}", i.c, i.h, i.w),
            None => self.cols.to_string(),
        };
        match self.rows {
            Rows::Batch => write!(f, "[B,{cols}]"),
            Rows::Fixed(r) => write!(f, "[{r},{cols}]"),
        }
    }
}

/// The loss a graph ends in. The softmax / sigmoid is fused into the loss, which reads logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LossKind {
    /// Mean over rows of −log softmax(logits)[label] (stable log-sum-exp).
    SoftmaxCrossEntropy,
    /// Mean of the binary cross-entropy of sigmoid(logit) against a 0/1 label.
    SigmoidBinaryCrossEntropy,
    /// Mean over rows of the summed squared error; `one_hot` compares against one-hot labels.
    Mse { one_hot: bool },
}

/// Which gradient of a normalisation layer a backward node computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormPart {
    Input,
    Gamma,
    /// Σ dy per channel (a channel norm's beta; the other norms' beta is a `SumRows`).
    Beta,
}

/// Which normalisation: over the batch per feature, over features per row, or over the
/// batch and an image's pixels per channel (`batch_norm` after a convolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormAxis {
    Batch,
    Layer,
    /// NCHW rows: channel `j / area` of column `j`; `area` = height × width.
    Channel {
        area: usize,
    },
}

impl NormAxis {
    /// The statistics group of element (`row`, `col`).
    pub fn group(self, row: usize, col: usize) -> usize {
        match self {
            NormAxis::Batch => col,
            NormAxis::Layer => row,
            NormAxis::Channel { area } => col / area,
        }
    }

    /// How many statistics groups a `rows` × `cols` input has.
    pub fn groups(self, rows: usize, cols: usize) -> usize {
        match self {
            NormAxis::Batch => cols,
            NormAxis::Layer => rows,
            NormAxis::Channel { area } => cols / area,
        }
    }

    /// How many elements each group's statistics are over.
    pub fn count(self, rows: usize, cols: usize) -> usize {
        match self {
            NormAxis::Batch => rows,
            NormAxis::Layer => cols,
            NormAxis::Channel { area } => rows * area,
        }
    }

    /// The gamma and beta index of column `col` (they are per channel for a channel norm,
    /// per column otherwise).
    pub fn param(self, col: usize) -> usize {
        match self {
            NormAxis::Channel { area } => col / area,
            _ => col,
        }
    }

    /// Columns of gamma and beta for an input of `cols` columns.
    pub fn params(self, cols: usize) -> usize {
        match self {
            NormAxis::Channel { area } => cols / area,
            _ => cols,
        }
    }

    /// Whether running statistics are kept for evaluation (batch statistics).
    pub fn running(self) -> bool {
        !matches!(self, NormAxis::Layer)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Feature columns (indices into the prepared feature matrix).
    Input {
        columns: Vec<usize>,
    },
    /// Labels: class indices or regression targets.
    Target,
    /// A trainable tensor and how it starts.
    Param {
        init: ParamInit,
    },
    /// `a @ b`, with either operand read transposed (no copy).
    MatMul {
        ta: bool,
        tb: bool,
    },
    /// `x + bias` broadcast over rows.
    BiasAdd,
    Act(Activation),
    /// `act(x + bias)` in one pass (made by the fusion pass; inputs x, bias).
    BiasAct(Activation),
    /// `act(a @ b + bias)` in one kernel: the bias and activation run in the matmul's
    /// epilogue, so the product is never written to memory (inputs a, b, bias). Made by the
    /// GPU target's pass (`target.rs`) from a `MatMul` read only by its `BiasAdd` (`act` is
    /// then linear) or `BiasAct`.
    MatMulBias {
        ta: bool,
        tb: bool,
        act: Activation,
    },
    /// Zeroes each element with probability `rate` (counter-based mask from `stream`).
    Dropout {
        rate: f32,
        stream: u64,
    },
    /// Normalise `x`, then `gamma * x̂ + beta` (inputs x, gamma, beta).
    Norm {
        axis: NormAxis,
        eps: f32,
        momentum: f32,
    },
    /// Elementwise sum of same-shaped inputs.
    Add,
    /// Columns side by side.
    Concat,
    /// Mean loss over the batch (inputs: logits or predictions, target) → [1,1].
    Loss(LossKind),
    /// A 2-D convolution (cross-correlation) of each row's image: inputs x `[B, c·h·w]`,
    /// weights `[filters, c·kh·kw]` and optionally a bias `[1, filters]` → `[B, filters·oh·ow]`.
    Conv2d {
        win: Window,
        filters: usize,
        /// An activation applied in the same pass (made by the fusion pass, for those whose
        /// gradient follows from the output, as `BiasAct`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        act: Option<Activation>,
    },
    /// Each channel's windows reduced to their largest value or their mean (padding cells
    /// are left out) → `[B, c·oh·ow]`.
    Pool2d {
        kind: PoolKind,
        win: Window,
    },
    /// The same values without the image shape (`flatten`; the rows are already NCHW).
    Flatten,
    /// Rows of a table by id: input 0 holds one id per row ([B,1], as f32, exact below
    /// 2^24), input 1 the table [vocab, dim] → [B, dim]; an id outside the table reads zeros.
    Embedding,

    // ---- backward
    /// dL/dx of an activation (inputs x, y, dy; after fusion x is y, see `fuse.rs`).
    ActGrad(Activation),
    /// The same mask as the forward dropout, applied to dy.
    DropoutGrad {
        rate: f32,
        stream: u64,
    },
    /// Sum over rows → [1, cols] (bias and beta gradients).
    SumRows,
    /// Gradient of a normalisation (inputs x, gamma, dy).
    NormGrad {
        axis: NormAxis,
        eps: f32,
        part: NormPart,
    },
    /// Columns `start..end` of the input.
    Slice {
        start: usize,
        end: usize,
    },
    /// dL/d(logits or predictions) of the loss (inputs as the loss).
    LossGrad(LossKind),
    /// A gradient of [`Op::Conv2d`] (see [`ConvPart`] for the inputs).
    Conv2dGrad {
        win: Window,
        filters: usize,
        part: ConvPart,
    },
    /// dL/dx of a pooling (inputs x, dy): dy to each window's largest input (the first of
    /// equal ones), or spread evenly over its cells.
    Pool2dGrad {
        kind: PoolKind,
        win: Window,
    },
    /// An embedding table's gradient: each row of dy added into the row of its id (inputs
    /// ids [B,1], dy [B, dim]) → [vocab, dim].
    EmbeddingGrad {
        vocab: usize,
    },

    // ---- update
    /// Global L2 norm of all gradients (inputs: every gradient) → [1,1].
    GradNorm,
    /// Optimizer step on one parameter in place (inputs param, grad [, grad norm]); the
    /// layer's penalty adds `l1·sign(w) + 2·l2·w` to the (clipped) gradient.
    Update {
        param: String,
        #[serde(default, skip_serializing_if = "Penalty::is_zero")]
        penalty: Penalty,
    },
    /// One full-batch L-BFGS iteration over all parameters (inputs: params then grads).
    LbfgsStep,
}

/// A layer's L1 / L2 penalty on its weights (`dense: {l1, l2}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    pub l1: f32,
    pub l2: f32,
}

impl Penalty {
    pub fn is_zero(&self) -> bool {
        self.l1 == 0.0 && self.l2 == 0.0
    }

    /// The penalty's gradient at weight `w` (the L1 norm's subgradient is 0 at 0).
    pub fn grad(&self, w: f32) -> f32 {
        let sign = if w > 0.0 {
            1.0
        } else if w < 0.0 {
            -1.0
        } else {
            0.0
        };
        self.l1 * sign + 2.0 * self.l2 * w
    }
}

/// How a parameter is initialised (fan-in / fan-out resolved at plan time).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParamInit {
    pub init: Init,
    pub fan_in: usize,
    pub fan_out: usize,
    /// Constant fill for `zeros` / gamma (`1.0`) initialisers.
    pub fill: f32,
    /// RNG stream for this parameter.
    pub stream: u64,
}

impl Op {
    /// Short name for printing (`MatMul`, `Act(relu)`, …).
    pub fn name(&self) -> String {
        match self {
            Op::Input { .. } => "Input".into(),
            Op::Target => "Target".into(),
            Op::Param { .. } => "Param".into(),
            Op::MatMul { ta, tb } => match (ta, tb) {
                (false, false) => "MatMul".into(),
                (true, false) => "MatMul(aᵀ)".into(),
                (false, true) => "MatMul(bᵀ)".into(),
                (true, true) => "MatMul(aᵀ,bᵀ)".into(),
            },
            Op::BiasAdd => "BiasAdd".into(),
            Op::Act(a) => format!("Act({})", a.name()),
            Op::BiasAct(a) => format!("BiasAct({})", a.name()),
            Op::MatMulBias { ta, tb, act } => {
                let t = match (ta, tb) {
                    (false, false) => "",
                    (true, false) => "aᵀ, ",
                    (false, true) => "bᵀ, ",
                    (true, true) => "aᵀ,bᵀ, ",
                };
                format!("MatMulBias({t}{})", act.name())
            }
            Op::Dropout { .. } => "Dropout".into(),
            Op::Norm { axis, .. } => norm_name(*axis).into(),
            Op::Add => "Add".into(),
            Op::Concat => "Concat".into(),
            Op::Loss(k) => format!("Loss({})", loss_name(*k)),
            Op::ActGrad(a) => format!("ActGrad({})", a.name()),
            Op::DropoutGrad { .. } => "DropoutGrad".into(),
            Op::SumRows => "SumRows".into(),
            Op::NormGrad { axis, part, .. } => {
                format!(
                    "{}Grad({})",
                    norm_name(*axis),
                    match part {
                        NormPart::Input => "x",
                        NormPart::Gamma => "gamma",
                        NormPart::Beta => "beta",
                    }
                )
            }
            Op::Slice { start, end } => format!("Slice({start}..{end})"),
            Op::Conv2d { win, act, .. } => match act {
                Some(a) => format!("Conv2d({}×{}, {})", win.kh, win.kw, a.name()),
                None => format!("Conv2d({}×{})", win.kh, win.kw),
            },
            Op::Pool2d { kind, win } => {
                format!("{}Pool2d({}×{})", pool_name(*kind), win.kh, win.kw)
            }
            Op::Flatten => "Flatten".into(),
            Op::Conv2dGrad { part, .. } => format!(
                "Conv2dGrad({})",
                match part {
                    ConvPart::Input => "x",
                    ConvPart::Weight => "w",
                    ConvPart::Bias => "b",
                }
            ),
            Op::Pool2dGrad { kind, .. } => format!("{}Pool2dGrad", pool_name(*kind)),
            Op::Embedding => "Embedding".into(),
            Op::EmbeddingGrad { .. } => "EmbeddingGrad".into(),
            Op::LossGrad(k) => format!("LossGrad({})", loss_name(*k)),
            Op::GradNorm => "GradNorm".into(),
            Op::Update { penalty, .. } if !penalty.is_zero() => {
                let mut parts = Vec::new();
                if penalty.l1 != 0.0 {
                    parts.push(format!("l1={}", penalty.l1));
                }
                if penalty.l2 != 0.0 {
                    parts.push(format!("l2={}", penalty.l2));
                }
                format!("Update({})", parts.join(", "))
            }
            Op::Update { .. } => "Update".into(),
            Op::LbfgsStep => "LbfgsStep".into(),
        }
    }

    /// Ops that read and write each element independently.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::BiasAdd | Op::Add | Op::Dropout { .. } | Op::DropoutGrad { .. }
        ) || matches!(self, Op::Act(a) | Op::BiasAct(a) | Op::ActGrad(a) if *a != Activation::Softmax)
    }
}

fn pool_name(k: PoolKind) -> &'static str {
    match k {
        PoolKind::Max => "Max",
        PoolKind::Avg => "Avg",
    }
}

fn norm_name(axis: NormAxis) -> &'static str {
    match axis {
        NormAxis::Batch => "BatchNorm",
        NormAxis::Layer => "LayerNorm",
        NormAxis::Channel { .. } => "BatchNorm2d",
    }
}

pub fn loss_name(k: LossKind) -> &'static str {
    match k {
        LossKind::SoftmaxCrossEntropy => "softmax_cross_entropy",
        LossKind::SigmoidBinaryCrossEntropy => "sigmoid_binary_cross_entropy",
        LossKind::Mse { .. } => "mse",
    }
}

/// The phase a node belongs to, for printing, drawing and scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    Forward,
    Backward,
    Update,
}
