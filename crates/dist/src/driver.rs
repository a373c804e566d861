//! The driver: sends workers their jobs over the control API (reqwest), merges their events
//! into one progress stream and one outcome, and decides what a failure means.
//!
//! A worker that dies is noticed within a second or so: a local child's exit is polled, a
//! remote one stops answering, and its ring neighbours see the connection close. Synchronous
//! strategies then stop every worker and report which one died (the caller saves the last
//! checkpoint and prints how to resume); asynchronous parameter-server algorithms carry on
//! with the workers left, and say so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array2;
use serde::Serialize;
use serde_json::Value;
use weft_data::Dataset;
use weft_dsl::{DataParallel, Sync};
use weft_planner::Plan;
use weft_runtime::train::{EpochEnd, EpochRecord, Progress, TrainOutcome};

use crate::bench::{CollectiveJob, CollectiveResult};
use crate::error::{DistError, Result};
use crate::job::{Done, Event, TrainJob};
use crate::launch::WorkerProc;
use crate::protocol::{encode_job, JobHead, Work};
use crate::ps;

/// Extra time an events request may take to arrive, for the model snapshots it carries.
const SNAPSHOT_ALLOWANCE: Duration = Duration::from_secs(60);

/// How long a worker holds an events request open when it has nothing new (long poll).
pub const LONG_POLL: Duration = Duration::from_millis(500);

/// An HTTP client whose every request waits at most `timeout` for an answer (plus the long
/// poll's own wait); a job upload also gets the time its bytes need at 10 MB/s.
pub fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(timeout + LONG_POLL)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| DistError::io("set up the HTTP client", e))
}

fn answer(r: reqwest::Result<reqwest::blocking::Response>, what: &str) -> Result<Value> {
    let r = r.map_err(|e| {
        let why = if e.is_connect() {
            "nothing answers there (is `weft worker` running?)".to_string()
        } else if e.is_timeout() {
            "it did not answer in time".to_string()
        } else {
            e.to_string()
        };
        DistError::Config(format!("{what}: {why}"))
    })?;
    let status = r.status();
    let body: Value = r.json().unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = body["error"].as_str().unwrap_or("no reason given");
        return Err(DistError::Config(format!(
            "{what}: refused ({status}): {msg}"
        )));
    }
    Ok(body)
}

pub fn get_json(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    token: &str,
) -> Result<Value> {
    answer(
        client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send(),
        &format!("{base}{path}"),
    )
}

/// Posts `body`; the answer may take `timeout`, plus the time the body needs at 10 MB/s.
fn post(
    client: &reqwest::blocking::Client,
    base: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Value> {
    let upload = Duration::from_secs_f64(body.len() as f64 / 10e6);
    answer(
        client
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .timeout(timeout + LONG_POLL + upload)
            .body(body)
            .send(),
        &format!("{base}{path}"),
    )
}

/// What a distributed run measured about communication (`comm` in `weft run --json`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Comm {
    pub strategy: String,
    pub workers: usize,
    pub compression: String,
    /// Mean over workers of the bytes each sent on the data plane (framing included).
    pub bytes_sent_per_worker: f64,
    pub bytes_sent: Vec<u64>,
    /// Bytes the parameter server sent, if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_bytes_sent: Option<u64>,
}

pub struct DistOutcome {
    pub outcome: TrainOutcome,
    pub params: Vec<f32>,
    pub buffers: Vec<(String, Array2<f32>)>,
    pub comm: Comm,
    /// Things the user should know (a worker lost by an asynchronous run…).
    pub notes: Vec<String>,
}

/// A distributed training job.
pub struct TrainRequest<'a> {
    pub plan: &'a Plan,
    pub dp: &'a DataParallel,
    pub train: &'a Dataset,
    pub validation: Option<&'a Dataset>,
    /// A streamed data set, which each worker reads its shard of (`train` and `validation`
    /// are then empty).
    pub stream: Option<crate::job::StreamJob>,
    pub token: &'a str,
    /// Resume: where, and the model and optimizer state to start from.
    pub resume: Option<weft_runtime::checkpoint::Resume>,
    /// Address the parameter server binds (`127.0.0.1:0` for local workers).
    pub ps_bind: String,
    /// Where the workers run their steps (`executor.device`).
    pub device: weft_dsl::Device,
}

