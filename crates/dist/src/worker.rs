//! `weft worker`: one worker process (one device). An HTTP control API (axum) takes jobs
//! from the driver and serves their events; a TCP data plane listener takes connections
//! from peers for collectives. Feature `worker` (the CLI turns it on; the notebook library
//! does without axum).
//!
//! Every request must carry `Authorization: Bearer <token>`; a missing or wrong token gets
//! 401 with a message saying so. Both listeners bind loopback unless told otherwise.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use weft_data::Dataset;

use crate::bench;
use crate::error::{DistError, Result};
use crate::frame::Hello;
use crate::http::Limits;
use crate::job::{self, Ctx, Event, Events};
use crate::protocol::{decode_job, JobHead, Started, Work};
use crate::transport::{accept_loop, same_token, Counters, Link};

/// A job's id, its events, and whether it has finished.
type Running = (String, Arc<Events>, Arc<std::sync::atomic::AtomicBool>);

struct App {
    token: String,
    data_addr: String,
    incoming: Mutex<Receiver<(Link, Hello)>>,
    counters: Arc<Counters>,
    /// The current (or last) job's events; `None` before the first job.
    job: Mutex<Option<Running>>,
}

type Reply = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, message: impl Into<String>) -> Reply {
    (status, Json(json!({ "error": message.into() })))
}

/// Checks the token before anything else happens, the request's body included (a caller
/// without the token cannot make the worker read or allocate anything).
async fn authorize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.trim().is_empty());
    match given {
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "no token given; set WEFT_TOKEN (or --token-file) to this worker's token",
        )
        .into_response(),
        Some(t) if !same_token(t, &app.token) => refuse(
            StatusCode::UNAUTHORIZED,
            "wrong token; WEFT_TOKEN (or --token-file) must match the worker's",
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

async fn health(State(app): State<Arc<App>>) -> Reply {
    let busy = app
        .job
        .lock()
        .ok()
        .and_then(|j| j.as_ref().map(|(_, _, done)| !done.load(Ordering::Relaxed)))
        .unwrap_or(false);
    (
        StatusCode::OK,
        Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "data_addr": app.data_addr,
            "pid": std::process::id(),
            "busy": busy,
        })),
    )
}

async fn start(State(app): State<Arc<App>>, body: Bytes) -> Reply {
    let (head, train, validation) = match decode_job(&body) {
        Ok(j) => j,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let Ok(mut slot) = app.job.lock() else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "worker state poisoned");
    };
    if let Some((id, _, done)) = slot.as_ref() {
        if !done.load(Ordering::Relaxed) {
            return refuse(
                StatusCode::CONFLICT,
                format!("this worker is busy with job {id}"),
            );
        }
    }
    let events = Arc::new(Events::default());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    *slot = Some((head.id.clone(), events.clone(), done.clone()));
    drop(slot);
    let app2 = app.clone();
    std::thread::spawn(move || {
        let what = format!(
            "job {} (rank {} of {})",
            head.id,
            head.rank,
            head.peers.len()
        );
        tracing::info!("{what} started");
        let started = std::time::Instant::now();
        // A bug in a job must not leave the worker busy forever: a panic becomes a failure.
        let run = std::panic::AssertUnwindSafe(|| {
            run_job(&app2, &head, &train, validation.as_ref(), &events)
        });
        let r = std::panic::catch_unwind(run).unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(DistError::Config(format!(
                "the job panicked (a bug in weft): {why}"
            )))
        });
        match r {
            Ok(Some(d)) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!("{what} finished in {secs:.1}s");
                events.push(Event::Done(d))
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("{what} failed: {e}");
                events.push(Event::Failed {
                    message: e.to_string(),
                })
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    (StatusCode::OK, Json(json!({ "accepted": true })))
}

