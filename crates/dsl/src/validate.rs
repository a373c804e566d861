//! Checks a typed spec for what types cannot say (ranges, sums, graph references, cycles),
//! collecting every problem with its spec path.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::*;
use crate::suggest;

/// A problem found by validation: spec path and message (located later from the path).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn positive(&mut self, path: &str, what: &str, v: f64) {
        if !(v > 0.0 && v.is_finite()) {
            self.fail(path, format!("{what} must be a positive number, found {v}"));
        }
    }

    fn non_negative(&mut self, path: &str, what: &str, v: f64) {
        if !(v >= 0.0 && v.is_finite()) {
            self.fail(path, format!("{what} must be >= 0, found {v}"));
        }
    }

    fn fraction(&mut self, path: &str, what: &str, v: f64) {
        if !(0.0..1.0).contains(&v) {
            self.fail(path, format!("{what} must be in [0, 1), found {v}"));
        }
    }

    fn at_least_one(&mut self, path: &str, what: &str, v: usize) {
        if v == 0 {
            self.fail(path, format!("{what} must be at least 1, found 0"));
        }
    }
}

/// The longest run name (it names a folder).
pub const MAX_NAME: usize = 100;

/// The most values one image may have (channels × height × width: 2²⁶, 256 MiB of f32, a
/// 4096×4096 RGBA picture), so a typo in `data.image` is an error, not an allocation that
/// fails.
pub const MAX_IMAGE_VALUES: usize = 1 << 26;

/// Every problem in the spec; empty when it is valid.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut c = Checker::default();
    // The name is a folder under the runs directory: it must stay inside it.
    if spec.name.is_empty()
        || spec.name.starts_with('.')
        || spec.name.len() > MAX_NAME
        || !spec
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        let shown: String = spec.name.chars().take(40).collect();
        let more = if spec.name.chars().count() > 40 {
            "…"
        } else {
            ""
        };
        c.fail(
            "name",
            format!(
                "`{shown}{more}` is not a valid run name; use up to {MAX_NAME} letters, digits, `-`, `_` and `.`, not starting with `.`"
            ),
        );
    }
    data(&mut c, &spec.data);
    if spec.data.streamed().is_some() && matches!(spec.train.optimizer, Optimizer::Lbfgs(_)) {
        c.fail(
            "train.optimizer.lbfgs",
            "L-BFGS takes full-batch steps over rows in memory; streamed data (`data.shuffle: buffer`) trains with a mini-batch optimizer (sgd, adam, …), or use `data.shuffle: full`",
        );
    }
    model(&mut c, &spec.model);
    train(&mut c, &spec.train);
    parallelism(&mut c, &spec.parallelism);
    executor(&mut c, &spec.executor);
    c.problems
}

