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
