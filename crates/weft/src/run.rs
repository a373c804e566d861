//! Running an experiment into a run directory: a fresh run, a resumed one, and what is left
//! behind when either stops (a checkpoint, a failed `summary.json`, the resume command).

use std::path::Path;

use serde_json::Value;
use weft_data::Part;
use weft_exec::Device;
use weft_planner::Plan;
use weft_runtime::checkpoint::Resume;
use weft_runtime::rundir::{self, RunDir, SavedModel};
use weft_runtime::train::{self, EpochRecord, Progress};
use weft_runtime::RunError;

use crate::data::Data;
use crate::distributed::Found;
use crate::error::{Error, Result};
use crate::experiment::{Experiment, RunResult, TrainSummary};

/// Where training starts from: a checkpoint to resume (or the beginning), and the workers
/// already found (they hold the rows) or none (the spec's are started).
struct From<'a> {
    resume: Option<Resume>,
    found: Option<&'a mut Found>,
}

impl Experiment {
    /// Trains and evaluates, writing a run directory under `runs_root`.
    pub fn run_with(&self, runs_root: &Path, progress: &mut dyn Progress) -> Result<RunResult> {
        let device = self.check_runnable()?;
        if self.on_spark() {
            return self.run_on_spark(runs_root, progress);
        }
        self.preflight()?;
        let data = self.load_data()?;
        self.run_data(runs_root, device, data, None, progress)
    }

    /// [`Experiment::run_with`] on data already read, on workers already `found` (or
    /// those the spec names).
    pub(crate) fn run_data(
        &self,
        runs_root: &Path,
        device: (Device, Option<String>),
        data: Data,
        found: Option<&mut Found>,
        progress: &mut dyn Progress,
    ) -> Result<RunResult> {
        let plan = self.plan_to_run(&data, &device.0)?;
        let dir = RunDir::create(runs_root, &self.spec.name)?;
        let _lock = dir.lock()?;
        dir.write_json(rundir::SPEC_FILE, &self.spec)?;
        dir.write_json(rundir::PLAN_FILE, &plan)?;
        dir.write_json(rundir::PREPROCESS_FILE, data.pipeline())?;
        // The test rows as read, so `weft predict --input <run>/test.csv` can be checked (a
        // streamed set's test split stays in its files: the split is a hash of the row).
        if let Data::Memory { table, prepared } = &data {
            let mut bytes = Vec::new();
            weft_data::write_csv(table, &prepared.split.test, &mut bytes)?;
            rundir::write_atomic(&dir.file(rundir::TEST_FILE), &bytes)?;
        }
        self.train_into(
            &dir,
            device,
            plan,
            data,
            From {
                resume: None,
                found,
            },
            progress,
        )
    }

    /// Continues a run from its last checkpoint (`weft run SPEC --resume RUN_DIR`), in the
    /// same run directory: on the CPU, the weights at the end are bit-identical to those of
    /// the run had it never stopped. The spec may differ from the run's only in
    /// `parallelism`, `executor` (resume a 4-worker run on 2 workers, say) and `train.epochs`
    /// (train on). One process at a time resumes a run (a lock in the run directory).
    pub fn resume_with(&self, run_dir: &Path, progress: &mut dyn Progress) -> Result<RunResult> {
        let device = self.check_runnable()?;
        if self.on_spark() {
            return Err(Error::Spec(self.doc.error_at(
                "executor.cluster",
                "a run on Spark resumes from Python: WeftEstimator(checkpoint_dir=…, max_retries=…) starts a failed fit again from its last checkpoint; here, --resume takes local, {hosts: [...]} or env",
            )));
        }
        self.preflight()?;
        self.resume_data(run_dir, device, || self.load_data(), None, progress)
    }

