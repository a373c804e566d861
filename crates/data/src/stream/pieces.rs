//! The pieces of a streamed source: the units it is read, shuffled and sharded by (a Parquet
//! row group, a record batch of an Arrow IPC file, a whole CSV file or Arrow IPC stream),
//! and reading one piece as tables of a bounded number of rows.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow_ipc::reader::FileReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use weft_dsl::Source;

use crate::error::{io_message, DataError};
use crate::source::{data_files, strip_arrow_prefix};
use crate::table::Table;

/// One piece of a streamed source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// The file, as this process opens it.
    pub path: PathBuf,
    /// The file as messages name it (as the spec wrote it).
    pub shown: String,
    pub kind: PieceKind,
    /// The row of the whole data set (every file, in order) the piece starts at.
    pub first_row: u64,
    pub rows: u64,
    /// Bytes of the file the piece is (Parquet: its row group's compressed column chunks).
    #[serde(default)]
    pub bytes: u64,
    /// The object it is in, when it is read from an object store with ranged reads (then
    /// `path` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A CSV file's column types, inferred over every row as a table in memory infers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_schema: Option<arrow_schema::Schema>,
    /// The rank whose worker holds the piece (rows handed to that worker, as a Spark task
    /// hands its partition): that rank trains on it, whatever the balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PieceKind {
    /// A row group of a Parquet file.
    ParquetRowGroup(usize),
    /// A record batch of an Arrow IPC file (the file format has an index of its batches).
    ArrowBatch(usize),
    /// A whole Arrow IPC stream-format file.
    ArrowStream,
    /// A whole CSV file (read with every column as text; kinds come from the scan).
    Csv,
}

/// The pieces of a source in file order. Rows are known from Parquet metadata; the others
/// are counted by the first pass that reads them (`rows` 0 until then, `counted` false).
pub(crate) fn list(source: &Source, base_dir: &Path) -> Result<(Vec<Piece>, bool), DataError> {
    let mut pieces = Vec::new();
    let mut counted = true;
    match source {
        #[cfg(feature = "remote")]
        Source::Parquet(p) if crate::source::is_remote(p) => {
            pieces = crate::remote::parquet_pieces(p)?;
        }
        Source::Parquet(p) => {
            for (path, shown) in data_files(base_dir, p, &["parquet"])? {
                let file = open(&path, &shown)?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| parquet_error(&shown, e))?;
                for (i, rg) in builder.metadata().row_groups().iter().enumerate() {
                    pieces.push(Piece {
                        path: path.clone(),
                        shown: shown.clone(),
                        kind: PieceKind::ParquetRowGroup(i),
                        first_row: 0,
                        rows: u64::try_from(rg.num_rows()).unwrap_or(0),
                        bytes: u64::try_from(rg.compressed_size()).unwrap_or(0),
                        url: None,
                        csv_schema: None,
                        holder: None,
                    });
                }
            }
        }
        Source::Arrow(p) => {
            counted = false;
            for (path, shown) in data_files(base_dir, p, &crate::ipc::EXTENSIONS)? {
                let mut f = open(&path, &shown)?;
                let mut magic = [0u8; 6];
                let is_file =
                    std::io::Read::read_exact(&mut f, &mut magic).is_ok() && &magic == b"ARROW1";
                let size = f.metadata().map_or(0, |m| m.len());
                if is_file {
                    let reader = FileReader::try_new(BufReader::new(open(&path, &shown)?), None)
                        .map_err(|e| arrow_error(&shown, e))?;
                    let n = reader.num_batches().max(1) as u64;
                    for i in 0..reader.num_batches() {
                        pieces.push(piece(&path, &shown, PieceKind::ArrowBatch(i), size / n));
                    }
                } else {
                    pieces.push(piece(&path, &shown, PieceKind::ArrowStream, size));
                }
            }
        }
        Source::Csv(p) => {
            let path = base_dir.join(p);
            let f = open(&path, p).map_err(|e| e.with_resolved(p, &path))?;
            let size = f.metadata().map_or(0, |m| m.len());
            // One pass types the columns as memory would (and counts the rows).
            let (schema, records) = crate::source::csv_types(&path, p)?;
            if records == 0 {
                return Err(DataError::NoRows { file: p.clone() });
            }
            let mut csv = piece(&path, p, PieceKind::Csv, size);
            csv.rows = records as u64;
            csv.csv_schema = Some(schema);
            pieces.push(csv);
        }
        Source::Builtin(_) | Source::Synthetic(_) | Source::Idx(_) | Source::ImageFolder(_) => {
            return Err(DataError::Internal(
                "streaming reads files; this source is made in memory".into(),
            ))
        }
    }
    number(&mut pieces);
    Ok((pieces, counted))
}

