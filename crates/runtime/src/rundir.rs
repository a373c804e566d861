//! Run directories `runs/<name>/<id>/`: resolved spec, plan, per-epoch metrics, model
//! weights (safetensors), fitted preprocessing, summary. Every file is written atomically
//! (temporary file in the same folder, fsync, rename), so a crash never leaves half a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ndarray::Array2;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use weft_data::Pipeline;
use weft_planner::Plan;

use crate::error::RunError;
use crate::train::EpochEnd;

pub const SPEC_FILE: &str = "spec.resolved.json";
pub const PLAN_FILE: &str = "plan.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const PREPROCESS_FILE: &str = "preprocess.json";
pub const SUMMARY_FILE: &str = "summary.json";
/// The test split's rows as they were read (before preprocessing), for `weft predict`.
pub const TEST_FILE: &str = "test.csv";
pub use crate::checkpoint::CHECKPOINT_FILE;

/// Named 2-D tensors, as saved in safetensors files.
pub type Tensors = Vec<(String, Array2<f32>)>;

/// A flat parameter vector (the plan's `params` order) as named tensors, for saving.
pub fn named_tensors(plan: &Plan, flat: &[f32]) -> Tensors {
    let mut at = 0;
    plan.params
        .iter()
        .filter_map(|p| {
            let (r, c) = (p.shape.rows_at(1), p.shape.cols);
            let part = flat.get(at..at + r * c)?.to_vec();
            at += r * c;
            Some((p.name.clone(), Array2::from_shape_vec((r, c), part).ok()?))
        })
        .collect()
}

