//! Fitted preprocess stages: fit on the train rows, then apply to any rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use weft_dsl::Preprocess;

use crate::error::{column_hint, DataError};
use crate::frame::{category_order, Col, Frame, Values};

/// A preprocess stage with what it learnt from the train split. Learnt numbers are computed
/// in f64 and kept as f32, which survives a JSON round trip exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `(x - mean) / std`; `std` is 1 for a constant column (it is only centred).
    StandardScale {
        columns: Vec<String>,
        mean: Vec<f32>,
        std: Vec<f32>,
    },
    /// `min + (x - data_min) / (data_max - data_min) · (max - min)`; a constant column maps to `min`.
    MinMaxScale {
        columns: Vec<String>,
        data_min: Vec<f32>,
        data_max: Vec<f32>,
        min: f64,
        max: f64,
    },
    /// Category `categories[i]` becomes `i` (most frequent first, ties by name).
    StringIndex {
        column: String,
        categories: Vec<String>,
    },
    /// One 0/1 column `column=category` per category; an unseen category is all zeros.
    OneHot {
        column: String,
        categories: Vec<String>,
    },
}

impl Stage {
    /// The spec name of the stage.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::StandardScale { .. } => "standard_scale",
            Stage::MinMaxScale { .. } => "min_max_scale",
            Stage::StringIndex { .. } => "string_index",
            Stage::OneHot { .. } => "one_hot",
        }
    }

    /// Learns the stage's parameters from `train`.
    pub(crate) fn fit(spec: &Preprocess, train: &Frame) -> Result<Stage, DataError> {
        Ok(match spec {
            Preprocess::StandardScale(opt) => {
                let columns = scaled_columns("standard_scale", opt.columns.as_deref(), train)?;
                let (mut mean, mut std) = (Vec::new(), Vec::new());
                for name in &columns {
                    let v = numbers(train, name);
                    let n = v.len().max(1) as f64;
                    let m = v.iter().sum::<f64>() / n;
                    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
                    mean.push(m as f32);
                    let s = var.sqrt() as f32;
                    std.push(if s > 0.0 { s } else { 1.0 });
                }
                Stage::StandardScale { columns, mean, std }
            }
            Preprocess::MinMaxScale(opt) => {
                let columns = scaled_columns("min_max_scale", opt.columns.as_deref(), train)?;
                let (mut data_min, mut data_max) = (Vec::new(), Vec::new());
                for name in &columns {
                    let v = numbers(train, name);
                    data_min.push(v.iter().copied().fold(f64::INFINITY, f64::min) as f32);
                    data_max.push(v.iter().copied().fold(f64::NEG_INFINITY, f64::max) as f32);
                }
                Stage::MinMaxScale {
                    columns,
                    data_min,
                    data_max,
                    min: opt.min,
                    max: opt.max,
                }
            }
            Preprocess::StringIndex(one) => {
                let keys = category_keys("string_index", &one.column, train)?;
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for k in &keys {
                    *counts.entry(k).or_default() += 1;
                }
                let mut categories: Vec<(&str, usize)> = counts.into_iter().collect();
                categories.sort_by(|a, b| b.1.cmp(&a.1).then(category_order(a.0, b.0)));
                Stage::StringIndex {
                    column: one.column.clone(),
                    categories: categories.into_iter().map(|(k, _)| k.to_string()).collect(),
                }
            }
            Preprocess::OneHot(one) => {
                let mut categories = category_keys("one_hot", &one.column, train)?;
                categories.sort_by(|a, b| category_order(a, b));
                categories.dedup();
                Stage::OneHot {
                    column: one.column.clone(),
                    categories,
                }
            }
        })
    }

    /// Transforms `frame` in place.
    pub(crate) fn apply(&self, frame: &mut Frame) -> Result<(), DataError> {
        match self {
            Stage::StandardScale { columns, mean, std } => {
                for (k, name) in columns.iter().enumerate() {
                    let (m, s) = (f64::from(mean[k]), f64::from(std[k]));
                    map_numbers(frame, self.name(), name, |x| (x - m) / s)?;
                }
            }
            Stage::MinMaxScale {
                columns,
                data_min,
                data_max,
                min,
                max,
            } => {
                for (k, name) in columns.iter().enumerate() {
                    let (lo, hi) = (f64::from(data_min[k]), f64::from(data_max[k]));
                    let range = hi - lo;
                    let scale = if range > 0.0 {
                        (max - min) / range
                    } else {
                        0.0
                    };
                    map_numbers(frame, self.name(), name, |x| min + (x - lo) * scale)?;
                }
            }
            Stage::StringIndex { column, categories } => {
                let (p, keys) = keys_of(frame, self.name(), column)?;
                let index: HashMap<&str, usize> = categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i))
                    .collect();
                let mut out = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    match index.get(k.as_str()) {
                        Some(&c) => out.push(c as f32),
                        None => {
                            return Err(DataError::UnseenCategory {
                                file: frame.file.clone(),
                                column: column.clone(),
                                value: k.clone(),
                                at: frame.at(i),
                                known: categories.clone(),
                            })
                        }
                    }
                }
                frame.cols[p] = Col {
                    name: column.clone(),
                    values: Values::Num(out),
                    categorical: true,
                };
            }
            Stage::OneHot { column, categories } => {
                let (p, keys) = keys_of(frame, self.name(), column)?;
                let new_cols = categories.iter().map(|c| Col {
                    name: format!("{column}={c}"),
                    values: Values::Num(keys.iter().map(|k| f32::from(u8::from(k == c))).collect()),
                    categorical: true,
                });
                frame.cols.splice(p..=p, new_cols.collect::<Vec<_>>());
            }
        }
        Ok(())
    }
}

