//! The parameter-server family (Distributed Keras / Elephas): a server holding the center
//! model, and the worker-side client.
//!
//! | algorithm | worker, every `communication_window` steps | server |
//! |---|---|---|
//! | `sync` | pushes its gradient every step, waits | averages all workers' gradients, runs the spec's optimizer, returns the model |
//! | `downpour` | commits Δ = W − W_pulled, takes the center | center += Δ |
//! | `adag` | commits Δ / window | center += Δ / window |
//! | `dynsgd` | commits Δ with the clock of its last pull | center += Δ / (staleness + 1) |
//! | `hogwild` | commits Δ | center += Δ without a lock (racy by design) |
//! | `easgd` | sends W, waits for every worker; W −= α(W − center) | center += α Σ(Wᵢ − center) |
//! | `aeasgd` | sends W; W −= α(W − center) | center += α(W − center), asynchronously |
//! | `eamsgd` | as `aeasgd`, with local momentum SGD | as `aeasgd` |
//!
//! α = `learning_rate` × `rho`. `staleness: k` makes a commit wait until the slowest live
//! worker is at most k commits behind (stale-synchronous parallel). Asynchronous algorithms
//! carry on when a worker dies; `sync` and `easgd` wait for everyone, so they fail instead.
//!
//! Hand-written because it is weft's own protocol over its data plane.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weft_dsl::{DataParallel, PsAlgorithm};
use weft_exec::cpu::CpuExecutor;
use weft_exec::Executor;
use weft_planner::Plan;
use weft_runtime::train::{get_flat, set_flat, split_flat};

use crate::compress::{self, Codec, Residual};
use crate::error::{DistError, Result};
use crate::frame::{self, Hello, Kind};
use crate::job::Ctx;
use crate::transport::{accept_loop, Counters, Link};

/// A request from a worker (a `Control` frame; a tensor frame follows where noted).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Pull,
    /// + the compressed Δ.
    Commit {
        clock: u64,
    },
    /// + the compressed gradient × rows (`sync`).
    Gradients {
        rows: f32,
        step: u64,
        lr: f32,
    },
    /// + the worker's parameters (EASGD family).
    Elastic,
    Bye,
}

fn alpha(dp: &DataParallel) -> f32 {
    (dp.learning_rate * dp.rho) as f32
}

// ------------------------------------------------------------------------------ client

/// A worker's connection to the parameter server.
pub struct Client {
    link: Link,
    codec: Codec,
    residual: Residual,
    alpha: f32,
    /// Server clock at this worker's last pull (DynSGD's staleness).
    clock: u64,
}

impl Client {
    pub fn connect(addr: &str, ctx: &Ctx, dp: &DataParallel, codec: &Codec) -> Result<Client> {
        let hello = Hello {
            token: ctx.token.clone(),
            rank: ctx.rank as u32,
            world: ctx.world() as u32,
            role: format!("ps:{}", ctx.job_id),
        };
        let (link, _) = Link::connect(
            addr,
            "parameter server",
            &hello,
            ctx.counters.clone(),
            ctx.timeout,
        )?;
        Ok(Client {
            link,
            codec: codec.clone(),
            residual: Residual::default(),
            alpha: alpha(dp),
            clock: 0,
        })
    }

    fn request(&mut self, r: &Request, tensor: Option<(Kind, Vec<u8>)>) -> Result<Vec<f32>> {
        let body = serde_json::to_vec(r).map_err(|e| DistError::Config(e.to_string()))?;
        self.link.send(Kind::Control, 0, &body)?;
        if let Some((kind, payload)) = tensor {
            self.link.send(kind, 0, &payload)?;
        }
        let (h, payload) = self.link.recv("waiting for the parameter server")?;
        self.clock = u64::from(h.tag);
        frame::payload_f32(&payload).map_err(|source| DistError::Frame {
            peer: self.link.peer.clone(),
            source,
        })
    }

    /// The center model.
    pub fn pull(&mut self) -> Result<Vec<f32>> {
        self.request(&Request::Pull, None)
    }

    /// `sync`: pushes gradient × rows; returns the model after the server's update.
    pub fn push_gradients(&mut self, g: &[f32], rows: f32, step: u64, lr: f32) -> Result<Vec<f32>> {
        let t = compress::encode(&self.codec, g, &mut self.residual);
        self.request(&Request::Gradients { rows, step, lr }, Some(t))
    }

