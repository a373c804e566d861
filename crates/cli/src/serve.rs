//! `weft serve`: the browser viewer (crates/web/dist, built by scripts/build-web.sh) and its JSON
//! API: the spec, its plan (compiled here, with the real data's shape), and a server-sent
//! event stream of a run's epochs (`--run`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use weft_runtime::train::{EpochRecord, Progress};
use weft_runtime::RunError;

use weft::Experiment;
use weft::{Error, Result};

/// The spec used when `weft serve` is given none.
const DEFAULT_SPEC: &str = include_str!("../../../specs/iris.yaml");

/// What a streamed run has reported so far.
#[derive(Default)]
struct Run {
    streaming: bool,
    history: Vec<EpochRecord>,
    notes: Vec<String>,
    done: Option<Value>,
}

struct Served {
    file: String,
    text: String,
    /// The plan as JSON, or why there is none (the page then compiles the spec itself).
    plan: std::result::Result<String, String>,
    web: PathBuf,
    run: Mutex<Run>,
}

type App = Arc<Served>;

/// Progress that the event stream reads.
struct Stream(App);

impl Progress for Stream {
    fn epoch_end(&mut self, r: &EpochRecord) -> std::result::Result<(), RunError> {
        if let Ok(mut run) = self.0.run.lock() {
            run.history.push(r.clone());
        }
        Ok(())
    }
    fn note(&mut self, message: &str) {
        if let Ok(mut run) = self.0.run.lock() {
            run.notes.push(message.to_string());
        }
    }
}

/// Where the built page is: `WEFT_WEB_DIR`, `crates/web/dist` next to the source tree this binary
/// was built in (`target/<profile>/weft` → `crates/web/dist`), or `crates/web/dist` here.
fn web_dir() -> Option<PathBuf> {
    let built =
        |d: &Path| d.join("index.html").is_file() && d.join("pkg/weft_web_bg.wasm").is_file();
    if let Some(d) = std::env::var_os("WEFT_WEB_DIR") {
        return Some(PathBuf::from(d)).filter(|d| built(d));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("crates/web/dist"));
        }
    }
    candidates.push(PathBuf::from("crates/web/dist"));
    candidates.into_iter().find(|d| built(d))
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

async fn asset(State(app): State<App>, path: Option<UrlPath<String>>) -> Response {
    let rel = path.map(|UrlPath(p)| p).unwrap_or_default();
    let rel = if rel.is_empty() {
        "index.html".to_string()
    } else {
        rel
    };
    if rel.contains(['\\', ':']) || rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    }
    let file = app.web.join(&rel);
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&file))], bytes).into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            format!("no {rel} in the viewer's build"),
        )
            .into_response(),
    }
}

async fn spec(State(app): State<App>) -> Json<Value> {
    Json(json!({ "file": app.file, "text": app.text }))
}

async fn plan_json(State(app): State<App>) -> Response {
    match &app.plan {
        Ok(p) => ([(header::CONTENT_TYPE, "application/json")], p.clone()).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Json<Value> {
    let run = app.run.lock().map(|r| json!({ "streaming": r.streaming, "history": r.history, "notes": r.notes, "done": r.done }));
    Json(run.unwrap_or(Value::Null))
}

/// Server-sent events: `epoch` per finished epoch, `note`, then `done`; `idle` at once when
/// no run streams.
async fn events(
    State(app): State<App>,
) -> Sse<impl futures_util::Stream<Item = std::result::Result<Event, std::convert::Infallible>>> {
    // (app, epochs sent, notes sent, finished)
    let stream =
        futures_util::stream::unfold((app, 0, 0, false), |(app, sent, notes, over)| async move {
            if over {
                return None;
            }
            loop {
                let next = app.run.lock().ok().and_then(|r| {
                    if !r.streaming && r.done.is_none() {
                        return Some((
                            Event::default().event("idle").data("{}"),
                            sent,
                            notes,
                            true,
                        ));
                    }
                    if let Some(n) = r.notes.get(notes) {
                        let ev = Event::default().event("note").data(json!(n).to_string());
                        return Some((ev, sent, notes + 1, false));
                    }
                    if let Some(e) = r.history.get(sent) {
                        let ev = Event::default().event("epoch").data(json!(e).to_string());
                        return Some((ev, sent + 1, notes, false));
                    }
                    let d = r.done.as_ref()?;
                    Some((
                        Event::default().event("done").data(d.to_string()),
                        sent,
                        notes,
                        true,
                    ))
                });
                match next {
                    Some((ev, s, n, o)) => return Some((Ok(ev), (app, s, n, o))),
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    Sse::new(stream)
}

/// Serves the viewer for `exp` (or the built-in Iris spec) on `listen:port`; with `run`,
/// trains it and streams the epochs. Blocks until the process is stopped.
pub fn serve(
    exp: Option<(String, String, Experiment)>,
    listen: &str,
    port: u16,
    run: bool,
    runs_dir: &Path,
) -> Result<()> {
    let web = web_dir().ok_or_else(|| Error::Io {
        path: "crates/web/dist".into(),
        message: "the viewer is not built; run scripts/build-web.sh (it installs wasm-bindgen-cli the first time), or set WEFT_WEB_DIR to a built viewer".into(),
    })?;
    let (file, text, exp) = match exp {
        Some(e) => e,
        None => (
            "iris.yaml".to_string(),
            DEFAULT_SPEC.to_string(),
            Experiment::from_yaml(DEFAULT_SPEC)?,
        ),
    };
    let plan = exp
        .plan()
        .map_err(|e| e.to_string())
        .and_then(|p| serde_json::to_string(&p.plan).map_err(|e| e.to_string()));
    let app: App = Arc::new(Served {
        file,
        text,
        plan,
        web,
        run: Mutex::new(Run {
            streaming: run,
            ..Run::default()
        }),
    });
    if run {
        let (app2, runs) = (app.clone(), runs_dir.to_path_buf());
        std::thread::spawn(move || {
            let run =
                std::panic::AssertUnwindSafe(|| exp.run_with(&runs, &mut Stream(app2.clone())));
            let r = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                Err(Error::Io {
                    path: "run".into(),
                    message: "training panicked (a bug in weft)".into(),
                })
            });
            let done = match r {
                Ok(r) => {
                    json!({ "run_dir": r.run_dir, "test_accuracy": r.test("accuracy"), "epochs": r.train.epochs })
                }
                Err(e) => json!({ "error": e.to_string() }),
            };
            if let Ok(mut run) = app2.run.lock() {
                run.done = Some(done);
                run.streaming = false;
            }
        });
    }
    let router = Router::new()
        .route("/api/spec", get(spec))
        .route("/api/plan", get(plan_json))
        .route("/api/metrics", get(metrics))
        .route("/api/events", get(events))
        .route("/", get(asset))
        .route("/{*path}", get(asset))
        .with_state(app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            path: "tokio".into(),
            message: e.to_string(),
        })?;
    runtime.block_on(async move {
        let addr = format!("{listen}:{port}");
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::Io {
                path: addr.clone(),
                message: format!("cannot listen: {e}"),
            })?;
        let bound = listener.local_addr().map_err(|e| Error::Io {
            path: addr,
            message: e.to_string(),
        })?;
        println!("weft serve: http://{bound}/");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        weft_dist::http::serve(listener, router, weft_dist::http::Limits::default()).await;
        Ok(())
    })
}