/// A file written in pieces that appears whole or not at all: the pieces go to a temporary
/// file beside `path`, which [`AtomicFile::commit`] syncs and renames into place (dropped
/// without a commit, it is removed).
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, RunError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = fs::File::create(&tmp).map_err(|e| RunError::io(&tmp, e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    /// Syncs the pieces and renames the file into place.
    pub fn commit(mut self) -> Result<(), RunError> {
        let path = self.path.clone();
        let mut done = || -> std::io::Result<()> {
            let file = self
                .file
                .take()
                .map(std::io::BufWriter::into_inner)
                .transpose()?;
            if let Some(f) = file {
                f.sync_all()?;
            }
            fs::rename(&self.tmp, &path)?;
            // The rename itself is durable once the folder is synced (POSIX; a no-op elsewhere).
            #[cfg(unix)]
            if let Some(d) = path.parent().and_then(|d| {
                fs::File::open(if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                })
                .ok()
            }) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        done().map_err(|e| {
            let _ = fs::remove_file(&self.tmp);
            RunError::io(&path, e)
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("the file was committed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| RunError::io(path, e))?;
    f.commit()
}

/// UTC `YYYYMMDD-HHMMSS` for run ids (civil-from-days, no time-zone database needed).
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The lock file a training process holds (see [`RunDir::lock`]).
pub const LOCK_FILE: &str = ".lock";

/// A held run lock; dropping it releases the run.
#[derive(Debug)]
pub struct RunLock(#[allow(dead_code)] fs::File);

/// A run's folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `root/<name>/<timestamp>[-k]/`, never reusing an existing folder.
    pub fn create(root: &Path, name: &str) -> Result<RunDir, RunError> {
        let base = root.join(name);
        fs::create_dir_all(&base).map_err(|e| RunError::io(&base, e))?;
        let stamp = timestamp();
        for k in 1.. {
            let id = if k == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{k}")
            };
            let path = base.join(id);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RunError::io(&path, e)),
            }
        }
        unreachable!("the loop above returns")
    }

    /// Takes the run's lock (`.lock` in its folder) for as long as the guard lives: one
    /// process trains a run at a time. The operating system drops it when the process dies.
    pub fn lock(&self) -> Result<RunLock, RunError> {
        let path = self.file(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| RunError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock(file)),
            Err(fs::TryLockError::WouldBlock) => Err(RunError::Model {
                path: self.path.display().to_string(),
                message: "another weft process is training this run (it holds the run's lock); wait for it to finish or stop it first".into(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(RunError::io(&path, e)),
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_json(&self, name: &str, value: &impl serde::Serialize) -> Result<(), RunError> {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| RunError::Internal(e.to_string()))?;
        write_atomic(&self.file(name), text.as_bytes())
    }

    /// Rewrites metrics.jsonl with one JSON line per record (atomically, so it is whole).
    pub fn write_metrics<T: serde::Serialize>(&self, records: &[T]) -> Result<(), RunError> {
        let mut text = String::new();
        for r in records {
            text.push_str(
                &serde_json::to_string(r).map_err(|e| RunError::Internal(e.to_string()))?,
            );
            text.push('\n');
        }
        write_atomic(&self.file(METRICS_FILE), text.as_bytes())
    }

    /// An existing run's folder (to resume it).
    pub fn open(path: &Path) -> Result<RunDir, RunError> {
        if !path.join(SPEC_FILE).is_file() {
            return Err(RunError::Model {
                path: path.display().to_string(),
                message: format!(
                    "no {SPEC_FILE} here; is this a run directory (runs/<name>/<id>)?"
                ),
            });
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// Saves parameters and buffers as safetensors (f32, little-endian).
    /// A tensor holding NaN or infinity is refused: such a model is never saved.
    pub fn write_weights(&self, tensors: &[(String, Array2<f32>)]) -> Result<(), RunError> {
        if let Some((name, v)) = tensors
            .iter()
            .find_map(|(n, a)| a.iter().find(|v| !v.is_finite()).map(|v| (n, *v)))
        {
            return Err(RunError::Model {
                path: self.file(WEIGHTS_FILE).display().to_string(),
                message: format!("not written: tensor `{name}` holds {v} (training diverged); try a lower learning rate or `train.clip_grad_norm`"),
            });
        }
        self.write_tensors(WEIGHTS_FILE, tensors)
    }

    /// The training loop's checkpoint hook: writes where training stands with the model and
    /// optimizer state (nothing on a worker that does not hold the model).
    pub fn save_epoch(&self, plan: &Plan, e: &EpochEnd) -> Result<(), RunError> {
        match e.snapshot {
            Some(snapshot) => self.write_checkpoint(
                plan,
                &crate::checkpoint::Resume {
                    at: e.next,
                    snapshot: snapshot.clone(),
                },
            ),
            None => Ok(()),
        }
    }

    fn write_tensors(&self, name: &str, tensors: &[(String, Array2<f32>)]) -> Result<(), RunError> {
        let bytes: Vec<RawTensor> = tensors
            .iter()
            .map(|(n, a)| {
                let b = le_bytes(a.iter());
                (n.clone(), vec![a.nrows(), a.ncols()], b)
            })
            .collect();
        write_atomic(&self.file(name), &serialize(&bytes, None)?)
    }
}

/// A tensor as a safetensors file holds it: name, shape, little-endian f32 bytes.
pub(crate) type RawTensor = (String, Vec<usize>, Vec<u8>);

/// A safetensors file's bytes (f32 tensors, optional metadata).
pub(crate) fn serialize(
    tensors: &[RawTensor],
    meta: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, RunError> {
    let views = tensors
        .iter()
        .map(|(n, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| RunError::Internal(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, meta).map_err(|e| RunError::Internal(e.to_string()))
}

/// Everything `weft predict` needs from a finished run.
#[derive(Debug, Clone)]
pub struct SavedModel {
    pub plan: Plan,
    pub pipeline: Pipeline,
    pub tensors: Vec<(String, Array2<f32>)>,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, RunError> {
    let path = dir.join(name);
    fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RunError::Model {
            path: dir.display().to_string(),
            message: format!(
                "no {name} here; is this a run directory (runs/<name>/<id>) of a finished run?"
            ),
        },
        _ => RunError::io(&path, e),
    })
}

fn bad(dir: &Path, name: &str, e: impl std::fmt::Display) -> RunError {
    RunError::Model {
        path: dir.join(name).display().to_string(),
        message: e.to_string(),
    }
}

/// Loads a saved model from a run directory.
pub fn load_model(dir: &Path) -> Result<SavedModel, RunError> {
    let plan = load_plan(dir)?;
    let pipeline: Pipeline = serde_json::from_slice(&read(dir, PREPROCESS_FILE)?)
        .map_err(|e| bad(dir, PREPROCESS_FILE, e))?;
    Ok(SavedModel {
        plan,
        pipeline,
        tensors: read_tensors(dir, WEIGHTS_FILE)?,
    })
}

/// The plan a run trained with (its plan.json).
pub fn load_plan(dir: &Path) -> Result<Plan, RunError> {
    let plan: Plan =
        serde_json::from_slice(&read(dir, PLAN_FILE)?).map_err(|e| bad(dir, PLAN_FILE, e))?;
    if plan.version != weft_planner::PLAN_VERSION {
        return Err(bad(
            dir,
            PLAN_FILE,
            format!(
                "plan version {} is not supported (this weft reads {})",
                plan.version,
                weft_planner::PLAN_VERSION
            ),
        ));
    }
    Ok(plan)
}

/// 2-D f32 tensors from a safetensors file in `dir`.
fn read_tensors(dir: &Path, file: &str) -> Result<Vec<(String, Array2<f32>)>, RunError> {
    let bytes = read(dir, file)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(dir, file, e))?;
    raw_tensors(&st)
        .map_err(|e| bad(dir, file, e))?
        .into_iter()
        .map(|(name, shape, b)| {
            let a = Array2::from_shape_vec((shape[0], shape[1]), le_floats(&b))
                .map_err(|e| bad(dir, file, e))?;
            Ok((name, a))
        })
        .collect()
}

/// Every tensor of a safetensors file as name, shape and bytes; each must be 2-D f32.
pub(crate) fn raw_tensors(st: &SafeTensors) -> Result<Vec<RawTensor>, String> {
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            if view.dtype() != Dtype::F32 || view.shape().len() != 2 {
                return Err(format!("tensor `{name}` is not a 2-D f32 tensor"));
            }
            Ok((name, view.shape().to_vec(), view.data().to_vec()))
        })
        .collect()
}

/// Little-endian f32 bytes as values.
pub(crate) fn le_floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Values as little-endian f32 bytes (as safetensors holds them).
pub(crate) fn le_bytes<'a>(v: impl Iterator<Item = &'a f32>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

impl SavedModel {
    /// Parameters in plan order; a missing one, or one holding NaN or infinity, is an error
    /// naming it.
    pub fn params(&self) -> Result<Vec<Array2<f32>>, RunError> {
        if let Some((name, v)) = self
            .tensors
            .iter()
            .find_map(|(n, a)| a.iter().find(|v| !v.is_finite()).map(|v| (n, *v)))
        {
            return Err(RunError::Model {
                path: WEIGHTS_FILE.into(),
                message: format!("tensor `{name}` holds {v}: the model is not usable (it diverged); train it again with a lower learning rate"),
            });
        }
        self.plan
            .params
            .iter()
            .map(|p| {
                self.tensors
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, a)| a.clone())
                    .ok_or_else(|| RunError::Model {
                        path: WEIGHTS_FILE.into(),
                        message: format!("parameter `{}` is missing", p.name),
                    })
            })
            .collect()
    }
}
