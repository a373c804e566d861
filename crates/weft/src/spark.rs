//! `executor.cluster: spark` from `weft run`: the spec goes to Spark through pyspark, by
//! `python/weft_spark`'s `submit` module in the Python of `executor.spark.python`. Spark
//! reads a CSV or Parquet `data.source` itself (on its executors); the sources only weft
//! reads (builtin, synthetic, Arrow files) are read here and handed over as one Arrow file,
//! which becomes a DataFrame on the Spark driver. The trained model comes back into a run
//! directory here, as `weft run` writes one, so `weft predict`, the viewer and notebooks
//! read it as any other.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::{json, Value};
use weft_dsl::{Source, SparkSpec};
use weft_runtime::rundir::{self, RunDir};
use weft_runtime::train::{EpochRecord, Progress};

use crate::error::{Error, Result};
use crate::experiment::{Experiment, RunResult, TrainSummary};

/// Where the job and its answer go in the run directory (removed when the run ends).
const JOB_FILE: &str = "spark-job.json";
const ANSWER_FILE: &str = "spark-answer.json";
const INPUT_FILE: &str = "spark-input.arrow";

/// Imports the submit module, or says what to install (a bare `-m` would print a
/// traceback about a module).
const BOOTSTRAP: &str = "import sys\n\
try:\n    from weft_spark import submit\n\
except ImportError as e:\n    sys.stderr.write(f'weft: this Python ({sys.executable}) cannot import weft_spark: {e}\\n')\n    sys.exit(97)\n\
sys.exit(submit.main(sys.argv[1]))\n";

/// What the submit module writes back: the error, or nothing (the files are in place).
#[derive(Deserialize)]
struct Answer {
    error: Option<String>,
}

/// `summary.json` as the rank that trained wrote it.
#[derive(Deserialize)]
struct Summary {
    metrics: BTreeMap<String, BTreeMap<String, Value>>,
    train: TrainSummary,
    comm: Option<weft_dist::driver::Comm>,
    #[serde(default)]
    notes: Vec<String>,
    history: Vec<EpochRecord>,
}

