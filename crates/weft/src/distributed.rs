//! A run on several workers (`parallelism.data`): find or start the workers, hand the
//! prepared data and the plan to `weft_dist::driver`, and save a checkpoint every epoch.

use std::path::Path;
use std::time::Duration;

use weft_data::{Dataset, StreamSet};
use weft_dist::job::StreamJob;

use crate::data::Data;
use weft_dist::driver::{self, Comm, TrainRequest};
use weft_dist::launch::{self, WorkerProc};
use weft_dist::DistError;
use weft_dsl::{Cluster, DataParallel, Spec};
use weft_exec::{Device, Executor};
use weft_planner::Plan;
use weft_runtime::checkpoint::Resume;
use weft_runtime::rundir::RunDir;
use weft_runtime::train::{set_flat, EpochEnd, Progress, TrainOutcome};

/// What a distributed run leaves: the trained model on this machine's executor.
pub(crate) struct DistRun {
    pub exec: Box<dyn Executor>,
    pub outcome: TrainOutcome,
    pub comm: Comm,
    pub notes: Vec<String>,
    pub device: String,
}

/// The cluster's shared token: `WEFT_TOKEN`, or the file named by `WEFT_TOKEN_FILE`; a
/// local cluster without one gets a fresh random token.
pub fn token(local: bool) -> Result<String, DistError> {
    let t = given_token(local)?;
    weft_dist::frame::check_token(&t).map_err(DistError::Config)?;
    Ok(t)
}

/// Warns when other users may read the token file (they could then drive the workers).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the token file {} can be read by other users (mode {mode:o}); `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn given_token(local: bool) -> Result<String, DistError> {
    if let Ok(t) = std::env::var("WEFT_TOKEN") {
        if !t.is_empty() {
            return Ok(t);
        }
    }
    if let Some(path) = std::env::var_os("WEFT_TOKEN_FILE") {
        warn_if_readable_by_others(Path::new(&path));
        return std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|e| {
                DistError::io(
                    format!("read WEFT_TOKEN_FILE {}", path.to_string_lossy()),
                    e,
                )
            });
    }
    if local {
        return Ok(weft_dist::frame::random_hex(16));
    }
    Err(DistError::Config(
        "workers on other machines need the cluster's token: set WEFT_TOKEN (or WEFT_TOKEN_FILE) to the token the workers were started with".into(),
    ))
}

/// For `executor.cluster: env` on a rank above 0: the line to print before serving as a
/// worker; `None` when this process drives the run.
pub fn env_worker_role(exp: &crate::Experiment) -> Result<Option<String>, DistError> {
    if !matches!(exp.spec().executor.cluster, Cluster::Env) || exp.spec().parallelism.data.is_none()
    {
        return Ok(None);
    }
    let me = weft_dist::rendezvous::rank_from_env()?;
    Ok((me.rank > 0).then(|| {
        format!(
            "rank {} of {} ({}): serving as a worker for the driver at {}",
            me.rank, me.world, me.source, me.master
        )
    }))
}

/// Serves as an env-cluster worker until the driver (rank 0) is done.
pub fn serve_env_worker(exp: &crate::Experiment) -> Result<(), DistError> {
    let timeout = exp
        .spec()
        .parallelism
        .data
        .as_ref()
        .map_or(10.0, |d| d.timeout_s);
    weft_dist::rendezvous::serve_env_worker(&token(false)?, Duration::from_secs_f64(timeout))?;
    Ok(())
}

/// Starts or finds the workers the spec asks for; also returns the address the parameter
/// server binds (one the workers can reach).
fn workers(
    spec: &Spec,
    dp: &DataParallel,
    token: &str,
) -> Result<(Vec<WorkerProc>, String), DistError> {
    let timeout = Duration::from_secs_f64(dp.timeout_s);
    match &spec.executor.cluster {
        Cluster::Local => Ok((launch::spawn_local(dp.workers, token, timeout)?, "127.0.0.1:0".into())),
        Cluster::Hosts(hosts) => {
            let w = launch::connect_hosts(hosts, token, timeout)?;
            // This machine's address on the route to the workers.
            let ip = w.first().and_then(|w| weft_dist::rendezvous::route_to(&w.data));
            let bind = ip.map_or_else(|| "0.0.0.0:0".into(), |ip| format!("{ip}:0"));
            Ok((w, bind))
        }
        Cluster::Env => weft_dist::rendezvous::driver_workers(token, timeout),
        Cluster::Spark => Err(DistError::Config(
            "executor.cluster: spark runs from Python (python/weft_spark's WeftEstimator); use local, {hosts: [...]} or env here".into(),
        )),
    }
}

/// Workers found before the data was read (they hold it: see `held`), and the address
/// the parameter server binds.
pub(crate) struct Found {
    pub procs: Vec<WorkerProc>,
    pub ps_bind: String,
}

/// Trains on the spec's workers (`found`, or those the spec names), checkpointing into
/// `dir` after every epoch.
pub(crate) fn train(
    spec: &Spec,
    plan: &Plan,
    data: &Data,
    dir: &RunDir,
    resume: Option<Resume>,
    progress: &mut dyn Progress,
    found: Option<&mut Found>,
) -> Result<DistRun, DistError> {
    let Some(dp) = &spec.parallelism.data else {
        return Err(DistError::Config(
            "the spec has no parallelism.data section".into(),
        ));
    };
    let token = token(matches!(spec.executor.cluster, Cluster::Local))?;
    let mut started;
    let (procs, ps_bind) = match found {
        Some(f) => (&mut f.procs, f.ps_bind.clone()),
        None => {
            started = workers(spec, dp, &token)?;
            (&mut started.0, started.1.clone())
        }
    };
    let mut save = |e: &EpochEnd| dir.save_epoch(plan, e);
    let empty = Dataset {
        x: ndarray::Array2::zeros((0, 0)),
        y: ndarray::Array1::zeros(0),
        w: None,
    };
    let (train, validation, stream) = match data {
        Data::Memory { prepared, .. } => (&prepared.train, prepared.validation.as_ref(), None),
        Data::Stream { set, buffer } => (
            &empty,
            None,
            Some(StreamJob {
                set: StreamSet::clone(set),
                buffer: *buffer,
            }),
        ),
    };
    let req = TrainRequest {
        plan,
        dp,
        train,
        validation,
        stream,
        token: &token,
        resume,
        ps_bind,
        device: spec.executor.device,
    };
    let mut out = driver::train(procs, &req, progress, &mut save)?;
    if let Data::Stream { set, .. } = data {
        out.notes.extend(set.describe_shards(procs.len()));
    }
    let mut exec = Device::Cpu.executor(plan)?;
    set_flat(exec.as_mut(), &out.params)?;
    exec.set_buffers(&out.buffers);
    Ok(DistRun {
        device: format!(
            "{} workers × {}",
            procs.len(),
            match spec.executor.device {
                weft_dsl::Device::Cpu => "cpu",
                weft_dsl::Device::Gpu => "gpu",
                weft_dsl::Device::Auto => "auto (gpu where one is found, else cpu)",
            }
        ),
        exec,
        outcome: out.outcome,
        comm: out.comm,
        notes: out.notes,
    })
}
