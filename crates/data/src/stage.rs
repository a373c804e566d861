//! Fitted preprocess stages: fit on the train rows, then apply to any rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use weft_dsl::{HandleUnknown, ImputeStrategy, Preprocess};

use crate::error::{column_hint, DataError};
use crate::frame::{Col, Frame, Values};

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
    /// One 0/1 column `column=category` per category; an unseen category follows
    /// `handle_unknown` (`infrequent` adds the column `column=infrequent`, which also takes
    /// the categories too rare to keep).
    OneHot {
        column: String,
        categories: Vec<String>,
        /// Saved models from before the option encoded unseen categories as zeros.
        #[serde(default = "ignore")]
        handle_unknown: HandleUnknown,
    },
    /// Missing values of each column become its `fill` (learnt from the train split).
    Impute {
        columns: Vec<String>,
        fill: Vec<Fill>,
    },
    /// Rows with a missing value in any of these columns are dropped (training only:
    /// `predict` refuses such rows, as the model never saw them).
    DropMissing { columns: Vec<String> },
    /// The ids of an embedding input's column: `categories[i]` is id `i + 1`, or with
    /// `buckets` a category's id is `1 + fnv1a(category) mod buckets`; id 0 is a missing
    /// value or a category the dictionary lacks.
    EmbedIndex {
        column: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        categories: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buckets: Option<usize>,
    },
}

fn ignore() -> HandleUnknown {
    HandleUnknown::Ignore
}

/// What `impute` puts in place of a missing value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fill {
    Number(f32),
    Text(String),
}

/// The column a one-hot stage gives the infrequent and unseen categories.
pub const INFREQUENT: &str = "infrequent";

impl Stage {
    /// The spec name of the stage.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::StandardScale { .. } => "standard_scale",
            Stage::MinMaxScale { .. } => "min_max_scale",
            Stage::StringIndex { .. } => "string_index",
            Stage::OneHot { .. } => "one_hot",
            Stage::Impute { .. } => "impute",
            Stage::DropMissing { .. } => "drop_missing",
            Stage::EmbedIndex { .. } => "embedding",
        }
    }

    /// The ids an embedding column takes (`Some` for [`Stage::EmbedIndex`]).
    pub fn vocab(&self) -> Option<(&str, usize)> {
        match self {
            Stage::EmbedIndex {
                column,
                categories,
                buckets,
            } => Some((column, 1 + buckets.unwrap_or(categories.len()))),
            _ => None,
        }
    }

    /// Learns the stage's parameters from `train` (see [`crate::fit`]).
    pub(crate) fn fit(spec: &Preprocess, train: &Frame) -> Result<Stage, DataError> {
        crate::fit::fit_frame(spec, train)
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
                                stage: self.name(),
                                file: frame.file.clone(),
                                column: column.clone(),
                                value: k.clone(),
                                at: frame.at(i),
                                known: categories.clone().into(),
                            })
                        }
                    }
                }
                frame.cols[p] = Col::new(column.clone(), Values::Num(out), true);
            }
            Stage::OneHot {
                column,
                categories,
                handle_unknown,
            } => {
                let (p, keys) = keys_of(frame, self.name(), column)?;
                let known: std::collections::HashSet<&str> =
                    categories.iter().map(String::as_str).collect();
                let unknown: Vec<usize> = (0..keys.len())
                    .filter(|&i| !known.contains(keys[i].as_str()))
                    .collect();
                match (handle_unknown, unknown.first()) {
                    (HandleUnknown::Error, Some(&i)) => {
                        return Err(DataError::UnseenCategory {
                                stage: self.name(),
                            file: frame.file.clone(),
                            column: column.clone(),
                            value: keys[i].clone(),
                            at: frame.at(i),
                            known: categories.clone().into(),
                        })
                    }
                    (HandleUnknown::Ignore, Some(_)) => tracing::warn!(
                        "one_hot `{column}`: {} of {} rows have a category the train split did not have; encoded as all zeros (handle_unknown: ignore)",
                        unknown.len(),
                        keys.len()
                    ),
                    _ => {}
                }
                let mut new_cols: Vec<Col> = categories
                    .iter()
                    .map(|c| {
                        let v = keys.iter().map(|k| f32::from(u8::from(k == c))).collect();
                        Col::new(format!("{column}={c}"), Values::Num(v), true)
                    })
                    .collect();
                if *handle_unknown == HandleUnknown::Infrequent {
                    let v = keys
                        .iter()
                        .map(|k| f32::from(u8::from(!known.contains(k.as_str()))))
                        .collect();
                    new_cols.push(Col::new(
                        format!("{column}={INFREQUENT}"),
                        Values::Num(v),
                        true,
                    ));
                }
                frame.cols.splice(p..=p, new_cols);
            }
            Stage::Impute { columns, fill } => {
                for (name, f) in columns.iter().zip(fill) {
                    let p = position(frame, self.name(), name)?;
                    let col = &mut frame.cols[p];
                    if col.missing.is_empty() {
                        continue;
                    }
                    let missing = std::mem::take(&mut col.missing);
                    col.values = filled(&col.values, &missing, f);
                }
            }
            Stage::EmbedIndex {
                column,
                categories,
                buckets,
            } => {
                let p = position(frame, self.name(), column)?;
                let col = &frame.cols[p];
                let index: HashMap<&str, usize> = categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i + 1))
                    .collect();
                let mut ids = Vec::with_capacity(col.values.len());
                for i in 0..col.values.len() {
                    if col.is_missing(i) {
                        ids.push(0.0);
                        continue;
                    }
                    let key = col.values.key(i).ok_or_else(|| DataError::BadStageColumn {
                        stage: "embedding",
                        column: column.clone(),
                        problem: format!(
                            "holds the non-integer number at {}; an embedding needs strings or integers (categories)",
                            frame.at(i)
                        ),
                    })?;
                    let id = match buckets {
                        Some(b) => 1 + (fnv1a(key.as_bytes()) % (*b as u64)) as usize,
                        None => index.get(key.as_str()).copied().unwrap_or(0),
                    };
                    ids.push(id as f32);
                }
                frame.cols[p] = Col::new(column.clone(), Values::Num(ids), true);
            }
            Stage::DropMissing { columns } => {
                let mut keep = vec![true; frame.len()];
                for name in columns {
                    let p = position(frame, self.name(), name)?;
                    for (k, i) in keep.iter_mut().zip(0..) {
                        *k &= !frame.cols[p].is_missing(i);
                    }
                }
                if keep.iter().any(|k| !k) {
                    let idx: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
                    *frame = frame.take(&idx);
                }
            }
        }
        Ok(())
    }
}

