//! Rows held by the workers: a launcher that has the data where the workers run (a Spark
//! task has its partition) hands each worker its rows, and no process ever holds them all.
//!
//! Each worker spools the Arrow IPC stream it is handed ([`spool_ipc_stream`]) to a local
//! Parquet file and serves it over its control API; the driver prepares the data set from
//! those files with ranged reads ([`prepare_held`]: Parquet, so each pass fetches only the
//! columns it reads), and each worker trains on the pieces it holds.

use std::io::Read;
use std::path::Path;

use arrow_ipc::reader::StreamReader;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::{io_message, DataError};
use crate::source::strip_arrow_prefix;

/// Rows per row group of a spooled file (the unit the driver fetches and shuffles by).
const SPOOL_GROUP_ROWS: usize = 65_536;

/// Writes the Arrow IPC stream `input` (up to its end-of-stream marker; nothing after it is
/// read) to a Parquet file at `path`, a batch at a time; returns its rows. The file appears
/// whole or not at all.
pub fn spool_ipc_stream(input: &mut impl Read, path: &Path, shown: &str) -> Result<u64, DataError> {
    let bad = |e: arrow_schema::ArrowError| DataError::Csv {
        file: shown.into(),
        message: format!("not a readable Arrow IPC stream: {}", strip_arrow_prefix(e)),
    };
    let io = |e: std::io::Error| DataError::Io {
        path: path.display().to_string(),
        message: io_message(&e),
    };
    let parquet = |e: parquet::errors::ParquetError| DataError::Parquet {
        file: path.display().to_string(),
        message: e.to_string(),
    };
    // No buffering of our own: the reader must stop at the end-of-stream marker, so the
    // caller can go on reading `input` (a Spark task's stdin stays open until it ends).
    let reader = StreamReader::try_new(input, None).map_err(bad)?;
    let partial = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&partial).map_err(io)?;
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(SPOOL_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, reader.schema(), Some(props)).map_err(parquet)?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(bad)?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(rows)
}

/// Prepares a data set whose rows the workers hold: `shards` are (rank, URL of the Parquet
/// file that rank spooled), as the workers serve them. Pieces are numbered in rank order,
/// so the split of a row depends on where it is, as for files.
#[cfg(feature = "remote")]
pub fn prepare_held(
    spec: &weft_dsl::DataSpec,
    shards: &[(usize, String)],
    seed: u64,
    task: weft_common::TaskKind,
) -> Result<super::StreamSet, DataError> {
    let first = shards.first().ok_or_else(|| DataError::NoRows {
        file: "the workers' rows".into(),
    })?;
    let schema = crate::remote::read_schema(&first.1, &weft_dsl::Source::Parquet(first.1.clone()))?;
    let mut pieces = Vec::new();
    for (rank, url) in shards {
        for mut p in crate::remote::parquet_pieces(url)? {
            p.holder = Some(*rank);
            p.shown = format!("rank {rank}'s rows");
            pieces.push(p);
        }
    }
    super::pieces::number(&mut pieces);
    let name = format!("the rows of {} workers", shards.len());
    super::prepare_pieces(
        spec,
        seed,
        task,
        super::CHUNK_ROWS,
        (name, schema, pieces, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, RecordBatch};
    use std::sync::Arc;

    #[test]
    fn a_stream_is_spooled_up_to_its_end_marker_and_no_further() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Float64,
            false,
        )]));
        let mut bytes = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema).unwrap();
            for k in 0..3 {
                let b = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Float64Array::from(vec![k as f64; 1000]))],
                )
                .unwrap();
                w.write(&b).unwrap();
            }
            w.finish().unwrap();
        }
        bytes.extend_from_slice(b"after the stream");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        let mut input = std::io::Cursor::new(bytes);
        assert_eq!(spool_ipc_stream(&mut input, &path, "stdin").unwrap(), 3000);
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "after the stream");
        let t = crate::read_table(&path).unwrap();
        assert_eq!(t.num_rows(), 3000);

        let e = spool_ipc_stream(
            &mut std::io::Cursor::new(b"not arrow".to_vec()),
            &path,
            "stdin",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("stdin") && e.contains("not a readable Arrow IPC stream"),
            "{e}"
        );
    }
}
