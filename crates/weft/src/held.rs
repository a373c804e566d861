//! A run whose rows the workers hold: each process of a launcher (a Spark barrier task, see
//! `python/weft_spark`) is handed its rows as an Arrow IPC stream on standard input, as
//! `weft spark-task` does. Ranks come from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT as
//! for `executor.cluster: env`.
//!
//! Every rank spools its rows to a local Parquet file and starts a worker that serves it.
//! Rank 0 listens for the others (MASTER_PORT 0 picks a free port, announced before anyone
//! registers), fits the preprocessing and evaluates by ranged reads of the workers' files
//! (`weft_data::stream::prepare_held`), and drives training, in which each worker reads only
//! the rows it holds. No process holds the data set.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_dist::rendezvous;
use weft_dist::shard::Shard;
use weft_runtime::train::Progress;

use crate::data::Data;
use crate::distributed::{token, Found};
use crate::error::{Error, Result};
use crate::experiment::{Experiment, RunResult};

/// The rows this process was handed, spooled to a temporary folder removed on drop.
pub struct Spooled {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Spools the Arrow IPC stream on `input` (up to its end marker) to a local Parquet file.
pub fn spool(input: &mut impl Read) -> Result<Spooled> {
    let dir = tempfile::Builder::new()
        .prefix("weft-rows-")
        .tempdir()
        .map_err(|e| Error::Io {
            path: std::env::temp_dir().display().to_string(),
            message: e.to_string(),
        })?;
    let path = dir.path().join("rows.parquet");
    weft_data::stream::spool_ipc_stream(input, &path, "the rows on standard input")?;
    Ok(Spooled { path, _dir: dir })
}

/// The spec as a rank of a held-rows run runs it: the workers of `executor.cluster: env`,
/// `world` of them, streaming (a shuffle buffer; the spec's own when it has one), and the
/// schema read from this rank's rows (`data.source` is not read: the rows came on stdin).
pub fn as_held(exp: &Experiment, rows: &Path, world: usize) -> Result<Experiment> {
    let mut exp = exp
        .set("executor.cluster", "env")?
        .set("parallelism.data.workers", world)?
        .set(
            "data.source",
            format!(
                "{{parquet: {}}}",
                serde_json::to_string(&rows.display().to_string()).unwrap_or_default()
            ),
        )?;
    if exp.spec().data.streamed().is_none() {
        exp = exp.set("data.shuffle", "buffer")?;
    }
    Ok(exp)
}

/// This process's rank of a held-rows run. Rank 0 listens for the others as soon as it
/// starts (MASTER_PORT 0 picks a free port: [`Rank::rendezvous`] says which), so every rank
/// reads its rows at the same time.
pub struct Rank {
    me: weft_dist::launch::EnvRank,
    token: String,
    timeout: Duration,
    listening: Option<rendezvous::Listening>,
}

impl Rank {
    /// Reads the rank from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT and the token from
    /// WEFT_TOKEN; rank 0 starts listening.
    pub fn start(exp: &Experiment) -> Result<Rank> {
        let me = rendezvous::rank_from_env()?;
        let token = token(false)?;
        let timeout = Duration::from_secs_f64(
            exp.spec()
                .parallelism
                .data
                .as_ref()
                .map_or(30.0, |d| d.timeout_s),
        );
        let listening = match me.rank {
            0 => Some(rendezvous::listen(&me, &token, timeout)?),
            _ => None,
        };
        Ok(Rank {
            me,
            token,
            timeout,
            listening,
        })
    }

    /// Where rank 0 listens (`None` on other ranks).
    pub fn rendezvous(&self) -> Option<&str> {
        self.listening.as_ref().map(|l| l.addr.as_str())
    }

    /// This rank's part, with its rows spooled ([`spool`]), from the start or resuming the
    /// run `resume` (rank 0's run directory): starts this rank's worker; rank 0 drives the
    /// run and returns its result, other ranks serve until the driver is done and return
    /// `None`.
    pub fn run(
        self,
        exp: &Experiment,
        rows: Spooled,
        runs_root: &Path,
        resume: Option<&Path>,
        progress: &mut dyn Progress,
    ) -> Result<Option<RunResult>> {
        let Rank {
            me,
            token,
            timeout,
            listening,
        } = self;
        let exp = as_held(exp, &rows.path, me.world)?;
        let shard = Shard::new(rows.path.clone());
        let started = rendezvous::holding_worker(&me.master, &token, Some(shard))?;
        let Some(listening) = listening else {
            rendezvous::register(&me, started, &token, timeout)?;
            return Ok(None);
        };
        // Every rank registered first: should a check below refuse the run, this process
        // ends and closes their registrations, and they end too (they would otherwise
        // retry connecting to a rank 0 that is gone).
        let (procs, ps_bind) = listening.gather(started, timeout)?;
        let device = exp.check_runnable()?;
        exp.preflight()?;
        let shards: Vec<(usize, String)> = procs
            .iter()
            .filter_map(|p| Some((p.rank, p.shard.clone()?)))
            .collect();
        let data = || -> Result<Data> {
            let spec = exp.spec();
            let set = weft_data::stream::prepare_held(
                &spec.prepared_data(),
                &shards,
                spec.seed,
                spec.train.loss.task_kind(),
            )?;
            Ok(Data::Stream {
                set: Arc::new(set),
                buffer: spec
                    .data
                    .streamed()
                    .unwrap_or(weft_dsl::DEFAULT_SHUFFLE_BUFFER as usize),
            })
        };
        let mut found = Found { procs, ps_bind };
        // The workers stay until the run is evaluated (the driver reads their rows for it).
        let result = match resume {
            Some(dir) => exp.resume_data(dir, device, data, Some(&mut found), progress)?,
            None => exp.run_data(runs_root, device, data()?, Some(&mut found), progress)?,
        };
        drop(found);
        drop(rows);
        Ok(Some(result))
    }
}
