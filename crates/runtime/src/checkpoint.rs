//! Checkpoints: everything a run needs to continue exactly where it stopped, in one atomic
//! file. `checkpoint.safetensors` holds the parameters, the batch-norm statistics, the
//! optimizer's moments and L-BFGS history as tensors, and in its metadata where the loop
//! stood ([`Start`]: epoch, step, batch within the epoch, the epoch's partial loss, the
//! early-stopping counters) and a CRC-32 of all of it. One file written by rename is one
//! unit: a kill at any moment leaves either the previous checkpoint or the new one whole.
//! Data order, dropout masks and the learning rate are functions of the seed and the step,
//! so a resumed CPU run's weights are bit-identical to an uninterrupted run's.

use std::collections::HashMap;

use ndarray::Array2;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use weft_exec::optim::OptimState;
use weft_exec::Executor;
use weft_planner::Plan;

use crate::error::RunError;
use crate::lbfgs::LbfgsState;
use crate::rundir::{
    le_bytes, le_floats, named_tensors, raw_tensors, serialize, write_atomic, RawTensor, RunDir,
};
use crate::train::{get_flat, set_flat};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// Written by weft before checkpoints were one file; such a run cannot be resumed exactly.
const OLD_STATE_FILE: &str = "checkpoint.json";
const FORMAT: &str = "weft-checkpoint-2";
const OPT_M: &str = "optimizer.m/";
const OPT_V: &str = "optimizer.v/";
const LBFGS_S: &str = "lbfgs.s/";
const LBFGS_Y: &str = "lbfgs.y/";

/// Where training starts: epoch 1, step 0, unless resuming from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// The epoch to run (the first, or the one a checkpoint stopped in).
    pub epoch: usize,
    /// The global step.
    pub step: u64,
    /// Batches of `epoch` already done (a checkpoint written mid-epoch, on Ctrl-C).
    #[serde(default)]
    pub batch: usize,
    /// Those batches' loss sum (f64 bits, exact) and rows.
    #[serde(default)]
    pub loss_sum_bits: u64,
    #[serde(default)]
    pub samples: u64,
    /// Early stopping's best monitored loss so far (`None`: none yet) and epochs since it.
    #[serde(default)]
    pub best: Option<f32>,
    #[serde(default)]
    pub since_best: usize,
    /// Early stopping ended the run here: a resume has no epochs left to train.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl Default for Start {
    fn default() -> Start {
        Start {
            epoch: 1,
            step: 0,
            batch: 0,
            loss_sum_bits: 0,
            samples: 0,
            best: None,
            since_best: 0,
            stopped: false,
        }
    }
}

impl Start {
    /// The last epoch finished before this point.
    pub fn finished_epochs(&self) -> usize {
        self.epoch.saturating_sub(1)
    }

    /// "after epoch 3 (step 120)" or "in epoch 4 after 7 batches (step 127)".
    pub fn describe(&self) -> String {
        if self.batch == 0 {
            format!(
                "after epoch {} (step {})",
                self.finished_epochs(),
                self.step
            )
        } else {
            format!(
                "in epoch {} after {} batches (step {})",
                self.epoch, self.batch, self.step
            )
        }
    }
}

