//! The data-parallel modes as [`Exchange`]s of the one training loop: ring all-reduce of
//! bucketed gradients, the parameter-server family (synchronous gradients, or weights every
//! `communication_window` steps for the asynchronous and elastic algorithms), local SGD
//! (averaged updates every window) and gossip (neighbour averages, one global average at the
//! end).

use ndarray::{Array1, Array2};
use weft_dsl::{DataParallel, PsAlgorithm, Sync};
use weft_exec::Executor;
use weft_planner::Plan;
use weft_runtime::checkpoint::Snapshot;
use weft_runtime::exchange::{Exchange, Local, StepAt};
use weft_runtime::train::{get_flat, get_flat_grads, set_flat};
use weft_runtime::RunError;

use crate::bucketed::{self, Buckets};
use crate::compress::{Codec, Residual};
use crate::error::{DistError, Result};
use crate::job::Ctx;
use crate::ps::Client;
use crate::ring::Ring;

/// Synchronous data parallelism: every step's gradients, in fusion buckets sent while
/// backward goes on, summed over the ring; every worker applies the same mean gradient.
pub struct Allreduce {
    pub ring: Ring,
    pub rank: usize,
    pub buckets: Buckets,
    pub residuals: Vec<Residual>,
    pub codec: Codec,
}

impl Exchange for Allreduce {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.ring.world
    }
    fn name(&self) -> &'static str {
        "allreduce"
    }

    fn step(
        &mut self,
        exec: &mut dyn Executor,
        batch: Option<(&Array2<f32>, &Array1<f32>)>,
        at: StepAt,
    ) -> Result<Option<f32>, RunError> {
        let (loss_rows, rows) = bucketed::step(
            exec,
            &mut self.ring,
            &self.buckets,
            &mut self.residuals,
            batch,
            at.step,
            at.lr,
            &self.codec,
            at.global_rows,
        )?;
        Ok(Some(if rows > 0.0 {
            (loss_rows / rows) as f32
        } else {
            0.0
        }))
    }

    fn epoch_loss(&mut self, sum: f64, rows: f64) -> Result<(f64, f64), RunError> {
        // The epoch's loss over every worker: all see the same global mean, so all make the
        // same early-stopping decision.
        let mut stats = [sum as f32, rows as f32];
        self.ring.allreduce(
            &mut stats,
            u32::MAX - 1,
            &Codec::None,
            &mut Residual::default(),
        )?;
        Ok((f64::from(stats[0]), f64::from(stats[1])))
    }
}

/// The parameter-server family. `sync`: every step's gradients (× rows) go to the server,
/// which applies their mean and returns the model. The others (downpour, adag, dynsgd,
/// hogwild, the elastic easgd/aeasgd/eamsgd) train locally and exchange weights or deltas
/// every `window` steps.
pub struct ParameterServer {
    pub client: Client,
    pub rank: usize,
    pub world: usize,
    pub algorithm: PsAlgorithm,
    pub window: u64,
    /// The parameters at the last exchange (what a delta is taken against).
    pub anchor: Vec<f32>,
}

impl Exchange for ParameterServer {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn name(&self) -> &'static str {
        "parameter_server"
    }

    fn start(&mut self, exec: &mut dyn Executor) -> Result<(), RunError> {
        // The server's model is the one to start from (it holds the resumed weights).
        let center = self.client.pull()?;
        set_flat(exec, &center)?;
        self.anchor = center;
        Ok(())
    }

    fn step(
        &mut self,
        exec: &mut dyn Executor,
        batch: Option<(&Array2<f32>, &Array1<f32>)>,
        at: StepAt,
    ) -> Result<Option<f32>, RunError> {
        if self.algorithm == PsAlgorithm::Sync {
            // Gradient × rows (zeros for an empty slice): the server divides the sum by all
            // workers' rows.
            let (mut flat, mut loss, mut rows) = (vec![0.0f32; self.anchor.len()], 0.0, 0.0);
            if let Some((x, y)) = batch {
                rows = x.nrows() as f32;
                loss = exec.loss_and_grads(x.view(), y.view(), at.step)?;
                flat = get_flat_grads(exec)?
                    .into_iter()
                    .map(|v| v * rows)
                    .collect();
            }
            let center = self.client.push_gradients(&flat, rows, at.step, at.lr)?;
            set_flat(exec, &center)?;
            return Ok(Some(loss));
        }
        // A local step, as a single process takes it (a GPU keeps its loss on the device).
        let loss = Local.step(exec, batch, at)?;
        if (at.step + 1).is_multiple_of(self.window) {
            let w = get_flat(exec)?;
            let new = self
                .client
                .exchange(self.algorithm, &w, &self.anchor, self.window)?;
            set_flat(exec, &new)?;
            self.anchor = new;
        }
        Ok(loss)
    }

    fn synchronous(&self) -> bool {
        false
    }

    fn snapshot(&mut self, exec: &mut dyn Executor) -> Result<Option<Snapshot>, RunError> {
        if self.rank != 0 {
            return Ok(None);
        }
        // The server's model is the run's, whatever this worker holds. The server's
        // optimizer state stays with it: an asynchronous run is not reproducible step for
        // step, and a resumed one starts the server's moments afresh.
        Ok(Some(Snapshot {
            params: self.client.pull()?,
            buffers: Snapshot::read_buffers(exec)?,
            ..Snapshot::default()
        }))
    }

    fn finish(&mut self, exec: &mut dyn Executor) -> Result<(), RunError> {
        let center = self.client.pull()?;
        self.client.bye()?;
        set_flat(exec, &center)?;
        Ok(())
    }
}

