//! What a worker runs for a training job: the data-parallel loop for every strategy.
//!
//! Data order follows PyTorch's `DistributedSampler`: every worker shuffles the same global
//! order (seeded as the single-process loop does) and takes its `batch_size` rows of each
//! global batch of `workers × batch_size`. Every worker therefore runs the same number of
//! steps, whatever the shard sizes, so synchronous modes cannot deadlock on unequal shards;
//! a worker whose slice of the last batch is short or empty still takes part in the
//! collective, with its row count as the weight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use weft_data::Dataset;
use weft_dsl::{DataParallel, Optimizer, PsAlgorithm, Sgd, Sync};
use weft_executors::optim::learning_rate;
use weft_executors::train::{gather, get_flat, get_flat_grads, mean_loss, set_flat, EarlyStop};
use weft_executors::Device;
use weft_executors::{ExecError, Executor};
use weft_planner::rng::Rng;
use weft_planner::Plan;

use crate::bucketed::{self, Buckets};
use crate::compress::{Codec, Residual};
use crate::error::{DistError, Result};
use crate::frame::Hello;
use crate::ps::Client;
use crate::ring::Ring;
use crate::transport::{Counters, Link};

/// A training job as the driver sends it (the data travels next to it, in binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainJob {
    pub plan: Plan,
    pub dp: DataParallel,
    /// The parameter server's data-plane address (`sync: parameter_server`).
    pub ps: Option<String>,
    /// First epoch to run (1 unless resuming) and the global step it starts at.
    pub start_epoch: usize,
    pub start_step: u64,
    /// Parameters to start from (resuming), flat in the plan's order.
    pub init: Option<Vec<f32>>,
    /// The spec's `executor.device`: each worker runs its steps there (a GPU worker takes
    /// the adapter of its local rank).
    #[serde(default)]
    pub device: weft_dsl::Device,
}

/// What workers report, in order; the driver polls them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Step {
        epoch: usize,
        done: usize,
        steps: usize,
        loss: f32,
    },
    Epoch {
        epoch: usize,
        train_loss: f32,
        validation_loss: Option<f32>,
        lr: f32,
        samples: u64,
        seconds: f64,
        step: u64,
        /// The model after this epoch (rank 0, or the server's for a parameter server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Vec<f32>>,
    },
    Done(Done),
    Failed {
        message: String,
    },
    Collective(crate::bench::CollectiveResult),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub steps: u64,
    pub samples: u64,
    pub seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub stopped_early: Option<String>,
    /// Final parameters (rank 0 only) and batch-norm statistics (name, rows, cols, values).
    pub params: Option<Vec<f32>>,
    pub buffers: Vec<(String, usize, usize, Vec<f32>)>,
}

/// A worker's running job: its events, and the flag that stops it.
#[derive(Default)]
pub struct Events {
    pub list: Mutex<Vec<Event>>,
    pub abort: AtomicBool,
}

impl Events {
    pub fn push(&self, e: Event) {
        if let Ok(mut l) = self.list.lock() {
            // Only the newest model is kept: a long run would otherwise hold one per epoch.
            if let Event::Epoch {
                params: Some(_), ..
            } = e
            {
                for old in l.iter_mut() {
                    if let Event::Epoch { params, .. } = old {
                        *params = None;
                    }
                }
            }
            l.push(e);
        }
    }
    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

/// Everything about the cluster a job needs.
pub struct Ctx<'a> {
    pub job_id: String,
    pub rank: usize,
    pub peers: Vec<String>,
    pub token: String,
    pub timeout: Duration,
    pub incoming: &'a Receiver<(Link, Hello)>,
    pub counters: Arc<Counters>,
    pub events: Arc<Events>,
}

impl Ctx<'_> {
    pub fn world(&self) -> usize {
        self.peers.len()
    }
    pub fn ring(&self) -> Result<Ring> {
        Ring::join(
            self.rank,
            &self.peers,
            &self.job_id,
            &self.token,
            self.incoming,
            self.counters.clone(),
            self.timeout,
        )
    }
}

/// The plan a worker trains with: EAMSGD's workers run momentum SGD at the algorithm's
/// learning rate, as in Distributed Keras; every other strategy uses the spec's optimizer.
pub fn worker_plan(plan: &Plan, dp: &DataParallel) -> Plan {
    let mut plan = plan.clone();
    if dp.sync == Sync::ParameterServer && dp.algorithm == Some(PsAlgorithm::Eamsgd) {
        plan.train.optimizer = Optimizer::Sgd(Sgd {
            lr: dp.learning_rate,
            momentum: dp.momentum,
            nesterov: true,
            weight_decay: 0.0,
        });
    }
    plan
}

