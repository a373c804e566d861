//! The experiment spec: typed, with every default in one place (the `default_*` functions).
//!
//! Names here are the contract of DESIGN.md: extend, don't rename. Enums whose payload has
//! defaults may be written as a bare string (`optimizer: adam`, `activation: leaky_relu`);
//! the deserializer fills the payload from its defaults.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole experiment: data, model, training, evaluation, where and how to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Run name; runs are written to `runs/<name>/<id>/`.
    pub name: String,
    /// Seed for initialisation, shuffling, splitting and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub data: DataSpec,
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainSpec,
    /// Metrics computed on the test split (and validation split when there is one).
    #[serde(default = "default_evaluate")]
    pub evaluate: Vec<Metric>,
    #[serde(default)]
    pub parallelism: ParallelismSpec,
    #[serde(default)]
    pub executor: ExecutorSpec,
}

fn default_seed() -> u64 {
    42
}
fn default_evaluate() -> Vec<Metric> {
    vec![Metric::Accuracy, Metric::F1]
}

// ---------------------------------------------------------------- data

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub source: Source,
    /// Which columns are features; default: every column but the label.
    #[serde(default)]
    pub features: FeatureSelect,
    /// The label column. Defaults to `species` for builtin:iris and `label` for synthetic.
    #[serde(default)]
    pub label: Option<String>,
    /// Preprocessing stages, fitted on the train split only and saved with the model.
    #[serde(default)]
    pub preprocess: Vec<Preprocess>,
    #[serde(default)]
    pub split: SplitSpec,
    /// Cell texts that mean "missing" (besides empty cells and nulls of typed files).
    #[serde(default = "default_na_values")]
    pub na_values: Vec<String>,
    /// A column of per-row weights (numbers >= 0) that multiply each row's loss; it is not a
    /// feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_column: Option<String>,
    /// How training rows are shuffled. `full` (the default) reads the data set into memory
    /// and shuffles every row each epoch. `buffer` streams it from its files instead: memory
    /// holds the batch, the shuffle buffer and the parts being read, not the data set. Each
    /// epoch shuffles the order of the parts (Parquet row groups, Arrow record batches, CSV
    /// files) and draws rows at random from a buffer of `shuffle_buffer` rows; rows are split
    /// by a hash of their position. Giving `shuffle_buffer` alone means `buffer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle: Option<ShuffleMode>,
    /// Rows held by the shuffle buffer of `shuffle: buffer` (default 65536): larger shuffles
    /// better (a buffer as large as the data set is a full shuffle) and takes more memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_buffer: Option<u64>,
    /// How the feature columns make an image (`channels × height × width`, in row-major
    /// order: every pixel of channel 0, row by row, then channel 1…), for `conv2d` and the
    /// pooling layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
}

/// `data.image`: the shape of one sample's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    #[serde(default = "one_usize")]
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// `data.shuffle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShuffleMode {
    /// The data set in memory, every row shuffled each epoch.
    Full,
    /// Streamed from the files through a shuffle buffer.
    Buffer,
}

/// The shuffle buffer's rows when `data.shuffle_buffer` is not given.
pub const DEFAULT_SHUFFLE_BUFFER: u64 = 65_536;

/// `data.na_values` by default.
pub fn default_na_values() -> Vec<String> {
    ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
        .map(String::from)
        .to_vec()
}

impl Spec {
    /// The model's embedding inputs (graph form), in input-name order.
    pub fn embeddings(&self) -> Vec<&EmbeddingInput> {
        match &self.model {
            ModelSpec::Graph(g) => g
                .inputs
                .values()
                .filter_map(|i| match i {
                    InputSource::Embedding { embedding } => Some(embedding),
                    _ => None,
                })
                .collect(),
            ModelSpec::Sequential(_) => Vec::new(),
        }
    }