    /// One exchange of an asynchronous or elastic algorithm: `w` is the worker's model,
    /// `anchor` the model it last took from the server. Returns the worker's new model.
    pub fn exchange(
        &mut self,
        algo: PsAlgorithm,
        w: &[f32],
        anchor: &[f32],
        window: u64,
    ) -> Result<Vec<f32>> {
        match algo {
            a if a.is_elastic() => {
                // Parameters, not gradients: top-k would drop most of the model.
                let codec = match self.codec {
                    Codec::TopK { .. } => Codec::None,
                    ref c => c.clone(),
                };
                let t = compress::encode(&codec, w, &mut Residual::default());
                let center = self.request(&Request::Elastic, Some(t))?;
                let a = self.alpha;
                Ok(w.iter()
                    .zip(&center)
                    .map(|(w, c)| w - a * (w - c))
                    .collect())
            }
            _ => {
                let scale = if algo == PsAlgorithm::Adag {
                    1.0 / window as f32
                } else {
                    1.0
                };
                let delta: Vec<f32> = w.iter().zip(anchor).map(|(w, a)| (w - a) * scale).collect();
                let t = compress::encode(&self.codec, &delta, &mut self.residual);
                let clock = self.clock;
                self.request(&Request::Commit { clock }, Some(t))
            }
        }
    }

    /// Tells the server this worker is done (it no longer waits for it).
    pub fn bye(&mut self) -> Result<()> {
        let body =
            serde_json::to_vec(&Request::Bye).map_err(|e| DistError::Config(e.to_string()))?;
        self.link.send(Kind::Control, 0, &body)
    }
}

// ------------------------------------------------------------------------------ server

/// Barrier state of the synchronous algorithms.
#[derive(Default)]
struct Round {
    generation: u64,
    arrived: BTreeSet<usize>,
    sum: Vec<f32>,
    rows: f32,
    result: Arc<Vec<f32>>,
}

struct Shared {
    /// Workers that have not said bye or died.
    live: BTreeSet<usize>,
    /// Commits per worker (stale-synchronous bound).
    clocks: Vec<u64>,
    clock: u64,
    round: Round,
    /// Why a synchronous algorithm cannot go on (a worker died).
    failed: Option<String>,
    /// Workers that died, with why.
    lost: Vec<(usize, String)>,
}

struct State {
    algo: PsAlgorithm,
    dp: DataParallel,
    timeout: Duration,
    /// The center model; f32 bits in atomics so `hogwild` can update it without a lock.
    center: Vec<AtomicU32>,
    /// The spec's optimizer for `sync` (its parameters are the center).
    optimizer: Mutex<CpuExecutor>,
    shared: Mutex<Shared>,
    changed: Condvar,
}

/// The parameter server; it runs on its own threads until dropped with the process.
pub struct Server {
    pub addr: String,
    state: Arc<State>,
    pub counters: Arc<Counters>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Waits up to `left` for another worker's change.
    fn wait<'a>(&self, sh: MutexGuard<'a, Shared>, left: Duration) -> MutexGuard<'a, Shared> {
        self.changed
            .wait_timeout(sh, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0)
    }
    fn center(&self) -> Vec<f32> {
        self.center
            .iter()
            .map(|a| f32::from_bits(a.load(Ordering::Relaxed)))
            .collect()
    }
    fn set_center(&self, v: &[f32]) {
        for (a, x) in self.center.iter().zip(v) {
            a.store(x.to_bits(), Ordering::Relaxed);
        }
    }
    fn add_center(&self, delta: &[f32], scale: f32) {
        for (a, d) in self.center.iter().zip(delta) {
            let x = f32::from_bits(a.load(Ordering::Relaxed)) + d * scale;
            a.store(x.to_bits(), Ordering::Relaxed);
        }
    }
    fn synchronous(&self) -> bool {
        !self.algo.is_async()
    }
}

