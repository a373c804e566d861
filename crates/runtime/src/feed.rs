//! Where the loop's batches come from: a data set in memory (every row shuffled each epoch,
//! each worker taking its slice of every global batch) or a split of a streamed set (each
//! worker reading its shard through a shuffle buffer). Both give every worker the same number
//! of steps per epoch, so a worker whose rows ran out still joins synchronous steps (with no
//! batch), never leaving the others waiting.

use std::sync::Arc;

use ndarray::{Array1, Array2};
use weft_common::rng::Rng;
use weft_data::stream::EpochBatches;
use weft_data::{Dataset, Part, StreamSet};
use weft_exec::Executor;

use crate::error::RunError;
use crate::train::gather;

/// The rows a run trains or evaluates on.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// A data set in memory.
    Memory(&'a Dataset),
    /// One split of a streamed set; `buffer` is the shuffle buffer's rows when training.
    Stream {
        set: &'a Arc<StreamSet>,
        part: Part,
        buffer: usize,
    },
}

impl Rows<'_> {
    /// Rows over every worker.
    pub fn len(&self) -> usize {
        match self {
            Rows::Memory(d) => d.len(),
            Rows::Stream { set, part, .. } => {
                usize::try_from(set.rows(*part)).unwrap_or(usize::MAX)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One worker's batches, epoch after epoch.
pub(crate) struct Feed<'a> {
    rows: Rows<'a>,
    rank: usize,
    /// Rows per worker per step, and per step over every worker.
    b: usize,
    global: usize,
    /// Memory: the epoch's order of every row.
    order: Vec<usize>,
    /// Stream: each worker's train rows, and this worker's batches of the epoch.
    shard_rows: Vec<u64>,
    batches: Option<EpochBatches>,
    /// Rows of the last batch.
    last: usize,
}

impl<'a> Feed<'a> {
    /// The feed of worker `rank` of `world` taking `batch_size` rows a step, positioned
    /// before `first_epoch` (a resumed run's earlier epochs shuffled the order as they went).
    pub(crate) fn new(
        rows: Rows<'a>,
        (rank, world): (usize, usize),
        batch_size: usize,
        seed: u64,
        first_epoch: usize,
    ) -> Feed<'a> {
        let n = rows.len();
        let b = batch_size.clamp(1, n.max(1));
        let mut feed = Feed {
            rows,
            rank,
            b,
            global: b.saturating_mul(world),
            order: Vec::new(),
            shard_rows: Vec::new(),
            batches: None,
            last: 0,
        };
        match rows {
            Rows::Memory(_) => {
                feed.order = (0..n).collect();
                for epoch in 1..first_epoch {
                    Rng::new(seed, 10_000 + epoch as u64).shuffle(&mut feed.order);
                }
            }
            Rows::Stream { set, part, .. } => {
                feed.shard_rows = set.shards(part, world).iter().map(|s| s.1).collect();
            }
        }
        feed
    }

    /// Rows per worker per step.
    pub(crate) fn batch_rows(&self) -> usize {
        self.b
    }

    /// Steps in an epoch (the same on every worker).
    pub(crate) fn steps(&self) -> usize {
        match self.rows {
            Rows::Memory(d) => d.len().div_ceil(self.global).max(1),
            Rows::Stream { .. } => {
                let most = self.shard_rows.iter().copied().max().unwrap_or(0);
                usize::try_from(most.div_ceil(self.b as u64))
                    .unwrap_or(usize::MAX)
                    .max(1)
            }
        }
    }

    /// Rows of step `k` over every worker.
    pub(crate) fn global_rows(&self, k: usize) -> usize {
        match self.rows {
            Rows::Memory(d) => (d.len() - (k * self.global).min(d.len())).min(self.global),
            Rows::Stream { .. } => {
                let done = (k as u64).saturating_mul(self.b as u64);
                let rows: u64 = self
                    .shard_rows
                    .iter()
                    .map(|&r| r.saturating_sub(done).min(self.b as u64))
                    .sum();
                usize::try_from(rows).unwrap_or(usize::MAX)
            }
        }
    }

    /// Starts epoch `epoch`, skipping its first `skip` batches (trained before a resume).
    pub(crate) fn start_epoch(
        &mut self,
        seed: u64,
        epoch: usize,
        world: usize,
        skip: usize,
    ) -> Result<(), RunError> {
        match self.rows {
            Rows::Memory(_) => Rng::new(seed, 10_000 + epoch as u64).shuffle(&mut self.order),
            Rows::Stream { set, buffer, .. } => {
                let order = set.train_order(seed, epoch, (self.rank, world), self.b, buffer);
                let mut batches = set.read(order);
                for _ in 0..skip {
                    if let Some(b) = batches.next() {
                        b?;
                    }
                }
                self.batches = Some(batches);
            }
        }
        Ok(())
    }

    /// This worker's rows of step `k` into `xb`/`yb` (and their weights into `exec`); false
    /// when it has none in this step.
    pub(crate) fn batch(
        &mut self,
        k: usize,
        xb: &mut Array2<f32>,
        yb: &mut Array1<f32>,
        wb: &mut Vec<f32>,
        exec: &mut dyn Executor,
    ) -> Result<bool, RunError> {
        self.last = 0;
        match self.rows {
            Rows::Memory(d) => {
                let n = d.len();
                let lo = (k * self.global + self.rank * self.b).min(n);
                let hi = (k * self.global + (self.rank + 1) * self.b).min(n);
                let mine = &self.order[lo..hi];
                if mine.is_empty() {
                    return Ok(false);
                }
                gather(d, mine, xb, yb);
                if let Some(w) = &d.w {
                    wb.clear();
                    wb.extend(mine.iter().map(|&i| w[i]));
                    exec.set_sample_weights(Some(wb));
                }
                self.last = mine.len();
            }
            Rows::Stream { .. } => {
                let mine = self.shard_rows.get(self.rank).copied().unwrap_or(0);
                if (k as u64).saturating_mul(self.b as u64) >= mine {
                    return Ok(false);
                }
                let next = self.batches.as_mut().and_then(Iterator::next);
                let batch = next.ok_or_else(|| {
                    RunError::Internal("the data reader stopped before the epoch ended".into())
                })??;
                if let Some(w) = &batch.w {
                    match w.as_slice() {
                        Some(s) => exec.set_sample_weights(Some(s)),
                        None => exec.set_sample_weights(Some(&w.to_vec())),
                    }
                }
                self.last = batch.y.len();
                *xb = batch.x;
                *yb = batch.y;
            }
        }
        Ok(true)
    }

    /// Rows of the last batch this worker took.
    pub(crate) fn last_rows(&self) -> usize {
        self.last
    }
}

/// Calls `f` with every batch of `rows` in order (evaluation), `chunk` rows at a time.
pub fn each_batch(
    rows: Rows,
    chunk: usize,
    mut f: impl FnMut(
        ndarray::ArrayView2<f32>,
        ndarray::ArrayView1<f32>,
        Option<&[f32]>,
    ) -> Result<(), RunError>,
) -> Result<(), RunError> {
    match rows {
        Rows::Memory(d) => {
            for start in (0..d.len()).step_by(chunk.max(1)) {
                let end = (start + chunk).min(d.len());
                let w =
                    d.w.as_ref()
                        .map(|w| w.slice(ndarray::s![start..end]).to_vec());
                f(
                    d.x.slice(ndarray::s![start..end, ..]),
                    d.y.slice(ndarray::s![start..end]),
                    w.as_deref(),
                )?;
            }
        }
        Rows::Stream { set, part, .. } => {
            for b in set.read(set.eval_order(&[part], chunk)) {
                let b = b?;
                let w = b.w.as_ref().map(|w| w.to_vec());
                f(b.x.view(), b.y.view(), w.as_deref())?;
            }
        }
    }
    Ok(())
}