/// The model and optimizer state of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Parameters, flat in the plan's `params` order.
    pub params: Vec<f32>,
    /// Batch-norm running statistics: (name, values), each a row.
    pub buffers: Vec<(String, Vec<f32>)>,
    pub optimizer: OptimState,
    /// L-BFGS curvature pairs (s, y), oldest first.
    pub lbfgs: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Snapshot {
    /// Reads the model, statistics and optimizer state from an executor.
    pub fn read(exec: &dyn Executor) -> Result<Snapshot, RunError> {
        Ok(Snapshot {
            params: get_flat(exec)?,
            buffers: Snapshot::read_buffers(exec)?,
            optimizer: exec.optimizer_state()?,
            lbfgs: Vec::new(),
        })
    }

    /// The batch-norm statistics of an executor, as a snapshot holds them.
    pub fn read_buffers(exec: &dyn Executor) -> Result<Vec<(String, Vec<f32>)>, RunError> {
        Ok(exec
            .buffers()?
            .into_iter()
            .map(|(n, a)| (n, a.iter().copied().collect()))
            .collect())
    }

    /// Puts the model, statistics and optimizer state into an executor.
    pub fn restore(&self, exec: &mut dyn Executor) -> Result<(), RunError> {
        set_flat(exec, &self.params)?;
        let buffers: Vec<(String, Array2<f32>)> = self
            .buffers
            .iter()
            .map(|(n, v)| (n.clone(), row(v)))
            .collect();
        exec.set_buffers(&buffers);
        exec.set_optimizer_state(&self.optimizer)?;
        Ok(())
    }

    /// The first value that is not finite, among parameters and statistics.
    pub fn non_finite(&self) -> Option<f32> {
        self.params
            .iter()
            .chain(self.buffers.iter().flat_map(|(_, v)| v))
            .find(|v| !v.is_finite())
            .copied()
    }

    pub(crate) fn lbfgs_state(&self) -> LbfgsState {
        LbfgsState {
            s: self.lbfgs.iter().map(|(s, _)| s.clone()).collect(),
            y: self.lbfgs.iter().map(|(_, y)| y.clone()).collect(),
        }
    }

    pub(crate) fn set_lbfgs(&mut self, st: &LbfgsState) {
        self.lbfgs = st.s.iter().cloned().zip(st.y.iter().cloned()).collect();
    }
}

/// What a checkpoint holds: where to continue and the state to continue with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub at: Start,
    pub snapshot: Snapshot,
}

fn row(v: &[f32]) -> Array2<f32> {
    Array2::from_shape_vec((1, v.len()), v.to_vec()).unwrap_or_default()
}

fn bad(dir: &RunDir, message: impl std::fmt::Display) -> RunError {
    RunError::Model {
        path: dir.file(CHECKPOINT_FILE).display().to_string(),
        message: message.to_string(),
    }
}

/// CRC-32 of the tensors (in name order, each name then its bytes) and the position.
fn checksum(tensors: &[RawTensor], at: &str) -> u32 {
    let mut order: Vec<&RawTensor> = tensors.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = crc32fast::Hasher::new();
    for (name, shape, bytes) in order {
        h.update(name.as_bytes());
        for d in shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        h.update(bytes);
    }
    h.update(at.as_bytes());
    h.finalize()
}

