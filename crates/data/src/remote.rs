//! Data in object stores: `s3://`, `gs://`, `az://` (and `abfs[s]://`), `http(s)://` URLs
//! through the `object_store` crate, with credentials from the environment as the
//! AWS/GCP/Azure SDKs read them (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_ACCOUNT_NAME`…). The objects a URL names
//! (one object, every object under a `folder/` prefix, or a glob in the key) are spooled to
//! a local folder, a chunk at a time, and read from there as local files are; the folder is
//! removed when the reading is done. Feature `remote` (the CLI turns it on).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

use crate::error::DataError;

/// The objects of a URL, spooled to a local folder that is removed when this is dropped.
pub struct Spooled {
    /// The local path that names them as the URL did: a file, or a folder of files.
    pub path: PathBuf,
    dir: PathBuf,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn err(url: &str, message: impl std::fmt::Display) -> DataError {
    DataError::Io {
        path: url.to_string(),
        message: message.to_string(),
    }
}

/// The runtime the object-store calls run on (this crate is synchronous).
fn runtime(url: &str) -> Result<tokio::runtime::Runtime, DataError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(url, e))
}

/// The store of a URL and the key part of it.
fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, String), DataError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    let store: Arc<dyn ObjectStore> = match scheme.as_str() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(url, e))?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(url, e))?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| err(url, e))?,
        ),
        _ => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(format!("{scheme}://{authority}"))
                // Plain http (a worker serving the rows it holds, a server on a private
                // network) is allowed when the URL says so.
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(scheme == "http"),
                )
                .build()
                .map_err(|e| err(url, e))?,
        ),
    };
    Ok((store, key.to_string()))
}

/// Spools the objects `url` names to a new local folder.
pub fn spool(url: &str) -> Result<Spooled, DataError> {
    let (store, key) = open(url)?;
    let dir = std::env::temp_dir().join(format!(
        "weft-remote-{}-{}",
        std::process::id(),
        SPOOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| err(&dir.display().to_string(), e))?;
    let spooled = Spooled {
        path: dir.clone(),
        dir: dir.clone(),
    };
    let runtime = runtime(url)?;
    let mut spooled = spooled;
    // On an error, dropping `spooled` removes what was spooled so far.
    spooled.path = runtime.block_on(fetch(&*store, url, &key, &dir))?;
    Ok(spooled)
}

static SPOOLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn fetch(
    store: &dyn ObjectStore,
    url: &str,
    key: &str,
    dir: &Path,
) -> Result<PathBuf, DataError> {
    // One object, or every object of a prefix or glob (listed as `objects` lists them).
    let all = objects(store, url, key).await?;
    let single = all.len() == 1 && all[0].location.as_ref() == key;
    for meta in &all {
        download(store, url, &meta.location, dir)
            .await
            .map_err(|e| e.into_error(url))?;
    }
    Ok(match single {
        true => dir.join(all[0].location.filename().unwrap_or("object")),
        false => dir.to_path_buf(),
    })
}

enum Fetch {
    NotFound,
    Failed(String),
}

impl Fetch {
    fn into_error(self, url: &str) -> DataError {
        match self {
            Fetch::NotFound => err(url, "No such object"),
            Fetch::Failed(m) => err(url, m),
        }
    }
}

/// Writes one object to `dir/<its name>`, a chunk at a time.
async fn download(
    store: &dyn ObjectStore,
    url: &str,
    key: &ObjectPath,
    dir: &Path,
) -> Result<PathBuf, Fetch> {
    let got = store.get(key).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => Fetch::NotFound,
        other => Fetch::Failed(other.to_string()),
    })?;
    let name = key.filename().unwrap_or("object");
    let local = dir.join(name);
    let failed =
        |e: std::io::Error| Fetch::Failed(format!("spooling {url} to {}: {e}", local.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&local).map_err(failed)?);
    let mut chunks = got.into_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Fetch::Failed(e.to_string()))?;
        file.write_all(&chunk).map_err(failed)?;
    }
    file.flush().map_err(failed)?;
    Ok(local)
}