impl Server {
    /// Starts a server for `plan` with `init` as the center, listening on `bind`
    /// (`127.0.0.1:0` for a local cluster).
    pub fn start(
        bind: &str,
        plan: &Plan,
        dp: &DataParallel,
        init: Option<&[f32]>,
        token: &str,
        job_id: &str,
    ) -> Result<Server> {
        let listener = TcpListener::bind(bind)
            .map_err(|e| DistError::io(format!("listen on {bind} for the parameter server"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| DistError::io("read the parameter server's address", e))?
            .to_string();
        let mut opt = CpuExecutor::new(plan);
        if let Some(init) = init {
            set_flat(&mut opt, init)?;
        }
        let center = get_flat(&opt)?
            .into_iter()
            .map(|v| AtomicU32::new(v.to_bits()))
            .collect();
        let workers = dp.workers;
        let timeout = Duration::from_secs_f64(dp.timeout_s);
        let state = Arc::new(State {
            algo: dp.algorithm.unwrap_or(PsAlgorithm::Downpour),
            dp: dp.clone(),
            timeout,
            center,
            optimizer: Mutex::new(opt),
            shared: Mutex::new(Shared {
                live: (0..workers).collect(),
                clocks: vec![0; workers],
                clock: 0,
                round: Round::default(),
                failed: None,
                lost: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let counters = Arc::new(Counters::default());
        let hello = Hello {
            token: token.into(),
            rank: u32::MAX,
            world: workers as u32,
            role: "parameter-server".into(),
        };
        let incoming = accept_loop(listener, token.into(), hello, counters.clone(), timeout);
        let role = format!("ps:{job_id}");
        let st = state.clone();
        std::thread::spawn(move || {
            while let Ok((mut link, h)) = incoming.recv() {
                if h.role != role || h.rank as usize >= workers {
                    tracing::warn!("parameter server: ignoring {} rank {}", h.role, h.rank);
                    continue;
                }
                let st = st.clone();
                // A worker's requests come every few steps: waiting longer than the job's
                // `timeout_s` for the next one means it is gone.
                if let Err(e) = link.set_timeout(timeout) {
                    tracing::warn!("parameter server: {e}");
                    continue;
                }
                std::thread::spawn(move || serve(&st, link, h.rank as usize));
            }
        });
        Ok(Server {
            addr,
            state,
            counters,
        })
    }

    /// The center model now.
    pub fn center(&self) -> Vec<f32> {
        self.state.center()
    }

    /// Workers the server lost, with the reason.
    pub fn lost(&self) -> Vec<(usize, String)> {
        self.state.lock().lost.clone()
    }
}

/// Serves one worker until it says bye or its connection fails.
fn serve(st: &State, mut link: Link, rank: usize) {
    let r = serve_requests(st, &mut link, rank);
    let mut sh = st.lock();
    sh.live.remove(&rank);
    if let Err(e) = r {
        tracing::warn!("parameter server: worker {rank}: {e}");
        sh.lost.push((rank, e.to_string()));
        if st.synchronous() {
            sh.failed = Some(format!("worker rank {rank} was lost: {e}"));
        }
    }
    drop(sh);
    st.changed.notify_all();
}

fn serve_requests(st: &State, link: &mut Link, rank: usize) -> Result<()> {
    loop {
        // A worker computes between requests; waiting for its next one is not a stall.
        let (h, body) = link.recv("waiting for a request")?;
        if h.kind != Kind::Control {
            return Err(link.protocol(format!("expected a request, got a {:?} frame", h.kind)));
        }
        let req: Request = serde_json::from_slice(&body)
            .map_err(|e| link.protocol(format!("bad request: {e}")))?;
        let tensor = |link: &mut Link| -> Result<Vec<f32>> {
            let (h, payload) = link.recv("receiving a tensor")?;
            let mut out = vec![0.0; st.center.len()];
            compress::decode_into(h.kind, &payload, &mut out, false).map_err(|source| {
                DistError::Frame {
                    peer: link.peer.clone(),
                    source,
                }
            })?;
            Ok(out)
        };
        let (reply, clock) = match req {
            Request::Pull => (st.center(), st.lock().clock),
            Request::Bye => return Ok(()),
            Request::Commit { clock } => {
                let delta = tensor(link)?;
                commit(st, rank, &delta, clock)?
            }
            Request::Gradients { rows, step, lr } => {
                let g = tensor(link)?;
                let out = barrier(st, rank, &g, rows, |sum, rows| {
                    let mut opt = st.optimizer.lock().unwrap_or_else(|p| p.into_inner());
                    if rows > 0.0 {
                        let avg: Vec<f32> = sum.iter().map(|v| v / rows).collect();
                        let grads = split_flat(&*opt, &avg)?;
                        opt.apply_grads(&grads, step, lr)?;
                    }
                    let c = get_flat(&*opt)?;
                    st.set_center(&c);
                    Ok(c)
                })?;
                (out.to_vec(), st.lock().clock)
            }
            Request::Elastic => {
                let w = tensor(link)?;
                let a = alpha(&st.dp);
                if st.algo == PsAlgorithm::Easgd {
                    // Σ Wᵢ arrives in the barrier; center += α(Σ Wᵢ − N·center).
                    let out = barrier(st, rank, &w, 1.0, |sum, n| {
                        let old = st.center();
                        let new: Vec<f32> = old
                            .iter()
                            .zip(sum)
                            .map(|(c, s)| c + a * (s - n * c))
                            .collect();
                        st.set_center(&new);
                        Ok(old)
                    })?;
                    (out.to_vec(), st.lock().clock)
                } else {
                    let sh = st.lock();
                    let old = st.center();
                    let e: Vec<f32> = w.iter().zip(&old).map(|(w, c)| a * (w - c)).collect();
                    st.add_center(&e, 1.0);
                    (old, sh.clock)
                }
            }
        };
        link.send(Kind::F32, clock as u32, &frame::f32_bytes(&reply))?;
    }
}

/// Applies a commit; returns the new center and the server clock.
fn commit(st: &State, rank: usize, delta: &[f32], worker_clock: u64) -> Result<(Vec<f32>, u64)> {
    let mut sh = st.lock();
    if let Some(k) = st.dp.staleness {
        // Stale-synchronous: wait until the slowest live worker is at most k commits behind.
        let mine = sh.clocks[rank];
        let deadline = Instant::now() + st.timeout;
        while let Some(slowest) = sh
            .live
            .iter()
            .filter(|r| **r != rank)
            .map(|r| sh.clocks[*r])
            .min()
        {
            if slowest + k as u64 >= mine {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DistError::Timeout {
                    peer: format!("the slowest worker (at commit {slowest})"),
                    doing: format!("keeping worker {rank} within the staleness bound of {k}"),
                    seconds: st.timeout.as_secs_f64(),
                });
            }
            sh = st.wait(sh, left);
        }
    }
    let scale = match st.algo {
        PsAlgorithm::Dynsgd => 1.0 / (sh.clock.saturating_sub(worker_clock) + 1) as f32,
        _ => 1.0,
    };
    if st.algo == PsAlgorithm::Hogwild {
        // No lock while updating: concurrent commits may overwrite each other's elements.
        sh.clocks[rank] += 1;
        sh.clock += 1;
        let clock = sh.clock;
        drop(sh);
        st.changed.notify_all();
        st.add_center(delta, scale);
        return Ok((st.center(), clock));
    }
    st.add_center(delta, scale);
    sh.clocks[rank] += 1;
    sh.clock += 1;
    let out = (st.center(), sh.clock);
    drop(sh);
    st.changed.notify_all();
    Ok(out)
}

/// Waits until every live worker has contributed `v` (weighted `rows`) this round; the last
/// one runs `finish(sum, total rows)` and everyone gets its result.
fn barrier(
    st: &State,
    rank: usize,
    v: &[f32],
    rows: f32,
    finish: impl FnOnce(&[f32], f32) -> Result<Vec<f32>>,
) -> Result<Arc<Vec<f32>>> {
    let mut sh = st.lock();
    if let Some(f) = &sh.failed {
        return Err(DistError::Aborted(f.clone()));
    }
    let round = &mut sh.round;
    if round.sum.len() != v.len() {
        round.sum = vec![0.0; v.len()];
    }
    for (s, x) in round.sum.iter_mut().zip(v) {
        *s += x;
    }
    round.rows += rows;
    round.arrived.insert(rank);
    let generation = round.generation;
    if sh.live.iter().all(|r| sh.round.arrived.contains(r)) {
        let result = Arc::new(finish(&sh.round.sum, sh.round.rows)?);
        let round = &mut sh.round;
        round.result = result.clone();
        round.generation += 1;
        round.arrived.clear();
        round.sum.fill(0.0);
        round.rows = 0.0;
        sh.clock += 1;
        drop(sh);
        st.changed.notify_all();
        return Ok(result);
    }
    let deadline = Instant::now() + st.timeout;
    loop {
        if sh.round.generation != generation {
            return Ok(sh.round.result.clone());
        }
        if let Some(f) = &sh.failed {
            return Err(DistError::Aborted(f.clone()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let missing: Vec<String> = sh
                .live
                .iter()
                .filter(|r| !sh.round.arrived.contains(r))
                .map(|r| r.to_string())
                .collect();
            return Err(DistError::Timeout {
                peer: format!("worker rank {}", missing.join(", ")),
                doing: "waiting for every worker at the parameter server's barrier".into(),
                seconds: st.timeout.as_secs_f64(),
            });
        }
        sh = st.wait(sh, left);
    }
}
