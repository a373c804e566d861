//! `prepare`: from a loaded table to train/test(/validation) datasets and a fitted pipeline.

use weft_common::TaskKind;
use weft_dsl::{DataSpec, Preprocess};

use crate::dataset::Dataset;
use crate::error::{column_hint, DataError};
use crate::frame::{Frame, Values};
use crate::label::{class_keys, encode_classes, fit_classes, read_label, targets, ClassOrder};
use crate::pipeline::Pipeline;
use crate::split::{split_by_key, split_rows, Split};
use crate::stage::Stage;
use crate::table::Table;

/// The splits, ready for training, and the pipeline that made them.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub train: Dataset,
    pub test: Dataset,
    pub validation: Option<Dataset>,
    pub pipeline: Pipeline,
    /// Which rows of the table went to which split.
    pub split: Split,
}

/// Selects features and label, splits the rows (shuffled with `spec.split.seed`, default
/// `seed`), fits the preprocess stages on the train rows only and applies them to every split.
pub fn prepare(
    spec: &DataSpec,
    seed: u64,
    table: &Table,
    task: TaskKind,
) -> Result<Prepared, DataError> {
    let (inputs, label) = feature_columns(spec, &table.name, &table.column_names())?;
    let (stages, order) = feature_stages(spec, &label)?;

    // Read and check every row first, so errors name rows in file order.
    let frame = Frame::read(table, &inputs, &spec.na_values, &[])?;
    let text_inputs: Vec<String> = frame
        .cols
        .iter()
        .filter(|c| matches!(c.values, Values::Text(_)))
        .map(|c| c.name.clone())
        .collect();
    // A missing value no stage fills or drops is an error now, in file order.
    check_covered(&stages, &frame)?;
    frame.check_text(&encoded_columns(&stages))?;
    let values = read_label(table, &label)?;

    let mut split = match &spec.split.key {
        Some(key) => split_by_key(&key_values(table, key)?, &spec.split, seed)?,
        None => split_rows(table.num_rows(), &spec.split, seed)?,
    };
    let (y, classes) = match task {
        TaskKind::Classification => {
            let keys = class_keys(table, &label, &values)?;
            let classes = fit_classes(table, &label, &keys, &split.train, order)?;
            let mut used: Vec<usize> = split.test.iter().chain(&split.train).copied().collect();
            used.extend(split.validation.iter().flatten());
            used.sort_unstable();
            let y = encode_classes(&table.name, &label, &keys, &classes, used.into_iter())?;
            (y, Some(classes))
        }
        TaskKind::Regression => (targets(table, &label, &values)?, None),
    };

    let mut train = frame.take(&split.train);
    let mut test = frame.take(&split.test);
    let mut validation = split.validation.as_ref().map(|rows| frame.take(rows));
    drop(frame);
    let mut fitted = Vec::with_capacity(stages.len());
    for p in stages {
        let stage = Stage::fit(p, &train)?;
        stage.apply(&mut train)?;
        stage.apply(&mut test)?;
        if let Some(v) = validation.as_mut() {
            stage.apply(v)?;
        }
        fitted.push(stage);
    }

    // `drop_missing` may have dropped rows: the splits are the rows that remain.
    split.train = train.rows.clone();
    split.test = test.rows.clone();
    if let (Some(rows), Some(v)) = (split.validation.as_mut(), validation.as_ref()) {
        *rows = v.rows.clone();
    }
    if train.len() == 0 {
        return Err(DataError::EmptySplit {
            split: "train",
            fraction: spec.split.train,
            rows: table.num_rows(),
        });
    }
    let weights = spec
        .weight_column
        .as_deref()
        .map(|c| read_weights(table, c))
        .transpose()?;
    let dataset = |f: &Frame| -> Result<Dataset, DataError> {
        Ok(Dataset {
            x: f.to_matrix()?,
            y: f.rows.iter().map(|&r| y[r]).collect(),
            w: weights
                .as_ref()
                .map(|w| f.rows.iter().map(|&r| w[r]).collect()),
        })
    };
    Ok(Prepared {
        train: dataset(&train)?,
        test: dataset(&test)?,
        validation: validation.as_ref().map(dataset).transpose()?,
        pipeline: Pipeline {
            inputs,
            na_values: spec.na_values.clone(),
            text_inputs,
            stages: fitted,
            features: train.names(),
            label,
            classes,
        },
        split,
    })
}