/// The objects a URL names, listed (not fetched): one object, a prefix, or a glob.
async fn objects(
    store: &dyn ObjectStore,
    url: &str,
    key: &str,
) -> Result<Vec<object_store::ObjectMeta>, DataError> {
    let glob_at = key.find(['*', '?', '[']);
    if glob_at.is_none() && !key.ends_with('/') && !key.is_empty() {
        match store.head(&ObjectPath::from(key)).await {
            Ok(meta) => return Ok(vec![meta]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(url, e)),
        }
    }
    let prefix = match glob_at {
        Some(i) => key[..i].rsplit_once('/').map_or("", |(p, _)| p),
        None => key.trim_end_matches('/'),
    };
    let pattern = glob_at
        .map(|_| glob::Pattern::new(key).map_err(|e| err(url, format!("bad glob pattern: {e}"))))
        .transpose()?;
    let mut listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&ObjectPath::from(prefix)))
        .try_collect()
        .await
        .map_err(|e| err(url, e))?;
    listed.retain(|m| {
        pattern
            .as_ref()
            .is_none_or(|p| p.matches(m.location.as_ref()))
    });
    listed.sort_by(|a, b| a.location.cmp(&b.location));
    if listed.is_empty() {
        return Err(match pattern {
            Some(_) => DataError::NoMatch {
                pattern: url.to_string(),
            },
            None => err(url, "No such object or prefix"),
        });
    }
    Ok(listed)
}

/// The schema of a remote source from ranged reads only: Parquet footers (with their row
/// counts), a CSV's first 16 MiB, an Arrow file's header. `weft check` and `weft plan` on a
/// large object do not fetch it.
pub fn read_schema(url: &str, source: &weft_dsl::Source) -> Result<crate::TableSchema, DataError> {
    use weft_dsl::Source;
    let (store, key) = open(url)?;
    let runtime = runtime(url)?;
    runtime.block_on(async {
        let all = objects(&*store, url, &key).await?;
        let range = |m: &object_store::ObjectMeta, r: std::ops::Range<u64>| {
            let (store, loc) = (store.clone(), m.location.clone());
            async move { store.get_range(&loc, r).await.map_err(|e| err(url, e)) }
        };
        match source {
            Source::Parquet(_) => {
                let mut rows = 0u64;
                let mut first: Option<arrow_schema::SchemaRef> = None;
                for m in all
                    .iter()
                    .filter(|m| m.location.as_ref().ends_with(".parquet") || all.len() == 1)
                {
                    let size = m.size;
                    if size < 8 {
                        return Err(err(url, format!("{} is not a Parquet file", m.location)));
                    }
                    let tail = range(m, size - 8..size).await?;
                    let footer = parquet::file::metadata::FooterTail::try_from(&tail[..])
                        .map_err(|e| err(url, format!("{}: {e}", m.location)))?;
                    let len = footer.metadata_length() as u64;
                    let meta_bytes = range(m, size.saturating_sub(8 + len)..size - 8).await?;
                    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(
                        &meta_bytes,
                    )
                    .map_err(|e| err(url, format!("{}: {e}", m.location)))?;
                    let fm = meta.file_metadata();
                    rows += u64::try_from(fm.num_rows()).unwrap_or(0);
                    let schema = parquet::arrow::parquet_to_arrow_schema(
                        fm.schema_descr(),
                        fm.key_value_metadata(),
                    )
                    .map_err(|e| err(url, format!("{}: {e}", m.location)))?;
                    first.get_or_insert_with(|| crate::source::loose(&schema));
                }
                let schema = first.ok_or_else(|| err(url, "no .parquet objects"))?;
                crate::source::check_unique_columns(&schema, url)?;
                Ok(crate::TableSchema {
                    name: url.to_string(),
                    schema,
                    rows: Some(rows),
                    classes: None,
                })
            }
            Source::Arrow(_) => {
                let m = &all[0];
                let head = range(m, 0..m.size.min(4 << 20)).await?;
                // The file format starts with `ARROW1` and two bytes of padding, then a stream.
                let body = if head.starts_with(b"ARROW1") && head.len() >= 8 {
                    head.slice(8..)
                } else {
                    head
                };
                let reader =
                    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                        .map_err(|e| {
                            err(
                                url,
                                format!("{}: not a readable Arrow IPC header: {e}", m.location),
                            )
                        })?;
                let schema = reader.schema();
                crate::source::check_unique_columns(&schema, url)?;
                Ok(crate::TableSchema {
                    name: url.to_string(),
                    schema: crate::source::loose(&schema),
                    rows: None,
                    classes: None,
                })
            }
            _ => {
                let m = &all[0];
                let head = range(m, 0..m.size.min(16 << 20)).await?;
                let text = crate::source::read_lines_bounded(&head[..], url, 16 << 20)?;
                let mut s = crate::schema::csv_schema(std::io::Cursor::new(text), url)?;
                s.name = url.to_string();
                Ok(s)
            }
        }
    })
}