/// Asynchronous parameter-server algorithms go on without a lost worker.
pub fn tolerates_loss(dp: &DataParallel) -> bool {
    dp.sync == Sync::ParameterServer && dp.algorithm.is_some_and(|a| a.is_async())
}

/// Polls every worker's events on its own thread; messages arrive on one channel.
struct Pollers {
    rx: mpsc::Receiver<(usize, std::result::Result<Vec<Event>, String>)>,
    stop: Arc<AtomicBool>,
}

impl Pollers {
    fn start(workers: &[WorkerProc], token: &str, timeout: Duration) -> Result<Pollers> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        for w in workers {
            let (tx, stop) = (tx.clone(), stop.clone());
            let (base, token, rank) = (w.control.clone(), token.to_string(), w.rank);
            // An epoch's events carry rank 0's model and optimizer state (JSON): a large
            // model's take longer than a request to arrive. A dead worker is still found at
            // once (its connection fails); this only bounds one that hangs mid-answer.
            let client = http_client(timeout + SNAPSHOT_ALLOWANCE)?;
            std::thread::spawn(move || {
                let mut from = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/v1/events?from={from}&wait_ms={}", LONG_POLL.as_millis());
                    match get_json(&client, &base, &path, &token) {
                        Ok(v) => {
                            let events: Vec<Event> =
                                match serde_json::from_value(v["events"].clone()) {
                                    Ok(e) => e,
                                    Err(e) => {
                                        let _ = tx.send((
                                            rank,
                                            Err(format!("sent events weft cannot read: {e}")),
                                        ));
                                        return;
                                    }
                                };
                            from = v["next"].as_u64().unwrap_or(from as u64) as usize;
                            let finished = v["finished"].as_bool().unwrap_or(false);
                            if !events.is_empty() && tx.send((rank, Ok(events))).is_err() {
                                return;
                            }
                            if finished {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send((rank, Err(e.to_string())));
                            return;
                        }
                    }
                }
            });
        }
        Ok(Pollers { rx, stop })
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends each worker its job (rank order = `workers` order).
fn send_jobs(
    workers: &[WorkerProc],
    token: &str,
    timeout: Duration,
    id: &str,
    work: impl Fn(usize) -> Work,
    train: Option<&Dataset>,
    validation: Option<&Dataset>,
) -> Result<()> {
    let peers: Vec<String> = workers.iter().map(|w| w.data.clone()).collect();
    let client = http_client(timeout)?;
    // All at once: a worker's ring deadline starts when its job arrives, so its neighbours'
    // jobs must not wait behind one another's uploads.
    let sent: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter()
            .map(|w| {
                let head = JobHead {
                    id: id.to_string(),
                    rank: w.rank,
                    peers: peers.clone(),
                    timeout_s: timeout.as_secs_f64(),
                    work: work(w.rank),
                    train_rows: train.map_or(0, Dataset::len),
                    validation_rows: validation.map_or(0, Dataset::len),
                    features: train.map_or(0, |d| d.x.ncols()),
                    weighted: train.is_some_and(|d| d.w.is_some()),
                };
                let client = &client;
                s.spawn(move || {
                    let body = encode_job(&head, train, validation)?;
                    post(client, &w.control, "/v1/jobs", token, body, timeout)
                        .map(|_| ())
                        .map_err(|e| DistError::Config(format!("{}: {e}", w.name())))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DistError::Config("a job upload panicked".into())))
            })
            .collect()
    });
    if let Some(e) = sent.into_iter().find_map(Result::err) {
        // The workers that did get the job must not wait for the others.
        abort_all(workers, token, id);
        return Err(e);
    }
    Ok(())
}

/// A job id unlikely to repeat: the clock and the process id, mixed.
fn rand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Asks every worker to stop (best effort, used on failure).
/// Stops job `job` on every worker (a worker running another driver's job keeps it).
fn abort_all(workers: &[WorkerProc], token: &str, job: &str) {
    if let Ok(client) = http_client(Duration::from_secs(1)) {
        for w in workers {
            let path = format!("/v1/abort?job={job}");
            let _ = post(
                &client,
                &w.control,
                &path,
                token,
                Vec::new(),
                Duration::from_secs(1),
            );
        }
    }
}