    /// The data section as prepared: each embedding column is numbered ahead of the spec's
    /// other stages (so scalers leave its ids alone), but after an `impute` or `drop_missing`
    /// that names it (so they still see its missing values).
    pub fn prepared_data(&self) -> DataSpec {
        let mut data = self.data.clone();
        for e in self.embeddings() {
            let names = |p: &Preprocess| match p {
                Preprocess::Impute(m) => m.columns.as_ref().is_some_and(|c| c.contains(&e.column)),
                Preprocess::DropMissing(d) => d.columns.contains(&e.column),
                _ => false,
            };
            let at = data.preprocess.iter().rposition(names).map_or(0, |i| i + 1);
            data.preprocess
                .insert(at, Preprocess::EmbedIndex(e.clone()));
        }
        data
    }
}

impl DataSpec {
    /// The shuffle buffer's rows when the data set is streamed (`shuffle: buffer`, or a
    /// `shuffle_buffer` given), `None` when it is read into memory.
    pub fn streamed(&self) -> Option<usize> {
        match (self.shuffle, self.shuffle_buffer) {
            (Some(ShuffleMode::Full), _) => None,
            (_, Some(rows)) => Some(usize::try_from(rows).unwrap_or(usize::MAX)),
            (Some(ShuffleMode::Buffer), None) => Some(DEFAULT_SHUFFLE_BUFFER as usize),
            (None, None) => None,
        }
    }

    /// The label column, with the source's default applied.
    pub fn label_column(&self) -> Option<&str> {
        match (&self.label, &self.source) {
            (Some(l), _) => Some(l),
            (None, Source::Builtin(Builtin::Iris)) => Some("species"),
            (None, Source::Synthetic(_) | Source::Idx(_) | Source::ImageFolder(_)) => Some("label"),
            (None, _) => None,
        }
    }
}

/// Where rows come from. Relative paths resolve against the spec file's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A CSV file with a header row; column types are inferred.
    Csv(String),
    /// A Parquet file, a folder of `.parquet` files, or a glob.
    Parquet(String),
    /// An Arrow IPC file (`.arrow`, `.feather` v2, `.ipc`; the file or the stream format), a
    /// folder of them, or a glob.
    Arrow(String),
    /// A data set shipped inside weft (`builtin:iris`).
    Builtin(Builtin),
    /// A make_classification-like problem, for benchmarks: columns x0… and `label`.
    Synthetic(SyntheticSpec),
    /// MNIST's IDX files (gzipped or not): the images become pixel columns `p0…` (row-major,
    /// as `data.image` reads them) and the labels the column `label`.
    Idx(IdxSource),
    /// A folder of PNG/JPEG images, one sub-folder per class (the folder's name is the
    /// label, column `label`); each image becomes pixel columns `p0…` (channel after
    /// channel, row-major), resized to `data.image` when it says a size.
    ImageFolder(String),
}

/// `{idx: {images: train-images-idx3-ubyte.gz, labels: train-labels-idx1-ubyte.gz}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdxSource {
    pub images: String,
    /// Without labels the rows can be scored by `weft predict`, not trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// Fisher's Iris: sepal_length, sepal_width, petal_length, petal_width, species.
    Iris,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    #[serde(default = "default_rows")]
    pub rows: usize,
    #[serde(default = "default_features")]
    pub features: usize,
    #[serde(default = "default_classes")]
    pub classes: usize,
    /// How many features carry signal; the rest are noise. Default: all.
    #[serde(default)]
    pub informative: Option<usize>,
    #[serde(default)]
    pub seed: u64,
}

