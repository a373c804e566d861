//! Serving an axum router with the bounds `axum::serve` leaves out, for `weft worker`'s
//! control API and `weft serve`: a client gets [`Limits::header_timeout`] to send each
//! request's head (so idle and half-sent connections are closed, not kept for minutes), at
//! most [`Limits::max_connections`] are open at once (more are closed on arrival), and a
//! failing `accept` (out of file descriptors) backs off instead of spinning. Every
//! connection is a task, so idle ones never hold up a valid request.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long a client may take to send a request's head, and how many connections are open
/// at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router, limits: Limits) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                tracing::warn!("accept failed ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                "{} connections are open (the limit); closing a new one",
                limits.max_connections
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // The header timer runs whenever hyper waits for a request head: on a new
            // connection and between the requests of a kept-alive one.
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
}