/// The URL of an object of the store `url` is in.
fn object_url(url: &str, location: &ObjectPath) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    format!("{scheme}://{authority}/{location}")
}

/// A Parquet object's footer metadata, from two ranged reads (its last 8 bytes, then the
/// metadata they give the length of): the footer bytes and where they start.
async fn footer(
    store: &dyn ObjectStore,
    url: &str,
    location: &ObjectPath,
    size: u64,
) -> Result<(u64, bytes::Bytes, parquet::file::metadata::ParquetMetaData), DataError> {
    if size < 8 {
        return Err(err(url, format!("{location} is not a Parquet file")));
    }
    let tail = store
        .get_range(location, size - 8..size)
        .await
        .map_err(|e| err(url, e))?;
    let footer = parquet::file::metadata::FooterTail::try_from(&tail[..])
        .map_err(|e| err(url, format!("{location}: {e}")))?;
    let start = size.saturating_sub(8 + footer.metadata_length() as u64);
    let bytes = store
        .get_range(location, start..size)
        .await
        .map_err(|e| err(url, e))?;
    let meta =
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&bytes[..bytes.len() - 8])
            .map_err(|e| err(url, format!("{location}: {e}")))?;
    Ok((start, bytes, meta))
}

/// The pieces of a remote Parquet source, one per row group of each object, from the
/// objects' footers alone: they are read later with ranged reads (see [`read_row_group`]),
/// by whichever process trains on them.
pub(crate) fn parquet_pieces(url: &str) -> Result<Vec<crate::stream::Piece>, DataError> {
    let (store, key) = open(url)?;
    runtime(url)?.block_on(async {
        let mut pieces = Vec::new();
        let all = objects(&*store, url, &key).await?;
        for m in all
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet") || all.len() == 1)
        {
            let (_, _, meta) = footer(&*store, url, &m.location, m.size).await?;
            let object = object_url(url, &m.location);
            for (i, rg) in meta.row_groups().iter().enumerate() {
                pieces.push(crate::stream::Piece {
                    path: PathBuf::new(),
                    shown: object.clone(),
                    kind: crate::stream::PieceKind::ParquetRowGroup(i),
                    first_row: 0,
                    rows: u64::try_from(rg.num_rows()).unwrap_or(0),
                    bytes: u64::try_from(rg.compressed_size()).unwrap_or(0),
                    url: Some(object.clone()),
                    csv_schema: None,
                    holder: None,
                });
            }
        }
        Ok(pieces)
    })
}

