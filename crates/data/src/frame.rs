//! `Frame`: the feature columns of some rows, typed and checked, as the preprocess stages see them.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use ndarray::Array2;

use crate::error::{At, DataError};
use crate::table::Table;

/// The values of one column, every one present (missing values are errors when read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    Num(Vec<f32>),
    Int(Vec<i64>),
    Text(Vec<String>),
}

impl Values {
    pub(crate) fn len(&self) -> usize {
        match self {
            Values::Num(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    /// The values at positions `idx`, in that order.
    fn take(&self, idx: &[usize]) -> Values {
        match self {
            Values::Num(v) => Values::Num(idx.iter().map(|&i| v[i]).collect()),
            Values::Int(v) => Values::Int(idx.iter().map(|&i| v[i]).collect()),
            Values::Text(v) => Values::Text(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// The value at `i` as a category name: strings as they are, integers in decimal.
    /// `None` for a non-integer number, which is no category.
    pub(crate) fn key(&self, i: usize) -> Option<String> {
        match self {
            Values::Text(v) => Some(v[i].clone()),
            Values::Int(v) => Some(v[i].to_string()),
            Values::Num(v) => (v[i].fract() == 0.0).then(|| format!("{}", v[i] as i64)),
        }
    }
}

/// Orders category names: integers numerically, then strings by name.
pub(crate) fn category_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Col {
    pub name: String,
    /// The values; a missing one holds a placeholder (0, or an empty string).
    pub values: Values,
    /// Which values are missing; empty when none is. `impute` fills them, `drop_missing`
    /// drops their rows, and any left when the matrix is made are an error.
    pub missing: Vec<bool>,
    /// Made by `one_hot` or `string_index`: scalers leave it alone unless told otherwise.
    pub categorical: bool,
}

impl Col {
    pub(crate) fn new(name: String, values: Values, categorical: bool) -> Col {
        Col {
            name,
            values,
            missing: Vec::new(),
            categorical,
        }
    }

    /// How errors name the column: `string column` for text (its advice differs).
    pub(crate) fn kind_word(&self) -> &'static str {
        if matches!(self.values, Values::Text(_)) {
            "string column"
        } else {
            "column"
        }
    }

    pub(crate) fn is_missing(&self, i: usize) -> bool {
        self.missing.get(i).copied().unwrap_or(false)
    }

    /// The first missing position.
    pub(crate) fn first_missing(&self) -> Option<usize> {
        self.missing.iter().position(|m| *m)
    }
}

/// Some rows of a table's feature columns; `rows` are their 0-based rows in the table.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub file: String,
    pub rows: Vec<usize>,
    pub cols: Vec<Col>,
}

impl Frame {
    /// Reads the named columns of every row of `table`; nulls, NaN and the texts of `na`
    /// are missing values.
    /// Columns in `text` are read as text (the kinds a fitted pipeline saw).
    pub(crate) fn read(
        table: &Table,
        names: &[String],
        na: &[String],
        text: &[String],
    ) -> Result<Frame, DataError> {
        let cols = names
            .iter()
            .map(|name| {
                let array = table.column(name, "column")?;
                let as_text = text.contains(name);
                let (values, missing) =
                    read_with_missing(&table.name, name, "column", array, na, as_text)
                        .map_err(|e| e.shift_rows(table.first_row))?;
                Ok(Col {
                    name: name.clone(),
                    values,
                    missing,
                    categorical: false,
                })
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok(Frame {
            file: table.name.clone(),
            rows: (table.first_row..table.first_row + table.num_rows()).collect(),
            cols,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The rows at positions `idx` of this frame.
    pub(crate) fn take(&self, idx: &[usize]) -> Frame {
        Frame {
            file: self.file.clone(),
            rows: idx.iter().map(|&i| self.rows[i]).collect(),
            cols: self
                .cols
                .iter()
                .map(|c| Col {
                    name: c.name.clone(),
                    values: c.values.take(idx),
                    missing: if c.missing.is_empty() {
                        Vec::new()
                    } else {
                        idx.iter().map(|&i| c.missing[i]).collect()
                    },
                    categorical: c.categorical,
                })
                .collect(),
        }
    }

    /// Where position `i` of this frame sits in its table.
    pub(crate) fn at(&self, i: usize) -> At {
        At::of(&self.file, self.rows[i])
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|c| c.name == name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.cols.iter().map(|c| c.name.clone()).collect()
    }

    /// Fails on the first string column that is not in `encoded` (the columns that a
    /// `string_index` or `one_hot` stage will turn into numbers).
    pub(crate) fn check_text(&self, encoded: &[&str]) -> Result<(), DataError> {
        for col in &self.cols {
            if let Values::Text(v) = &col.values {
                if !encoded.contains(&col.name.as_str()) {
                    return Err(self.text_error(&col.name, v));
                }
            }
        }
        Ok(())
    }

    /// A string column where numbers were wanted: when most values are numbers, the first
    /// that is not; otherwise the advice to encode the column.
    pub(crate) fn text_error(&self, column: &str, values: &[String]) -> DataError {
        let numeric = values
            .iter()
            .filter(|s| s.trim().parse::<f64>().is_ok())
            .count();
        match values.iter().position(|s| s.trim().parse::<f64>().is_err()) {
            Some(i) if 2 * numeric >= values.len() => DataError::NotNumeric {
                file: self.file.clone(),
                column: column.into(),
                at: self.at(i),
                value: values[i].clone(),
            },
            _ => DataError::StringFeature {
                file: self.file.clone(),
                column: column.into(),
            },
        }
    }

    /// Errors on the first missing value left (no `impute` or `drop_missing` covered it).
    pub(crate) fn check_missing(&self) -> Result<(), DataError> {
        for col in &self.cols {
            if let Some(i) = col.first_missing() {
                return Err(DataError::MissingValue {
                    file: self.file.clone(),
                    what: col.kind_word(),
                    column: col.name.clone(),
                    at: self.at(i),
                });
            }
        }
        Ok(())
    }

    /// The rows × columns matrix; every column must be numeric and whole by now.
    pub(crate) fn to_matrix(&self) -> Result<Array2<f32>, DataError> {
        self.check_missing()?;
        let mut x = Array2::<f32>::zeros((self.len(), self.cols.len()));
        for (j, col) in self.cols.iter().enumerate() {
            let mut out = x.column_mut(j);
            match &col.values {
                Values::Num(v) => out.iter_mut().zip(v).for_each(|(o, &a)| *o = a),
                Values::Int(v) => out.iter_mut().zip(v).for_each(|(o, &a)| *o = a as f32),
                Values::Text(v) => return Err(self.text_error(&col.name, v)),
            }
        }
        Ok(x)
    }
}

/// Reads one feature column with its missing values: nulls, NaN, and strings among `na`
/// (`NA`, `null`…) are missing; the rest is read as [`read_values`] reads a column.
pub(crate) fn read_with_missing(
    file: &str,
    column: &str,
    what: &'static str,
    array: &ArrayRef,
    na: &[String],
    as_text: bool,
) -> Result<(Values, Vec<bool>), DataError> {
    // `logical_nulls`: a Null-typed column (every cell empty) has no null buffer.
    let nulls = array.logical_nulls();
    let mut missing: Vec<bool> = (0..array.len())
        .map(|i| nulls.as_ref().is_some_and(|n| n.is_null(i)))
        .collect();
    let dtype = array.data_type();
    let text_of = |missing: &mut Vec<bool>| -> Result<Vec<String>, DataError> {
        let a = arrow_cast::cast(array, &DataType::Utf8)
            .map_err(|e| DataError::Internal(format!("casting column `{column}` to text: {e}")))?;
        let text: Vec<String> = a
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or("").to_string())
            .collect();
        for (m, t) in missing.iter_mut().zip(&text) {
            *m |= na.iter().any(|n| n == t.trim());
        }
        Ok(text
            .into_iter()
            .zip(missing.iter())
            .map(|(t, m)| if *m { String::new() } else { t })
            .collect())
    };
    let values = match dtype {
        // A column that was text when the pipeline was fitted stays text, whatever a piece
        // of new data looks like (all blank, or numbers like `02139`).
        _ if as_text => Values::Text(text_of(&mut missing)?),
        DataType::Null => Values::Num(vec![0.0; array.len()]),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let text = text_of(&mut missing)?;
            let present = |i: &usize| !missing[*i];
            let all = |f: &dyn Fn(&str) -> bool| {
                (0..text.len()).filter(present).all(|i| f(text[i].trim()))
            };
            if all(&|t| t.parse::<i64>().is_ok()) {
                Values::Int(
                    text.iter()
                        .zip(&missing)
                        .map(|(t, m)| if *m { 0 } else { t.trim().parse().unwrap_or(0) })
                        .collect(),
                )
            } else if all(&|t| t.parse::<f64>().is_ok()) {
                let v: Vec<f64> = text
                    .iter()
                    .zip(&missing)
                    .map(|(t, m)| {
                        if *m {
                            0.0
                        } else {
                            t.trim().parse().unwrap_or(0.0)
                        }
                    })
                    .collect();
                num_with_missing(file, column, what, &v, &mut missing)?
            } else {
                // `text_of` has blanked the missing values.
                Values::Text(text)
            }
        }
        DataType::Float32 => {
            // f32 as stored (no cast to an f64 copy): the common case of large files.
            let a = array.as_primitive::<arrow_array::types::Float32Type>();
            num_with_missing(file, column, what, a.values(), &mut missing)?
        }
        t if is_float(t) => {
            let a = arrow_cast::cast(array, &DataType::Float64).map_err(|e| {
                DataError::Internal(format!("casting column `{column}` to f64: {e}"))
            })?;
            let v = a.as_primitive::<Float64Type>().values().to_vec();
            num_with_missing(file, column, what, &v, &mut missing)?
        }
        t if is_integer(t) && missing.iter().any(|m| *m) => {
            // Integers and booleans with nulls: the nulls are missing, the rest as usual.
            let filled = arrow_cast::cast(array, &DataType::Int64).map_err(|e| {
                DataError::Internal(format!("casting column `{column}` to i64: {e}"))
            })?;
            // A UInt64 beyond i64 casts to null where the input was not.
            if let Some(i) = (0..filled.len()).find(|&i| filled.is_null(i) && !missing[i]) {
                return Err(DataError::UnsupportedType {
                    file: file.into(),
                    column: column.into(),
                    dtype: format!("{dtype} with a value beyond 2^63 at {}", At::of(file, i)),
                });
            }
            let ints = filled.as_primitive::<Int64Type>();
            Values::Int(
                (0..ints.len())
                    .map(|i| if missing[i] { 0 } else { ints.value(i) })
                    .collect(),
            )
        }
        _ => read_values(file, column, what, array)?,
    };
    // Numbers among the na texts (`-999`) are missing in numeric columns too.
    let na_numbers: Vec<f64> = na
        .iter()
        .filter_map(|t| t.trim().parse::<f64>().ok())
        .filter(|x| !x.is_nan())
        .collect();
    if !na_numbers.is_empty() {
        let is_na = |x: f64| na_numbers.contains(&x);
        match &values {
            Values::Num(v) => v
                .iter()
                .zip(missing.iter_mut())
                .for_each(|(x, m)| *m |= is_na(f64::from(*x))),
            Values::Int(v) => v
                .iter()
                .zip(missing.iter_mut())
                .for_each(|(x, m)| *m |= is_na(*x as f64)),
            Values::Text(_) => {}
        }
    }
    if !missing.iter().any(|m| *m) {
        missing.clear();
    }
    Ok((values, missing))
}

/// Booleans and integers (read as integers).
fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// Floating-point and decimal numbers (read as f64, kept as f32).
fn is_float(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

/// Numbers with NaN as missing (added to `missing`); an infinite value is an error.
fn num_with_missing<T: Copy + Into<f64>>(
    file: &str,
    column: &str,
    what: &'static str,
    v: &[T],
    missing: &mut [bool],
) -> Result<Values, DataError> {
    let mut out = Vec::with_capacity(v.len());
    for (i, &x) in v.iter().enumerate() {
        let x: f64 = x.into();
        if missing[i] || x.is_nan() {
            missing[i] = true;
            out.push(0.0);
        } else if x.is_infinite() {
            return Err(DataError::Infinite {
                file: file.into(),
                what,
                column: column.into(),
                at: At::of(file, i),
            });
        } else {
            out.push(x as f32);
        }
    }
    Ok(Values::Num(out))
}

/// Reads one Arrow column: numbers (NaN and nulls are missing values), integers and booleans
/// (as 0/1), or strings (a string column whose every value is a number is read as numbers).
/// `what` (`column`, `label column`) words the errors.
pub(crate) fn read_values(
    file: &str,
    column: &str,
    what: &'static str,
    array: &ArrayRef,
) -> Result<Values, DataError> {
    let missing = |i: usize| DataError::MissingValue {
        file: file.into(),
        what,
        column: column.into(),
        at: At::of(file, i),
    };
    if let Some(i) = (0..array.len()).find(|&i| array.is_null(i)) {
        return Err(missing(i));
    }
    let cast = |to: &DataType| {
        arrow_cast::cast(array, to)
            .map_err(|e| DataError::Internal(format!("casting column `{column}` to {to}: {e}")))
    };
    let dtype = array.data_type();
    match dtype {
        DataType::Null => Err(missing(0)),
        t if is_integer(t) => {
            let a = cast(&DataType::Int64)?;
            // A UInt64 beyond i64 casts to null.
            if let Some(i) = (0..a.len()).find(|&i| a.is_null(i)) {
                return Err(DataError::UnsupportedType {
                    file: file.into(),
                    column: column.into(),
                    dtype: format!("{dtype} with a value beyond 2^63 at {}", At::of(file, i)),
                });
            }
            Ok(Values::Int(a.as_primitive::<Int64Type>().values().to_vec()))
        }
        t if is_float(t) => {
            let a = cast(&DataType::Float64)?;
            floats(file, column, what, a.as_primitive::<Float64Type>().values())
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let a = cast(&DataType::Utf8)?;
            let text: Vec<String> = a
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or("").to_string())
                .collect();
            if let Some(ints) = text.iter().map(|s| s.trim().parse::<i64>().ok()).collect() {
                return Ok(Values::Int(ints));
            }
            match text
                .iter()
                .map(|s| s.trim().parse::<f64>().ok())
                .collect::<Option<Vec<f64>>>()
            {
                Some(nums) => floats(file, column, what, &nums),
                None => Ok(Values::Text(text)),
            }
        }
        other => Err(DataError::UnsupportedType {
            file: file.into(),
            column: column.into(),
            dtype: other.to_string(),
        }),
    }
}

fn floats(file: &str, column: &str, what: &'static str, v: &[f64]) -> Result<Values, DataError> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        let (file, column, at) = (file.into(), column.into(), At::of(file, i));
        return Err(if v[i].is_nan() {
            DataError::MissingValue {
                file,
                what,
                column,
                at,
            }
        } else {
            DataError::Infinite {
                file,
                what,
                column,
                at,
            }
        });
    }
    Ok(Values::Num(v.iter().map(|&x| x as f32).collect()))
}