fn piece(path: &Path, shown: &str, kind: PieceKind, bytes: u64) -> Piece {
    Piece {
        path: path.to_path_buf(),
        shown: shown.to_string(),
        kind,
        first_row: 0,
        rows: 0,
        bytes,
        url: None,
        csv_schema: None,
        holder: None,
    }
}

/// Sets each piece's first row from the rows of the pieces before it.
pub(crate) fn number(pieces: &mut [Piece]) {
    let mut at = 0u64;
    for p in pieces {
        p.first_row = at;
        at += p.rows;
    }
}

fn open(path: &Path, shown: &str) -> Result<File, DataError> {
    File::open(path).map_err(|e| DataError::Io {
        path: shown.into(),
        message: io_message(&e),
    })
}

fn parquet_error(shown: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Parquet {
        file: shown.into(),
        message: e.to_string(),
    }
}

fn arrow_error(shown: &str, e: arrow_schema::ArrowError) -> DataError {
    DataError::Csv {
        file: shown.into(),
        message: format!("not a readable Arrow IPC file: {}", strip_arrow_prefix(e)),
    }
}

/// Reads a piece as tables of at most `rows` rows, numbered from the piece's first row.
/// `columns` limits what is read from typed files (Parquet reads only those column chunks).
pub(crate) fn read(
    piece: &Piece,
    columns: &[String],
    rows: usize,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>> + Send>, DataError> {
    let rows = rows.max(1);
    let shown = piece.shown.clone();
    let batches: Box<dyn Iterator<Item = Result<arrow_array::RecordBatch, DataError>> + Send> =
        match piece.kind {
            #[cfg(feature = "remote")]
            PieceKind::ParquetRowGroup(rg) if piece.url.is_some() => {
                let url = piece.url.clone().unwrap_or_default();
                let reader = crate::remote::read_row_group(&url, rg, columns, rows)?;
                let s = shown.clone();
                Box::new(reader.map(move |b| b.map_err(|e| parquet_error(&s, e))))
            }
            PieceKind::ParquetRowGroup(rg) => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(open(&piece.path, &shown)?)
                    .map_err(|e| parquet_error(&shown, e))?;
                let schema = builder.schema().clone();
                let roots: Vec<usize> = columns
                    .iter()
                    .filter_map(|c| schema.index_of(c).ok())
                    .collect();
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
                let reader = builder
                    .with_row_groups(vec![rg])
                    .with_projection(mask)
                    .with_batch_size(rows)
                    .build()
                    .map_err(|e| parquet_error(&shown, e))?;
                let s = shown.clone();
                Box::new(reader.map(move |b| b.map_err(|e| parquet_error(&s, e))))
            }
            PieceKind::ArrowBatch(i) => {
                let mut reader =
                    FileReader::try_new(BufReader::new(open(&piece.path, &shown)?), None)
                        .map_err(|e| arrow_error(&shown, e))?;
                reader.set_index(i).map_err(|e| arrow_error(&shown, e))?;
                let batch = reader
                    .next()
                    .transpose()
                    .map_err(|e| arrow_error(&shown, e))?
                    .ok_or_else(|| DataError::Internal(format!("{shown}: batch {i} is gone")))?;
                Box::new(slices(batch, rows).map(Ok))
            }
            PieceKind::ArrowStream => {
                let reader = arrow_ipc::reader::StreamReader::try_new(
                    BufReader::new(open(&piece.path, &shown)?),
                    None,
                )
                .map_err(|e| arrow_error(&shown, e))?;
                let s = shown.clone();
                Box::new(
                    reader.flat_map(move |b| -> Box<dyn Iterator<Item = _> + Send> {
                        match b {
                            Ok(b) => Box::new(slices(b, rows).map(Ok)),
                            Err(e) => Box::new(std::iter::once(Err(arrow_error(&s, e)))),
                        }
                    }),
                )
            }
            PieceKind::Csv => Box::new(
                crate::source::csv_batches_as(
                    &piece.path,
                    &shown,
                    rows,
                    piece.csv_schema.as_ref(),
                )?
                .map(|t| t.map(|t| t.batch)),
            ),
        };
    let mut at = piece.first_row as usize;
    Ok(Box::new(batches.map(move |b| {
        let batch = b?;
        let t = Table {
            name: shown.clone(),
            first_row: at,
            batch,
        };
        at += t.num_rows();
        Ok(t)
    })))
}

/// A record batch cut into slices of at most `rows` rows (no copy).
fn slices(
    batch: arrow_array::RecordBatch,
    rows: usize,
) -> impl Iterator<Item = arrow_array::RecordBatch> + Send {
    let n = batch.num_rows();
    (0..n)
        .step_by(rows)
        .map(move |s| batch.slice(s, rows.min(n - s)))
}