/// Row group `rg` of the Parquet object `url` (its columns `columns` only), fetched with
/// ranged reads: the footer, then the column chunks; memory holds that much of the object.
pub(crate) fn read_row_group(
    url: &str,
    rg: usize,
    columns: &[String],
    rows: usize,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, DataError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (store, key) = open(url)?;
    let location = ObjectPath::from(key);
    let file = runtime(url)?.block_on(async {
        let size = store.head(&location).await.map_err(|e| err(url, e))?.size;
        let (start, tail, meta) = footer(&*store, url, &location, size).await?;
        let group = meta
            .row_groups()
            .get(rg)
            .ok_or_else(|| err(url, format!("{location} has no row group {rg}")))?;
        let schema = parquet::arrow::parquet_to_arrow_schema(
            meta.file_metadata().schema_descr(),
            meta.file_metadata().key_value_metadata(),
        )
        .map_err(|e| err(url, format!("{location}: {e}")))?;
        // The chunks of every leaf column under the wanted fields.
        let roots: Vec<usize> = columns
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .collect();
        let descr = meta.file_metadata().schema_descr();
        let ranges: Vec<std::ops::Range<u64>> = (0..group.num_columns())
            .filter(|&leaf| roots.contains(&descr.get_column_root_idx(leaf)))
            .map(|leaf| {
                let (at, len) = group.column(leaf).byte_range();
                at..at + len
            })
            .collect();
        let chunks = store
            .get_ranges(&location, &ranges)
            .await
            .map_err(|e| err(url, e))?;
        let mut parts: Vec<(u64, bytes::Bytes)> =
            ranges.iter().map(|r| r.start).zip(chunks).collect();
        parts.push((start, tail));
        Ok::<_, DataError>(Ranged { len: size, parts })
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(url, format!("{location}: {e}")))?;
    let roots: Vec<usize> = columns
        .iter()
        .filter_map(|c| builder.schema().index_of(c).ok())
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_row_groups(vec![rg])
        .with_projection(mask)
        .with_batch_size(rows.max(1))
        .build()
        .map_err(|e| err(url, format!("{location}: {e}")))
}

/// The parts of an object that were fetched, read as a Parquet file: the footer and the
/// column chunks of one row group. Reading anywhere else is an error (a bug: the reader
/// asked for a range the footer did not name).
struct Ranged {
    len: u64,
    parts: Vec<(u64, bytes::Bytes)>,
}

impl Ranged {
    fn at(&self, start: u64, len: Option<usize>) -> parquet::errors::Result<bytes::Bytes> {
        for (at, b) in &self.parts {
            let end = at + b.len() as u64;
            // Parts may touch (one column chunk ends where the next begins): a read from
            // `start` belongs to the part that has bytes there.
            if *at <= start && (start < end || (start == end && len == Some(0))) {
                let from = (start - at) as usize;
                let to = match len {
                    Some(l) if from + l <= b.len() => from + l,
                    Some(_) => continue,
                    None => b.len(),
                };
                return Ok(b.slice(from..to));
            }
        }
        Err(parquet::errors::ParquetError::General(format!(
            "bytes {start}.. of the object were not fetched"
        )))
    }
}

impl parquet::file::reader::Length for Ranged {
    fn len(&self) -> u64 {
        self.len
    }
}

impl parquet::file::reader::ChunkReader for Ranged {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.at(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.at(start, Some(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_group_reads_from_its_footer_and_column_chunks_alone() {
        use arrow_array::{Float32Array, Int64Array, RecordBatch};
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Float32Array::from(vec![1.0f32; 1000])) as _),
            ("b", Arc::new(Int64Array::from(vec![7i64; 1000])) as _),
            ("c", Arc::new(Float32Array::from(vec![2.0f32; 1000])) as _),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .build();
        let mut bytes = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))
            .unwrap_or_else(|e| panic!("{e}"));
        w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        w.close().unwrap_or_else(|e| panic!("{e}"));
        let all = bytes::Bytes::from(bytes);
        let size = all.len() as u64;
        let tail = parquet::file::metadata::FooterTail::try_from(&all[all.len() - 8..])
            .unwrap_or_else(|e| panic!("{e}"));
        let start = size - 8 - tail.metadata_length() as u64;
        let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(
            &all[start as usize..all.len() - 8],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let group = &meta.row_groups()[2];
        // Columns 0 and 1 are neighbours (their chunks touch); 2 is not read.
        let mut parts: Vec<(u64, bytes::Bytes)> = [0usize, 1]
            .iter()
            .map(|&i| {
                let (at, len) = group.column(i).byte_range();
                (at, all.slice(at as usize..(at + len) as usize))
            })
            .collect();
        parts.push((start, all.slice(start as usize..)));
        let file = Ranged { len: size, parts };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{e}"));
        let mask = parquet::arrow::ProjectionMask::roots(reader.parquet_schema(), [0, 1]);
        let batches: Vec<RecordBatch> = reader
            .with_row_groups(vec![2])
            .with_projection(mask)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 300);
        assert_eq!(batches[0].num_columns(), 2);
    }
}