/// The columns a scaler works on: the listed ones (which must be numeric features), or
/// every numeric feature that is not a `one_hot`/`string_index` output.
fn scaled_columns(
    stage: &'static str,
    listed: Option<&[String]>,
    frame: &Frame,
) -> Result<Vec<String>, DataError> {
    let Some(listed) = listed else {
        return Ok(frame
            .cols
            .iter()
            .filter(|c| !c.categorical && !matches!(c.values, Values::Text(_)))
            .map(|c| c.name.clone())
            .collect());
    };
    for name in listed {
        let p = position(frame, stage, name)?;
        if matches!(frame.cols[p].values, Values::Text(_)) {
            return Err(DataError::BadStageColumn {
                stage,
                column: name.clone(),
                problem: "holds strings; encode it with `string_index` or `one_hot` first, or leave it out".into(),
            });
        }
    }
    Ok(listed.to_vec())
}

fn position(frame: &Frame, stage: &'static str, name: &str) -> Result<usize, DataError> {
    frame.position(name).ok_or_else(|| DataError::NotAFeature {
        stage,
        column: name.into(),
        hint: column_hint(name, &frame.names()),
    })
}

/// A numeric column's train values, for fitting.
fn numbers(frame: &Frame, name: &str) -> Vec<f64> {
    match frame.position(name).map(|p| &frame.cols[p].values) {
        Some(Values::Num(v)) => v.iter().map(|&x| f64::from(x)).collect(),
        Some(Values::Int(v)) => v.iter().map(|&x| x as f64).collect(),
        _ => Vec::new(),
    }
}

/// Replaces a numeric column by `f` of it (computed in f64).
fn map_numbers(
    frame: &mut Frame,
    stage: &'static str,
    name: &str,
    f: impl Fn(f64) -> f64,
) -> Result<(), DataError> {
    let p = position(frame, stage, name)?;
    let out: Vec<f32> = match &frame.cols[p].values {
        Values::Num(v) => v.iter().map(|&x| f(f64::from(x)) as f32).collect(),
        Values::Int(v) => v.iter().map(|&x| f(x as f64) as f32).collect(),
        Values::Text(v) => return Err(frame.text_error(name, v)),
    };
    frame.cols[p].values = Values::Num(out);
    Ok(())
}

/// A categorical column's train values as category names, for fitting.
fn category_keys(stage: &'static str, name: &str, frame: &Frame) -> Result<Vec<String>, DataError> {
    keys_of(frame, stage, name).map(|(_, keys)| keys)
}

/// The position of a categorical column and its values as category names.
fn keys_of(
    frame: &Frame,
    stage: &'static str,
    name: &str,
) -> Result<(usize, Vec<String>), DataError> {
    let p = position(frame, stage, name)?;
    let values = &frame.cols[p].values;
    let keys = (0..values.len())
        .map(|i| values.key(i))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| DataError::BadStageColumn {
            stage,
            column: name.into(),
            problem: "holds non-integer numbers; it needs strings or integers (categories)".into(),
        })?;
    Ok((p, keys))
}
