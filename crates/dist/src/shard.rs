//! The rows a worker holds (a Spark task's partition, handed over on its stdin and spooled
//! to a local Parquet file), served to the driver with HTTP range requests: the driver fits
//! the preprocessing and evaluates by ranged reads of the column chunks it needs, as it
//! reads Parquet in an object store (`object_store`'s HTTP client, HEAD then GET `Range`).
//!
//! The route is `/v1/shards/{id}.parquet` with a random 128-bit id: it needs no bearer
//! token (the object store client sends none), and only a holder of the token learns the
//! id (from the worker's registration with rank 0, over the token-checked data plane).

use std::path::PathBuf;

/// A spooled file of rows and the id it is served under.
#[derive(Debug, Clone)]
pub struct Shard {
    pub path: PathBuf,
    pub id: String,
}

impl Shard {
    /// A file to serve under a fresh random id.
    pub fn new(path: PathBuf) -> Shard {
        Shard {
            path,
            id: crate::frame::random_hex(16),
        }
    }

    /// The route it is served at.
    pub fn route(&self) -> String {
        format!("/v1/shards/{}.parquet", self.id)
    }
}

/// A byte range as a `Range` header asks for it, clipped to a file of `len` bytes:
/// `bytes=A-B` (inclusive), `bytes=A-`, `bytes=-N` (the last N).
pub fn byte_range(header: &str, len: u64) -> Option<std::ops::Range<u64>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // one range per request is what object stores send
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = match (a.is_empty(), b.is_empty()) {
        (true, false) => len.saturating_sub(b.parse().ok()?)..len,
        (false, true) => a.parse().ok()?..len,
        (false, false) => {
            let end: u64 = b.parse().ok()?;
            a.parse().ok()?..end.saturating_add(1).min(len)
        }
        (true, true) => return None,
    };
    (r.start < r.end || (r.start == 0 && len == 0)).then_some(r)
}

#[cfg(feature = "worker")]
pub(crate) use serve::router;

#[cfg(feature = "worker")]
mod serve {
    use std::io::{Read, Seek, SeekFrom};
    use std::sync::Arc;

    use axum::extract::{Path, State};
    use axum::http::{header, HeaderMap, Method, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;

    use super::{byte_range, Shard};

    /// The shard's route (none without a shard).
    pub(crate) fn router(shard: Option<Shard>) -> Router {
        Router::new()
            .route("/v1/shards/{file}", get(send).head(send))
            .with_state(Arc::new(shard))
    }

    async fn send(
        State(shard): State<Arc<Option<Shard>>>,
        Path(file): Path<String>,
        method: Method,
        headers: HeaderMap,
    ) -> Response {
        let Some(shard) = shard
            .as_ref()
            .as_ref()
            .filter(|s| file == format!("{}.parquet", s.id))
        else {
            return (StatusCode::NOT_FOUND, "no such shard").into_response();
        };
        let path = shard.path.clone();
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let head = method == Method::HEAD;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Response> {
            let mut f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            let (status, r) = match range.as_deref() {
                None => (StatusCode::OK, 0..len),
                Some(h) => match byte_range(h, len) {
                    Some(r) => (StatusCode::PARTIAL_CONTENT, r),
                    None => {
                        return Ok((
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                        )
                            .into_response())
                    }
                },
            };
            let mut body = Vec::new();
            if !head {
                f.seek(SeekFrom::Start(r.start))?;
                f.take(r.end - r.start).read_to_end(&mut body)?;
            }
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::ACCEPT_RANGES, "bytes".parse().expect("header"));
            h.insert(header::CONTENT_LENGTH, (r.end - r.start).into());
            if status == StatusCode::PARTIAL_CONTENT {
                let cr = format!("bytes {}-{}/{len}", r.start, r.end.max(1) - 1);
                h.insert(header::CONTENT_RANGE, cr.parse().expect("header"));
            }
            Ok(resp)
        })
        .await;
        match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_are_read_as_object_stores_send_them() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-8", 100), Some(92..100));
        assert_eq!(byte_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