fn data(c: &mut Checker, d: &DataSpec) {
    if let Some(img) = &d.image {
        c.at_least_one("data.image.channels", "channels", img.channels);
        c.at_least_one("data.image.height", "height", img.height);
        c.at_least_one("data.image.width", "width", img.width);
        let values = img
            .channels
            .checked_mul(img.height)
            .and_then(|v| v.checked_mul(img.width));
        if values.is_none_or(|v| v > MAX_IMAGE_VALUES) {
            c.fail(
                "data.image",
                format!(
                    "an image of {}×{}×{} values is over weft's {MAX_IMAGE_VALUES} (channels × height × width)",
                    img.channels, img.height, img.width
                ),
            );
        }
    }
    let s = &d.split;
    if !(s.train > 0.0 && s.train <= 1.0) {
        c.fail(
            "data.split.train",
            format!("train fraction must be in (0, 1], found {}", s.train),
        );
    }
    c.fraction("data.split.test", "test fraction", s.test);
    if let Some(v) = s.validation {
        c.fraction("data.split.validation", "validation fraction", v);
    }
    let sum = s.train + s.test + s.validation.unwrap_or(0.0);
    if (sum - 1.0).abs() > 1e-6 {
        let parts = match s.validation {
            Some(v) => format!("train {} + test {} + validation {v}", s.train, s.test),
            None => format!("train {} + test {}", s.train, s.test),
        };
        c.fail(
            "data.split",
            format!(
                "split fractions must sum to 1, found {} ({parts})",
                round(sum)
            ),
        );
    }
    if s.key.is_some() && !s.shuffle {
        c.fail(
            "data.split.key",
            "a key hashes rows into splits; `shuffle: false` splits by position: remove one of the two",
        );
    }
    if d.shuffle == Some(ShuffleMode::Full) && d.shuffle_buffer.is_some() {
        c.fail(
            "data.shuffle_buffer",
            "a shuffle buffer is for `shuffle: buffer` (streaming); `shuffle: full` holds every row in memory: remove one of the two",
        );
    }
    if d.shuffle_buffer == Some(0) {
        c.fail(
            "data.shuffle_buffer",
            "the shuffle buffer must hold at least 1 row, found 0",
        );
    }
    if d.streamed().is_some() {
        if let Source::Builtin(_) | Source::Synthetic(_) | Source::Idx(_) | Source::ImageFolder(_) =
            &d.source
        {
            let key = if d.shuffle.is_some() {
                "data.shuffle"
            } else {
                "data.shuffle_buffer"
            };
            c.fail(
                key,
                "streaming reads files (`csv`, `parquet`, `arrow` sources); this source is read into memory: use `shuffle: full`",
            );
        }
    }
    if let (Source::ImageFolder(_), Some(img)) = (&d.source, &d.image) {
        if !matches!(img.channels, 1 | 3 | 4) {
            c.fail(
                "data.image.channels",
                format!(
                    "an image folder's pictures are read as grey (1), RGB (3) or RGBA (4) channels, found {}",
                    img.channels
                ),
            );
        }
    }
    if let Source::Synthetic(syn) = &d.source {
        let p = "data.source.synthetic";
        if syn.rows < 10 {
            c.fail(
                format!("{p}.rows"),
                format!("rows must be at least 10, found {}", syn.rows),
            );
        }
        c.at_least_one(&format!("{p}.features"), "features", syn.features);
        if syn.classes < 2 {
            c.fail(
                format!("{p}.classes"),
                format!("classes must be at least 2, found {}", syn.classes),
            );
        }
        if let Some(inf) = syn.informative {
            if inf == 0 || inf > syn.features {
                c.fail(
                    format!("{p}.informative"),
                    format!(
                        "informative must be in 1..={}, the number of features, found {inf}",
                        syn.features
                    ),
                );
            }
        }
    }
    if let (Source::Csv(_) | Source::Parquet(_) | Source::Arrow(_), None) = (&d.source, &d.label) {
        c.fail(
            "data",
            "missing required key `label`: a csv or parquet source needs its label column named",
        );
    }
    if let (Some(label), Some(inc)) = (d.label_column(), &d.features.include) {
        if let Some(i) = inc.iter().position(|f| f == label) {
            c.fail(
                format!("data.features.include[{i}]"),
                format!("`{label}` is the label column; it cannot also be a feature"),
            );
        }
    }
    for (i, p) in d.preprocess.iter().enumerate() {
        match p {
            Preprocess::MinMaxScale(m) if m.min >= m.max => c.fail(
                format!("data.preprocess[{i}].min_max_scale"),
                format!("min ({}) must be below max ({})", m.min, m.max),
            ),
            Preprocess::Impute(m) => {
                use crate::spec::ImputeStrategy;
                let has_value = m.value.as_ref().is_some_and(|v| !v.is_null());
                if m.strategy == ImputeStrategy::Constant && !has_value {
                    c.fail(
                        format!("data.preprocess[{i}].impute.value"),
                        "`strategy: constant` needs `value:` (a number, or a string for a string column)",
                    );
                }
                if m.strategy != ImputeStrategy::Constant && has_value {
                    c.fail(
                        format!("data.preprocess[{i}].impute.value"),
                        "`value` is only for `strategy: constant`",
                    );
                }
                if matches!(&m.value, Some(v) if !(v.is_null() || v.is_number() || v.is_string())) {
                    c.fail(
                        format!("data.preprocess[{i}].impute.value"),
                        "`value` must be a number or a string",
                    );
                }
            }
            Preprocess::OneHot(o)
                if o.min_frequency.is_some()
                    && o.handle_unknown != crate::spec::HandleUnknown::Infrequent =>
            {
                c.fail(
                    format!("data.preprocess[{i}].one_hot.min_frequency"),
                    "`min_frequency` needs `handle_unknown: infrequent`",
                )
            }
            Preprocess::DropMissing(d) if d.columns.is_empty() => c.fail(
                format!("data.preprocess[{i}].drop_missing.columns"),
                "name at least one column",
            ),
            _ => {}
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn layer(c: &mut Checker, path: &str, l: &Layer) {
    match l {
        Layer::Dense(d) => {
            c.at_least_one(&format!("{path}.dense.units"), "units", d.units);
            activation(c, &format!("{path}.dense.activation"), &d.activation);
            c.non_negative(&format!("{path}.dense.l1"), "l1", d.l1);
            c.non_negative(&format!("{path}.dense.l2"), "l2", d.l2);
        }
        Layer::Dropout(d) => c.fraction(&format!("{path}.dropout.rate"), "rate", d.rate),
        Layer::BatchNorm(n) => {
            c.positive(&format!("{path}.batch_norm.epsilon"), "epsilon", n.epsilon);
            if !(0.0..=1.0).contains(&n.momentum) {
                c.fail(
                    format!("{path}.batch_norm.momentum"),
                    format!("momentum must be in [0, 1], found {}", n.momentum),
                );
            }
        }
        Layer::LayerNorm(n) => {
            c.positive(&format!("{path}.layer_norm.epsilon"), "epsilon", n.epsilon)
        }
        Layer::Activation(a) => activation(c, &format!("{path}.activation"), a),
        Layer::Conv2d(k) => {
            let p = format!("{path}.conv2d");
            c.at_least_one(&format!("{p}.filters"), "filters", k.filters);
            pair_at_least_one(c, &format!("{p}.kernel"), "kernel", k.kernel);
            pair_at_least_one(c, &format!("{p}.stride"), "stride", k.stride);
            pair_at_least_one(c, &format!("{p}.dilation"), "dilation", k.dilation);
            activation(c, &format!("{p}.activation"), &k.activation);
        }
        Layer::MaxPool2d(k) | Layer::AvgPool2d(k) => {
            let p = format!("{path}.{}", l.kind());
            pair_at_least_one(c, &format!("{p}.size"), "size", k.size);
            if let Some(s) = k.stride {
                pair_at_least_one(c, &format!("{p}.stride"), "stride", s);
            }
        }
        Layer::GlobalAvgPool2d(_) | Layer::Flatten(_) => {}
    }
}

fn pair_at_least_one(c: &mut Checker, path: &str, what: &str, p: Pair) {
    let (h, w) = p.hw();
    if h == 0 || w == 0 {
        c.fail(
            path,
            format!("{what} must be at least 1 in both dimensions, found [{h}, {w}]"),
        );
    }
}

fn activation(c: &mut Checker, path: &str, a: &Activation) {
    match a {
        Activation::LeakyRelu { alpha } => {
            c.non_negative(&format!("{path}.leaky_relu.alpha"), "alpha", *alpha)
        }
        Activation::Elu { alpha } => c.positive(&format!("{path}.elu.alpha"), "alpha", *alpha),
        _ => {}
    }
}

fn model(c: &mut Checker, m: &ModelSpec) {
    match m {
        ModelSpec::Sequential(layers) => {
            for (i, l) in layers.iter().enumerate() {
                layer(c, &format!("model[{i}]"), l);
            }
        }
        ModelSpec::Graph(g) => graph(c, g),
    }
}

fn graph(c: &mut Checker, g: &GraphSpec) {
    if g.inputs.is_empty() {
        c.fail(
            "model.inputs",
            "a graph needs at least one input, e.g. `x: features`",
        );
    }
    for name in g.inputs.keys() {
        if g.nodes.contains_key(name) {
            c.fail(
                format!("model.nodes.{name}"),
                format!("`{name}` is already the name of an input"),
            );
        }
    }
    let mut embedded: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, input) in &g.inputs {
        let InputSource::Embedding { embedding: e } = input else {
            continue;
        };
        let path = format!("model.inputs.{name}.embedding");
        c.at_least_one(&format!("{path}.dim"), "dim", e.dim);
        match e.buckets {
            Some(0) => c.fail(
                format!("{path}.buckets"),
                "buckets must be at least 1, found 0",
            ),
            // Ids travel as f32 with the features: exact below 2^24.
            Some(b) if b >= 1 << 24 => c.fail(
                format!("{path}.buckets"),
                format!("buckets must be below 2^24 = 16777216 (ids are exact in f32), found {b}"),
            ),
            _ => {}
        }
        if let Some(other) = embedded.insert(&e.column, name) {
            c.fail(
                format!("{path}.column"),
                format!(
                    "column `{}` is already embedded by input `{other}`; use that input twice instead",
                    e.column
                ),
            );
        }
    }
    let names: Vec<&str> = g
        .inputs
        .keys()
        .chain(g.nodes.keys())
        .map(String::as_str)
        .collect();
    let check_ref = |c: &mut Checker, path: String, r: &str| {
        if !names.contains(&r) {
            c.fail(
                path,
                format!("unknown node `{r}`{}", suggest::hint(r, &names)),
            );
        }
    };
    for (name, node) in &g.nodes {
        let path = format!("model.nodes.{name}");
        match node {
            GraphNode::Layer { layer: l, input } => {
                layer(c, &path, l);
                check_ref(c, format!("{path}.input"), input);
            }
            GraphNode::Merge(m) => {
                let (kind, refs) = match m {
                    Merge::Add(r) => ("add", r),
                    Merge::Concat(r) => ("concat", r),
                };
                if refs.len() < 2 {
                    c.fail(
                        format!("{path}.{kind}"),
                        format!("`{kind}` needs at least 2 inputs, found {}", refs.len()),
                    );
                }
                for (i, r) in refs.iter().enumerate() {
                    check_ref(c, format!("{path}.{kind}[{i}]"), r);
                }
            }
        }
    }
    check_ref(c, "model.output".into(), &g.output);
    if let Some(cycle) = find_cycle(g) {
        c.fail(
            format!("model.nodes.{}", cycle[0]),
            format!("the graph has a cycle: {}", cycle.join(" → ")),
        );
    }
}

/// The inputs a graph node reads (node or input names).
pub fn node_inputs(node: &GraphNode) -> Vec<&str> {
    match node {
        GraphNode::Layer { input, .. } => vec![input.as_str()],
        GraphNode::Merge(Merge::Add(r) | Merge::Concat(r)) => {
            r.iter().map(String::as_str).collect()
        }
    }
}

/// A cycle among graph nodes as a list of names (first repeated at the end), if any.
fn find_cycle(g: &GraphSpec) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        g: &'a GraphSpec,
        n: &'a str,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        // An input shadows a node of the same name (reported on its own), as in the planner.
        if g.inputs.contains_key(n) {
            return None;
        }
        let node = g.nodes.get(n)?;
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for i in node_inputs(node) {
            if let Some(c) = visit(g, i, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut seen = BTreeSet::new();
    for n in g.nodes.keys() {
        if seen.insert(n) {
            if let Some(c) = visit(g, n, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn train(c: &mut Checker, t: &TrainSpec) {
    if let Some(w) = &t.class_weight {
        if t.loss.task_kind() == weft_common::TaskKind::Regression {
            c.fail(
                "train.class_weight",
                format!(
                    "class weights need a classification loss; `{}` is regression",
                    t.loss.name()
                ),
            );
        }
        if let crate::spec::ClassWeight::Weights(m) = w {
            for (name, v) in m {
                if !(v.is_finite() && *v >= 0.0) {
                    c.fail(
                        format!("train.class_weight.{name}"),
                        format!("a class weight must be a finite number >= 0, found {v}"),
                    );
                }
            }
        }
    }
    c.at_least_one("train.batch_size", "batch_size", t.batch_size);
    c.at_least_one("train.epochs", "epochs", t.epochs);
    if let Some(v) = t.clip_grad_norm {
        c.positive("train.clip_grad_norm", "clip_grad_norm", v);
    }
    let o = format!("train.optimizer.{}", t.optimizer.name());
    c.positive(&format!("{o}.lr"), "lr", t.optimizer.lr());
    match &t.optimizer {
        Optimizer::Sgd(s) => {
            c.fraction(&format!("{o}.momentum"), "momentum", s.momentum);
            c.non_negative(&format!("{o}.weight_decay"), "weight_decay", s.weight_decay);
            if s.nesterov && s.momentum == 0.0 {
                c.fail(format!("{o}.nesterov"), "nesterov needs momentum > 0");
            }
        }
        Optimizer::Adagrad(a) => {
            c.non_negative(
                &format!("{o}.initial_accumulator"),
                "initial_accumulator",
                a.initial_accumulator,
            );
            c.positive(&format!("{o}.epsilon"), "epsilon", a.epsilon);
            c.non_negative(&format!("{o}.weight_decay"), "weight_decay", a.weight_decay);
        }
        Optimizer::Rmsprop(r) => {
            c.fraction(&format!("{o}.rho"), "rho", r.rho);
            c.fraction(&format!("{o}.momentum"), "momentum", r.momentum);
            c.positive(&format!("{o}.epsilon"), "epsilon", r.epsilon);
            c.non_negative(&format!("{o}.weight_decay"), "weight_decay", r.weight_decay);
        }
        Optimizer::Adam(a) | Optimizer::Adamw(a) => {
            c.fraction(&format!("{o}.beta1"), "beta1", a.beta1);
            c.fraction(&format!("{o}.beta2"), "beta2", a.beta2);
            c.positive(&format!("{o}.epsilon"), "epsilon", a.epsilon);
            if let Some(wd) = a.weight_decay {
                c.non_negative(&format!("{o}.weight_decay"), "weight_decay", wd);
            }
        }
        Optimizer::Lbfgs(l) => {
            c.at_least_one(&format!("{o}.max_iter"), "max_iter", l.max_iter);
            c.at_least_one(&format!("{o}.history"), "history", l.history);
        }
    }
    match &t.schedule {
        Schedule::Step(s) => {
            c.at_least_one(
                "train.schedule.step.every_epochs",
                "every_epochs",
                s.every_epochs,
            );
            if !(s.gamma > 0.0 && s.gamma <= 1.0) {
                c.fail(
                    "train.schedule.step.gamma",
                    format!("gamma must be in (0, 1], found {}", s.gamma),
                );
            }
        }
        Schedule::Cosine(s) => {
            c.non_negative("train.schedule.cosine.min_lr", "min_lr", s.min_lr);
            if s.min_lr > t.optimizer.lr() {
                c.fail(
                    "train.schedule.cosine.min_lr",
                    format!(
                        "min_lr ({}) must not exceed the optimizer's lr ({})",
                        s.min_lr,
                        t.optimizer.lr()
                    ),
                );
            }
        }
        Schedule::Constant => {}
    }
    if let Some(v) = t.stop.target_loss {
        c.non_negative("train.stop.target_loss", "target_loss", v);
    }
    if let Some(p) = t.stop.patience {
        c.at_least_one("train.stop.patience", "patience", p);
    }
    c.non_negative("train.stop.min_delta", "min_delta", t.stop.min_delta);
}

fn parallelism(c: &mut Checker, p: &ParallelismSpec) {
    if let Some(d) = &p.data {
        data_parallel(c, d);
    }
    if let Some(pl) = &p.pipeline {
        c.at_least_one("parallelism.pipeline.stages", "stages", pl.stages);
        c.at_least_one(
            "parallelism.pipeline.micro_batches",
            "micro_batches",
            pl.micro_batches,
        );
    }
}

fn data_parallel(c: &mut Checker, d: &DataParallel) {
    let p = "parallelism.data";
    c.at_least_one(&format!("{p}.workers"), "workers", d.workers);
    c.at_least_one(
        &format!("{p}.communication_window"),
        "communication_window",
        d.communication_window,
    );
    match (d.sync, d.algorithm) {
        (Sync::ParameterServer, None) => c.fail(
            p,
            format!(
                "missing required key `algorithm`: `sync: parameter_server` needs one of {}",
                ps_algorithms(|_| true)
            ),
        ),
        (Sync::ParameterServer, Some(_)) | (_, None) => {}
        (sync, Some(_)) => c.fail(
            format!("{p}.algorithm"),
            format!(
                "`algorithm` applies to `sync: parameter_server` only, and sync is `{}`; set `sync: parameter_server` or remove `algorithm`",
                sync.name()
            ),
        ),
    }
    if d.staleness.is_some() {
        let asynchronous = ps_algorithms(PsAlgorithm::is_async);
        let why = match (d.sync, d.algorithm) {
            (Sync::ParameterServer, Some(a)) if a.is_async() => None,
            (Sync::ParameterServer, Some(a)) => Some(format!("and `{}` is synchronous", a.name())),
            (Sync::ParameterServer, None) => None,
            (sync, _) => Some(format!("and sync is `{}`", sync.name())),
        };
        if let Some(why) = why {
            c.fail(
                format!("{p}.staleness"),
                format!("`staleness` bounds the asynchronous parameter-server algorithms only ({asynchronous}), {why}"),
            );
        }
    }
    if let Compression::Topk(t) = &d.compression {
        if !(t.ratio > 0.0 && t.ratio <= 1.0) {
            c.fail(
                format!("{p}.compression.topk.ratio"),
                format!("ratio must be in (0, 1], found {}", t.ratio),
            );
        }
    }
    c.positive(&format!("{p}.rho"), "rho", d.rho);
    c.positive(
        &format!("{p}.learning_rate"),
        "learning_rate",
        d.learning_rate,
    );
    c.fraction(&format!("{p}.momentum"), "momentum", d.momentum);
    c.positive(&format!("{p}.bucket_mb"), "bucket_mb", d.bucket_mb);
    c.positive(&format!("{p}.timeout_s"), "timeout_s", d.timeout_s);
    if d.timeout_s > MAX_TIMEOUT_S {
        // Every wait becomes a `Duration`: a huge value would panic converting it.
        c.fail(
            format!("{p}.timeout_s"),
            format!(
                "timeout_s must be at most {MAX_TIMEOUT_S} seconds (a week), found {:e}",
                d.timeout_s
            ),
        );
    }
}

/// The longest `parallelism.data.timeout_s` (a week): longer is a typo, and every wait
/// turns it into a `Duration`.
pub const MAX_TIMEOUT_S: f64 = 604_800.0;

/// The parameter-server algorithms that pass `keep`, comma-separated.
fn ps_algorithms(keep: fn(&PsAlgorithm) -> bool) -> String {
    PsAlgorithm::ALL
        .iter()
        .filter(|a| keep(a))
        .map(PsAlgorithm::name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn executor(c: &mut Checker, e: &ExecutorSpec) {
    if let Some(gib) = e.memory_limit_gib {
        c.positive("executor.memory_limit_gib", "memory_limit_gib", gib);
    }
    if let Some(spark) = &e.spark {
        for (key, value) in spark.settings() {
            if let Err(value) = value {
                c.fail(
                    format!("executor.spark.conf.{key}"),
                    format!(
                        "a Spark setting is one value (text, number or true/false), not {value}"
                    ),
                );
            }
        }
        if matches!(&spark.master, Some(m) if m.trim().is_empty()) {
            c.fail(
                "executor.spark.master",
                "an empty master URL; give one (`local[4]`, `spark://host:7077`, `yarn`) or leave it out for Spark's default",
            );
        }
    }
    if let Cluster::Hosts(hosts) = &e.cluster {
        let p = "executor.cluster.hosts";
        if hosts.is_empty() {
            c.fail(
                p,
                "`hosts` needs at least one `host:port` address, e.g. `[10.0.0.2:7070]`",
            );
        }
        for (i, h) in hosts.iter().enumerate() {
            if !is_host_port(h) {
                c.fail(
                    format!("{p}[{i}]"),
                    format!(
                        "`{h}` is not a `host:port` address (e.g. `10.0.0.2:7070` or `[::1]:7070`)"
                    ),
                );
            }
        }
    }
}

/// `name:port`, `1.2.3.4:port` or `[ipv6]:port`, with a port in 1..=65535.
fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.chars().all(|ch| ch.is_ascii_digit())
        && matches!(port.parse::<u16>(), Ok(p) if p > 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|ch| ch.is_ascii_hexdigit() || ch == ':' || ch == '.')
        }
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch))
        }
    };
    port_ok && host_ok
}
