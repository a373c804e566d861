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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(url, e))?;
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
    let glob_at = key.find(['*', '?', '[']);
    // One object, unless the key is a prefix (`folder/`) or a glob.
    if glob_at.is_none() && !key.ends_with('/') && !key.is_empty() {
        match download(store, url, &ObjectPath::from(key), dir).await {
            Ok(local) => return Ok(local),
            Err(e) if !matches!(e, Fetch::NotFound) => return Err(e.into_error(url)),
            Err(_) => {} // maybe a folder: listed below
        }
    }
    let prefix = match glob_at {
        Some(i) => key[..i].rsplit_once('/').map_or("", |(p, _)| p),
        None => key.trim_end_matches('/'),
    };
    let pattern = glob_at
        .map(|_| glob::Pattern::new(key).map_err(|e| err(url, format!("bad glob pattern: {e}"))))
        .transpose()?;
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&ObjectPath::from(prefix)))
        .try_collect()
        .await
        .map_err(|e| err(url, e))?;
    let mut found = 0;
    for meta in listed {
        let name = meta.location.as_ref();
        if pattern.as_ref().is_some_and(|p| !p.matches(name)) {
            continue;
        }
        download(store, url, &meta.location, dir)
            .await
            .map_err(|e| e.into_error(url))?;
        found += 1;
    }
    if found == 0 {
        return Err(match pattern {
            Some(_) => DataError::NoMatch {
                pattern: url.to_string(),
            },
            None => err(url, "No such object or prefix"),
        });
    }
    Ok(dir.to_path_buf())
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