    /// [`Experiment::resume_with`] on the data `data` reads (after the run directory and
    /// spec are checked), on workers already `found`: then they hold the rows, and the
    /// spec's `data.source` (where this attempt spooled them) may differ from the run's.
    pub(crate) fn resume_data(
        &self,
        run_dir: &Path,
        device: (Device, Option<String>),
        data: impl FnOnce() -> Result<Data>,
        found: Option<&mut Found>,
        progress: &mut dyn Progress,
    ) -> Result<RunResult> {
        let held = found.is_some();
        let dir = RunDir::open(run_dir)?;
        let _lock = dir.lock()?;
        let theirs: Value =
            serde_json::from_slice(&read(&dir, rundir::SPEC_FILE)?).unwrap_or(Value::Null);
        let strip = |mut v: Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("parallelism");
                o.remove("executor");
                if let Some(t) = o.get_mut("train").and_then(Value::as_object_mut) {
                    t.remove("epochs");
                }
                if let Some(d) = o.get_mut("data").and_then(Value::as_object_mut) {
                    if held {
                        d.remove("source");
                    }
                }
            }
            v
        };
        if strip(theirs) != strip(self.resolved()) {
            return Err(Error::Io {
                path: run_dir.display().to_string(),
                message: format!(
                    "this run was made from a different spec (only `parallelism`, `executor` and `train.epochs` may change when resuming); compare with {}",
                    dir.file(rundir::SPEC_FILE).display()
                ),
            });
        }
        let data = data()?;
        let plan = self.plan_to_run(&data, &device.0)?;
        let resume = dir.read_checkpoint(&plan)?;
        if resume.at.batch > 0 && self.is_distributed() {
            return Err(Error::Io {
                path: run_dir.display().to_string(),
                message: format!(
                    "the checkpoint was written {} by a single process; resume it without `parallelism.data` (its batches are not those of several workers)",
                    resume.at.describe()
                ),
            });
        }
        let epochs = self.spec.train.epochs;
        if let Some(summary) = finished_summary(&dir) {
            let early = summary
                .pointer("/train/stopped_early")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(why) = early.filter(|_| resume.at.stopped) {
                return Err(Error::NothingToDo(format!(
                    "nothing to do: {} is a finished run (early stopping: {why}); to train on, start a new run with another `train.stop`",
                    dir.path.display()
                )));
            }
            if resume.at.finished_epochs() >= epochs {
                return Err(Error::NothingToDo(format!(
                    "nothing to do: {} is a finished run (it trained all {} epochs); to train on, raise the epochs (`--set train.epochs={}`), or start a new run without --resume",
                    dir.path.display(),
                    resume.at.finished_epochs(),
                    resume.at.finished_epochs() + 10
                )));
            }
        }
        progress.note(&format!(
            "resuming {} {}",
            dir.path.display(),
            resume.at.describe()
        ));
        self.train_into(
            &dir,
            device,
            plan,
            data,
            From {
                resume: Some(resume),
                found,
            },
            progress,
        )
    }

    /// [`Experiment::train_run`], leaving a `summary.json` that says how the run ended when
    /// it fails, and the resume command when a checkpoint can continue it.
    fn train_into(
        &self,
        dir: &RunDir,
        device: (Device, Option<String>),
        plan: Plan,
        data: Data,
        from: From<'_>,
        progress: &mut dyn Progress,
    ) -> Result<RunResult> {
        let result = self.train_run(dir, device, plan, data, from, progress);
        let Err(e) = result else {
            return result;
        };
        let resumable = is_stop(&e);
        let at = dir.checkpoint_position();
        // The command as the user ran it: the spec, its `--set`s (the resumed spec must match).
        let mut command = format!("weft run {}", shell_quote(&self.doc.file));
        for s in &self.doc.overrides {
            command.push_str(&format!(" --set {}", shell_quote(s)));
        }
        command.push_str(&format!(
            " --resume {}",
            shell_quote(&dir.path.display().to_string())
        ));
        let hint = at.filter(|_| resumable).map(|at| {
            format!(
                "the checkpoint {} is saved; resume with:\n  {command}",
                at.describe()
            )
        });
        let interrupted = matches!(&e, Error::Run(r) if matches!(**r, RunError::Interrupted { .. } | RunError::Aborted(_)));
        let status = serde_json::json!({
            "status": if interrupted { "interrupted" } else { "failed" },
            "error": e.to_string(),
            "checkpoint": at.map(|a| a.describe()),
            "resume": hint.as_ref().map(|_| command.clone()),
        });
        if let Err(w) = dir.write_json(rundir::SUMMARY_FILE, &status) {
            tracing::warn!("could not record the failure in the run directory: {w}");
        }
        Err(match (e, hint) {
            (Error::Stopped { message, .. }, resume) => Error::Stopped { message, resume },
            (Error::Run(r), Some(resume)) => Error::Stopped {
                message: r.to_string(),
                resume: Some(resume),
            },
            (e, _) => e,
        })
    }

    /// Trains from the start or `resume`, evaluates, and writes the model, metrics and
    /// summary into `dir`.
    fn train_run(
        &self,
        dir: &RunDir,
        (device, device_note): (Device, Option<String>),
        plan: Plan,
        data: Data,
        From { resume, found }: From<'_>,
        progress: &mut dyn Progress,
    ) -> Result<RunResult> {
        let pipeline = data.pipeline().clone();
        let first = resume.as_ref().map_or(1, |r| r.at.epoch);
        let mut previous = match first {
            1 => Vec::new(),
            _ => read_metrics(dir),
        };
        previous.retain(|r| r.epoch < first);
        let mut writer = MetricsWriter {
            dir,
            records: previous,
            inner: progress,
        };
        let (mut exec, mut outcome, comm, notes, device_name) = if self.is_distributed() {
            let d = crate::distributed::train(
                &self.spec,
                &plan,
                &data,
                dir,
                resume,
                &mut writer,
                found,
            )
            .map_err(|e| match e {
                // Ctrl-C on the driver, a diverged model: what the loop said.
                weft_dist::DistError::Run(r) => Error::Run(Box::new(r)),
                other => Error::Stopped {
                    message: other.to_string(),
                    resume: None,
                },
            })?;
            let mut notes: Vec<String> = device_note.into_iter().collect();
            notes.extend(d.notes);
            (d.exec, d.outcome, Some(d.comm), notes, d.device)
        } else {
            if let Some(note) = &device_note {
                writer.note(note);
            }
            let mut exec = device.executor(&plan)?;
            let mut save = |e: &train::EpochEnd| dir.save_epoch(&plan, e);
            let outcome = train::fit(
                exec.as_mut(),
                &plan,
                data.splits(),
                &mut weft_runtime::Local,
                &mut writer,
                resume.as_ref(),
                Some(&mut save),
            )?;
            let name = exec.device_name();
            (exec, outcome, None, device_note.into_iter().collect(), name)
        };

        // A resumed run's history is the whole run's, as metrics.jsonl is.
        outcome.history = writer.records.clone();
        let metrics = data.evaluate(exec.as_mut(), &plan)?;
        let names = plan.params.iter().map(|p| p.name.clone());
        let mut tensors: Vec<(String, ndarray::Array2<f32>)> = names.zip(exec.params()?).collect();
        tensors.extend(exec.buffers()?);
        dir.write_weights(&tensors)?;

        let mut notes = notes;
        if data.rows(Part::Test).is_none_or(|r| r.is_empty()) {
            notes.push("no test rows: the test split is empty, so there are no test metrics (set `data.split.test`)".into());
        }
        let result = RunResult {
            run_dir: dir.path.display().to_string(),
            metrics,
            train: TrainSummary {
                samples_per_sec: outcome.samples_per_sec,
                seconds: outcome.seconds,
                epochs: outcome.history.len(),
                steps: outcome.steps,
                device: device_name,
                stopped_early: outcome.stopped_early.clone(),
                params: plan.num_params(),
            },
            comm,
            notes,
            history: outcome.history,
            model: SavedModel {
                plan,
                pipeline,
                tensors,
            },
        };
        dir.write_json(rundir::SUMMARY_FILE, &result)?;
        Ok(result)
    }

    /// Trains, printing a line every few epochs, and writes the run under `runs/`.
    pub fn run(&self) -> Result<RunResult> {
        self.run_with(Path::new("runs"), &mut crate::progress::Lines::stdout())
    }
}