/// Which workers are gone, and how, after a failure (names the root cause rather than the
/// neighbour that noticed it).
fn find_dead(workers: &mut [WorkerProc], token: &str) -> Vec<(usize, String)> {
    std::thread::sleep(Duration::from_millis(300));
    let client = http_client(Duration::from_secs(2)).ok();
    let mut dead = Vec::new();
    for w in workers.iter_mut() {
        if let Some(how) = w.died() {
            dead.push((w.rank, how));
        } else if !w.is_child() {
            if let Some(c) = &client {
                if let Err(e) = get_json(c, &w.control, "/v1/health", token) {
                    dead.push((w.rank, format!("{} stopped answering: {e}", w.name())));
                }
            }
        }
    }
    dead
}

/// Runs a training job on `workers` and merges what they report into `progress`.
/// `checkpoint` is called after every epoch with the model.
pub fn train(
    workers: &mut [WorkerProc],
    req: &TrainRequest,
    progress: &mut dyn Progress,
    checkpoint: weft_runtime::train::Checkpoint,
) -> Result<DistOutcome> {
    let dp = req.dp;
    let n = workers.len();
    let timeout = Duration::from_secs_f64(dp.timeout_s);
    let job_id = format!("ps{:x}", rand_id());
    let server = match dp.sync {
        Sync::ParameterServer => {
            let mut d = dp.clone();
            d.workers = n;
            Some(ps::Server::start(
                &req.ps_bind,
                req.plan,
                &d,
                req.resume.as_ref().map(|r| r.snapshot.params.as_slice()),
                req.token,
                &job_id,
            )?)
        }
        _ => None,
    };
    let job = TrainJob {
        plan: req.plan.clone(),
        dp: dp.clone(),
        ps: server.as_ref().map(|s| s.addr.clone()),
        resume: req.resume.clone(),
        device: req.device,
        stream: req.stream.clone(),
    };
    let started = Instant::now();
    // The job id doubles as the parameter server's role check.
    send_jobs(
        workers,
        req.token,
        timeout,
        &job_id,
        |_| Work::Train(Box::new(job.clone())),
        req.stream.is_none().then_some(req.train),
        req.validation.filter(|_| req.stream.is_none()),
    )?;
    let pollers = Pollers::start(workers, req.token, timeout)?;

    let epochs = req.plan.train.epochs;
    let mut live: Vec<bool> = vec![true; n];
    let mut notes = Vec::new();
    let stop = &req.plan.train.stop;
    if dp.sync != Sync::Allreduce && (stop.target_loss.is_some() || stop.patience.is_some()) {
        // Workers of other strategies hold different models; they could not agree when to stop.
        let note = format!(
            "train.stop is applied only with sync: allreduce; with {} every worker runs all {epochs} epochs",
            dp.strategy()
        );
        progress.note(&note);
        notes.push(note);
    }
    let mut per_epoch: BTreeMap<usize, BTreeMap<usize, Event>> = BTreeMap::new();
    let mut done: BTreeMap<usize, Done> = BTreeMap::new();
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut shown_epoch = req.resume.as_ref().map_or(0, |r| r.at.finished_epochs());
    let mut failure: Option<(usize, String)> = None;

    while done.len() < live.iter().filter(|l| **l).count() {
        // Everything already waiting is taken at once: when the workers run ahead of the
        // driver (fast epochs, a slow disk), a burst of epochs costs one checkpoint, and a
        // lost worker is noticed without first writing every epoch queued before it.
        let first = pollers.rx.recv_timeout(Duration::from_millis(200));
        let mut msgs = Vec::new();
        let mut lost: Vec<(usize, String)> = Vec::new();
        match first {
            Ok(m) => {
                msgs.push(m);
                msgs.extend(pollers.rx.try_iter());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                for r in (0..n).filter(|r| live[*r] && !done.contains_key(r)) {
                    lost.push((r, "it stopped reporting before finishing".into()));
                }
            }
        }
        for (rank, msg) in msgs {
            // A lost worker's last reports may still be on their way: they are late.
            let events = match msg {
                Ok(events) if live[rank] => events,
                Err(message) if live[rank] && !done.contains_key(&rank) => {
                    lost.push((rank, message));
                    continue;
                }
                _ => continue,
            };
            for e in events {
                match e {
                    Event::Step {
                        epoch,
                        done: d,
                        steps,
                        loss,
                    } => {
                        if epoch > shown_epoch {
                            shown_epoch = epoch;
                            progress.epoch_start(epoch, epochs, steps);
                        }
                        progress.step(d, loss);
                    }
                    e @ Event::Epoch { epoch, .. } => {
                        if history.last().is_none_or(|h| h.epoch < epoch) {
                            per_epoch.entry(epoch).or_default().insert(rank, e);
                        }
                    }
                    Event::Done(d) => {
                        done.insert(rank, d);
                    }
                    Event::Failed { message } => lost.push((rank, message)),
                    Event::Collective(_) => {}
                }
            }
        }
        for w in workers.iter_mut() {
            if live[w.rank] && !done.contains_key(&w.rank) {
                if let Some(how) = w.died() {
                    lost.push((w.rank, how));
                }
            }
        }
        if !lost.is_empty() {
            // A local child that exited says best what happened to it; its connection may
            // break a moment before it can be reaped.
            for (rank, why) in lost.iter_mut() {
                if let Some(w) = workers.get_mut(*rank).filter(|w| w.is_child()) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(2) {
                        if let Some(how) = w.died() {
                            *why = how;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            if tolerates_loss(dp) {
                for (rank, why) in lost {
                    if live[rank] {
                        live[rank] = false;
                        let left = live.iter().filter(|l| **l).count();
                        let note = format!(
                            "worker {rank} was lost ({why}); the asynchronous parameter server goes on with {left} worker{}",
                            if left == 1 { "" } else { "s" }
                        );
                        tracing::warn!("{note}");
                        progress.note(&note);
                        notes.push(note);
                    }
                }
                if !live.iter().any(|l| *l) {
                    failure = Some((0, "every worker was lost".into()));
                    break;
                }
            } else {
                abort_all(workers, req.token, &job_id);
                let dead = find_dead(workers, req.token);
                // Epochs every worker reported before the loss are still checkpointed
                // below, so a resume loses nothing they finished.
                failure = Some(dead.into_iter().next().unwrap_or_else(|| lost.remove(0)));
            }
        }
        // An epoch is complete when every live worker has reported it.
        let mut newest = None;
        while let Some((&epoch, reports)) = per_epoch.iter().next() {
            let want: Vec<usize> = (0..n).filter(|r| live[*r]).collect();
            if !want.iter().all(|r| reports.contains_key(r)) {
                break;
            }
            let reports = per_epoch.remove(&epoch).unwrap_or_default();
            let (record, samples) = merge_epoch(epoch, &reports);
            if epoch > shown_epoch {
                shown_epoch = epoch;
                progress.epoch_start(epoch, epochs, 0);
            }
            // The model moves out of the report: only the newest one is written.
            let snapshot = reports.into_values().find_map(|e| match e {
                Event::Epoch {
                    snapshot: Some(s),
                    next,
                    ..
                } => Some((s, next)),
                _ => None,
            });
            if let Some((s, next)) = snapshot {
                newest = Some((record.clone(), next, samples, s));
            }
            progress.epoch_end(&record)?;
            history.push(record);
        }
        // Only the newest of the epochs completed together is checkpointed.
        if let Some((record, next, samples, s)) = newest.take() {
            checkpoint(&EpochEnd {
                record: Some(&record),
                next,
                samples,
                snapshot: Some(&s),
            })?;
        }
        if failure.is_some() {
            break;
        }
        // Ctrl-C on the driver, checked after the reports already in are checkpointed: the
        // workers stop, and every epoch they finished is saved.
        if let Some(why) = progress.stop_requested() {
            abort_all(workers, req.token, &job_id);
            drop(pollers);
            return Err(DistError::Run(weft_runtime::RunError::Aborted(why)));
        }
    }
    tracing::debug!(
        "driver: finished with live {live:?}, done {:?}, pending epochs {:?}",
        done.keys().collect::<Vec<_>>(),
        per_epoch
            .iter()
            .map(|(e, r)| (e, r.keys().collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    drop(pollers);
    if let Some((rank, why)) = failure {
        let addr = workers
            .get(rank)
            .map(|w| w.control.clone())
            .unwrap_or_default();
        return Err(DistError::Worker {
            rank,
            addr,
            message: why,
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    let samples: u64 = done.values().map(|d| d.samples).sum();
    let steps = done.values().map(|d| d.steps).max().unwrap_or(0);
    let params = match &server {
        Some(s) => s.center(),
        None => done
            .get(&0)
            .and_then(|d| d.params.clone())
            .ok_or_else(|| DistError::Config("worker 0 sent no final model".into()))?,
    };
    let buffers = done
        .values()
        .next()
        .map(|d| {
            d.buffers
                .iter()
                .filter_map(|(name, r, c, v)| {
                    Some((
                        name.clone(),
                        Array2::from_shape_vec((*r, *c), v.clone()).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let bytes_sent: Vec<u64> = (0..n)
        .map(|r| done.get(&r).map_or(0, |d| d.bytes_sent))
        .collect();
    let stopped_early = done.values().find_map(|d| d.stopped_early.clone());
    let train_seconds: f64 = history.iter().map(|h| h.seconds).sum::<f64>().max(1e-9);
    Ok(DistOutcome {
        outcome: TrainOutcome {
            history,
            seconds: train_seconds.min(seconds),
            samples,
            samples_per_sec: samples as f64 / train_seconds.min(seconds),
            steps,
            stopped_early,
        },
        params,
        buffers,
        comm: Comm {
            strategy: dp.strategy(),
            workers: n,
            // Named as `weft plan` names it.
            compression: dp.compression.describe(),
            bytes_sent_per_worker: bytes_sent.iter().sum::<u64>() as f64 / n.max(1) as f64,
            bytes_sent,
            server_bytes_sent: server.as_ref().map(|s| s.counters.sent()),
        },
        notes,
    })
}

/// One record for an epoch from every worker's: loss weighted by rows, throughput of all.
/// The epoch's record over every worker, and the rows they trained on.
fn merge_epoch(epoch: usize, reports: &BTreeMap<usize, Event>) -> (EpochRecord, u64) {
    let (mut loss, mut rows, mut secs, mut lr, mut val) = (0.0f64, 0u64, 0.0f64, 0.0f32, None);
    let mut per_worker = Vec::new();
    for (rank, e) in reports {
        if let Event::Epoch {
            train_loss,
            validation_loss,
            lr: l,
            samples,
            seconds,
            ..
        } = e
        {
            loss += f64::from(*train_loss) * *samples as f64;
            rows += samples;
            secs = secs.max(*seconds);
            lr = *l;
            val = val.or(*validation_loss);
            per_worker.push((*rank, *samples as f64 / seconds.max(1e-9)));
        }
    }
    let record = EpochRecord {
        epoch,
        train_loss: (loss / rows.max(1) as f64) as f32,
        validation_loss: val,
        lr,
        seconds: secs,
        samples_per_sec: rows as f64 / secs.max(1e-9),
        worker_samples_per_sec: per_worker,
    };
    (record, rows)
}

/// Runs a collective benchmark/check on `workers`; returns each rank's results and bytes.
pub fn collective(
    workers: &mut [WorkerProc],
    token: &str,
    job: &CollectiveJob,
    timeout: Duration,
) -> Result<Vec<Vec<CollectiveResult>>> {
    let id = format!("c{:x}", rand_id());
    send_jobs(
        workers,
        token,
        timeout,
        &id,
        |_| Work::Collective(job.clone()),
        None,
        None,
    )?;
    let pollers = Pollers::start(workers, token, timeout)?;
    let n = workers.len();
    let mut results: Vec<Vec<CollectiveResult>> = vec![Vec::new(); n];
    let mut finished = 0;
    while finished < n {
        match pollers.rx.recv_timeout(Duration::from_millis(200)) {
            Ok((rank, Ok(events))) => {
                for e in events {
                    match e {
                        Event::Collective(r) => results[rank].push(r),
                        Event::Done(_) => finished += 1,
                        Event::Failed { message } => {
                            abort_all(workers, token, &id);
                            let addr = workers[rank].control.clone();
                            return Err(DistError::Worker {
                                rank,
                                addr,
                                message,
                            });
                        }
                        _ => {}
                    }
                }
            }
            Ok((rank, Err(message))) => {
                let addr = workers[rank].control.clone();
                return Err(DistError::Worker {
                    rank,
                    addr,
                    message,
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                for w in workers.iter_mut() {
                    if let Some(how) = w.died() {
                        return Err(DistError::Worker {
                            rank: w.rank,
                            addr: w.control.clone(),
                            message: how,
                        });
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(results)
}
