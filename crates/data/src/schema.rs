//! The data's schema without its rows: column names and types from a CSV header (types from
//! the first rows), Parquet footers, or what a built-in or synthetic source is. `weft plan`,
//! `weft serve` and the notebook's `plan()` learn the model's input from it, so a large
//! table is not read just to draw its plan.

use std::fs::File;
use std::io::{BufRead, Cursor};
use std::path::Path;
use std::sync::Arc;

use arrow_csv::reader::Format;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weft_common::builtin::{synthetic_feature, IRIS_CLASSES, SYNTHETIC_LABEL};
use weft_common::task::TaskKind;
use weft_dsl::{Builtin, DataSpec, Preprocess, Source};

use crate::error::{io_message, DataError};
use crate::prepare::feature_columns;
use crate::source::{
    check_unique_columns, loose, parquet_files, read_lines_bounded, schema_difference,
    strip_arrow_prefix, IRIS_CSV,
};

/// Rows of a CSV file read to infer its column types (the whole file is checked when it is
/// loaded for training).
const CSV_TYPE_SAMPLE: usize = 1000;
/// Bytes of a CSV file read for its schema, at most.
const CSV_SCHEMA_BYTES: usize = 16 << 20;

/// A table's columns without its rows.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// The name used in messages (the path as the spec wrote it, `iris`, `synthetic`).
    pub name: String,
    pub schema: SchemaRef,
    /// The number of rows when the metadata says it (Parquet, built-in, synthetic).
    pub rows: Option<u64>,
    /// The label's classes when the source defines them (built-in, synthetic); a file's
    /// are only known from its rows.
    pub classes: Option<usize>,
}

impl TableSchema {
    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The label's type against the task, as far as the schema tells (a CSV's types come
    /// from its first rows; every row is checked again when the data is read).
    pub fn check_label(&self, spec: &DataSpec, task: TaskKind) -> Result<(), DataError> {
        let (_, label) = feature_columns(spec, &self.name, &self.column_names())?;
        let Ok(field) = self.schema.field_with_name(&label) else {
            return Ok(());
        };
        let dtype = field.data_type();
        match task {
            TaskKind::Regression
                if matches!(
                    dtype,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                Err(DataError::StringLabel {
                    file: self.name.clone(),
                    column: label,
                })
            }
            // Float classes are allowed when every value is a whole number (Spark ML's
            // labels are doubles): the rows decide (`class_keys`).
            _ => Ok(()),
        }
    }

    /// The feature columns the spec selects (in order) and the label, or `None` when the
    /// preprocessing makes the model's input depend on the values (`one_hot` adds a
    /// column per category).
    pub fn features(&self, spec: &DataSpec) -> Result<Option<(Vec<String>, String)>, DataError> {
        let (features, label) = feature_columns(spec, &self.name, &self.column_names())?;
        // One-hot columns, and the ids of an embedding's dictionary, come from the values.
        let by_values = spec.preprocess.iter().any(|p| match p {
            Preprocess::OneHot(o) => o.column != label,
            Preprocess::EmbedIndex(e) => e.buckets.is_none(),
            _ => false,
        });
        Ok((!by_values).then_some((features, label)))
    }
}

/// [`read_schema`] of a spec's data: an image folder's columns follow `data.image`.
pub fn read_data_schema(data: &DataSpec, base_dir: &Path) -> Result<TableSchema, DataError> {
    match &data.source {
        Source::ImageFolder(at) => {
            crate::image_folder::image_folder_schema(at, base_dir, data.image)
        }
        other => read_schema(other, base_dir),
    }
}

