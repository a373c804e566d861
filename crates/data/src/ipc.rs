//! Arrow IPC sources (`data.source: {arrow: …}`): the file format (`.arrow`, Feather v2)
//! and the stream format (what Spark's `mapInArrow` and `pyarrow.ipc.new_stream` write),
//! told apart by the file's magic bytes; a file, a folder of them, or a glob.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::SchemaRef;

use crate::error::{io_message, DataError};
use crate::source::{counted_pieces, data_files, read_parts, strip_arrow_prefix};
use crate::table::Table;

/// The extensions of Arrow IPC files (in a folder, and for `weft predict --input`).
pub(crate) const EXTENSIONS: [&str; 3] = ["arrow", "feather", "ipc"];

/// The batches of an Arrow IPC file, in either format.
enum Batches {
    File(FileReader<BufReader<File>>),
    Stream(StreamReader<BufReader<File>>),
}

impl Batches {
    fn open(path: &Path, shown: &str) -> Result<Batches, DataError> {
        let io = |e: std::io::Error| DataError::Io {
            path: shown.into(),
            message: io_message(&e),
        };
        let mut file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 6];
        let is_file = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let bad = |e: arrow_schema::ArrowError| DataError::Csv {
            file: shown.into(),
            message: format!("not a readable Arrow IPC file: {}", strip_arrow_prefix(e)),
        };
        Ok(if is_file {
            Batches::File(FileReader::try_new(BufReader::new(file), None).map_err(bad)?)
        } else {
            Batches::Stream(StreamReader::try_new(BufReader::new(file), None).map_err(bad)?)
        })
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Batches::File(r) => r.schema(),
            Batches::Stream(r) => r.schema(),
        }
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, arrow_schema::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Batches::File(r) => r.next(),
            Batches::Stream(r) => r.next(),
        }
    }
}

fn read_file(path: &Path, shown: &str) -> Result<(SchemaRef, Vec<RecordBatch>), DataError> {
    let batches = Batches::open(path, shown)?;
    let schema = batches.schema();
    let all = batches
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DataError::Csv {
            file: shown.into(),
            message: strip_arrow_prefix(e),
        })?;
    Ok((schema, all))
}

/// Every part of an Arrow source, joined into one table.
pub(crate) fn read_arrow(base_dir: &Path, spec_path: &str) -> Result<Table, DataError> {
    data_files(base_dir, spec_path, &EXTENSIONS)
        .and_then(|files| read_parts(&files, spec_path, read_file))
        .map_err(|e| e.with_resolved(spec_path, &base_dir.join(spec_path)))
}

/// The schema of an Arrow source from its first part's header (its rows are not counted).
pub(crate) fn arrow_schema(base_dir: &Path, spec_path: &str) -> Result<SchemaRef, DataError> {
    let files = data_files(base_dir, spec_path, &EXTENSIONS)?;
    let (path, shown) = files
        .first()
        .ok_or_else(|| DataError::Internal("no Arrow file was found".into()))?;
    Ok(Batches::open(path, shown)?.schema())
}

/// The batches of an Arrow source as the writer wrote them, a piece each, with rows
/// counted over every part.
pub(crate) fn stream_arrow(
    spec_path: &str,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>>>, DataError> {
    let files = data_files(Path::new(""), spec_path, &EXTENSIONS)?;
    let counted = std::rc::Rc::new(std::cell::Cell::new(0usize));
    Ok(Box::new(files.into_iter().flat_map(
        move |(path, shown)| -> Box<dyn Iterator<Item = Result<Table, DataError>>> {
            match Batches::open(&path, &shown) {
                Err(e) => Box::new(std::iter::once(Err(e))),
                Ok(batches) => Box::new(counted_pieces(
                    batches,
                    shown,
                    counted.clone(),
                    |file, message| DataError::Csv { file, message },
                )),
            }
        },
    )))
}