/// FNV-1a, 64-bit: a hash that is the same on every machine and in every version (the
/// hashed ids of a saved model must not change), unlike std's.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether an `impute` stage fills `column` (`text`: it holds strings): the columns it lists,
/// or without a list every column its strategy can fill (numeric ones for mean and median).
pub(crate) fn impute_covers(spec: &weft_dsl::Impute, column: &str, text: bool) -> bool {
    match &spec.columns {
        Some(c) => c.iter().any(|c| c == column),
        None => !(text && matches!(spec.strategy, ImputeStrategy::Mean | ImputeStrategy::Median)),
    }
}

/// `values` with the missing positions set to `fill` (an integer column filled with a
/// fraction becomes a number column).
fn filled(values: &Values, missing: &[bool], fill: &Fill) -> Values {
    let m = |i: usize| missing.get(i).copied().unwrap_or(false);
    match (values, fill) {
        (Values::Num(v), Fill::Number(x)) => Values::Num(
            v.iter()
                .enumerate()
                .map(|(i, a)| if m(i) { *x } else { *a })
                .collect(),
        ),
        (Values::Int(v), Fill::Number(x)) if x.fract() == 0.0 => Values::Int(
            v.iter()
                .enumerate()
                .map(|(i, a)| if m(i) { *x as i64 } else { *a })
                .collect(),
        ),
        (Values::Int(v), Fill::Number(x)) => Values::Num(
            v.iter()
                .enumerate()
                .map(|(i, a)| if m(i) { *x } else { *a as f32 })
                .collect(),
        ),
        (Values::Text(v), Fill::Text(t)) => Values::Text(
            v.iter()
                .enumerate()
                .map(|(i, a)| if m(i) { t.clone() } else { a.clone() })
                .collect(),
        ),
        (Values::Text(v), Fill::Number(x)) => Values::Text(
            v.iter()
                .enumerate()
                .map(|(i, a)| if m(i) { x.to_string() } else { a.clone() })
                .collect(),
        ),
        (Values::Num(v), Fill::Text(t)) => {
            let x = t.parse::<f32>().unwrap_or(0.0);
            Values::Num(
                v.iter()
                    .enumerate()
                    .map(|(i, a)| if m(i) { x } else { *a })
                    .collect(),
            )
        }
        (Values::Int(v), Fill::Text(t)) => {
            let x = t.parse::<i64>().unwrap_or(0);
            Values::Int(
                v.iter()
                    .enumerate()
                    .map(|(i, a)| if m(i) { x } else { *a })
                    .collect(),
            )
        }
    }
}

/// The columns a scaler works on: the listed ones (which must be numeric features), or
/// every numeric feature that is not a `one_hot`/`string_index` output.
pub(crate) fn scaled_columns(
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

pub(crate) fn position(frame: &Frame, stage: &'static str, name: &str) -> Result<usize, DataError> {
    frame.position(name).ok_or_else(|| DataError::NotAFeature {
        stage,
        column: name.into(),
        hint: column_hint(name, &frame.names()),
    })
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

/// The position of a categorical column and its values as category names.
pub(crate) fn keys_of(
    frame: &Frame,
    stage: &'static str,
    name: &str,
) -> Result<(usize, Vec<String>), DataError> {
    let p = position(frame, stage, name)?;
    if let Some(i) = frame.cols[p].first_missing() {
        return Err(DataError::MissingValue {
            file: frame.file.clone(),
            what: frame.cols[p].kind_word(),
            column: name.into(),
            at: frame.at(i),
        });
    }
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
