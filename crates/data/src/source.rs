//! Loading a `Source` into a `Table`: CSV, Parquet (file, folder or glob), builtin:iris, synthetic.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_csv::reader::{Format, ReaderBuilder};
use arrow_schema::{ArrowError, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weft_dsl::{Builtin, DataSpec, ImageSpec, Source};

use crate::error::{io_message, DataError};
use crate::synthetic::synthetic;
use crate::table::Table;

/// Fisher's Iris data (from scikit-learn's copy), with a header and species names.
pub(crate) const IRIS_CSV: &str = include_str!("iris.csv");

/// Loads the spec's data source. Relative paths resolve against `base_dir`, the spec file's
/// folder; messages name paths as the spec wrote them.
pub fn load_table(source: &Source, base_dir: &Path) -> Result<Table, DataError> {
    if let Some(url) = remote_path(source) {
        return with_spooled(url, source, |local, base| {
            let mut t = load_table(&local, base)?;
            t.name = url.to_string();
            Ok(t)
        });
    }
    match source {
        Source::Csv(path) => read_csv(&base_dir.join(path), path)
            .map_err(|e| e.with_resolved(path, &base_dir.join(path))),
        Source::Parquet(path) => read_parquet(base_dir, path),
        Source::Arrow(path) => crate::ipc::read_arrow(base_dir, path),
        Source::Builtin(Builtin::Iris) => csv_from_bytes(IRIS_CSV.as_bytes(), "iris"),
        Source::Synthetic(spec) => synthetic(spec),
        Source::Idx(idx) => crate::idx::read_idx(idx, base_dir),
        Source::ImageFolder(at) => crate::image_folder::read_image_folder(at, base_dir, None),
    }
}

/// An input `weft predict` reads whole rather than streams, if `path` is one: an IDX
/// images file (with the `labels-idx1` file beside it when there is one, so predict
/// reports the accuracy) or an image folder (its pictures sized to `image`, the model's).
pub fn read_whole_input(path: &Path, image: Option<ImageSpec>) -> Option<Result<Table, DataError>> {
    let at = path.display().to_string();
    if path.is_dir() && crate::image_folder::is_image_folder(path) {
        return Some(crate::image_folder::read_image_folder(
            &at,
            Path::new(""),
            image,
        ));
    }
    if crate::idx::is_idx(path) {
        let labels = crate::idx::labels_beside(path).map(|p| p.display().to_string());
        if let Some(l) = &labels {
            tracing::info!("{at}: the labels are read from {l}");
        }
        let source = weft_dsl::IdxSource { images: at, labels };
        return Some(crate::idx::read_idx(&source, Path::new("")));
    }
    None
}

/// [`load_table`] of a spec's data: an image folder's pictures are converted and resized
/// to `data.image`.
pub fn load_data(data: &DataSpec, base_dir: &Path) -> Result<Table, DataError> {
    match &data.source {
        Source::ImageFolder(at) => crate::image_folder::read_image_folder(at, base_dir, data.image),
        other => load_table(other, base_dir),
    }
}

/// The object-store URL a file source names, if it does (`s3://…`, `https://…`).
pub(crate) fn remote_path(source: &Source) -> Option<&str> {
    match source {
        Source::Csv(p) | Source::Parquet(p) | Source::Arrow(p) if is_remote(p) => Some(p),
        _ => None,
    }
}

/// Whether a path is an object-store URL (`s3`, `gs`, `az`, `abfs[s]`, `http[s]`).
pub fn is_remote(path: &str) -> bool {
    const SCHEMES: [&str; 9] = [
        "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "http", "https",
    ];
    path.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Spools a remote source's objects to a local folder and runs `read` on the same kind of
/// source there (the folder is removed afterwards).
pub(crate) fn with_spooled<T>(
    url: &str,
    source: &Source,
    read: impl FnOnce(Source, &Path) -> Result<T, DataError>,
) -> Result<T, DataError> {
    #[cfg(feature = "remote")]
    {
        let (_spooled, local, base) = spool_source(url, source)?;
        read(local, &base)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = (source, read);
        Err(DataError::Io {
            path: url.to_string(),
            message: "this build of weft reads no object stores (it was built without the `remote` feature)".into(),
        })
    }
}

/// Spools a remote source's objects to a local folder: the folder (removed when dropped),
/// the same kind of source naming the local copy, and the folder it is relative to.
#[cfg(feature = "remote")]
pub(crate) fn spool_source(
    url: &str,
    source: &Source,
) -> Result<(crate::remote::Spooled, Source, PathBuf), DataError> {
    let spooled = crate::remote::spool(url)?;
    let (base, name) = match (spooled.path.parent(), spooled.path.file_name()) {
        (Some(dir), Some(file)) if spooled.path.is_file() => {
            (dir.to_path_buf(), file.to_string_lossy().into_owned())
        }
        _ => (spooled.path.clone(), ".".to_string()),
    };
    let local = match source {
        Source::Csv(_) => Source::Csv(name),
        Source::Parquet(_) => Source::Parquet(name),
        _ => Source::Arrow(name),
    };
    Ok((spooled, local, base))
}

/// Reads a file in pieces of about `rows` rows, for `weft predict` on data of any size:
/// Parquet (a file, a folder of `.parquet` files or a glob) record batch by record batch,
/// CSV with every column read as text (the pipeline parses numbers as training did, so a
/// column's type is never guessed from a first part). Memory holds one piece at a time.
pub fn stream_table(
    path: &Path,
    rows: usize,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>>>, DataError> {
    let name = path.display().to_string();
    if is_remote(&name) {
        return stream_remote(&name, rows);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let rows = rows.max(1);
    match ext.as_deref() {
        Some("csv") => stream_csv(path, name, rows),
        Some("parquet" | "pq") => stream_parquet(&name, rows),
        Some(e) if crate::ipc::EXTENSIONS.contains(&e) => crate::ipc::stream_arrow(&name),
        _ if path.is_dir() || name.contains(['*', '?', '[']) => stream_parquet(&name, rows),
        _ if !path.exists() => Err(DataError::Io {
            path: name,
            message: "No such file or directory".into(),
        }),
        _ => Err(DataError::UnsupportedFile { path: name }),
    }
}

/// [`stream_table`] of an object-store URL: its objects are spooled to a local folder, which
/// lives as long as the pieces are read.
fn stream_remote(
    url: &str,
    rows: usize,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>>>, DataError> {
    #[cfg(feature = "remote")]
    {
        let spooled = crate::remote::spool(url)?;
        let pieces = stream_table(&spooled.path, rows)?;
        let url = url.to_string();
        // The folder goes when the last piece has been read (`spooled` moves in here).
        Ok(Box::new(pieces.map(move |t| {
            let _keep = &spooled;
            t.map(|mut t| {
                t.name = url.clone();
                t
            })
        })))
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = rows;
        Err(DataError::Io {
            path: url.to_string(),
            message: "this build of weft reads no object stores (it was built without the `remote` feature)".into(),
        })
    }
}

fn stream_csv(
    path: &Path,
    name: String,
    rows: usize,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>>>, DataError> {
    Ok(Box::new(csv_batches(path, &name, rows)?))
}

/// A CSV file in tables of `rows` rows with every column read as text, rows numbered from 0.
pub(crate) fn csv_batches(
    path: &Path,
    name: &str,
    rows: usize,
) -> Result<impl Iterator<Item = Result<Table, DataError>> + Send, DataError> {
    csv_batches_as(path, name, rows, None)
}

/// The types a table in memory gives a CSV file: arrow's inference over every row (read
/// through the line guard, a buffer at a time), and the rows it counted.
pub(crate) fn csv_types(path: &Path, name: &str) -> Result<(Schema, usize), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io {
        path: name.to_string(),
        message: io_message(&e),
    })?;
    let (schema, records) = Format::default()
        .with_header(true)
        .infer_schema(LineGuard::new(std::io::BufReader::new(file)), None)
        .map_err(|e| DataError::Csv {
            file: name.to_string(),
            message: strip_arrow_prefix(e),
        })?;
    if schema.fields().is_empty() {
        return Err(DataError::EmptyFile { file: name.into() });
    }
    check_unique_columns(&schema, name)?;
    Ok((schema, records))
}

/// [`csv_batches`] with the columns typed by `schema` (from [`csv_types`]) instead of text.
pub(crate) fn csv_batches_as(
    path: &Path,
    name: &str,
    rows: usize,
    typed: Option<&Schema>,
) -> Result<impl Iterator<Item = Result<Table, DataError>> + Send, DataError> {
    let name = name.to_string();
    let io = |e: std::io::Error| DataError::Io {
        path: name.clone(),
        message: io_message(&e),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let head = read_lines_bounded(std::fs::File::open(path).map_err(io)?, &name, 1 << 20)?;
    let header = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let (schema, _) = Format::default()
        .with_header(true)
        .infer_schema(Cursor::new(header.to_vec()), Some(0))
        .map_err(|e| DataError::Csv {
            file: name.clone(),
            message: strip_arrow_prefix(e),
        })?;
    if schema.fields().is_empty() {
        return Err(DataError::EmptyFile { file: name });
    }
    check_unique_columns(&schema, &name)?;
    let text = match typed {
        Some(t) => Arc::new(t.clone()),
        None => Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), arrow_schema::DataType::Utf8, true))
                .collect::<Vec<_>>(),
        )),
    };
    let reader = ReaderBuilder::new(text)
        .with_header(true)
        .with_batch_size(rows)
        .build(LineGuard::new(std::io::BufReader::new(file)))
        .map_err(|e| DataError::Csv {
            file: name.clone(),
            message: strip_arrow_prefix(e),
        })?;
    let mut first_row = 0;
    Ok(reader.map(move |b| {
        let batch = b.map_err(|e| DataError::Csv {
            file: name.clone(),
            message: strip_arrow_prefix(e),
        })?;
        let t = Table {
            name: name.clone(),
            first_row,
            batch,
        };
        first_row += t.num_rows();
        Ok(t)
    }))
}