/// Trains this worker's part of the job; returns what it reports at the end.
pub fn train(
    job: &TrainJob,
    train: &Dataset,
    validation: Option<&Dataset>,
    ctx: &Ctx,
) -> Result<Done> {
    let plan = worker_plan(&job.plan, &job.dp);
    let t = &plan.train;
    let dp = &job.dp;
    let (rank, world) = (ctx.rank, ctx.world());
    let n = train.len();
    let b = t.batch_size.max(1);
    let global = b * world;
    let steps_per_epoch = n.div_ceil(global).max(1) as u64;
    let total_steps = steps_per_epoch * t.epochs as u64;
    let codec = Codec::from_spec(&dp.compression);
    let window = dp.communication_window.max(1) as u64;

    let (device, note) = Device::select_for(job.device, local_rank(rank))?;
    if let Some(note) = note {
        tracing::warn!("worker {rank}: {note}");
    }
    let mut exec = device.executor(&plan)?;
    let mut ring = match dp.sync {
        Sync::ParameterServer => None,
        _ => Some(ctx.ring()?),
    };
    let mut ps = match (&dp.sync, &job.ps) {
        (Sync::ParameterServer, Some(addr)) => Some(Client::connect(addr, ctx, dp, &codec)?),
        (Sync::ParameterServer, None) => {
            return Err(DistError::Config(
                "a parameter-server job needs the server's address".into(),
            ))
        }
        _ => None,
    };
    match (&mut ps, &job.init) {
        // The server's model is the one to start from (it holds the resumed weights).
        (Some(client), _) => set_flat(exec.as_mut(), &client.pull()?)?,
        (None, Some(init)) => set_flat(exec.as_mut(), init)?,
        (None, None) => {}
    }
    let buckets = Buckets::of(&plan);
    let mut residuals: Vec<Residual> = vec![Residual::default(); buckets.count()];
    let mut anchor = get_flat(exec.as_ref()); // parameters at the last exchange (PS deltas)

    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 1..job.start_epoch {
        Rng::new(plan.seed, 10_000 + epoch as u64).shuffle(&mut order);
    }
    let (mut xb, mut yb) = (Array2::zeros((0, 0)), Array1::zeros(0));
    let mut step = job.start_step;
    let mut samples = 0u64;
    let started = Instant::now();
    let mut stopper = EarlyStop::new(&t.stop);
    let mut stopped_early = None;

    for epoch in job.start_epoch..=t.epochs {
        let epoch_start = Instant::now();
        Rng::new(plan.seed, 10_000 + epoch as u64).shuffle(&mut order);
        let (mut loss_sum, mut count) = (0.0f64, 0.0f64);
        let mut lr = 0.0;
        let mut epoch_samples = 0u64;
        for k in 0..steps_per_epoch as usize {
            if ctx.events.aborted() {
                return Err(DistError::Aborted(
                    "the driver asked this worker to stop".into(),
                ));
            }
            let lo = (k * global + rank * b).min(n);
            let hi = (k * global + (rank + 1) * b).min(n).min((k + 1) * global);
            let mine = &order[lo..hi];
            lr = learning_rate(t, step, steps_per_epoch, total_steps);
            let tag = step as u32;
            if !mine.is_empty() {
                gather(train, mine, &mut xb, &mut yb);
            }
            let (loss, cnt) = match (dp.sync, &mut ring, &mut ps) {
                (Sync::Allreduce, Some(ring), _) => {
                    let batch = (!mine.is_empty()).then_some((&xb, &yb));
                    bucketed::step(
                        exec.as_mut(),
                        ring,
                        &buckets,
                        &mut residuals,
                        batch,
                        step,
                        lr,
                        &codec,
                        (n - (k * global).min(n)).min(global),
                    )?
                }
                (Sync::ParameterServer, _, Some(client)) => {
                    let algo = dp.algorithm.unwrap_or(PsAlgorithm::Downpour);
                    if algo == PsAlgorithm::Sync {
                        // Gradient × rows (zeros for an empty slice): the server divides
                        // the sum by all workers' rows.
                        let (mut flat, mut l, c) =
                            (vec![0.0f32; anchor.len()], 0.0, mine.len() as f32);
                        if !mine.is_empty() {
                            l = exec.loss_and_grads(xb.view(), yb.view(), step)?;
                            flat = get_flat_grads(exec.as_ref())
                                .into_iter()
                                .map(|v| v * c)
                                .collect();
                        }
                        let center = client.push_gradients(&flat, c, step, lr)?;
                        set_flat(exec.as_mut(), &center)?;
                        (f64::from(l * c), f64::from(c))
                    } else {
                        let l = local_step(exec.as_mut(), &xb, &yb, mine.len(), step, lr)?;
                        if (step + 1).is_multiple_of(window) {
                            let w = get_flat(exec.as_ref());
                            let new = client.exchange(algo, &w, &anchor, window)?;
                            set_flat(exec.as_mut(), &new)?;
                            anchor = new;
                        }
                        (f64::from(l) * mine.len() as f64, mine.len() as f64)
                    }
                }
                (Sync::LocalSgd | Sync::Gossip, Some(ring), _) => {
                    let l = local_step(exec.as_mut(), &xb, &yb, mine.len(), step, lr)?;
                    if (step + 1).is_multiple_of(window) {
                        let mut w = get_flat(exec.as_ref());
                        if dp.sync == Sync::LocalSgd {
                            // Average what each worker learnt since the last average (not
                            // the weights themselves, so compression applies to updates).
                            let mut delta: Vec<f32> =
                                w.iter().zip(&anchor).map(|(w, a)| w - a).collect();
                            average(ring, &mut delta, tag, &codec, &mut residuals[0])?;
                            for ((w, a), d) in w.iter_mut().zip(&anchor).zip(&delta) {
                                *w = a + d;
                            }
                            anchor.clone_from(&w);
                        } else {
                            ring.neighbour_average(&mut w, tag)?;
                        }
                        set_flat(exec.as_mut(), &w)?;
                    }
                    (f64::from(l) * mine.len() as f64, mine.len() as f64)
                }
                _ => {
                    return Err(DistError::Config(
                        "no ring or parameter server for this strategy".into(),
                    ))
                }
            };
            if !loss.is_finite() {
                return Err(ExecError::Diverged {
                    epoch,
                    step,
                    loss: loss as f32,
                }
                .into());
            }
            loss_sum += loss;
            count += cnt;
            epoch_samples += mine.len() as u64;
            step += 1;
            if rank == 0 && (k % 16 == 15 || k + 1 == steps_per_epoch as usize) {
                ctx.events.push(Event::Step {
                    epoch,
                    done: k + 1,
                    steps: steps_per_epoch as usize,
                    loss: (loss_sum / count.max(1.0)) as f32,
                });
            }
        }
        samples += epoch_samples;
        if let (Sync::Allreduce, Some(ring)) = (dp.sync, &mut ring) {
            // The epoch's loss over every worker: all see the same global mean, so all
            // make the same early-stopping decision.
            let mut stats = [loss_sum as f32, count as f32];
            ring.allreduce(
                &mut stats,
                u32::MAX - 1,
                &Codec::None,
                &mut Residual::default(),
            )?;
            (loss_sum, count) = (f64::from(stats[0]), f64::from(stats[1]));
        }
        let train_loss = (loss_sum / count.max(1.0)) as f32;
        let validation_loss = match validation {
            Some(v) if !v.is_empty() && dp.sync == Sync::Allreduce => {
                Some(mean_loss(exec.as_mut(), v, 4096)?)
            }
            _ => None,
        };
        let params = match (rank, &mut ps) {
            (_, Some(client)) if rank == 0 => Some(client.pull()?),
            (0, None) => Some(get_flat(exec.as_ref())),
            _ => None,
        };
        ctx.events.push(Event::Epoch {
            epoch,
            train_loss,
            validation_loss,
            lr,
            samples: epoch_samples,
            seconds: epoch_start.elapsed().as_secs_f64(),
            step,
            params,
        });
        if dp.sync == Sync::Allreduce {
            if let Some(reason) = stopper.check(epoch, train_loss, validation_loss) {
                stopped_early = Some(reason);
                break;
            }
        }
    }
    // Gossip has no global model until the end: one average makes it.
    if let (Sync::Gossip, Some(ring)) = (dp.sync, &mut ring) {
        let mut w = get_flat(exec.as_ref());
        average(
            ring,
            &mut w,
            u32::MAX,
            &Codec::None,
            &mut Residual::default(),
        )?;
        set_flat(exec.as_mut(), &w)?;
    }
    let params = match &mut ps {
        Some(client) => {
            let center = client.pull()?;
            client.bye()?;
            (rank == 0).then_some(center)
        }
        None => (rank == 0).then(|| get_flat(exec.as_ref())),
    };
    let buffers = exec
        .buffers()
        .into_iter()
        .map(|(name, a)| (name, a.nrows(), a.ncols(), a.iter().copied().collect()))
        .collect();
    Ok(Done {
        steps: step - job.start_step,
        samples,
        seconds: started.elapsed().as_secs_f64(),
        bytes_sent: ctx.counters.sent(),
        bytes_received: ctx.counters.received(),
        stopped_early,
        params,
        buffers,
    })
}