impl RunDir {
    /// Writes a checkpoint as one file, atomically (see the module documentation).
    pub fn write_checkpoint(&self, plan: &Plan, resume: &Resume) -> Result<(), RunError> {
        let s = &resume.snapshot;
        let mut tensors: Vec<RawTensor> = Vec::new();
        let mut add = |name: String, a: &Array2<f32>| {
            let bytes = le_bytes(a.iter());
            tensors.push((name, vec![a.nrows(), a.ncols()], bytes));
        };
        for (name, a) in named_tensors(plan, &s.params) {
            add(name, &a);
        }
        for (name, v) in &s.buffers {
            add(name.clone(), &row(v));
        }
        for (prefix, flat) in [(OPT_M, &s.optimizer.m), (OPT_V, &s.optimizer.v)] {
            for (name, a) in named_tensors(plan, flat) {
                add(format!("{prefix}{name}"), &a);
            }
        }
        for (i, (sv, yv)) in s.lbfgs.iter().enumerate() {
            add(format!("{LBFGS_S}{i:04}"), &row(sv));
            add(format!("{LBFGS_Y}{i:04}"), &row(yv));
        }
        let at =
            serde_json::to_string(&resume.at).map_err(|e| RunError::Internal(e.to_string()))?;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("start".to_string(), at.clone()),
            (
                "optimizer_updates".to_string(),
                s.optimizer.updates.to_string(),
            ),
            (
                "crc32".to_string(),
                format!(
                    "{:08x}",
                    checksum(&tensors, &format!("{at}|{}", s.optimizer.updates))
                ),
            ),
        ]);
        write_atomic(
            &self.file(CHECKPOINT_FILE),
            &serialize(&tensors, Some(meta))?,
        )?;
        // A checkpoint from before this format would describe other weights.
        let _ = std::fs::remove_file(self.file(OLD_STATE_FILE));
        Ok(())
    }

    /// Whether the run has a checkpoint file (of any weft version).
    pub fn has_checkpoint(&self) -> bool {
        self.file(CHECKPOINT_FILE).is_file()
    }

    /// Where the checkpoint stands, from its header alone (for messages).
    pub fn checkpoint_position(&self) -> Option<Start> {
        let bytes = std::fs::read(self.file(CHECKPOINT_FILE)).ok()?;
        let (_, header) = SafeTensors::read_metadata(&bytes).ok()?;
        let meta = header.metadata().as_ref()?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return None;
        }
        serde_json::from_str(meta.get("start")?).ok()
    }

    /// Reads and verifies the checkpoint, for the plan the run resumes with.
    pub fn read_checkpoint(&self, plan: &Plan) -> Result<Resume, RunError> {
        let path = self.file(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad(
                self,
                "there is no checkpoint: the run stopped before its first epoch ended; start it again",
            ),
            _ => RunError::io(&path, e),
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(self, e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(
                self,
                "written by an older weft (without the optimizer state); it cannot be resumed exactly: start the run again",
            ));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(self, e))?;
        let at_text = meta.get("start").cloned().unwrap_or_default();
        let tensors = raw_tensors(&st).map_err(|e| bad(self, e))?;
        let updates_text = meta.get("optimizer_updates").cloned().unwrap_or_default();
        let want = meta.get("crc32").cloned().unwrap_or_default();
        let got = format!(
            "{:08x}",
            checksum(&tensors, &format!("{at_text}|{updates_text}"))
        );
        if want != got {
            return Err(bad(
                self,
                format!("the checksum does not match (stored {want}, computed {got}): the file is damaged"),
            ));
        }
        let at: Start = serde_json::from_str(&at_text).map_err(|e| bad(self, e))?;
        let updates: u64 = updates_text.parse().map_err(|_| {
            bad(
                self,
                format!("optimizer_updates `{updates_text}` is not a count"),
            )
        })?;
        let floats = le_floats;
        let by_name: HashMap<&str, &Vec<u8>> =
            tensors.iter().map(|(n, _, b)| (n.as_str(), b)).collect();
        // Parameters and optimizer slots in the plan's order; a missing or misshapen one is
        // a different model.
        let flat = |prefix: &str| -> Result<Vec<f32>, RunError> {
            let mut out = Vec::new();
            for p in &plan.params {
                let name = format!("{prefix}{}", p.name);
                let b = by_name.get(name.as_str()).ok_or_else(|| {
                    bad(
                        self,
                        format!("tensor `{name}` is missing: the checkpoint is of another model"),
                    )
                })?;
                if b.len() != 4 * p.shape.numel(1) {
                    return Err(bad(
                        self,
                        format!(
                            "tensor `{name}` has {} values, the model's has {}",
                            b.len() / 4,
                            p.shape.numel(1)
                        ),
                    ));
                }
                out.extend(floats(b));
            }
            Ok(out)
        };
        let has_slots = plan
            .params
            .first()
            .is_some_and(|p| by_name.contains_key(format!("{OPT_M}{}", p.name).as_str()));
        let (m, v) = if has_slots {
            (flat(OPT_M)?, flat(OPT_V)?)
        } else {
            (Vec::new(), Vec::new())
        };
        let params = flat("")?;
        let is_param = |n: &str| plan.params.iter().any(|p| p.name == n);
        let mut buffers = Vec::new();
        let (mut ls, mut ly) = (Vec::new(), Vec::new());
        for (name, _, b) in &tensors {
            if let Some(i) = name.strip_prefix(LBFGS_S) {
                ls.push((i.to_string(), floats(b)));
            } else if let Some(i) = name.strip_prefix(LBFGS_Y) {
                ly.push((i.to_string(), floats(b)));
            } else if !name.starts_with(OPT_M) && !name.starts_with(OPT_V) && !is_param(name) {
                buffers.push((name.clone(), floats(b)));
            }
        }
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        ls.sort_by(|a, b| a.0.cmp(&b.0));
        ly.sort_by(|a, b| a.0.cmp(&b.0));
        let lbfgs = ls
            .into_iter()
            .zip(ly)
            .map(|((_, s), (_, y))| (s, y))
            .collect();
        Ok(Resume {
            at,
            snapshot: Snapshot {
                params,
                buffers,
                optimizer: OptimState { updates, m, v },
                lbfgs,
            },
        })
    }
}
