//! What a worker runs for a training job: the one training loop (weft-runtime's `fit`) with
//! the exchange of the job's strategy (`exchange.rs`).
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

use serde::{Deserialize, Serialize};
use weft_data::{Dataset, Part};
use weft_dsl::{DataParallel, Optimizer, PsAlgorithm, Sgd, Sync};
use weft_exec::Device;
use weft_planner::Plan;
use weft_runtime::checkpoint::{Resume, Snapshot, Start};
use weft_runtime::train::{fit, get_flat, EpochEnd, Progress, Rows, Splits};
use weft_runtime::RunError;

use crate::error::Result;
use crate::exchange;
use crate::frame::Hello;
use crate::ring::Ring;
use crate::transport::{Counters, Link};

/// A training job as the driver sends it (the data travels next to it, in binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainJob {
    pub plan: Plan,
    pub dp: DataParallel,
    /// The parameter server's data-plane address (`sync: parameter_server`).
    pub ps: Option<String>,
    /// The checkpoint to continue from (resuming): where, and the model and optimizer
    /// state every worker starts with.
    pub resume: Option<Resume>,
    /// The spec's `executor.device`: each worker runs its steps there (a GPU worker takes
    /// the adapter of its local rank).
    #[serde(default)]
    pub device: weft_dsl::Device,
    /// A streamed data set: each worker reads its shard of the files itself (the job carries
    /// no rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamJob>,
}

/// What a worker needs to read its shard of a streamed data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamJob {
    pub set: weft_data::StreamSet,
    /// The shuffle buffer's rows.
    pub buffer: usize,
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
        /// Where a run resumed after this epoch continues.
        next: Start,
        /// The model and optimizer state after this epoch (rank 0; the server's model for
        /// a parameter server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Box<Snapshot>>,
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
                snapshot: Some(_), ..
            } = e
            {
                for old in l.iter_mut() {
                    if let Event::Epoch { snapshot, .. } = old {
                        *snapshot = None;
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

/// Trains this worker's part of the job with the one training loop; returns what it
/// reports at the end.
pub fn train(
    job: &TrainJob,
    train: &Dataset,
    validation: Option<&Dataset>,
    ctx: &Ctx,
) -> Result<Done> {
    let plan = worker_plan(&job.plan, &job.dp);
    let dp = &job.dp;
    let rank = ctx.rank;
    let started = Instant::now();

    let (device, note) = Device::select_for(job.device, local_rank(rank))?;
    if let Some(note) = note {
        tracing::warn!("worker {rank}: {note}");
    }
    let mut exec = device.executor(&plan)?;
    let mut exchange = exchange::connect(dp, job.ps.as_deref(), &plan, ctx)?;

    let mut report = Report {
        events: &ctx.events,
        rank,
        epoch: 0,
        steps: 0,
    };
    let mut epoch_end = |e: &EpochEnd| -> Result<(), RunError> {
        // A worker is only stopped by its driver, which keeps the epochs' checkpoints.
        let Some(record) = e.record else {
            return Ok(());
        };
        ctx.events.push(Event::Epoch {
            epoch: record.epoch,
            train_loss: record.train_loss,
            validation_loss: record.validation_loss,
            lr: record.lr,
            samples: e.samples,
            seconds: record.seconds,
            step: e.next.step,
            next: e.next,
            snapshot: e.snapshot.cloned().map(Box::new),
        });
        Ok(())
    };
    let start_step = job.resume.as_ref().map_or(0, |r| r.at.step);
    let set = job
        .stream
        .as_ref()
        .map(|s| (Arc::new(s.set.clone()), s.buffer));
    let data = match &set {
        Some((set, buffer)) => Splits {
            train: Rows::Stream {
                set,
                part: Part::Train,
                buffer: *buffer,
            },
            validation: (set.rows(Part::Validation) > 0).then_some(Rows::Stream {
                set,
                part: Part::Validation,
                buffer: *buffer,
            }),
        },
        None => Splits::memory(train, validation),
    };
    let outcome = fit(
        exec.as_mut(),
        &plan,
        data,
        exchange.as_mut(),
        &mut report,
        job.resume.as_ref(),
        Some(&mut epoch_end),
    )?;
    let params = (rank == 0).then(|| get_flat(exec.as_ref())).transpose()?;
    let buffers = exec
        .buffers()?
        .into_iter()
        .map(|(name, a)| (name, a.nrows(), a.ncols(), a.iter().copied().collect()))
        .collect();
    Ok(Done {
        steps: outcome.steps - start_step,
        samples: outcome.samples,
        seconds: started.elapsed().as_secs_f64(),
        bytes_sent: ctx.counters.sent(),
        bytes_received: ctx.counters.received(),
        stopped_early: outcome.stopped_early,
        params,
        buffers,
    })
}

/// A worker's progress, as events for its driver: rank 0 reports the running loss every few
/// steps; the driver's stop flag ends the run at the next step.
struct Report<'a> {
    events: &'a Events,
    rank: usize,
    epoch: usize,
    steps: usize,
}

impl Progress for Report<'_> {
    fn epoch_start(&mut self, epoch: usize, _epochs: usize, steps: usize) {
        (self.epoch, self.steps) = (epoch, steps);
    }

    fn step(&mut self, done: usize, loss: f32) {
        if self.rank == 0 {
            self.events.push(Event::Step {
                epoch: self.epoch,
                done,
                steps: self.steps,
                loss,
            });
        }
    }

    fn stop_requested(&self) -> Option<String> {
        self.events
            .aborted()
            .then(|| "the driver asked this worker to stop".to_string())
    }
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