/// This worker's index among the workers of its machine: `LOCAL_RANK` (torchrun and
/// friends) when set, else its rank (local workers are ranks 0..N on one machine).
fn local_rank(rank: usize) -> usize {
    match std::env::var("LOCAL_RANK") {
        Err(_) => rank,
        Ok(v) => v.parse().unwrap_or_else(|_| {
            tracing::warn!("LOCAL_RANK={v:?} is not a number; worker {rank} picks by its rank");
            rank
        }),
    }
}

/// One local optimizer step on this worker's rows (none when its slice is empty).
fn local_step(
    exec: &mut dyn Executor,
    xb: &Array2<f32>,
    yb: &Array1<f32>,
    rows: usize,
    step: u64,
    lr: f32,
) -> Result<f32> {
    if rows == 0 {
        return Ok(0.0);
    }
    Ok(exec.train_step(xb.view(), yb.view(), step, lr)?)
}

/// Averages `w` over the ring (local SGD, and gossip's final model).
fn average(
    ring: &mut Ring,
    w: &mut [f32],
    tag: u32,
    codec: &Codec,
    residual: &mut Residual,
) -> Result<()> {
    ring.allreduce(w, tag, codec, residual)?;
    let n = ring.world as f32;
    for v in w.iter_mut() {
        *v /= n;
    }
    Ok(())
}