fn stream_parquet(
    spec_path: &str,
    rows: usize,
) -> Result<Box<dyn Iterator<Item = Result<Table, DataError>>>, DataError> {
    let files = parquet_files(Path::new(""), spec_path)?;
    // Rows are counted over every file, so messages name the row of the whole data set.
    let counted = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let parts = files.into_iter().map(move |(path, shown)| {
        let file = std::fs::File::open(&path).map_err(|e| DataError::Io {
            path: shown.clone(),
            message: io_message(&e),
        })?;
        let parquet_error = |message: String| DataError::Parquet {
            file: shown.clone(),
            message,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| parquet_error(e.to_string()))?
            .with_batch_size(rows)
            .build()
            .map_err(|e| parquet_error(e.to_string()))?;
        Ok((reader, shown))
    });
    Ok(Box::new(parts.flat_map(
        move |part| -> Box<dyn Iterator<Item = Result<Table, DataError>>> {
            match part {
                Err(e) => Box::new(std::iter::once(Err(e))),
                Ok((reader, shown)) => Box::new(counted_pieces(
                    reader,
                    shown,
                    counted.clone(),
                    |file, message| DataError::Parquet { file, message },
                )),
            }
        },
    )))
}

/// One file's record batches as pieces named `shown`, their rows counted on `counted` (shared
/// by every file of a source, so rows are numbered over all of them); `error` words a batch
/// that cannot be read.
pub(crate) fn counted_pieces(
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    shown: String,
    counted: std::rc::Rc<std::cell::Cell<usize>>,
    error: fn(String, String) -> DataError,
) -> impl Iterator<Item = Result<Table, DataError>> {
    batches.map(move |b| {
        let batch = b.map_err(|e| error(shown.clone(), strip_arrow_prefix(e)))?;
        let t = Table {
            name: shown.clone(),
            first_row: counted.get(),
            batch,
        };
        counted.set(t.first_row + t.num_rows());
        Ok(t)
    })
}