/// Local SGD and gossip: every worker trains on its own rows; every `window` steps local
/// SGD averages what each worker learnt since the last average (updates, not weights, so
/// compression applies to updates) and gossip averages with the ring neighbours. Gossip has
/// no global model until the end, where one average makes it.
pub struct Periodic {
    pub ring: Ring,
    pub rank: usize,
    pub gossip: bool,
    pub window: u64,
    pub codec: Codec,
    pub residual: Residual,
    pub anchor: Vec<f32>,
}

impl Exchange for Periodic {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.ring.world
    }
    fn name(&self) -> &'static str {
        if self.gossip {
            "gossip"
        } else {
            "local_sgd"
        }
    }

    fn start(&mut self, exec: &mut dyn Executor) -> Result<(), RunError> {
        self.anchor = get_flat(exec)?;
        Ok(())
    }

    fn step(
        &mut self,
        exec: &mut dyn Executor,
        batch: Option<(&Array2<f32>, &Array1<f32>)>,
        at: StepAt,
    ) -> Result<Option<f32>, RunError> {
        let loss = Local.step(exec, batch, at)?;
        if (at.step + 1).is_multiple_of(self.window) {
            let tag = at.step as u32;
            let mut w = get_flat(exec)?;
            if self.gossip {
                self.ring.neighbour_average(&mut w, tag)?;
            } else {
                let mut delta: Vec<f32> = w.iter().zip(&self.anchor).map(|(w, a)| w - a).collect();
                average(
                    &mut self.ring,
                    &mut delta,
                    tag,
                    &self.codec,
                    &mut self.residual,
                )?;
                for ((w, a), d) in w.iter_mut().zip(&self.anchor).zip(&delta) {
                    *w = a + d;
                }
                self.anchor.clone_from(&w);
            }
            set_flat(exec, &w)?;
        }
        Ok(loss)
    }

    fn synchronous(&self) -> bool {
        false
    }

    fn finish(&mut self, exec: &mut dyn Executor) -> Result<(), RunError> {
        if self.gossip {
            let mut w = get_flat(exec)?;
            average(
                &mut self.ring,
                &mut w,
                u32::MAX,
                &Codec::None,
                &mut Residual::default(),
            )?;
            set_flat(exec, &w)?;
        }
        Ok(())
    }
}

/// The exchange for a job's strategy, connected: it joins the ring, or the parameter
/// server at `ps` (the job's address of it).
pub fn connect(
    dp: &DataParallel,
    ps: Option<&str>,
    plan: &Plan,
    ctx: &Ctx,
) -> Result<Box<dyn Exchange>> {
    let codec = Codec::from_spec(&dp.compression);
    let window = dp.communication_window.max(1) as u64;
    let rank = ctx.rank;
    Ok(match dp.sync {
        Sync::Allreduce => {
            let buckets = Buckets::of(plan);
            Box::new(Allreduce {
                ring: ctx.ring()?,
                rank,
                residuals: vec![Residual::default(); buckets.count()],
                buckets,
                codec,
            })
        }
        Sync::ParameterServer => {
            let addr = ps.ok_or_else(|| {
                DistError::Config("a parameter-server job needs the server's address".into())
            })?;
            Box::new(ParameterServer {
                client: Client::connect(addr, ctx, dp, &codec)?,
                rank,
                world: ctx.world(),
                algorithm: dp.algorithm.unwrap_or(PsAlgorithm::Downpour),
                window,
                anchor: Vec::new(),
            })
        }
        Sync::LocalSgd | Sync::Gossip => Box::new(Periodic {
            ring: ctx.ring()?,
            rank,
            gossip: dp.sync == Sync::Gossip,
            window,
            codec,
            residual: Residual::default(),
            anchor: Vec::new(),
        }),
    })
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
