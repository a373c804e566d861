//! `DataError`: everything that can go wrong loading and preparing data, naming file, column and row.

use std::fmt;
use std::path::Path;

/// Where a value sits: the 1-based data row and, for CSV files, the file line (header = line 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub row: usize,
    /// The table is a CSV file, whose lines are worth giving.
    pub csv: bool,
}

impl At {
    /// The location of 0-based data row `index` of `table` (lines are given for `.csv` tables).
    pub fn of(table: &str, index: usize) -> At {
        At {
            row: index + 1,
            csv: table.to_ascii_lowercase().ends_with(".csv"),
        }
    }

    /// The CSV file line (the header is line 1), if the table is a CSV file.
    pub fn line(&self) -> Option<usize> {
        self.csv.then_some(self.row + 1)
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}", self.row)?;
        if let Some(line) = self.line() {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // ------------------------------------------------------------ reading files
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("no files match {pattern}")]
    NoMatch { pattern: String },
    #[error("{path} holds no {ext} files")]
    EmptyFolder { path: String, ext: &'static str },
    #[error("{path}: unsupported file type; expected a .csv, .parquet or Arrow IPC (.arrow, .feather, .ipc) file, or a folder of .parquet files")]
    UnsupportedFile { path: String },
    #[error("{file} is empty: no header row")]
    EmptyFile { file: String },
    #[error("{file} has a header but no rows")]
    NoRows { file: String },
    /// Two columns of a header have one name (which would the spec mean?).
    #[error("{file}: the header names column `{column}` twice (columns {first} and {second}); rename one")]
    DuplicateColumn {
        file: String,
        column: String,
        first: usize,
        second: usize,
    },
    #[error("{file} has no rows")]
    EmptyTable { file: String },
    #[error("{file}: {message}")]
    Csv { file: String, message: String },
    #[error("{file}: {message}")]
    Parquet { file: String, message: String },
    #[error("{file}: its schema differs from {first}: {detail}")]
    SchemaMismatch {
        file: String,
        first: String,
        detail: String,
    },
    #[error("synthetic data: {0}")]
    Synthetic(String),
    /// An IDX file (MNIST's format) that does not say what it holds.
    #[error("{file}: {message}")]
    Idx { file: String, message: String },
    /// A picture of an image folder that cannot be read or does not fit.
    #[error("{file}: {message}")]
    Image { file: String, message: String },

    // ------------------------------------------------------------ columns
    /// `what` is `column` or `label column`; `hint` is the did-you-mean text.
    #[error("{what} `{column}` not found in {table}{hint}")]
    ColumnNotFound {
        what: &'static str,
        table: String,
        column: String,
        hint: String,
    },
    #[error("{table} has no default label column; set `data.label` to one of: {}", short_list(.columns))]
    NoLabel { table: String, columns: Vec<String> },
    #[error("column `{column}` is the label and cannot also be a feature")]
    LabelAsFeature { column: String },
    #[error("no feature columns left in {table} after features.include/exclude")]
    NoFeatures { table: String },
    #[error("{file}: column `{column}` is not numeric: {at} has `{value}`")]
    NotNumeric {
        file: String,
        column: String,
        at: At,
        value: String,
    },
    #[error(
        "{file}: {what} `{column}` has a missing value at {at}{}",
        missing_advice(what, column)
    )]
    MissingValue {
        file: String,
        what: &'static str,
        column: String,
        at: At,
    },
    #[error("{file}: {what} `{column}` has an infinite value at {at}")]
    Infinite {
        file: String,
        what: &'static str,
        column: String,
        at: At,
    },
    #[error("{file}: column `{column}` holds strings; encode it with a preprocess stage (`string_index: {{column: {column}}}` or `one_hot: {{column: {column}}}`) or exclude it")]
    StringFeature { file: String, column: String },
    #[error("{file}: column `{column}` has type {dtype}, which weft cannot use; valid: numbers, booleans, strings")]
    UnsupportedType {
        file: String,
        column: String,
        dtype: String,
    },

    // ------------------------------------------------------------ label
    #[error("{file}: label column `{column}` holds floats ({dtype}) that are not all whole numbers, but the task is classification; use integer or string classes, or a regression loss (mse)")]
    FloatLabel {
        file: String,
        column: String,
        dtype: String,
    },
    #[error(
        "{file}: weight column `{column}` has {value} at {at}; a row's weight is a number >= 0"
    )]
    BadWeight {
        file: String,
        column: String,
        value: String,
        at: At,
    },
    #[error("{file}: label column `{column}` holds strings but the task is regression (loss: mse), which needs numbers")]
    StringLabel { file: String, column: String },
    #[error("{file}: label column `{column}` has a single class `{class}` in the train split; classification needs at least two")]
    OneClass {
        file: String,
        column: String,
        class: String,
    },
    #[error("{file}: label column `{column}` has class `{class}` at {at}, which is not in the train split; classes: {}", short_list(.known))]
    UnseenClass {
        file: String,
        column: String,
        class: String,
        at: At,
        known: Vec<String>,
    },

    // ------------------------------------------------------------ preprocessing
    #[error("{file}: column `{column}` has category `{value}` at {at}, which `{stage}` did not see in the train split; categories: {}{}", short_list(.known), if *.stage == "one_hot" { "; `handle_unknown: ignore` encodes it as zeros, `infrequent` as its own column" } else { "" })]
    UnseenCategory {
        stage: &'static str,
        file: String,
        column: String,
        value: String,
        at: At,
        known: Box<[String]>,
    },
    #[error("preprocess `{stage}`: column `{column}` is not a feature{hint}")]
    NotAFeature {
        stage: &'static str,
        column: String,
        hint: String,
    },
    #[error("preprocess `{stage}`: column `{column}` {problem}")]
    BadStageColumn {
        stage: &'static str,
        column: String,
        problem: String,
    },

    // ------------------------------------------------------------ split
    #[error("split: fractions add up to {sum} (train {train} + test {test} + validation {validation}); they must add up to at most 1")]
    SplitTooLarge {
        sum: f64,
        train: f64,
        test: f64,
        validation: f64,
    },
    #[error(
        "split: a {split} fraction of {fraction} of {rows} rows leaves the {split} split empty"
    )]
    EmptySplit {
        split: &'static str,
        fraction: f64,
        rows: usize,
    },

    /// A bug in weft, not a problem with the data.
    #[error("internal error in weft-data (a bug, please report it): {0}")]
    Internal(String),
}