/// A reader that refuses a line longer than [`MAX_CSV_LINE`] (a file without line ends is
/// not read into memory whole).
struct LineGuard<R> {
    inner: R,
    line: usize,
}

impl<R> LineGuard<R> {
    fn new(inner: R) -> LineGuard<R> {
        LineGuard { inner, line: 0 }
    }
}

impl<R: std::io::Read> std::io::Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.line = match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(i) => n - 1 - i,
            None => self.line + n,
        };
        if self.line > MAX_CSV_LINE {
            return Err(std::io::Error::other(format!(
                "a line is longer than {} MiB; is this a CSV file?",
                MAX_CSV_LINE >> 20
            )));
        }
        Ok(n)
    }
}

/// Reads one file chosen by its extension (`.csv`, `.parquet`/`.pq`), or a folder of
/// Parquet files: the input of `weft predict --input FILE`.
pub fn read_table(path: &Path) -> Result<Table, DataError> {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        // Every column as text, as `predict` streams it: the pipeline parses what it fitted
        // as numbers, and text (`02139`) keeps its characters.
        Some("csv") => {
            let pieces = stream_csv(path, name.clone(), 1 << 16)?.collect::<Result<Vec<_>, _>>()?;
            let Some(first) = pieces.first() else {
                return Err(DataError::NoRows { file: name });
            };
            let schema = first.batch.schema();
            let batches: Vec<RecordBatch> = pieces.into_iter().map(|t| t.batch).collect();
            let batch = arrow_select::concat::concat_batches(&schema, &batches)
                .map_err(|e| DataError::Internal(format!("joining the pieces: {e}")))?;
            Ok(Table::new(name, batch))
        }
        Some("parquet" | "pq") => read_parquet(Path::new(""), &name),
        Some(e) if crate::ipc::EXTENSIONS.contains(&e) => {
            crate::ipc::read_arrow(Path::new(""), &name)
        }
        _ if path.is_dir() => read_parquet(Path::new(""), &name),
        _ if !path.exists() => Err(DataError::Io {
            path: name,
            message: "No such file or directory".into(),
        }),
        _ => Err(DataError::UnsupportedFile { path: name }),
    }
}