/// The schema of the spec's data source, reading no more than headers and metadata.
pub fn read_schema(source: &Source, base_dir: &Path) -> Result<TableSchema, DataError> {
    if let Some(url) = crate::source::remote_path(source) {
        #[cfg(feature = "remote")]
        return crate::remote::read_schema(url, source);
        #[cfg(not(feature = "remote"))]
        return crate::source::with_spooled(url, source, |local, base| read_schema(&local, base));
    }
    match source {
        Source::Csv(path) => {
            let full = base_dir.join(path);
            let file = File::open(&full).map_err(|e| {
                DataError::Io {
                    path: path.clone(),
                    message: io_message(&e),
                }
                .with_resolved(path, &full)
            })?;
            // The header and the rows that type the columns: never more than this, whatever
            // the file is.
            let head = read_lines_bounded(file, path, CSV_SCHEMA_BYTES)?;
            csv_schema(Cursor::new(head), path)
        }
        Source::Parquet(path) => {
            parquet_schema(base_dir, path).map_err(|e| e.with_resolved(path, &base_dir.join(path)))
        }
        Source::Arrow(path) => {
            let schema = crate::ipc::arrow_schema(base_dir, path)
                .map_err(|e| e.with_resolved(path, &base_dir.join(path)))?;
            check_unique_columns(&schema, path)?;
            Ok(TableSchema {
                name: path.clone(),
                schema: loose(&schema),
                rows: None,
                classes: None,
            })
        }
        Source::Builtin(Builtin::Iris) => {
            let mut s = csv_schema(Cursor::new(IRIS_CSV.as_bytes()), "iris")?;
            s.rows = Some(IRIS_CSV.lines().skip(1).filter(|l| !l.is_empty()).count() as u64);
            s.classes = Some(IRIS_CLASSES);
            Ok(s)
        }
        Source::Idx(idx) => crate::idx::idx_schema(idx, base_dir),
        Source::ImageFolder(at) => crate::image_folder::image_folder_schema(at, base_dir, None),
        Source::Synthetic(spec) => {
            let mut fields: Vec<Field> = (0..spec.features)
                .map(|j| Field::new(synthetic_feature(j), DataType::Float32, false))
                .collect();
            fields.push(Field::new(SYNTHETIC_LABEL, DataType::Int64, false));
            Ok(TableSchema {
                name: "synthetic".into(),
                schema: Arc::new(Schema::new(fields)),
                rows: Some(spec.rows as u64),
                classes: Some(spec.classes),
            })
        }
    }
}

/// The header's names, with types inferred from the first rows.
pub(crate) fn csv_schema(mut reader: impl BufRead, name: &str) -> Result<TableSchema, DataError> {
    let empty = reader
        .fill_buf()
        .map(<[u8]>::is_empty)
        .map_err(|e| DataError::Io {
            path: name.into(),
            message: io_message(&e),
        })?;
    if empty {
        return Err(DataError::EmptyFile { file: name.into() });
    }
    let (schema, _) = Format::default()
        .with_header(true)
        .infer_schema(reader.by_ref(), Some(CSV_TYPE_SAMPLE))
        .map_err(|e| DataError::Csv {
            file: name.into(),
            message: strip_arrow_prefix(e),
        })?;
    check_unique_columns(&schema, name)?;
    Ok(TableSchema {
        name: name.into(),
        schema: Arc::new(schema),
        rows: None,
        classes: None,
    })
}

/// Every part's footer: the schema (the same in every part) and the row counts.
fn parquet_schema(base_dir: &Path, spec_path: &str) -> Result<TableSchema, DataError> {
    let mut first: Option<(SchemaRef, String)> = None;
    let mut rows = 0u64;
    for (path, shown) in parquet_files(base_dir, spec_path)? {
        let file = File::open(&path).map_err(|e| DataError::Io {
            path: shown.clone(),
            message: io_message(&e),
        })?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::Parquet {
                file: shown.clone(),
                message: e.to_string(),
            })?;
        rows += u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let schema = builder.schema().clone();
        match &first {
            None => first = Some((loose(&schema), shown)),
            Some((s, first_name)) => {
                if let Some(detail) = schema_difference(s, &schema) {
                    return Err(DataError::SchemaMismatch {
                        file: shown,
                        first: first_name.clone(),
                        detail,
                    });
                }
            }
        }
    }
    let Some((schema, _)) = first else {
        return Err(DataError::Internal("no parquet file was found".into()));
    };
    Ok(TableSchema {
        name: spec_path.into(),
        schema,
        rows: Some(rows),
        classes: None,
    })
}