impl DataError {
    /// Names where a relative path led (`data.csv, resolved against the spec's folder:
    /// /home/me/exp/data.csv`) in the errors about finding a file.
    pub fn with_resolved(self, spec_path: &str, full: &std::path::Path) -> DataError {
        let shown = |p: String| {
            if p == spec_path && Path::new(spec_path).is_relative() {
                format!(
                    "{p} (resolved against the spec's folder: {})",
                    full.display()
                )
            } else {
                p
            }
        };
        match self {
            DataError::Io { path, message } => DataError::Io {
                path: shown(path),
                message,
            },
            DataError::NoMatch { pattern } => DataError::NoMatch {
                pattern: shown(pattern),
            },
            DataError::EmptyFolder { path, ext } => DataError::EmptyFolder {
                path: shown(path),
                ext,
            },
            other => other,
        }
    }

    /// The error of a table that starts `by` rows into its data set: rows counted from there.
    pub fn shift_rows(mut self, by: usize) -> DataError {
        use DataError::*;
        if by > 0 {
            if let NotNumeric { at, .. }
            | MissingValue { at, .. }
            | Infinite { at, .. }
            | UnseenClass { at, .. }
            | UnseenCategory { at, .. } = &mut self
            {
                at.row += by;
            }
        }
        self
    }

    /// The spec key whose value the error is about (`data.label`, `data.split`…), to
    /// locate it in the spec file; `None` for a bug.
    pub fn spec_path(&self) -> Option<&'static str> {
        use DataError::*;
        Some(match self {
            Io { .. }
            | NoMatch { .. }
            | EmptyFolder { .. }
            | UnsupportedFile { .. }
            | EmptyFile { .. }
            | NoRows { .. }
            | DuplicateColumn { .. }
            | EmptyTable { .. }
            | Csv { .. }
            | Parquet { .. }
            | SchemaMismatch { .. }
            | NotNumeric { .. }
            | Infinite { .. }
            | UnsupportedType { .. } => "data.source",
            Synthetic(_) => "data.source.synthetic",
            Idx { .. } => "data.source.idx",
            Image { .. } => "data.source.image_folder",
            ColumnNotFound { what, .. } if what.contains("label") => "data.label",
            ColumnNotFound { what, .. } if what.contains("weight") => "data.weight_column",
            ColumnNotFound { what, .. } if what.contains("split key") => "data.split.key",
            BadWeight { .. } => "data.weight_column",
            MissingValue { what, .. } if what.contains("weight") => "data.weight_column",
            ColumnNotFound { .. } | LabelAsFeature { .. } | NoFeatures { .. } => "data.features",
            MissingValue { what, .. } if what.contains("label") => "data.label",
            MissingValue { .. } | StringFeature { .. } => "data.source",
            NoLabel { .. }
            | FloatLabel { .. }
            | StringLabel { .. }
            | OneClass { .. }
            | UnseenClass { .. } => "data.label",
            UnseenCategory { .. } | NotAFeature { .. } | BadStageColumn { .. } => "data.preprocess",
            SplitTooLarge { .. } | EmptySplit { .. } => "data.split",
            Internal(_) => return None,
        })
    }
}

/// What to add to the spec for a missing value.
fn missing_advice(what: &str, column: &str) -> String {
    if what.contains("label") {
        "; rows without a label cannot train: remove them from the data".into()
    } else if what.contains("string") {
        format!("; add `impute: {{strategy: most_frequent, columns: [{column}]}}` (or constant with value:) or `drop_missing: {{columns: [{column}]}}` to data.preprocess, before any stage that encodes it")
    } else {
        format!("; add `impute: {{strategy: median, columns: [{column}]}}` (or mean, most_frequent, constant) or `drop_missing: {{columns: [{column}]}}` to data.preprocess")
    }
}

/// An I/O error's text without the ` (os error N)` suffix.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The "did you mean … valid: …" text for an unknown column among `valid`.
pub(crate) fn column_hint(word: &str, valid: &[String]) -> String {
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    weft_dsl::suggest::hint(word, &valid)
}

/// The most names a message lists before it says how many there are in all.
const LISTED: usize = 20;

/// `a, b, c`, or the first [`LISTED`] and `… (10000 in all)`: a table with thousands of
/// classes or columns must not print a 60 KB message.
pub(crate) fn short_list(names: &[String]) -> String {
    if names.len() <= LISTED {
        return names.join(", ");
    }
    format!("{}, … ({} in all)", names[..LISTED].join(", "), names.len())
}