fn read_csv(path: &Path, name: &str) -> Result<Table, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io {
        path: name.to_string(),
        message: io_message(&e),
    })?;
    let bytes = read_lines_bounded(file, name, usize::MAX)?;
    csv_from_bytes(&bytes, name)
}

/// The longest line a CSV file may have: a file without line ends (a binary file,
/// `/dev/zero`) is refused once this much is read, not read into memory whole.
pub(crate) const MAX_CSV_LINE: usize = 64 << 20;

/// Reads text up to `limit` bytes (cut at the last line end when the limit is reached),
/// refusing a line longer than [`MAX_CSV_LINE`] and memory that cannot be had.
pub(crate) fn read_lines_bounded(
    mut r: impl std::io::Read,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, DataError> {
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut line_len = 0usize;
    while out.len() < limit {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DataError::Io {
                    path: name.into(),
                    message: io_message(&e),
                })
            }
        };
        let chunk = &buf[..n];
        line_len = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(i) => n - 1 - i,
            None => line_len + n,
        };
        if line_len > MAX_CSV_LINE {
            let line = out.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(DataError::Csv {
                file: name.into(),
                message: format!(
                    "line {line} is longer than {} MiB without a line end; is this a CSV file?",
                    MAX_CSV_LINE >> 20
                ),
            });
        }
        out.try_reserve(n).map_err(|_| DataError::Io {
            path: name.into(),
            message: format!("not enough memory to hold its {} bytes", out.len() + n),
        })?;
        out.extend_from_slice(chunk);
    }
    if out.len() >= limit {
        let Some(end) = out.iter().rposition(|&b| b == b'\n') else {
            return Err(DataError::Csv {
                file: name.into(),
                message: format!(
                    "no line ends in its first {} MiB; is this a CSV file?",
                    limit >> 20
                ),
            });
        };
        out.truncate(end + 1);
    }
    Ok(out)
}