/// `s` as one shell word (quoted when it holds anything but plain characters).
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether an error stopped a run that its checkpoint can continue (a distributed failure,
/// Ctrl-C, a stop asked for), rather than one that would fail again (divergence, bad data).
fn is_stop(e: &Error) -> bool {
    match e {
        Error::Stopped { .. } => true,
        Error::Run(r) => matches!(**r, RunError::Interrupted { .. } | RunError::Aborted(_)),
        _ => false,
    }
}

fn read(dir: &RunDir, name: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.file(name)).map_err(|e| Error::Io {
        path: dir.file(name).display().to_string(),
        message: e.to_string(),
    })
}

/// The summary of a run that finished (not one that failed or was interrupted).
fn finished_summary(dir: &RunDir) -> Option<Value> {
    let v: Value = serde_json::from_slice(&read(dir, rundir::SUMMARY_FILE).ok()?).ok()?;
    v.get("status").is_none().then_some(v)
}

/// The records of metrics.jsonl (to continue it when resuming).
fn read_metrics(dir: &RunDir) -> Vec<EpochRecord> {
    std::fs::read_to_string(dir.file(rundir::METRICS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Writes metrics.jsonl after every epoch, then forwards to the caller's progress.
struct MetricsWriter<'a> {
    dir: &'a RunDir,
    records: Vec<EpochRecord>,
    inner: &'a mut dyn Progress,
}

impl Progress for MetricsWriter<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.inner.epoch_start(epoch, epochs, steps);
    }
    fn step(&mut self, done: usize, loss: f32) {
        self.inner.step(done, loss);
    }
    fn note(&mut self, message: &str) {
        self.inner.note(message);
    }
    fn stop_requested(&self) -> Option<String> {
        self.inner.stop_requested()
    }
    fn epoch_end(&mut self, record: &EpochRecord) -> std::result::Result<(), RunError> {
        self.records.push(record.clone());
        self.dir.write_metrics(&self.records)?;
        self.inner.epoch_end(record)
    }
}
