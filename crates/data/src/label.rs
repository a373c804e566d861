//! The label column: class names fitted on the train split, class indices or regression targets.

use std::collections::{BTreeMap, HashMap};

use crate::error::{At, DataError};
use crate::frame::{category_order, read_values, Values};
use crate::table::Table;

/// How classes are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassOrder {
    /// By name (integers numerically): the default.
    Name,
    /// Most frequent first, ties by name: a `string_index` stage on the label asks for it.
    Frequency,
}

/// Reads the label column of every row.
pub(crate) fn read_label(table: &Table, label: &str) -> Result<Values, DataError> {
    let array = table.column(label, "label column")?;
    read_values(&table.name, label, "label column", array)
        .map_err(|e| e.shift_rows(table.first_row))
}

/// Class names as found in the label: strings, or integers in decimal. Floats that are all
/// whole numbers are integers (Spark ML's labels are doubles: `1.0` is class `1`); another
/// float label is an error in classification.
pub(crate) fn class_keys(
    table: &Table,
    label: &str,
    values: &Values,
) -> Result<Vec<String>, DataError> {
    match values {
        Values::Text(v) => Ok(v.clone()),
        Values::Int(v) => Ok(v.iter().map(i64::to_string).collect()),
        Values::Num(v) if v.iter().all(|x| x.fract() == 0.0 && x.abs() < 16_777_216.0) => {
            Ok(v.iter().map(|x| (*x as i64).to_string()).collect())
        }
        Values::Num(_) => Err(DataError::FloatLabel {
            file: table.name.clone(),
            column: label.into(),
            dtype: table
                .column(label, "label column")
                .map(|a| a.data_type().to_string())
                .unwrap_or_default(),
        }),
    }
}

/// The classes seen in the rows `train` of `keys`, numbered in `order`.
pub(crate) fn fit_classes(
    table: &Table,
    label: &str,
    keys: &[String],
    train: &[usize],
    order: ClassOrder,
) -> Result<Vec<String>, DataError> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for &r in train {
        *counts.entry(&keys[r]).or_default() += 1;
    }
    let classes = order_classes(counts.into_iter().collect(), order, &table.name, label)?;
    Ok(classes.into_iter().map(|(k, _)| k.to_string()).collect())
}

/// Classes with their train rows, numbered in `order`; one class alone is an error.
pub(crate) fn order_classes<'a>(
    mut classes: Vec<(&'a str, u64)>,
    order: ClassOrder,
    file: &str,
    label: &str,
) -> Result<Vec<(&'a str, u64)>, DataError> {
    match order {
        ClassOrder::Name => classes.sort_by(|a, b| category_order(a.0, b.0)),
        ClassOrder::Frequency => {
            classes.sort_by(|a, b| b.1.cmp(&a.1).then(category_order(a.0, b.0)))
        }
    }
    if let [(only, _)] = classes.as_slice() {
        return Err(DataError::OneClass {
            file: file.into(),
            column: label.into(),
            class: only.to_string(),
        });
    }
    Ok(classes)
}

/// The class index (as f32) of each row of `keys`, computed for `rows` (others stay 0) and
/// failing on the first of `rows` whose class is not among `classes`.
pub(crate) fn encode_classes(
    file: &str,
    label: &str,
    keys: &[String],
    classes: &[String],
    rows: impl Iterator<Item = usize>,
) -> Result<Vec<f32>, DataError> {
    let index: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut y = vec![0f32; keys.len()];
    for r in rows {
        match index.get(keys[r].as_str()) {
            Some(&i) => y[r] = i as f32,
            None => {
                return Err(DataError::UnseenClass {
                    file: file.into(),
                    column: label.into(),
                    class: keys[r].clone(),
                    at: At::of(file, r),
                    known: classes.to_vec(),
                })
            }
        }
    }
    Ok(y)
}

/// Regression targets: the label must be numeric.
pub(crate) fn targets(table: &Table, label: &str, values: &Values) -> Result<Vec<f32>, DataError> {
    match values {
        Values::Num(v) => Ok(v.clone()),
        Values::Int(v) => Ok(v.iter().map(|&x| x as f32).collect()),
        Values::Text(_) => Err(DataError::StringLabel {
            file: table.name.clone(),
            column: label.into(),
        }),
    }
}
