//! `Table`: a loaded data set (one Arrow record batch) and the name used in messages.

use arrow_array::{ArrayRef, RecordBatch};

use crate::error::{column_hint, DataError};

/// A whole data set in memory.
#[derive(Debug, Clone)]
pub struct Table {
    /// The name used in messages: the path as written in the spec, `iris` or `synthetic`.
    /// Rows of tables whose name ends in `.csv` are also reported by file line.
    pub name: String,
    pub batch: RecordBatch,
    /// The 0-based row of the whole data set this table starts at (a part of a file read
    /// in pieces): messages count rows from it.
    pub first_row: usize,
}

impl Table {
    /// A whole data set (its first row is row 0).
    pub fn new(name: impl Into<String>, batch: RecordBatch) -> Table {
        Table {
            name: name.into(),
            batch,
            first_row: 0,
        }
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn column_names(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The column called `name`; `what` (`column`, `label column`) words the error.
    pub fn column(&self, name: &str, what: &'static str) -> Result<&ArrayRef, DataError> {
        match self.batch.schema().index_of(name) {
            Ok(i) => Ok(self.batch.column(i)),
            Err(_) => Err(DataError::ColumnNotFound {
                what,
                table: self.name.clone(),
                column: name.to_string(),
                hint: column_hint(name, &self.column_names()),
            }),
        }
    }
}