/// The stages that work on features (a `string_index` of the label only orders the classes
/// by frequency) and how classes are numbered.
pub(crate) fn feature_stages<'a>(
    spec: &'a DataSpec,
    label: &str,
) -> Result<(Vec<&'a Preprocess>, ClassOrder), DataError> {
    let on_label = |p: &Preprocess| matches!(p, Preprocess::StringIndex(o) if o.column == label);
    let order = if spec.preprocess.iter().any(on_label) {
        ClassOrder::Frequency
    } else {
        ClassOrder::Name
    };
    let stages: Vec<&Preprocess> = spec.preprocess.iter().filter(|p| !on_label(p)).collect();
    check_stages_leave_label_alone(&stages, label)?;
    Ok((stages, order))
}

/// The columns that stages turn from strings into numbers.
pub(crate) fn encoded_columns<'a>(stages: &[&'a Preprocess]) -> Vec<&'a str> {
    stages
        .iter()
        .filter_map(|p| match p {
            Preprocess::StringIndex(o) => Some(o.column.as_str()),
            Preprocess::OneHot(o) => Some(o.column.as_str()),
            Preprocess::EmbedIndex(e) => Some(e.column.as_str()),
            _ => None,
        })
        .collect()
}

/// Errors on the first missing value of `frame` that no stage fills or drops.
pub(crate) fn check_covered(stages: &[&Preprocess], frame: &Frame) -> Result<(), DataError> {
    for col in &frame.cols {
        let Some(i) = col.first_missing() else {
            continue;
        };
        if !missing_covered(stages, &col.name, matches!(col.values, Values::Text(_))) {
            return Err(DataError::MissingValue {
                file: frame.file.clone(),
                what: col.kind_word(),
                column: col.name.clone(),
                at: frame.at(i),
            });
        }
    }
    Ok(())
}

/// The split key column's values as text (a missing value is the empty text).
pub(crate) fn key_values(table: &Table, key: &str) -> Result<Vec<String>, DataError> {
    let array = table.column(key, "split key column")?;
    let (values, missing) =
        crate::frame::read_with_missing(&table.name, key, "split key column", array, &[], true)
            .map_err(|e| e.shift_rows(table.first_row))?;
    let Values::Text(text) = values else {
        return Err(DataError::Internal("a key read as text is text".into()));
    };
    Ok(text
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if missing.get(i).copied().unwrap_or(false) {
                String::new()
            } else {
                t
            }
        })
        .collect())
}

/// The weight column's values: numbers >= 0, every row.
pub(crate) fn read_weights(table: &Table, column: &str) -> Result<Vec<f32>, DataError> {
    let array = table.column(column, "weight column")?;
    let values = crate::frame::read_values(&table.name, column, "weight column", array)
        .map_err(|e| e.shift_rows(table.first_row))?;
    let w: Vec<f32> = match values {
        Values::Num(v) => v,
        Values::Int(v) => v.into_iter().map(|x| x as f32).collect(),
        Values::Text(t) => {
            return Err(DataError::BadWeight {
                file: table.name.clone(),
                column: column.into(),
                value: format!("`{}`", t.first().cloned().unwrap_or_default()),
                at: crate::error::At::of(&table.name, table.first_row),
            })
        }
    };
    if let Some(i) = w.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(DataError::BadWeight {
            file: table.name.clone(),
            column: column.into(),
            value: w[i].to_string(),
            at: crate::error::At::of(&table.name, table.first_row + i),
        });
    }
    Ok(w)
}

/// Whether a stage fills or drops a column's missing values before anything encodes it: the
/// first stage naming the column (or an `impute` of every column that can take it) decides.
fn missing_covered(stages: &[&Preprocess], column: &str, text: bool) -> bool {
    for p in stages {
        match p {
            Preprocess::Impute(m) if crate::stage::impute_covers(m, column, text) => return true,
            Preprocess::DropMissing(d) if d.columns.iter().any(|c| c == column) => return true,
            // A missing category is id 0.
            Preprocess::EmbedIndex(e) if e.column == column => return true,
            Preprocess::OneHot(o) if o.column == column => return false,
            Preprocess::StringIndex(o) if o.column == column => return false,
            _ => {}
        }
    }
    false
}