impl Experiment {
    /// Trains on Spark (see the module), writing a run directory under `runs_root`.
    pub(crate) fn run_on_spark(
        &self,
        runs_root: &Path,
        progress: &mut dyn Progress,
    ) -> Result<RunResult> {
        let spark = self.spec.executor.spark.clone().unwrap_or_default();
        let dir = RunDir::create(runs_root, &self.spec.name)?;
        let _lock = dir.lock()?;
        dir.write_json(rundir::SPEC_FILE, &self.spec)?;
        let source = self.spark_source(&dir)?;
        let workers = self.spec.parallelism.data.as_ref().map_or(1, |d| d.workers);
        let conf: BTreeMap<String, String> = spark
            .settings()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.ok()?)))
            .collect();
        // The user's own file and overrides, so that messages point into it; a spec given
        // as text goes as its resolved form.
        let (spec, sets) = if Path::new(&self.doc.file).is_file() {
            (
                Path::new(&self.doc.file).to_path_buf(),
                self.doc.overrides.clone(),
            )
        } else {
            (dir.file(rundir::SPEC_FILE), Vec::new())
        };
        let job = json!({
            "spec": spec,
            "sets": sets,
            "run_dir": dir.path,
            "answer": dir.file(ANSWER_FILE),
            "master": spark.master,
            "conf": conf,
            "workers": workers,
            "source": source,
            "app_name": format!("weft {}", self.spec.name),
        });
        dir.write_json(JOB_FILE, &job)?;
        progress.note(&format!(
            "training on Spark ({}, {workers} barrier task{})",
            spark.master.as_deref().unwrap_or("Spark's default master"),
            if workers == 1 { "" } else { "s" }
        ));
        let outcome = submit(&spark, &dir.file(JOB_FILE));
        for f in [JOB_FILE, INPUT_FILE] {
            let _ = std::fs::remove_file(dir.file(f));
        }
        let status = outcome?;
        let Ok(answer) = std::fs::read(dir.file(ANSWER_FILE)) else {
            return Err(Error::Stopped {
                message: format!("the Spark driver ended ({status}) without saying why; what it printed is above"),
                resume: None,
            });
        };
        let answer: Answer =
            serde_json::from_slice(&answer).map_err(|e| io(&dir.file(ANSWER_FILE), e))?;
        let _ = std::fs::remove_file(dir.file(ANSWER_FILE));
        if let Some(error) = answer.error {
            return Err(Error::Stopped {
                message: format!("the Spark job failed: {error}"),
                resume: None,
            });
        }
        // The files came from the rank that trained: its record of the run is this run's,
        // in this directory, with this spec (the rank's ran on its spooled rows).
        dir.write_json(rundir::SPEC_FILE, &self.spec)?;
        let summary_path = dir.file(rundir::SUMMARY_FILE);
        let summary: Summary =
            serde_json::from_slice(&read(&summary_path)?).map_err(|e| io(&summary_path, e))?;
        let model = rundir::load_model(&dir.path)?;
        let mut notes = summary.notes;
        notes.push(format!(
            "trained on Spark: {workers} barrier task{} each streamed its partition to a weft worker",
            if workers == 1 { "" } else { "s" }
        ));
        let result = RunResult {
            run_dir: dir.path.display().to_string(),
            metrics: summary.metrics,
            train: summary.train,
            comm: summary.comm,
            notes,
            history: summary.history,
            model,
        };
        dir.write_json(rundir::SUMMARY_FILE, &result)?;
        Ok(result)
    }

    /// What Spark reads: a CSV or Parquet path (absolute, or a URL as written), else the table weft reads, written to an Arrow file in the run directory.
    fn spark_source(&self, dir: &RunDir) -> Result<Value> {
        let path = |p: &String| -> String {
            // Any URL (hdfs://, s3a://, dbfs:/…) is Spark's to resolve.
            if p.contains(":/") {
                p.clone()
            } else {
                self.base_dir().join(p).display().to_string()
            }
        };
        Ok(match &self.spec.data.source {
            Source::Csv(p) => json!({ "csv": path(p) }),
            Source::Parquet(p) => json!({ "parquet": path(p) }),
            _ => {
                let table = weft_data::load_data(&self.spec.data, self.base_dir())
                    .map_err(|e| self.data_error(e))?;
                let file = dir.file(INPUT_FILE);
                write_arrow(&file, &table.batch)?;
                json!({ "arrow": file })
            }
        })
    }
}

/// Runs the submit module; its output (Spark's and weft_spark's) goes to standard error.
fn submit(spark: &SparkSpec, job: &Path) -> Result<std::process::ExitStatus> {
    let python = spark
        .python
        .clone()
        .or_else(|| std::env::var("WEFT_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(BOOTSTRAP).arg(job);
    // The executors run this same weft (shipped by weft_spark), unless WEFT_BIN says another.
    if std::env::var_os("WEFT_BIN").is_none() {
        if let Ok(me) = std::env::current_exe() {
            cmd.env("WEFT_BIN", me);
        }
    }
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .status()
        .map_err(|e| Error::Io {
            path: python.clone(),
            message: format!(
                "cannot start it ({e}); executor.cluster: spark needs a Python with pyspark and weft_spark installed (`pip install pyspark ./python`): set executor.spark.python or WEFT_PYTHON to it"
            ),
        })?;
    match status.code() {
        Some(97) => Err(Error::Io {
            path: python,
            message: "weft_spark is not installed in this Python (see above); install it with `pip install pyspark ./python` from weft's source folder (scripts/setup.sh does, into .tools/venv), or set executor.spark.python / WEFT_PYTHON to a Python that has it".into(),
        }),
        // The submit module wrote its answer (the files, or the error) before exiting.
        Some(_) => Ok(status),
        None => Err(Error::Stopped {
            message: format!("the Spark driver ({python}) was killed ({status})"),
            resume: None,
        }),
    }
}

fn write_arrow(path: &Path, batch: &arrow_array::RecordBatch) -> Result<()> {
    let mut bytes = Vec::new();
    let mut w = arrow_ipc::writer::FileWriter::try_new(&mut bytes, &batch.schema())
        .map_err(|e| io(path, e))?;
    w.write(batch).map_err(|e| io(path, e))?;
    w.finish().map_err(|e| io(path, e))?;
    drop(w);
    rundir::write_atomic(path, &bytes)?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io(path, e))
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
