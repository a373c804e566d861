//! `Experiment`: a spec with its location, and the steps a user runs on it (check, plan, run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use weft_common::units::human_bytes;
use weft_data::{Pipeline, Prepared, Table, TableSchema};
use weft_dsl::{Document, Spec};
use weft_exec::{Device, ExecError};
use weft_planner::{DataShape, PassLog, Plan, PlanError, Task, TaskKind};
use weft_runtime::rundir::SavedModel;
use weft_runtime::train::EpochRecord;

use crate::data::{shape_of, Data};
use crate::error::{Error, Result};
use crate::plan_view::PlanView;
use crate::predict::Predictions;

/// A validated spec, ready to plan and run.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub(crate) doc: Document,
    pub(crate) spec: Spec,
    /// Folder that relative data paths resolve against (the spec file's folder).
    base_dir: PathBuf,
}

impl Experiment {
    /// Reads a YAML or JSON spec file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Experiment> {
        Self::from_file_with(path, &[])
    }

    /// Reads a spec file and applies `--set path=value` overrides.
    pub fn from_file_with(path: impl AsRef<Path>, sets: &[String]) -> Result<Experiment> {
        let path = path.as_ref();
        let text = read_spec_text(path)?;
        // Absolute, so that messages name the file a relative data path resolved to.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Self::parse(&path.display().to_string(), &text, sets, base)
    }

    /// [`Experiment::from_file_with`], naming the file `name` in messages (a copy of the
    /// user's spec, as a Spark task runs it).
    pub fn from_file_named(path: &Path, name: &str, sets: &[String]) -> Result<Experiment> {
        let text = read_spec_text(path)?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Self::parse(name, &text, sets, base)
    }

    /// A spec given as YAML text (relative paths resolve against the current folder).
    pub fn from_yaml(text: &str) -> Result<Experiment> {
        Self::parse("<spec>", text, &[], PathBuf::from("."))
    }

    /// A spec given as JSON text.
    pub fn from_json(text: &str) -> Result<Experiment> {
        Self::parse("<spec.json>", text, &[], PathBuf::from("."))
    }

    fn parse(file: &str, text: &str, sets: &[String], base_dir: PathBuf) -> Result<Experiment> {
        let (spec, doc) = weft_dsl::load(file, text, sets)?;
        Ok(Experiment {
            doc,
            spec,
            base_dir,
        })
    }

    /// A new experiment with `path` set to `value` (`"train.optimizer.adam.lr", 0.01`).
    pub fn set(&self, path: &str, value: impl std::fmt::Display) -> Result<Experiment> {
        let mut doc = self.doc.clone();
        doc.set(&format!("{path}={value}"))?;
        let spec = doc.spec()?;
        Ok(Experiment {
            doc,
            spec,
            base_dir: self.base_dir.clone(),
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The spec with every default filled in.
    pub fn resolved(&self) -> Value {
        serde_json::to_value(&self.spec).unwrap_or(Value::Null)
    }

    /// Loads, splits and preprocesses the data as the spec says.
    pub fn prepare_data(&self) -> Result<(Table, Prepared)> {
        let table = weft_data::load_data(&self.spec.data, &self.base_dir)
            .map_err(|e| self.data_error(e))?;
        let task = self.spec.train.loss.task_kind();
        let prepared = weft_data::prepare(&self.spec.prepared_data(), self.spec.seed, &table, task)
            .map_err(|e| self.data_error(e))?;
        Ok((table, prepared))
    }

    /// The data's schema (headers and metadata, not the rows).
    fn read_schema(&self) -> Result<TableSchema> {
        weft_data::read_data_schema(&self.spec.data, &self.base_dir).map_err(|e| self.data_error(e))
    }

    /// A data error, located at the spec key it is about (`data.label`, `data.source`…).
    pub(crate) fn data_error(&self, e: weft_data::DataError) -> Error {
        match e.spec_path() {
            Some(path) => Error::Spec(self.doc.error_at(path, e.to_string())),
            None => Error::Data(e),
        }
    }

    /// Compiles the plan for data prepared in memory.
    pub fn plan_for(&self, prepared: &Prepared) -> Result<Plan> {
        let counts = Data::train_class_counts(prepared);
        self.plan_with(&prepared.pipeline, counts)
    }

    /// Compiles the plan for prepared data (in memory or streamed).
    pub fn plan_for_data(&self, data: &Data) -> Result<Plan> {
        self.plan_with(data.pipeline(), data.class_counts())
    }

    fn plan_with(&self, pipeline: &Pipeline, class_counts: Option<Vec<u64>>) -> Result<Plan> {
        let plan = Plan::new(&self.spec, &shape_of(pipeline)).map_err(|e| self.plan_error(e))?;
        match self.class_weights(pipeline, class_counts)? {
            Some(w) => plan.with_class_weights(w).map_err(|e| self.plan_error(e)),
            None => Ok(plan),
        }
    }

    /// Folder that relative data paths resolve against.
    pub(crate) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// `train.class_weight` resolved against the train split: `balanced` gives class c the
    /// weight n / (classes · count of c); a map names classes (others weigh 1).
    fn class_weights(
        &self,
        pipeline: &Pipeline,
        class_counts: Option<Vec<u64>>,
    ) -> Result<Option<Vec<f32>>> {
        let (Some(cw), Some(classes)) = (&self.spec.train.class_weight, pipeline.classes()) else {
            return Ok(None);
        };
        let k = classes.len();
        Ok(Some(match cw {
            weft_dsl::ClassWeight::Balanced(_) => {
                let counts = class_counts.unwrap_or_else(|| vec![0; k]);
                let n = counts.iter().sum::<u64>() as f64;
                counts
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            0.0
                        } else {
                            (n / (k as f64 * c as f64)) as f32
                        }
                    })
                    .collect()
            }
            weft_dsl::ClassWeight::Weights(map) => {
                if let Some(name) = map.keys().find(|n| !classes.contains(n)) {
                    return Err(Error::Spec(self.doc.error_at(
                        &format!("train.class_weight.{name}"),
                        format!(
                            "`{name}` is not a class of the label; classes: {}",
                            classes.join(", ")
                        ),
                    )));
                }
                classes
                    .iter()
                    .map(|c| map.get(c).map_or(1.0, |w| *w as f32))
                    .collect()
            }
        }))
    }

    /// The plan that runs: lowered for the device the run picked (`executor.device: auto`
    /// may find a GPU); a distributed run's workers pick their own and lower it themselves.
    pub(crate) fn plan_to_run(&self, data: &Data, device: &Device) -> Result<Plan> {
        let mut plan = self.plan_for_data(data)?;
        if let Data::Stream { set, .. } = data {
            if set.is_held() {
                // The spec's source is where this process spooled its own rows: say what
                // the source really is.
                let workers = self.spec.parallelism.data.as_ref().map_or(1, |d| d.workers);
                for (k, v) in plan.workflow.iter_mut().flat_map(|s| s.details.iter_mut()) {
                    if k == "source" {
                        *v = format!(
                            "rows held by the {workers} workers (from their launcher's tasks)"
                        );
                    }
                }
            }
        }
        if self.is_distributed() {
            return Ok(plan);
        }
        plan.lowered_for(device.target())
            .map_err(|e| self.plan_error(e))
    }

    /// The plan and what each planner pass did (`weft plan --verbose`).
    pub fn plan_traced(&self) -> Result<(PlanView, Vec<PassLog>)> {
        let shape = self.shape()?;
        let (plan, log) = Plan::traced(&self.spec, &shape).map_err(|e| self.plan_error(e))?;
        Ok((PlanView { plan }, log))
    }

    /// Compiles the plan against the data's schema (see [`Experiment::shape`]).
    pub fn plan(&self) -> Result<PlanView> {
        let shape = self.shape()?;
        let plan = Plan::new(&self.spec, &shape).map_err(|e| self.plan_error(e))?;
        Ok(PlanView { plan })
    }

    /// The model's input and task from the data's schema alone — a CSV header, Parquet
    /// footers, what a built-in or synthetic source is — without reading the rows. A file's
    /// classes are taken from the output layer until a run reads them. Only when the
    /// preprocessing makes the input depend on the values (`one_hot`) are the rows read.
    pub fn shape(&self) -> Result<DataShape> {
        let schema = self.read_schema()?;
        match self.schema_shape(&schema)? {
            Some(shape) => Ok(shape),
            None => Ok(self.load_data()?.shape()),
        }
    }

    /// Every embedding input names a feature column of the data (checked before any row is
    /// read, so that its error is the first).
    fn check_embedded_columns(&self, schema: &TableSchema) -> Result<()> {
        let weft_dsl::ModelSpec::Graph(g) = &self.spec.model else {
            return Ok(());
        };
        let (features, _) =
            weft_data::feature_columns(&self.spec.data, &schema.name, &schema.column_names())
                .map_err(|e| self.data_error(e))?;
        for (name, input) in &g.inputs {
            let weft_dsl::InputSource::Embedding { embedding: e } = input else {
                continue;
            };
            if !features.contains(&e.column) {
                let valid: Vec<&str> = features.iter().map(String::as_str).collect();
                return Err(Error::Spec(self.doc.error_at(
                    &format!("model.inputs.{name}.embedding.column"),
                    format!(
                        "`{}` is not a feature column of {}{}",
                        e.column,
                        schema.name,
                        weft_dsl::suggest::hint(&e.column, &valid)
                    ),
                )));
            }
        }
        Ok(())
    }

    /// [`Experiment::shape`] from a schema already read, or `None` when it needs the rows.
    fn schema_shape(&self, schema: &TableSchema) -> Result<Option<DataShape>> {
        let kind = self.spec.train.loss.task_kind();
        schema
            .check_label(&self.spec.data, kind)
            .map_err(|e| self.data_error(e))?;
        self.check_embedded_columns(schema)?;
        let Some((features, _)) = schema
            .features(&self.spec.prepared_data())
            .map_err(|e| self.data_error(e))?
        else {
            return Ok(None);
        };
        let task = match self.spec.train.loss.task_kind() {
            TaskKind::Regression => Task::Regression { targets: 1 },
            TaskKind::Classification => match schema.classes {
                Some(classes) => Task::Classification { classes },
                None => Task::classes_from_model(),
            },
        };
        // Hashed embedding ids are known from the spec (a dictionary's needs the rows).
        let vocab = self
            .spec
            .embeddings()
            .into_iter()
            .filter_map(|e| Some((e.column.clone(), 1 + e.buckets?)))
            .collect();
        Ok(Some(DataShape {
            features,
            task,
            vocab,
        }))
    }

    /// Checks everything short of training without reading the rows: the spec, that this
    /// build and machine can run it (device, workers, memory), the data's schema (files,
    /// columns, the label's type) and that the model compiles against it. Fast on any size
    /// of data; [`Experiment::check_rows`] also reads every row.
    pub fn check(&self) -> Result<Check> {
        self.check_runnable()?;
        self.preflight()?;
        let schema = self.read_schema()?;
        let shape = match self.schema_shape(&schema)? {
            Some(shape) => shape,
            // The input depends on the values (`one_hot`): the rows are read.
            None => return self.check_rows(),
        };
        let plan = Plan::new(&self.spec, &shape).map_err(|e| self.plan_error(e))?;
        Ok(Check {
            name: self.spec.name.clone(),
            rows: schema.rows,
            features: plan.features.len(),
            classes: match plan.task {
                Task::Classification { classes } => Some(classes),
                Task::Regression { .. } => None,
            },
            params: plan.num_params(),
        })
    }

    /// [`Experiment::check`], then reads, splits and preprocesses every row as `run` would
    /// (missing values, unseen classes, empty splits): `weft check --rows`.
    pub fn check_rows(&self) -> Result<Check> {
        self.check_runnable()?;
        self.preflight()?;
        let data = self.load_data()?;
        let plan = self.plan_for_data(&data)?;
        Ok(Check {
            name: self.spec.name.clone(),
            rows: Some(match &data {
                Data::Memory { table, .. } => table.num_rows() as u64,
                Data::Stream { set, .. } => set.pieces.iter().map(|p| p.rows).sum(),
            }),
            features: plan.features.len(),
            classes: data.pipeline().classes().map(<[String]>::len),
            params: plan.num_params(),
        })
    }

    fn plan_error(&self, e: PlanError) -> Error {
        match e {
            PlanError::Spec { path, message } => Error::Spec(self.doc.error_at(&path, message)),
            other => Error::Exec(ExecError::Internal(other.to_string())),
        }
    }

    /// Refuses spec sections this build cannot execute, naming them.
    pub(crate) fn check_runnable(&self) -> Result<(Device, Option<String>)> {
        let p = &self.spec.parallelism;
        let unsupported = |path: &str, what: &str| {
            Error::Spec(self.doc.error_at(path, format!("{what} is not available in this build of weft yet; remove this section to train on one device")))
        };
        if let (Some(d), weft_dsl::Cluster::Local) = (&p.data, &self.spec.executor.cluster) {
            let (most, why) =
                weft_dist::launch::local_worker_limit(self.spec.executor.max_local_workers);
            if d.workers > most {
                return Err(Error::Spec(self.doc.error_at(
                    "parallelism.data.workers",
                    format!(
                        "{} local workers, but at most {most} may run on this machine ({why}); spread them over machines with executor.cluster: hosts or env",
                        d.workers
                    ),
                )));
            }
        }
        if let (Some(d), weft_dsl::Cluster::Hosts(h)) = (&p.data, &self.spec.executor.cluster) {
            if d.workers != h.len() {
                return Err(Error::Spec(self.doc.error_at(
                    "parallelism.data.workers",
                    format!(
                        "{} workers, but executor.cluster.hosts lists {}; make them equal",
                        d.workers,
                        h.len()
                    ),
                )));
            }
        }
        if matches!(&p.pipeline, Some(pl) if pl.stages > 1) {
            return Err(unsupported("parallelism.pipeline", "pipeline parallelism"));
        }
        if self.is_distributed() || self.on_spark() {
            // Each worker picks its own device; this process only keeps the final model.
            return Ok((Device::Cpu, None));
        }
        Device::select(self.spec.executor.device).map_err(|e| match e {
            ExecError::Unsupported { path, message } => {
                Error::Spec(self.doc.error_at(&path, message))
            }
            other => Error::Exec(other),
        })
    }

    /// Refuses a run that needs more memory than it may use, before anything is read or
    /// allocated, from the schema and the plan alone: parameters, gradients and optimizer
    /// state, activations at the batch size (at most the data's rows), and the data itself
    /// when the source says its rows. The limit is `executor.memory_limit_gib`, else the
    /// memory this machine has available (Linux; elsewhere only the spec's limit applies).
    /// When the model's input depends on the values (`one_hot`) only the data is checked:
    /// the rows are not read for it.
    pub(crate) fn preflight(&self) -> Result<()> {
        const GIB: f64 = (1u64 << 30) as f64;
        let (limit, source) = match self.spec.executor.memory_limit_gib {
            Some(gib) => ((gib * GIB) as u64, "executor.memory_limit_gib".to_string()),
            None => match weft_dist::launch::available_memory() {
                Some(b) => (
                    b,
                    "available on this machine; executor.memory_limit_gib sets the limit".into(),
                ),
                None => return Ok(()),
            },
        };
        let schema = self.read_schema()?;
        let rows = schema.rows;
        let batch = match rows {
            Some(r) => self
                .spec
                .train
                .batch_size
                .min(usize::try_from(r).unwrap_or(usize::MAX)),
            None => self.spec.train.batch_size,
        };
        // Local workers each hold a replica on this machine.
        let replicas = match (&self.spec.parallelism.data, &self.spec.executor.cluster) {
            (Some(d), weft_dsl::Cluster::Local) => d.workers.max(1) as u64,
            _ => 1,
        };
        let plan = match self.schema_shape(&schema)? {
            Some(shape) => Some(Plan::new(&self.spec, &shape).map_err(|e| self.plan_error(e))?),
            None => None,
        };
        // The replicas share the machine's cores, each thread with its own workspace.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let threads = (cores / replicas).max(1) as usize;
        let model = plan.as_ref().map_or(0, |p| {
            p.train_bytes(batch, threads).saturating_mul(replicas)
        });
        let columns = schema.column_names().len() as u64;
        // Streamed, memory holds the shuffle buffer and the chunks being read, not the rows.
        let held = match self.spec.data.streamed() {
            Some(buffer) => {
                (buffer as u64).saturating_add(4 * weft_data::stream::CHUNK_ROWS as u64)
            }
            None => rows.unwrap_or(0),
        };
        let data = held
            .saturating_mul(columns)
            .saturating_mul(4)
            .saturating_mul(weft_data::copies_while_loading(&self.spec.data.source));
        let need = model.saturating_add(data);
        if need <= limit {
            return Ok(());
        }
        // Blame what needs the most: the data, or the layer with the most parameters.
        let layer = plan
            .iter()
            .flat_map(|p| &p.params)
            .max_by_key(|p| p.shape.numel(1));
        let path = if data > model {
            "data.source".to_string()
        } else {
            layer
                .and_then(|p| p.origin.as_deref())
                .map_or_else(|| "model".into(), weft_planner::build::units_path)
        };
        let gib = |b: u64| human_bytes(b as f64);
        let message = format!(
            "the run needs {} of memory ({} for the model, its gradients and {} state and the activations at batch {batch}{}, {} for the data), but {} may be used ({source})",
            gib(need),
            gib(model),
            self.spec.train.optimizer.name(),
            if replicas > 1 { format!(", in all {replicas} local workers") } else { String::new() },
            gib(data),
            gib(limit),
        );
        Err(Error::Spec(self.doc.error_at(&path, message)))
    }

    /// True when `weft run` hands the spec to Spark (`executor.cluster: spark`).
    pub fn on_spark(&self) -> bool {
        matches!(self.spec.executor.cluster, weft_dsl::Cluster::Spark)
    }

    /// True when the spec trains on several workers (`parallelism.data`).
    pub fn is_distributed(&self) -> bool {
        match &self.spec.parallelism.data {
            Some(d) => {
                d.workers > 1 || !matches!(self.spec.executor.cluster, weft_dsl::Cluster::Local)
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TrainSummary {
    pub samples_per_sec: f64,
    pub seconds: f64,
    pub epochs: usize,
    pub steps: u64,
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    pub params: usize,
}

/// What a run produced: the shape of `weft run --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub run_dir: String,
    /// Split name (`train`, `test`, `validation`) → metric name → value.
    pub metrics: BTreeMap<String, BTreeMap<String, Value>>,
    pub train: TrainSummary,
    /// Communication of a distributed run (measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<weft_dist::driver::Comm>,
    /// Things the user should know about the run (a worker lost by an asynchronous run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub history: Vec<EpochRecord>,
    /// The trained model: plan, fitted preprocessing and weights.
    #[serde(skip)]
    pub model: SavedModel,
}

impl RunResult {
    /// A test metric as a number (`accuracy`, `f1`, …).
    pub fn test(&self, metric: &str) -> Option<f64> {
        self.metrics.get("test")?.get(metric)?.as_f64()
    }

    /// Names of the single-number metrics over all splits, sorted (the rows of a table).
    pub fn scalar_metric_names(&self) -> Vec<&String> {
        let mut names: Vec<&String> = self
            .metrics
            .values()
            .flat_map(|m| m.keys())
            .filter(|k| *k != "confusion_matrix")
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Predictions of the trained model for a table with the input columns.
    pub fn predict(&self, table: &Table) -> Result<Predictions> {
        crate::predict::predict_with(&self.model, table)
    }
}

/// What `Experiment::check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// The data's rows when its metadata says them or they were read.
    pub rows: Option<u64>,
    pub features: usize,
    pub classes: Option<usize>,
    pub params: usize,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let task = match self.classes {
            Some(k) => format!("{k} classes"),
            None => "regression".into(),
        };
        let rows = match self.rows {
            Some(r) => format!("{r} rows"),
            None => "rows not read (`check --rows` reads them)".into(),
        };
        write!(
            f,
            "{}: ok — {rows}, {} features, {task}, {} parameters",
            self.name, self.features, self.params
        )
    }
}

/// The largest spec file read (a spec is a page of text; this stops `/dev/zero`).
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// A spec file's text: at most [`MAX_SPEC_BYTES`], and UTF-8 (else the first bad byte's
/// offset, line and column).
pub fn read_spec_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let io = |message: String| Error::Io {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(e.to_string()))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(io(format!(
            "larger than {} MiB; is this a spec file?",
            MAX_SPEC_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        io(format!(
            "byte {at} (line {line}, column {col}) is not valid UTF-8 (0x{:02x}); a spec is UTF-8 text",
            e.as_bytes()[at]
        ))
    })
}