/// Parses CSV text with a header row, inferring column types from every row.
fn csv_from_bytes(bytes: &[u8], name: &str) -> Result<Table, DataError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DataError::EmptyFile { file: name.into() });
    }
    let csv_error = |e: ArrowError| DataError::Csv {
        file: name.into(),
        message: strip_arrow_prefix(e),
    };
    let format = Format::default().with_header(true);
    let (schema, records) = format
        .infer_schema(Cursor::new(bytes), None)
        .map_err(csv_error)?;
    if records == 0 {
        return Err(DataError::NoRows { file: name.into() });
    }
    check_unique_columns(&schema, name)?;
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(Cursor::new(bytes))
        .map_err(csv_error)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(csv_error)?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(csv_error)?;
    Ok(Table::new(name, batch))
}

/// Errors when two columns share a name (1-based column numbers in the message).
pub(crate) fn check_unique_columns(schema: &Schema, file: &str) -> Result<(), DataError> {
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    for (j, name) in names.iter().enumerate() {
        if let Some(i) = names[..j].iter().position(|n| n == name) {
            return Err(DataError::DuplicateColumn {
                file: file.into(),
                column: name.to_string(),
                first: i + 1,
                second: j + 1,
            });
        }
    }
    Ok(())
}

/// A Parquet file, every `*.parquet` file of a folder (sorted by name), or a glob.
fn read_parquet(base_dir: &Path, spec_path: &str) -> Result<Table, DataError> {
    parquet_files(base_dir, spec_path)
        .and_then(|files| read_parquet_files(&files, spec_path))
        .map_err(|e| e.with_resolved(spec_path, &base_dir.join(spec_path)))
}

/// The Parquet files a spec path names, with the path each is shown by: a file, every
/// `*.parquet` file of a folder (sorted by name), or a glob's matches.
pub(crate) fn parquet_files(
    base_dir: &Path,
    spec_path: &str,
) -> Result<Vec<(PathBuf, String)>, DataError> {
    data_files(base_dir, spec_path, &["parquet"])
}