fn run_job(
    app: &App,
    head: &JobHead,
    train: &Dataset,
    validation: Option<&Dataset>,
    events: &Arc<Events>,
) -> Result<Option<job::Done>> {
    let incoming = app.incoming.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = Ctx {
        job_id: head.id.clone(),
        rank: head.rank,
        peers: head.peers.clone(),
        token: app.token.clone(),
        timeout: Duration::from_secs_f64(head.timeout_s.max(0.1)),
        incoming: &incoming,
        counters: app.counters.clone(),
        events: events.clone(),
    };
    let before = (app.counters.sent(), app.counters.received());
    match &head.work {
        Work::Train(t) => {
            let mut d = job::train(t, train, validation, &ctx)?;
            d.bytes_sent -= before.0;
            d.bytes_received -= before.1;
            Ok(Some(d))
        }
        Work::Collective(c) => {
            bench::run(c, &ctx)?;
            Ok(Some(job::Done {
                steps: 0,
                samples: 0,
                seconds: 0.0,
                bytes_sent: app.counters.sent() - before.0,
                bytes_received: app.counters.received() - before.1,
                stopped_early: None,
                params: None,
                buffers: Vec::new(),
            }))
        }
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    from: usize,
    #[serde(default)]
    wait_ms: u64,
}

/// Events from index `from` on; waits up to `wait_ms` for one (long poll).
async fn events(State(app): State<Arc<App>>, Query(q): Query<Since>) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(10_000));
    loop {
        let snapshot = app.job.lock().ok().and_then(|j| {
            j.as_ref().map(|(id, ev, done)| {
                // The flag first: the job pushes its last event before setting it, so a
                // finished job's list is complete.
                let finished = done.load(Ordering::SeqCst);
                let list = ev
                    .list
                    .lock()
                    .map(|l| l.get(q.from..).unwrap_or(&[]).to_vec())
                    .unwrap_or_default();
                (id.clone(), list, finished)
            })
        });
        let Some((id, list, finished)) = snapshot else {
            return refuse(StatusCode::NOT_FOUND, "this worker has no job");
        };
        if !list.is_empty() || finished || tokio::time::Instant::now() >= deadline {
            let next = q.from + list.len();
            return (
                StatusCode::OK,
                Json(json!({ "job": id, "events": list, "next": next, "finished": finished })),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Deserialize)]
struct AbortQuery {
    job: Option<String>,
}

/// Stops the job named by `?job=ID` (a driver names its own: one refused as busy must not
/// stop the job of the driver that holds this worker). Without a name nothing is stopped.
async fn abort(State(app): State<Arc<App>>, Query(q): Query<AbortQuery>) -> Reply {
    let Some(want) = q.job else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "name the job to abort: /v1/abort?job=ID",
        );
    };
    match app.job.lock().as_deref() {
        Ok(Some((id, ev, done))) if *id == want => {
            ev.abort.store(true, Ordering::Relaxed);
            let finished = done.load(Ordering::Relaxed);
            (
                StatusCode::OK,
                Json(json!({ "aborted": !finished, "job": id })),
            )
        }
        Ok(Some((id, _, _))) => refuse(
            StatusCode::CONFLICT,
            format!("job {want} is not this worker's (it runs {id}); nothing stopped"),
        ),
        _ => refuse(
            StatusCode::NOT_FOUND,
            format!("this worker has no job {want}"),
        ),
    }
}

/// Binds both listeners and serves on a background thread; returns their addresses.
/// `listen` is the control address (`127.0.0.1:0` picks a port); the data plane takes
/// `data_listen`, or the next free port on the same interface.
pub fn start_worker(listen: &str, data_listen: Option<&str>, token: &str) -> Result<Started> {
    start_worker_with(listen, data_listen, token, Limits::default())
}

/// [`start_worker`] with the servers' bounds: `limits.header_timeout` is also how long a
/// data-plane connection may take to say hello.
pub fn start_worker_with(
    listen: &str,
    data_listen: Option<&str>,
    token: &str,
    limits: Limits,
) -> Result<Started> {
    start_worker_holding(listen, data_listen, token, limits, None)
}

/// [`start_worker_with`] for a worker that holds rows of its own (`shard`), which it serves
/// to the driver and trains on.
pub fn start_worker_holding(
    listen: &str,
    data_listen: Option<&str>,
    token: &str,
    limits: Limits,
    shard: Option<crate::shard::Shard>,
) -> Result<Started> {
    if token.is_empty() {
        return Err(DistError::Config(
            "a worker needs a token: set WEFT_TOKEN or pass --token-file".into(),
        ));
    }
    crate::frame::check_token(token).map_err(DistError::Config)?;
    let control =
        TcpListener::bind(listen).map_err(|e| DistError::io(format!("listen on {listen}"), e))?;
    let control_addr = control
        .local_addr()
        .map_err(|e| DistError::io("read the control address", e))?;
    let data_bind = data_listen
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}:0", control_addr.ip()));
    let data = TcpListener::bind(&data_bind)
        .map_err(|e| DistError::io(format!("listen on {data_bind}"), e))?;
    let data_addr = data
        .local_addr()
        .map_err(|e| DistError::io("read the data address", e))?
        .to_string();
    let counters = Arc::new(Counters::default());
    let hello = Hello {
        token: token.into(),
        rank: u32::MAX,
        world: 0,
        role: "worker".into(),
    };
    let incoming = accept_loop(
        data,
        token.into(),
        hello,
        counters.clone(),
        limits.header_timeout,
    );
    let app = Arc::new(App {
        token: token.into(),
        data_addr: data_addr.clone(),
        incoming: Mutex::new(incoming),
        counters,
        job: Mutex::new(None),
    });
    let shard_url = shard
        .as_ref()
        .map(|s| format!("http://{control_addr}{}", s.route()));
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/jobs", post(start))
        .route("/v1/events", get(events))
        .route("/v1/abort", post(abort))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .with_state(app)
        .merge(crate::shard::router(shard));
    control
        .set_nonblocking(true)
        .map_err(|e| DistError::io("set up the control listener", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DistError::io("start the worker's runtime", e))?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(control) {
                Ok(l) => crate::http::serve(l, router, limits).await,
                Err(e) => tracing::error!("control server: {e}"),
            }
        });
    });
    Ok(Started {
        control: format!("http://{control_addr}"),
        data: data_addr,
        shard: shard_url,
    })
}
