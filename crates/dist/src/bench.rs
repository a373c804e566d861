//! Collective benchmarks and checks run by workers: ring all-reduce of known values, timed,
//! with the bytes each worker sent measured on its socket.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use weft_dsl::Compression;

use crate::compress::{Codec, Residual};
use crate::error::{DistError, Result};
use crate::job::Ctx;

/// All-reduce these sizes (f32 elements) `reps` times each, after one warm-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectiveJob {
    pub sizes: Vec<usize>,
    pub reps: usize,
    #[serde(default)]
    pub compression: Compression,
}

/// One size's result on one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectiveResult {
    pub elements: usize,
    /// Median seconds per all-reduce.
    pub seconds: f64,
    /// Largest |result − exact sum| over the elements.
    pub max_error: f64,
    /// Bytes this worker sent per all-reduce, framing included (measured on the socket).
    pub bytes_sent: u64,
}

/// Rank `r`'s value at index `i`; the sum over ranks is exact in f32.
pub fn value(rank: usize, i: usize) -> f32 {
    ((rank + 1) * (i % 97 + 1)) as f32
}

/// Runs a collective job on this worker; each size's result is also pushed as an event.
pub fn run(job: &CollectiveJob, ctx: &Ctx) -> Result<Vec<CollectiveResult>> {
    let mut ring = ctx.ring()?;
    let n = ctx.world();
    let codec = Codec::from_spec(&job.compression);
    let mut out = Vec::new();
    let mut tag = 0u32;
    // The data, a received chunk and the codec's residual, at most: refused up front (a
    // size from the wire must not abort the worker).
    let need = |size: usize| (size as u64).saturating_mul(4 * 3);
    if let (Some(&largest), Some(free)) =
        (job.sizes.iter().max(), crate::launch::available_memory())
    {
        if need(largest) > free {
            return Err(DistError::Config(format!(
                "a collective of {largest} values needs {} of memory, but this worker has {} available",
                weft_common::units::human_bytes(need(largest) as f64),
                weft_common::units::human_bytes(free as f64)
            )));
        }
    }
    for &size in &job.sizes {
        let fill = |d: &mut Vec<f32>| {
            d.clear();
            d.extend((0..size).map(|i| value(ctx.rank, i)));
        };
        let mut data = Vec::new();
        data.try_reserve_exact(size).map_err(|_| {
            DistError::Config(format!(
                "a collective of {size} values does not fit in memory"
            ))
        })?;
        let mut residual = Residual::default();
        fill(&mut data);
        ring.allreduce(&mut data, tag, &codec, &mut residual)?; // warm-up, also the check
        tag = tag.wrapping_add(1);
        let ranks_sum = (n * (n + 1) / 2) as f64;
        let max_error = data
            .iter()
            .enumerate()
            .map(|(i, v)| (f64::from(*v) - ranks_sum * (i % 97 + 1) as f64).abs())
            .fold(0.0, f64::max);
        let mut times = Vec::new();
        let before = ctx.counters.sent();
        for _ in 0..job.reps.max(1) {
            fill(&mut data);
            let t = Instant::now();
            ring.allreduce(&mut data, tag, &codec, &mut residual)?;
            times.push(t.elapsed().as_secs_f64());
            tag = tag.wrapping_add(1);
        }
        times.sort_by(f64::total_cmp);
        let r = CollectiveResult {
            elements: size,
            seconds: times[times.len() / 2],
            max_error,
            bytes_sent: (ctx.counters.sent() - before) / job.reps.max(1) as u64,
        };
        ctx.events.push(crate::job::Event::Collective(r.clone()));
        out.push(r);
    }
    if out.is_empty() {
        return Err(DistError::Config("no sizes to benchmark".into()));
    }
    Ok(out)
}