/// The feature columns the spec selects and the label, from the column names alone (a
/// loaded table's or a schema's): `(features, label)`.
pub fn feature_columns(
    spec: &DataSpec,
    table: &str,
    columns: &[String],
) -> Result<(Vec<String>, String), DataError> {
    let label = label_name(spec, table, columns)?;
    require(table, columns, &label, "label column")?;
    if let Some(w) = &spec.weight_column {
        require(table, columns, w, "weight column")?;
    }
    let mut features = select_features(spec, table, columns, &label)?;
    // The weight column weighs rows; it is no feature.
    if let Some(w) = &spec.weight_column {
        features.retain(|f| f != w);
        if features.is_empty() {
            return Err(DataError::NoFeatures {
                table: table.to_string(),
            });
        }
    }
    Ok((features, label))
}

/// Errors unless `name` is one of `columns` (`what` words the error).
fn require(
    table: &str,
    columns: &[String],
    name: &str,
    what: &'static str,
) -> Result<(), DataError> {
    if columns.iter().any(|c| c == name) {
        return Ok(());
    }
    Err(DataError::ColumnNotFound {
        what,
        table: table.to_string(),
        column: name.to_string(),
        hint: column_hint(name, columns),
    })
}

/// The spec's label (or the source's default), else a column called `label`.
fn label_name(spec: &DataSpec, table: &str, columns: &[String]) -> Result<String, DataError> {
    match spec.label_column() {
        Some(l) => Ok(l.to_string()),
        None if columns.iter().any(|c| c == "label") => Ok("label".into()),
        None => Err(DataError::NoLabel {
            table: table.to_string(),
            columns: columns.to_vec(),
        }),
    }
}

/// `features.include` (in its order) or every column but the label, minus `features.exclude`.
fn select_features(
    spec: &DataSpec,
    table: &str,
    columns: &[String],
    label: &str,
) -> Result<Vec<String>, DataError> {
    let select = &spec.features;
    for name in select.include.iter().flatten().chain(&select.exclude) {
        require(table, columns, name, "column")?;
    }
    let base: Vec<String> = match &select.include {
        Some(include) => {
            if include.iter().any(|c| c == label) {
                return Err(DataError::LabelAsFeature {
                    column: label.into(),
                });
            }
            let mut seen = Vec::new();
            for c in include {
                if !seen.contains(c) {
                    seen.push(c.clone());
                }
            }
            seen
        }
        None => columns.iter().filter(|c| *c != label).cloned().collect(),
    };
    let features: Vec<String> = base
        .into_iter()
        .filter(|c| !select.exclude.contains(c))
        .collect();
    if features.is_empty() {
        return Err(DataError::NoFeatures {
            table: table.to_string(),
        });
    }
    Ok(features)
}

/// Feature stages may not name the label (classes are numbered by `prepare` itself).
fn check_stages_leave_label_alone(stages: &[&Preprocess], label: &str) -> Result<(), DataError> {
    for p in stages {
        let (stage, named): (&'static str, Vec<&String>) = match p {
            Preprocess::StandardScale(o) => {
                ("standard_scale", o.columns.iter().flatten().collect())
            }
            Preprocess::MinMaxScale(o) => ("min_max_scale", o.columns.iter().flatten().collect()),
            Preprocess::OneHot(o) => ("one_hot", vec![&o.column]),
            Preprocess::StringIndex(o) => ("string_index", vec![&o.column]),
            Preprocess::Impute(o) => ("impute", o.columns.iter().flatten().collect()),
            Preprocess::DropMissing(o) => ("drop_missing", o.columns.iter().collect()),
            Preprocess::EmbedIndex(o) => ("embedding", vec![&o.column]),
        };
        if named.iter().any(|c| *c == label) {
            return Err(DataError::NotAFeature {
                stage,
                column: label.into(),
                hint: " (it is the label; the label is encoded by itself)".into(),
            });
        }
    }
    Ok(())
}