/// The files of one format a spec path names: the file, every file of a folder with one of
/// `exts` (sorted by name), or a glob's matches.
pub(crate) fn data_files(
    base_dir: &Path,
    spec_path: &str,
    exts: &[&'static str],
) -> Result<Vec<(PathBuf, String)>, DataError> {
    let full = base_dir.join(spec_path);
    let files: Vec<(PathBuf, String)> = if spec_path.contains(['*', '?', '[']) {
        let pattern = full.to_string_lossy().into_owned();
        let paths = glob::glob(&pattern).map_err(|e| DataError::Parquet {
            file: spec_path.into(),
            message: format!("bad glob pattern: {e}"),
        })?;
        let mut found = Vec::new();
        for entry in paths {
            let path = entry.map_err(|e| DataError::Io {
                path: e.path().display().to_string(),
                message: io_message(e.error()),
            })?;
            if path.is_file() {
                let shown = shown_path(base_dir, &path);
                found.push((path, shown));
            }
        }
        if found.is_empty() {
            return Err(DataError::NoMatch {
                pattern: spec_path.into(),
            });
        }
        found.sort();
        found
    } else if full.is_dir() {
        let entries = std::fs::read_dir(&full).map_err(|e| DataError::Io {
            path: spec_path.into(),
            message: io_message(&e),
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| DataError::Io {
                    path: spec_path.into(),
                    message: io_message(&e),
                })?
                .path();
            if path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            {
                let shown = shown_path(base_dir, &path);
                found.push((path, shown));
            }
        }
        if found.is_empty() {
            return Err(DataError::EmptyFolder {
                path: spec_path.into(),
                ext: exts.first().map_or("data", |e| match *e {
                    "parquet" => ".parquet",
                    _ => "Arrow IPC (.arrow, .feather, .ipc)",
                }),
            });
        }
        found.sort();
        found
    } else {
        vec![(full, spec_path.to_string())]
    };
    Ok(files)
}

fn read_parquet_files(files: &[(PathBuf, String)], spec_path: &str) -> Result<Table, DataError> {
    read_parts(files, spec_path, read_parquet_file)
}

/// Reads one part of a source whole: its schema and batches.
pub(crate) type ReadPart = fn(&Path, &str) -> Result<(SchemaRef, Vec<RecordBatch>), DataError>;

/// Every part read whole (`read`), checked to share one schema, joined into one table.
pub(crate) fn read_parts(
    files: &[(PathBuf, String)],
    spec_path: &str,
    read: ReadPart,
) -> Result<Table, DataError> {
    let mut schema: Option<(SchemaRef, String)> = None;
    let mut batches = Vec::new();
    for (path, shown) in files {
        let (file_schema, file_batches) = read(path, shown)?;
        match &schema {
            None => schema = Some((loose(&file_schema), shown.clone())),
            Some((first, first_name)) => {
                if let Some(detail) = schema_difference(first, &file_schema) {
                    return Err(DataError::SchemaMismatch {
                        file: shown.clone(),
                        first: first_name.clone(),
                        detail,
                    });
                }
            }
        }
        batches.extend(file_batches);
    }
    let Some((schema, _)) = schema else {
        return Err(DataError::Internal("no data file was read".into()));
    };
    let internal = |e: ArrowError| DataError::Internal(format!("joining the parts: {e}"));
    // Parts may differ in nullability and metadata; re-label each with the common schema.
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(internal)?;
    if batch.num_rows() == 0 {
        return Err(DataError::EmptyTable {
            file: spec_path.into(),
        });
    }
    Ok(Table::new(spec_path, batch))
}

fn read_parquet_file(path: &Path, shown: &str) -> Result<(SchemaRef, Vec<RecordBatch>), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::Io {
        path: shown.into(),
        message: io_message(&e),
    })?;
    let parquet_error = |message: String| DataError::Parquet {
        file: shown.into(),
        message,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(e.to_string()))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| parquet_error(e.to_string()))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet_error(strip_arrow_prefix(e)))?;
    Ok((schema, batches))
}

/// The schema with every field nullable and no metadata, shared by all parts.
pub(crate) fn loose(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), f.data_type().clone(), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// How `other` differs from `first` in column names, order or types, if it does.
pub(crate) fn schema_difference(first: &Schema, other: &Schema) -> Option<String> {
    let names =
        |s: &Schema| -> Vec<String> { s.fields().iter().map(|f| f.name().clone()).collect() };
    let (a, b) = (names(first), names(other));
    if a != b {
        return Some(format!(
            "columns [{}] instead of [{}]",
            b.join(", "),
            a.join(", ")
        ));
    }
    first
        .fields()
        .iter()
        .zip(other.fields())
        .find(|(x, y)| x.data_type() != y.data_type())
        .map(|(x, y)| {
            format!(
                "column `{}` is {} instead of {}",
                x.name(),
                y.data_type(),
                x.data_type()
            )
        })
}

/// A path relative to the spec's folder, as the user would write it.
fn shown_path(base_dir: &Path, path: &Path) -> String {
    path.strip_prefix(base_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

pub(crate) fn strip_arrow_prefix(e: ArrowError) -> String {
    match e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) | ArrowError::ParquetError(m) => m,
        other => other.to_string(),
    }
}
