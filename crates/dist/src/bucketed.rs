//! Synchronous all-reduce of gradients in fusion buckets, overlapped with backward: the
//! executor reports each gradient as soon as it is final, a bucket goes to the
//! communication thread when its last gradient arrives, and the ring reduces it while
//! backward computes the next ones (as Horovod and PyTorch DDP do).

use std::collections::BTreeMap;
use std::sync::mpsc;

use ndarray::{Array1, Array2};

use weft_exec::{ExecError, Executor};
use weft_planner::Plan;

use crate::compress::{Codec, Residual};
use crate::error::{DistError, Result};
use crate::ring::Ring;

/// The plan's fusion buckets over the flat gradient vector.
pub struct Buckets {
    /// Parameter indices of each bucket, in the order backward makes them.
    params: Vec<Vec<usize>>,
    /// Bucket of each parameter.
    of: Vec<usize>,
    /// Start and length of each parameter in the flat vector.
    offsets: Vec<usize>,
    sizes: Vec<usize>,
}

impl Buckets {
    /// The plan's buckets; without them, one bucket of everything.
    pub fn of(plan: &Plan) -> Buckets {
        let sizes: Vec<usize> = plan.params.iter().map(|p| p.shape.numel(1)).collect();
        let offsets = sizes
            .iter()
            .scan(0, |at, n| {
                let s = *at;
                *at += n;
                Some(s)
            })
            .collect();
        let n = sizes.len();
        let mut params: Vec<Vec<usize>> = match &plan.parallel {
            Some(p) if !p.buckets.is_empty() => p
                .buckets
                .iter()
                .map(|b| b.params.iter().copied().filter(|i| *i < n).collect())
                .collect(),
            _ => vec![(0..n).rev().collect()],
        };
        // Any parameter the plan's buckets missed goes into a last bucket of its own.
        let mut of = vec![usize::MAX; n];
        for (b, ps) in params.iter().enumerate() {
            for &i in ps {
                of[i] = b;
            }
        }
        let missed: Vec<usize> = (0..n).filter(|i| of[*i] == usize::MAX).collect();
        if !missed.is_empty() {
            for &i in &missed {
                of[i] = params.len();
            }
            params.push(missed);
        }
        Buckets {
            params,
            of,
            offsets,
            sizes,
        }
    }

    /// How many buckets (one error-feedback state each).
    pub fn count(&self) -> usize {
        self.params.len()
    }

    fn len(&self, b: usize) -> usize {
        self.params[b].iter().map(|i| self.sizes[*i]).sum()
    }

    fn pack(&self, b: usize, flat: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len(b));
        for &i in &self.params[b] {
            out.extend_from_slice(&flat[self.offsets[i]..self.offsets[i] + self.sizes[i]]);
        }
        out
    }

    fn unpack(&self, b: usize, packed: &[f32], flat: &mut [f32]) {
        let mut at = 0;
        for &i in &self.params[b] {
            let n = self.sizes[i];
            flat[self.offsets[i]..self.offsets[i] + n].copy_from_slice(&packed[at..at + n]);
            at += n;
        }
    }
}

/// One synchronous data-parallel step: this worker's gradient on its rows (weighted by the
/// row count; `batch` is `None` when its slice of the global batch is empty), summed over
/// every worker bucket by bucket while backward runs, then divided by the global batch's
/// rows (`global_rows`, which every worker knows) and applied. Returns this worker's loss
/// sum and row count; the caller reduces those once an epoch.
#[allow(clippy::too_many_arguments)]
pub fn step(
    exec: &mut dyn Executor,
    ring: &mut Ring,
    buckets: &Buckets,
    residuals: &mut [Residual],
    batch: Option<(&Array2<f32>, &Array1<f32>)>,
    step: u64,
    lr: f32,
    codec: &Codec,
    global_rows: usize,
) -> Result<(f64, f64)> {
    let tag = step as u32;
    let total: usize = buckets.sizes.iter().sum();
    let nb = buckets.params.len();
    let mut flat = vec![0.0f32; total];
    let (tx, rx) = mpsc::channel::<(usize, Vec<f32>)>();
    let view = buckets;
    let (mut loss, mut rows) = (0.0f32, 0.0f32);
    let reduced = std::thread::scope(|s| -> Result<Vec<(usize, Vec<f32>)>> {
        // The ring takes buckets in index order (backward's order on every worker).
        let comm = s.spawn(move || -> Result<Vec<(usize, Vec<f32>)>> {
            let mut out = Vec::new();
            let mut waiting = BTreeMap::new();
            for (b, data) in rx {
                waiting.insert(b, data);
                while let Some(mut d) = waiting.remove(&out.len()) {
                    let b = out.len();
                    // The last "bucket" is the row count and loss: never compressed.
                    match residuals.get_mut(b) {
                        Some(r) => ring.allreduce(&mut d, tag, codec, r)?,
                        None => {
                            ring.allreduce(&mut d, tag, &Codec::None, &mut Residual::default())?
                        }
                    }
                    out.push((b, d));
                }
            }
            Ok(out)
        });
        match batch {
            Some((x, y)) => {
                rows = x.nrows() as f32;
                let mut pending: Vec<usize> = view.params.iter().map(Vec::len).collect();
                loss = exec.loss_and_grads_streaming(x.view(), y.view(), step, &mut |i, g| {
                    let at = view.offsets[i];
                    for (d, v) in flat[at..at + view.sizes[i]].iter_mut().zip(g.iter()) {
                        *d = v * rows;
                    }
                    let b = view.of[i];
                    pending[b] -= 1;
                    if pending[b] == 0 {
                        // A failed send means the ring failed; its error comes from join.
                        let _ = tx.send((b, view.pack(b, &flat)));
                    }
                })?;
            }
            None => {
                for b in 0..nb {
                    let _ = tx.send((b, vec![0.0; view.len(b)]));
                }
            }
        }
        drop(tx);
        comm.join().unwrap_or_else(|_| {
            Err(DistError::Config(
                "the communication thread panicked".into(),
            ))
        })
    })?;
    if reduced.len() != nb {
        return Err(DistError::Exec(ExecError::Internal(format!(
            "{} of {nb} buckets were reduced",
            reduced.len()
        ))));
    }
    for (b, data) in &reduced {
        view.unpack(*b, data, &mut flat);
    }
    if global_rows > 0 {
        let total = global_rows as f32;
        for v in &mut flat {
            *v /= total;
        }
        let grads = weft_runtime::train::split_flat(&*exec, &flat)?;
        exec.apply_grads(&grads, step, lr)?;
    }
    Ok((f64::from(loss) * f64::from(rows), f64::from(rows)))
}