fn default_rows() -> usize {
    1000
}
fn default_features() -> usize {
    20
}
fn default_classes() -> usize {
    2
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSelect {
    /// Only these columns (in this order). Default: every column but the label.
    #[serde(default)]
    pub include: Option<Vec<String>>,
    /// Drop these columns.
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preprocess {
    /// Subtract the mean, divide by the standard deviation.
    StandardScale(ColumnsOpt),
    /// Scale to [min, max] (default [0, 1]).
    MinMaxScale(MinMaxScale),
    /// Map the distinct strings of a column to 0, 1, … (by frequency, then name).
    StringIndex(OneColumn),
    /// Replace a categorical column by one 0/1 column per category.
    OneHot(OneHot),
    /// Fill missing values with a statistic of the train split (or a constant).
    Impute(Impute),
    /// Drop the rows that have a missing value in any of these columns.
    DropMissing(Columns),
    /// Number a categorical column for an embedding input. Not written by users: weft adds
    /// one per `embedding` input of the model, ahead of the spec's stages.
    #[serde(skip)]
    #[schemars(skip)]
    EmbedIndex(EmbeddingInput),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneHot {
    pub column: String,
    /// What a category the train split did not have becomes: `error` (the default), `ignore`
    /// (all zeros, with a warning counting the rows) or `infrequent` (the `<column>=infrequent`
    /// column, which also takes the categories seen fewer than `min_frequency` times).
    #[serde(default)]
    pub handle_unknown: HandleUnknown,
    /// With `handle_unknown: infrequent`: categories seen fewer times than this in the train
    /// split go to the infrequent column (default 1: only unseen ones).
    #[serde(default)]
    pub min_frequency: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandleUnknown {
    #[default]
    Error,
    Ignore,
    Infrequent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Impute {
    pub strategy: ImputeStrategy,
    /// Columns to fill; default: every feature column with a missing value.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The value for `strategy: constant` (a number, or a string for a string column).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    Mean,
    Median,
    MostFrequent,
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnsOpt {
    /// Columns to transform; default: every numeric feature.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MinMaxScale {
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub min: f64,
    #[serde(default = "one")]
    pub max: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneColumn {
    pub column: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSpec {
    pub train: f64,
    pub test: f64,
    pub validation: Option<f64>,
    pub shuffle: bool,
    /// Seed of the shuffle; default: the spec's seed.
    pub seed: Option<u64>,
    /// A column (a row id, a user id) whose value picks each row's split by a hash: a row
    /// stays in its split when files are reordered or rows added, and rows sharing a value
    /// share a split. The splits then hold about their fractions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            train: 0.8,
            test: 0.2,
            validation: None,
            shuffle: true,
            seed: None,
            key: None,
        }
    }
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- model

/// A list is a sequential model; a map with `inputs`, `nodes`, `output` is a graph.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ModelSpec {
    Sequential(Vec<Layer>),
    Graph(GraphSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Input name → `features` (all feature columns) or a list of feature columns.
    pub inputs: BTreeMap<String, InputSource>,
    pub nodes: BTreeMap<String, GraphNode>,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum InputSource {
    /// The keyword `features`: every feature column (but those of embedding inputs).
    All(String),
    Columns(Vec<String>),
    /// A categorical column as learnt vectors: `{embedding: {column: city, dim: 8}}`.
    Embedding {
        embedding: EmbeddingInput,
    },
}

/// An embedding input: each category of `column` (a string or integer column, of any
/// cardinality) is a trained vector of `dim` values. Categories are numbered by a
/// dictionary of the train split's values (most frequent first), or, with `buckets`, by a
/// hash of the value into that many ids (no dictionary to fit or save). Id 0 is kept for a
/// missing value and a category the dictionary lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingInput {
    pub column: String,
    pub dim: usize,
    /// Hash categories into this many ids instead of fitting a dictionary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<usize>,
}

/// A node of the graph form: a layer with an `input`, or a merge (`add`, `concat`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum GraphNode {
    Layer {
        #[serde(flatten)]
        layer: Layer,
        input: String,
    },
    Merge(Merge),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Merge {
    /// Elementwise sum of inputs of equal width.
    Add(Vec<String>),
    /// Inputs side by side (widths add up).
    Concat(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Dense(Dense),
    Dropout(Dropout),
    BatchNorm(Norm),
    LayerNorm(Norm),
    Activation(Activation),
    Conv2d(Conv2d),
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    /// The mean of each channel's feature map: `[B,C,H,W]` → `[B,C]`.
    GlobalAvgPool2d(Nothing),
    /// An image as a row of features: `[B,C,H,W]` → `[B,C·H·W]` (no copy).
    Flatten(Nothing),
}

/// `{}`: a layer without settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// A 2-D convolution over an image (`[B,C,H,W]` → `[B,filters,H',W']`), cross-correlation
/// as Keras and PyTorch compute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv2d {
    pub filters: usize,
    /// The kernel's height and width: `3` or `[3, 5]`.
    pub kernel: Pair,
    #[serde(default = "pair_one")]
    pub stride: Pair,
    #[serde(default)]
    pub padding: Padding,
    #[serde(default = "pair_one")]
    pub dilation: Pair,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// Weight initializer; default: he_uniform before relu-like activations, glorot_uniform otherwise.
    #[serde(default)]
    pub init: Option<Init>,
}

/// `max_pool2d` / `avg_pool2d`: each channel's `size` windows reduced to their largest value
/// or their mean (padding cells are left out of both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool2d {
    pub size: Pair,
    /// Default: `size` (windows side by side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<Pair>,
    #[serde(default)]
    pub padding: Padding,
}

/// One number for both dimensions, or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(untagged)]
pub enum Pair {
    Both(usize),
    Each([usize; 2]),
}

impl Pair {
    /// `(height, width)`.
    pub fn hw(&self) -> (usize, usize) {
        match *self {
            Pair::Both(n) => (n, n),
            Pair::Each([h, w]) => (h, w),
        }
    }
}

fn pair_one() -> Pair {
    Pair::Both(1)
}

/// `valid` (no padding), `same` (the output as large as the input at stride 1; TensorFlow's
/// rule, an odd cell more at the bottom and right), or cells on each side: `1` or `[1, 2]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Padding {
    #[default]
    Valid,
    Same,
    Cells(Pair),
}

/// Written by hand: a derived schema cannot say "one of two words, or a [`Pair`]".
impl JsonSchema for Padding {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Padding".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let pair = generator.subschema_for::<Pair>();
        schemars::json_schema!({
            "description": "`valid`, `same`, or cells on each side: `1` or `[1, 2]`",
            "anyOf": [{"type": "string", "enum": ["valid", "same"]}, pair]
        })
    }
}

impl Layer {
    /// The spec key of this layer kind (`dense`, `dropout`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense(_) => "dense",
            Layer::Dropout(_) => "dropout",
            Layer::BatchNorm(_) => "batch_norm",
            Layer::LayerNorm(_) => "layer_norm",
            Layer::Activation(_) => "activation",
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool2d(_) => "max_pool2d",
            Layer::AvgPool2d(_) => "avg_pool2d",
            Layer::GlobalAvgPool2d(_) => "global_avg_pool2d",
            Layer::Flatten(_) => "flatten",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    pub units: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// Weight initializer; default: he_uniform before relu-like activations, glorot_uniform otherwise.
    #[serde(default)]
    pub init: Option<Init>,
    /// L1 penalty on the weights (Keras' `kernel_regularizer`): `l1 · Σ|w|` is added to the
    /// loss being minimised, so each step's gradient gains `l1 · sign(w)`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l1: f64,
    /// L2 penalty on the weights: `l2 · Σw²`, a gradient of `2 · l2 · w`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub l2: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    /// Fraction of units zeroed while training, in [0, 1).
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Norm {
    #[serde(default = "default_eps")]
    pub epsilon: f64,
    /// Running-statistics momentum (batch_norm only).
    #[serde(default = "default_bn_momentum")]
    pub momentum: f64,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_bn_momentum() -> f64 {
    0.1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    #[default]
    Linear,
    Sigmoid,
    Tanh,
    Softplus,
    Relu,
    LeakyRelu {
        #[serde(default = "default_leaky_alpha")]
        alpha: f64,
    },
    Elu {
        #[serde(default = "one")]
        alpha: f64,
    },
    Swish,
    Gelu,
    /// Scaled ELU (self-normalising): λ·x for x > 0, λ·α·(eˣ − 1) otherwise, with
    /// λ = 1.0507009873554805 and α = 1.6732632423543772.
    Selu,
    Softmax,
}

fn default_leaky_alpha() -> f64 {
    0.01
}

impl Activation {
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Swish => "swish",
            Activation::Gelu => "gelu",
            Activation::Selu => "selu",
            Activation::Softmax => "softmax",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    /// Uniform in [-0.05, 0.05].
    Uniform,
    /// Normal with standard deviation 0.05.
    Normal,
    Zeros,
}

// ---------------------------------------------------------------- training

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub batch_size: usize,
    pub epochs: usize,
    /// Rescale gradients so their global L2 norm is at most this.
    pub clip_grad_norm: Option<f64>,
    pub schedule: Schedule,
    /// Linear learning-rate warmup over this many steps.
    pub warmup_steps: usize,
    pub stop: StopSpec,
    /// Weights of the classes in the loss (classification): `balanced` (n / (classes ·
    /// count), from the train split) or a weight per class name (others weigh 1). Each
    /// row's loss is multiplied by its class's weight; the mean is over rows (as Keras).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<ClassWeight>,
}

/// `train.class_weight`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ClassWeight {
    Balanced(Balanced),
    /// Class name → weight.
    Weights(BTreeMap<String, f64>),
}

impl<'de> Deserialize<'de> for ClassWeight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ClassWeight;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`balanced` or a weight per class name ({cat: 2.0, dog: 1.0})")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClassWeight, E> {
                match v {
                    "balanced" => Ok(ClassWeight::Balanced(Balanced::Balanced)),
                    other => Err(E::custom(format!(
                        "expected `balanced` or a weight per class name ({{cat: 2.0, dog: 1.0}}), found `{other}`"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<ClassWeight, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, f64>()? {
                    out.insert(k, v);
                }
                Ok(ClassWeight::Weights(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Balanced {
    /// Inversely proportional to the class's rows in the train split.
    Balanced,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            loss: Loss::default(),
            optimizer: Optimizer::default(),
            batch_size: 32,
            epochs: 1,
            clip_grad_norm: None,
            schedule: Schedule::default(),
            warmup_steps: 0,
            stop: StopSpec::default(),
            class_weight: None,
        }
    }
}

fn one_usize() -> usize {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax cross-entropy on class indices (fused, numerically stable).
    #[default]
    CrossEntropy,
    /// Binary cross-entropy on one sigmoid output.
    BinaryCrossEntropy,
    /// Mean squared error.
    Mse,
}

impl Loss {
    /// The task a loss trains for: `mse` is regression, the cross-entropies classification.
    pub fn task_kind(self) -> weft_common::TaskKind {
        match self {
            Loss::Mse => weft_common::TaskKind::Regression,
            Loss::CrossEntropy | Loss::BinaryCrossEntropy => weft_common::TaskKind::Classification,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy => "cross_entropy",
            Loss::BinaryCrossEntropy => "binary_cross_entropy",
            Loss::Mse => "mse",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Sgd(Sgd),
    Adagrad(Adagrad),
    Rmsprop(Rmsprop),
    Adam(Adam),
    Adamw(Adam),
    /// Full-batch L-BFGS with a strong-Wolfe line search (Spark ML's MLP default).
    Lbfgs(Lbfgs),
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Adam(Adam::default())
    }
}

impl Optimizer {
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adagrad(_) => "adagrad",
            Optimizer::Rmsprop(_) => "rmsprop",
            Optimizer::Adam(_) => "adam",
            Optimizer::Adamw(_) => "adamw",
            Optimizer::Lbfgs(_) => "lbfgs",
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adagrad(o) => o.lr,
            Optimizer::Rmsprop(o) => o.lr,
            Optimizer::Adam(o) | Optimizer::Adamw(o) => o.lr,
            Optimizer::Lbfgs(o) => o.lr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sgd {
    #[serde(default = "lr_sgd")]
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adagrad {
    #[serde(default = "lr_sgd")]
    pub lr: f64,
    #[serde(default = "default_adagrad_init")]
    pub initial_accumulator: f64,
    #[serde(default = "default_eps_opt")]
    pub epsilon: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rmsprop {
    #[serde(default = "lr_adam")]
    pub lr: f64,
    #[serde(default = "default_rho")]
    pub rho: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default = "default_eps_opt")]
    pub epsilon: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

/// Adam (weight_decay is L2 added to the gradient) and AdamW (decoupled weight decay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Default 0 for adam, 0.01 for adamw (applied when the spec leaves it out).
    pub weight_decay: Option<f64>,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lbfgs {
    #[serde(default = "one")]
    pub lr: f64,
    /// L-BFGS iterations per epoch.
    #[serde(default = "default_lbfgs_iter")]
    pub max_iter: usize,
    /// How many (s, y) pairs are kept.
    #[serde(default = "default_history")]
    pub history: usize,
    /// Stop when the largest gradient component is below this.
    #[serde(default = "default_tol_grad")]
    pub tolerance_grad: f64,
    /// Stop when the loss changes less than this between iterations.
    #[serde(default = "default_tol_change")]
    pub tolerance_change: f64,
}

fn lr_sgd() -> f64 {
    0.01
}
fn lr_adam() -> f64 {
    0.001
}
fn default_adagrad_init() -> f64 {
    0.1
}
fn default_eps_opt() -> f64 {
    1e-7
}
fn default_rho() -> f64 {
    0.9
}
fn default_lbfgs_iter() -> usize {
    20
}
fn default_history() -> usize {
    10
}
fn default_tol_grad() -> f64 {
    1e-7
}
fn default_tol_change() -> f64 {
    1e-9
}

/// Learning-rate schedule over steps (after warmup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Multiply the rate by `gamma` every `every_epochs` epochs.
    Step(StepSchedule),
    /// Cosine decay from the base rate to `min_lr` over the whole run.
    Cosine(CosineSchedule),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSchedule {
    #[serde(default = "one_usize")]
    pub every_epochs: usize,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

fn default_gamma() -> f64 {
    0.1
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineSchedule {
    #[serde(default)]
    pub min_lr: f64,
}

/// Early stopping: stop at a target training loss, or when the monitored loss has not
/// improved by `min_delta` for `patience` epochs (validation loss when there is a
/// validation split, training loss otherwise).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    #[serde(default)]
    pub target_loss: Option<f64>,
    #[serde(default)]
    pub patience: Option<usize>,
    #[serde(default)]
    pub min_delta: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    Precision,
    Recall,
    F1,
    /// Area under the ROC curve (binary problems).
    Auc,
    ConfusionMatrix,
    /// Mean squared / absolute error and R² (regression).
    Mse,
    Mae,
    R2,
}

impl Metric {
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Auc => "auc",
            Metric::ConfusionMatrix => "confusion_matrix",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
        }
    }
}

// ---------------------------------------------------------------- parallelism, executor

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelismSpec {
    #[serde(default)]
    pub data: Option<DataParallel>,
    #[serde(default)]
    pub pipeline: Option<Pipeline>,
}

/// Data-parallel training: every worker holds a full model replica and a shard of the
/// training rows; replicas are kept in step by `sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataParallel {
    /// Worker processes (one per device); 1 trains on one device through the same path.
    pub workers: usize,
    #[serde(default)]
    pub sync: Sync,
    /// Parameter-server algorithm; required with `sync: parameter_server`, and only there.
    #[serde(default)]
    pub algorithm: Option<PsAlgorithm>,
    /// Steps between exchanges with the server or the peers (parameter_server algorithms
    /// other than `sync`, local_sgd, gossip); allreduce exchanges every step.
    #[serde(default = "default_window")]
    pub communication_window: usize,
    /// Stale-synchronous bound, in steps: how far the fastest worker may run ahead of the
    /// slowest (asynchronous parameter-server algorithms only).
    #[serde(default)]
    pub staleness: Option<usize>,
    /// How gradients or parameters are encoded on the wire.
    #[serde(default)]
    pub compression: Compression,
    /// Elasticity ρ of the EASGD family (easgd, aeasgd, eamsgd), as in Distributed Keras.
    #[serde(default = "default_elastic_rho")]
    pub rho: f64,
    /// Worker learning rate of the EASGD family: the elastic pull is
    /// alpha = learning_rate × rho; eamsgd also takes its local SGD steps at this rate.
    #[serde(default = "default_elastic_lr")]
    pub learning_rate: f64,
    /// Nesterov momentum of eamsgd's local steps, in [0, 1).
    #[serde(default = "default_elastic_momentum")]
    pub momentum: f64,
    /// All-reduce fusion bucket size in MiB: gradients are packed into buckets of at most
    /// this size and each bucket is reduced as soon as its gradients are ready.
    #[serde(default = "default_bucket_mb")]
    pub bucket_mb: f64,
    /// Seconds any blocking network call may wait before its peer is declared dead or
    /// stalled and the run fails with an error naming it.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
}

impl DataParallel {
    /// The strategy's name in plans and reports: `allreduce`, `parameter_server/downpour`,
    /// `local_sgd`, `gossip` (`parameter_server` alone when the algorithm is missing).
    pub fn strategy(&self) -> String {
        match (self.sync, self.algorithm) {
            (Sync::ParameterServer, Some(a)) => format!("parameter_server/{}", a.name()),
            (s, _) => s.name().to_string(),
        }
    }
}

fn default_window() -> usize {
    5
}
fn default_elastic_rho() -> f64 {
    5.0
}
fn default_elastic_lr() -> f64 {
    0.01
}
fn default_elastic_momentum() -> f64 {
    0.9
}
fn default_bucket_mb() -> f64 {
    25.0
}
fn default_timeout_s() -> f64 {
    10.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sync {
    /// Ring all-reduce of the gradients every step (scatter-reduce, then all-gather).
    #[default]
    Allreduce,
    /// A parameter server that workers push to and pull from (see `algorithm`).
    ParameterServer,
    /// Local steps, then an all-reduce average of the parameters every window.
    LocalSgd,
    /// Average parameters with ring neighbours every window, no global step.
    Gossip,
}

impl Sync {
    pub fn name(&self) -> &'static str {
        match self {
            Sync::Allreduce => "allreduce",
            Sync::ParameterServer => "parameter_server",
            Sync::LocalSgd => "local_sgd",
            Sync::Gossip => "gossip",
        }
    }
}

/// The parameter-server algorithms of Distributed Keras / Elephas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PsAlgorithm {
    /// Synchronous: the server averages every worker's gradient each step.
    Sync,
    /// Asynchronous: workers push accumulated gradients every window (Dean et al.).
    Downpour,
    /// Elastic averaging, synchronous rounds every window.
    Easgd,
    /// Asynchronous elastic averaging.
    Aeasgd,
    /// Asynchronous elastic averaging with Nesterov momentum on the workers.
    Eamsgd,
    /// Accumulated gradients normalised by the window (Hermans).
    Adag,
    /// Staleness-aware updates scaled down by how stale they are.
    Dynsgd,
    /// Lock-free asynchronous updates.
    Hogwild,
}

impl PsAlgorithm {
    /// Every algorithm, in declaration order.
    pub const ALL: [PsAlgorithm; 8] = [
        PsAlgorithm::Sync,
        PsAlgorithm::Downpour,
        PsAlgorithm::Easgd,
        PsAlgorithm::Aeasgd,
        PsAlgorithm::Eamsgd,
        PsAlgorithm::Adag,
        PsAlgorithm::Dynsgd,
        PsAlgorithm::Hogwild,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            PsAlgorithm::Sync => "sync",
            PsAlgorithm::Downpour => "downpour",
            PsAlgorithm::Easgd => "easgd",
            PsAlgorithm::Aeasgd => "aeasgd",
            PsAlgorithm::Eamsgd => "eamsgd",
            PsAlgorithm::Adag => "adag",
            PsAlgorithm::Dynsgd => "dynsgd",
            PsAlgorithm::Hogwild => "hogwild",
        }
    }

    /// Workers proceed without waiting for each other (so `staleness` can bound them).
    pub fn is_async(&self) -> bool {
        !matches!(self, PsAlgorithm::Sync | PsAlgorithm::Easgd)
    }

    /// The EASGD family, whose workers use `rho`, `learning_rate` (and eamsgd `momentum`).
    pub fn is_elastic(&self) -> bool {
        matches!(
            self,
            PsAlgorithm::Easgd | PsAlgorithm::Aeasgd | PsAlgorithm::Eamsgd
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// fp32 as computed.
    #[default]
    None,
    /// Half precision on the wire.
    Fp16,
    /// 8-bit integers with one fp32 scale per tensor.
    Int8,
    /// Only the largest `ratio` of the values, with their indices.
    Topk(TopK),
}

impl Compression {
    /// `none`, `fp16`, `int8`, `topk(ratio=0.01, error_feedback)`.
    pub fn describe(&self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Fp16 => "fp16".into(),
            Compression::Int8 => "int8".into(),
            Compression::Topk(t) if t.error_feedback => {
                format!("topk(ratio={}, error_feedback)", t.ratio)
            }
            Compression::Topk(t) => format!("topk(ratio={})", t.ratio),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopK {
    /// Fraction of the values sent, in (0, 1].
    pub ratio: f64,
    /// Keep what was not sent and add it to the next step's values.
    #[serde(default = "yes")]
    pub error_feedback: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub stages: usize,
    #[serde(default = "default_micro")]
    pub micro_batches: usize,
}

fn default_micro() -> usize {
    4
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSpec {
    #[serde(default)]
    pub device: Device,
    #[serde(default)]
    pub cluster: Cluster,
    /// The most worker processes `cluster: local` may start on this machine; default: 4 per
    /// CPU core (more only oversubscribe it, and thousands would exhaust it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_local_workers: Option<usize>,
    /// The memory a run may plan to use, in GiB; default: the memory this machine has
    /// available when the run starts. A model or batch that needs more is refused before
    /// anything is allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_gib: Option<f64>,
    /// How `cluster: spark` reaches Spark when `weft run` submits the spec through pyspark
    /// (ignored by the other clusters, so one line switches a spec to Spark and back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spark: Option<SparkSpec>,
}

impl SparkSpec {
    /// The settings as Spark takes them, `key → text`; nested maps join their keys with dots
    /// (`--set executor.spark.conf.spark.ui.enabled=false` nests them). A value that is not
    /// one value (a list, null) is `Err` with it.
    pub fn settings(&self) -> Vec<(String, Result<String, serde_json::Value>)> {
        fn walk(
            key: String,
            v: &serde_json::Value,
            out: &mut Vec<(String, Result<String, serde_json::Value>)>,
        ) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        walk(format!("{key}.{k}"), v, out);
                    }
                }
                serde_json::Value::String(s) => out.push((key, Ok(s.clone()))),
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                    out.push((key, Ok(v.to_string())))
                }
                other => out.push((key, Err(other.clone()))),
            }
        }
        let mut out = Vec::new();
        for (k, v) in &self.conf {
            walk(k.clone(), v, &mut out);
        }
        out
    }
}

/// `executor.spark`: the Spark session `weft run` starts (`python/weft_spark` does the work).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparkSpec {
    /// The master URL (`local[4]`, `local-cluster[2,1,1024]`, `spark://host:7077`, `yarn`,
    /// `k8s://…`); default: Spark's own (spark-defaults.conf, else `local[*]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Spark settings, e.g. `{spark.executor.memory: 4g, spark.task.cpus: 2}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conf: BTreeMap<String, serde_json::Value>,
    /// The Python with pyspark and weft_spark installed; default: `WEFT_PYTHON`, else
    /// `python3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cluster {
    /// Worker processes on this machine.
    #[default]
    Local,
    /// Workers already listening at these `host:port` addresses.
    Hosts(Vec<String>),
    /// Spark barrier-mode tasks.
    Spark,
    /// Whatever launcher set RANK / WORLD_SIZE / MASTER_ADDR (Kubernetes, Slurm, MPI).
    Env,
}
