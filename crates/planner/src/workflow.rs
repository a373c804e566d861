//! The workflow DAG: coarse stages (load → preprocess → split → train → evaluate).

use serde::{Deserialize, Serialize};
use weft_dsl::{Builtin, Preprocess, Source, Spec};

/// What a workflow stage does (serialized as its name: `"Load"`, `"Train"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageKind {
    Load,
    Split,
    Preprocess,
    Train,
    Evaluate,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Load => "Load",
            StageKind::Split => "Split",
            StageKind::Preprocess => "Preprocess",
            StageKind::Train => "Train",
            StageKind::Evaluate => "Evaluate",
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub id: usize,
    pub kind: StageKind,
    /// Printed `key=value` details.
    pub details: Vec<(String, String)>,
    /// Stages this one reads from.
    pub inputs: Vec<usize>,
}

fn describe_source(s: &Source) -> String {
    match s {
        Source::Csv(p) => format!("csv:{p}"),
        Source::Parquet(p) => format!("parquet:{p}"),
        Source::Arrow(p) => format!("arrow:{p}"),
        Source::Builtin(Builtin::Iris) => "builtin:iris".into(),
        Source::Idx(i) => format!("idx:{}", i.images),
        Source::ImageFolder(p) => format!("image_folder:{p}"),
        Source::Synthetic(s) => format!(
            "synthetic(rows={}, features={}, classes={})",
            s.rows, s.features, s.classes
        ),
    }
}

fn describe_preprocess(p: &Preprocess) -> String {
    match p {
        Preprocess::StandardScale(_) => "standard_scale".into(),
        Preprocess::MinMaxScale(_) => "min_max_scale".into(),
        Preprocess::StringIndex(c) => format!("string_index({})", c.column),
        Preprocess::OneHot(c) => format!("one_hot({})", c.column),
        Preprocess::Impute(m) => format!(
            "impute({}{})",
            serde_json::to_value(m.strategy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            m.columns
                .as_ref()
                .map(|c| format!(": {}", c.join(", ")))
                .unwrap_or_default()
        ),
        Preprocess::DropMissing(d) => format!("drop_missing({})", d.columns.join(", ")),
        Preprocess::EmbedIndex(e) => match e.buckets {
            Some(b) => format!("embedding_ids({}: hashed into {b})", e.column),
            None => format!("embedding_ids({}: dictionary)", e.column),
        },
    }
}

/// The stages of a spec as a DAG (a chain today; the evaluate stage reads train and split).
pub fn stages(spec: &Spec) -> Vec<Stage> {
    let kv = |k: &str, v: String| (k.to_string(), v);
    let d = &spec.data;
    let split = &d.split;
    let mut split_details = vec![
        kv("train", split.train.to_string()),
        kv("test", split.test.to_string()),
    ];
    if let Some(v) = split.validation {
        split_details.push(kv("validation", v.to_string()));
    }
    split_details.push(kv("shuffle", split.shuffle.to_string()));
    split_details.push(kv("seed", split.seed.unwrap_or(spec.seed).to_string()));
    if let Some(key) = &split.key {
        split_details.push(kv("key", key.clone()));
    }
    // Streamed: rows are never held together, so the split goes by each row's position.
    let streamed = d.streamed();
    if streamed.is_some() {
        let by = match (&split.key, split.shuffle) {
            (Some(_), _) => "hash of the key",
            (None, true) => "hash of row position",
            (None, false) => "row position",
        };
        split_details.push(kv("by", by.into()));
    }
    let t = &spec.train;
    let preprocess: Vec<String> = spec
        .prepared_data()
        .preprocess
        .iter()
        .map(describe_preprocess)
        .collect();
    let mut train_details = vec![
        kv("loss", t.loss.name().into()),
        kv("optimizer", t.optimizer.name().into()),
        kv("lr", t.optimizer.lr().to_string()),
        kv("batch_size", t.batch_size.to_string()),
        kv("epochs", t.epochs.to_string()),
    ];
    if let Some(w) = &d.weight_column {
        train_details.push(kv("sample_weights", w.clone()));
    }
    if let Some(dp) = &spec.parallelism.data {
        train_details.push(kv("workers", dp.workers.to_string()));
        train_details.push(kv("sync", dp.strategy()));
    }
    vec![
        Stage {
            id: 0,
            kind: StageKind::Load,
            details: {
                let mut v = vec![
                    kv("source", describe_source(&d.source)),
                    kv("label", d.label_column().unwrap_or("?").to_string()),
                ];
                if let Some(rows) = streamed {
                    v.push(kv("read", "streamed in pieces".into()));
                    v.push(kv("shuffle_buffer", rows.to_string()));
                }
                v
            },
            inputs: vec![],
        },
        Stage {
            id: 1,
            kind: StageKind::Split,
            details: split_details,
            inputs: vec![0],
        },
        Stage {
            id: 2,
            kind: StageKind::Preprocess,
            details: vec![
                kv("stages", format!("[{}]", preprocess.join(", "))),
                kv(
                    "fit_on",
                    if streamed.is_some() {
                        "train (streaming passes)".into()
                    } else {
                        "train".into()
                    },
                ),
            ],
            inputs: vec![1],
        },
        Stage {
            id: 3,
            kind: StageKind::Train,
            details: train_details,
            inputs: vec![2],
        },
        Stage {
            id: 4,
            kind: StageKind::Evaluate,
            details: vec![kv(
                "metrics",
                format!(
                    "[{}]",
                    spec.evaluate
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )],
            inputs: vec![2, 3],
        },
    ]
}
