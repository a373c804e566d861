//! Where workers come from: started here (`executor.cluster: local`), already running on
//! other machines (`{hosts: [...]}`), or one per process of a launcher that sets RANK /
//! WORLD_SIZE / MASTER_ADDR (torchrun, Kubernetes indexed Jobs, Slurm, MPI: `env`).
//!
//! Local workers are child processes tied to the driver: they are killed when the driver
//! drops them (on success, error or panic), and they exit by themselves when the driver
//! dies in a way that runs no code (their stdin, a pipe from the driver, closes), so no
//! worker outlives its driver.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::error::{DistError, Result};

/// A worker the driver talks to.
pub struct WorkerProc {
    pub rank: usize,
    /// Control API base URL (`http://127.0.0.1:4312`).
    pub control: String,
    /// Data-plane address.
    pub data: String,
    pub pid: Option<u32>,
    child: Option<Child>,
    /// Held open so the child sees EOF when the driver goes away.
    _stdin: Option<ChildStdin>,
    /// An env-cluster worker's registration, closed when the run ends.
    _hold: Option<crate::transport::Link>,
    /// The URL of the rows the worker holds (handed to it by its launcher).
    pub shard: Option<String>,
}

impl WorkerProc {
    /// A worker this process did not start.
    pub fn remote(
        rank: usize,
        control: String,
        data: String,
        pid: Option<u32>,
        hold: Option<crate::transport::Link>,
    ) -> WorkerProc {
        WorkerProc {
            rank,
            control,
            data,
            pid,
            child: None,
            _stdin: None,
            _hold: hold,
            shard: None,
        }
    }

    /// The worker holds the rows at `shard`.
    pub fn holding(mut self, shard: Option<String>) -> WorkerProc {
        self.shard = shard;
        self
    }

    /// How the worker is named in messages: `worker 1 (pid 4242, 127.0.0.1:4312)`.
    pub fn name(&self) -> String {
        let addr = self.control.trim_start_matches("http://");
        match self.pid {
            Some(pid) => format!("worker {} (pid {pid}, {addr})", self.rank),
            None => format!("worker {} ({addr})", self.rank),
        }
    }

    /// True for a worker this driver started as a child process.
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }

    /// For a local child that has ended: `worker 1 (pid 4242, …) died: it was killed by
    /// signal 9 (SIGKILL)`.
    pub fn died(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(format!("{} died: {}", self.name(), describe_exit(status)))
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = match sig {
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("it was killed by signal {sig}{name}");
        }
    }
    format!("it exited with {status}")
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `weft` executable to start workers with: `WEFT_BIN`, this program if it is weft,
/// a `weft` next to it or one folder up (tests run from `target/*/deps`), else `weft` on
/// the PATH.
pub fn weft_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_BIN") {
        return PathBuf::from(p);
    }
    let exe_name = format!("weft{}", std::env::consts::EXE_SUFFIX);
    if let Ok(me) = std::env::current_exe() {
        if me.file_name().is_some_and(|n| n == exe_name.as_str()) {
            return me;
        }
        for dir in me.ancestors().skip(1).take(2) {
            let candidate = dir.join(&exe_name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(exe_name)
}

/// Parses a worker's ready line: `weft worker: control http://A data B pid N`.
pub fn parse_ready(line: &str) -> Option<(String, String, u32)> {
    let rest = line.trim().strip_prefix("weft worker: control ")?;
    let mut it = rest.split_whitespace();
    let control = it.next()?.to_string();
    (it.next()? == "data").then_some(())?;
    let data = it.next()?.to_string();
    (it.next()? == "pid").then_some(())?;
    let pid = it.next()?.parse().ok()?;
    Some((control, data, pid))
}

/// This machine's CPU cores.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get())
}

/// The most workers `cluster: local` may start here: `configured`
/// (`executor.max_local_workers`), else 4 per core (more only oversubscribe the machine, and
/// thousands exhaust it). Returns the limit and where it comes from, for messages.
pub fn local_worker_limit(configured: Option<usize>) -> (usize, String) {
    match configured {
        Some(m) => (m, "executor.max_local_workers".into()),
        None => {
            let cores = cores();
            (
                4 * cores,
                format!(
                    "4 per core on this {cores}-core machine; executor.max_local_workers sets it"
                ),
            )
        }
    }
}

/// Starts `n` workers on this machine.
pub fn spawn_local(n: usize, token: &str, timeout: Duration) -> Result<Vec<WorkerProc>> {
    let bin = weft_binary();
    // One worker per share of the cores, as one per device: N workers with all cores each
    // would fight over them.
    let threads = (cores() / n.max(1)).max(1).to_string();
    let mut workers = Vec::new();
    for rank in 0..n {
        let mut child = Command::new(&bin)
            .args(["worker", "--listen", "127.0.0.1:0", "--exit-with-parent"])
            .env("WEFT_TOKEN", token)
            .env("RAYON_NUM_THREADS", &threads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                DistError::io(
                    format!("start worker {rank} with `{} worker` (set WEFT_BIN to the weft executable)", bin.display()),
                    e,
                )
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = stdout else { return };
            let mut lines = BufReader::new(out).lines();
            let first = lines.next().and_then(|l| l.ok());
            let _ = tx.send(first);
            // Keep draining so the worker never blocks on a full pipe.
            for line in lines.map_while(|l| l.ok()) {
                tracing::info!("worker {rank}: {line}");
            }
        });
        let mut proc = WorkerProc {
            rank,
            control: String::new(),
            data: String::new(),
            pid: Some(child.id()),
            child: Some(child),
            _stdin: stdin,
            _hold: None,
            shard: None,
        };
        let line = rx
            .recv_timeout(timeout.max(Duration::from_secs(30)))
            .ok()
            .flatten();
        match line.as_deref().and_then(parse_ready) {
            Some((control, data, _)) => {
                proc.control = control;
                proc.data = data;
            }
            None => {
                let why = proc
                    .died()
                    .unwrap_or_else(|| format!("it printed {line:?}"));
                return Err(DistError::Config(format!(
                    "worker {rank} (`{} worker`) did not start: {why}",
                    bin.display()
                )));
            }
        }
        workers.push(proc);
    }
    Ok(workers)
}

/// Workers already running at `hosts` (control addresses); asks each for its data address.
pub fn connect_hosts(hosts: &[String], token: &str, timeout: Duration) -> Result<Vec<WorkerProc>> {
    let client = crate::driver::http_client(timeout)?;
    hosts
        .iter()
        .enumerate()
        .map(|(rank, host)| {
            let control = if host.starts_with("http://") {
                host.clone()
            } else {
                format!("http://{host}")
            };
            let health: Value = crate::driver::get_json(&client, &control, "/v1/health", token)
                .map_err(|e| DistError::Config(format!("executor.cluster.hosts[{rank}]: {e}")))?;
            let data = advertised(
                health["data_addr"].as_str().unwrap_or_default(),
                control.trim_start_matches("http://"),
            );
            Ok(WorkerProc::remote(rank, control, data, None, None))
        })
        .collect()
}

/// A worker's data address as its peers must dial it: a worker listening on every interface
/// (`0.0.0.0:P`) is reached at the host its control address was given as.
fn advertised(data: &str, control: &str) -> String {
    match data.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let host = control.rsplit_once(':').map_or(control, |(h, _)| h);
            format!("{host}:{}", a.port())
        }
        _ => data.to_string(),
    }
}

/// A process's place as set by a launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRank {
    pub rank: usize,
    pub world: usize,
    /// `MASTER_ADDR:MASTER_PORT`, where rank 0 (the driver) listens for the others.
    pub master: String,
    /// Which variables it came from, for messages.
    pub source: &'static str,
}

/// Reads RANK/WORLD_SIZE (torchrun, Kubernetes), SLURM_PROCID/SLURM_NTASKS or
/// OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE, and MASTER_ADDR/MASTER_PORT.
pub fn env_rank(get: impl Fn(&str) -> Option<String>) -> Result<EnvRank> {
    let pairs = [
        ("RANK", "WORLD_SIZE", "RANK/WORLD_SIZE"),
        (
            "JOB_COMPLETION_INDEX",
            "WORLD_SIZE",
            "JOB_COMPLETION_INDEX/WORLD_SIZE (Kubernetes indexed Job)",
        ),
        (
            "SLURM_PROCID",
            "SLURM_NTASKS",
            "SLURM_PROCID/SLURM_NTASKS (Slurm)",
        ),
        (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_RANK/SIZE (Open MPI)",
        ),
        ("PMI_RANK", "PMI_SIZE", "PMI_RANK/PMI_SIZE (MPICH)"),
    ];
    let (r, w, source) = pairs
        .iter()
        .find(|(r, w, _)| get(r).is_some() && get(w).is_some())
        .ok_or_else(|| {
            DistError::Config(
                "executor.cluster: env: no launcher variables found (RANK and WORLD_SIZE, SLURM_PROCID and SLURM_NTASKS, or OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE)".into(),
            )
        })?;
    let num = |name: &str| -> Result<usize> {
        let v = get(name).unwrap_or_default();
        v.trim().parse().map_err(|_| {
            DistError::Config(format!(
                "executor.cluster: env: {name}={v:?} is not a whole number"
            ))
        })
    };
    let (rank, world) = (num(r)?, num(w)?);
    if world == 0 || rank >= world {
        return Err(DistError::Config(format!(
            "executor.cluster: env: {r}={rank} must be below {w}={world}"
        )));
    }
    let addr = get("MASTER_ADDR").ok_or_else(|| {
        DistError::Config(
            "executor.cluster: env: MASTER_ADDR is not set (the address of rank 0)".into(),
        )
    })?;
    let port = get("MASTER_PORT").unwrap_or_else(|| "29500".into());
    Ok(EnvRank {
        rank,
        world,
        master: format!("{addr}:{port}"),
        source,
    })
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn launchers_set_rank_and_world_their_own_way() {
        let torchrun = env(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29400"),
        ]);
        assert_eq!(
            env_rank(torchrun).unwrap(),
            EnvRank {
                rank: 1,
                world: 4,
                master: "10.0.0.1:29400".into(),
                source: "RANK/WORLD_SIZE"
            }
        );
        let slurm = env(&[
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "8"),
            ("MASTER_ADDR", "node1"),
        ]);
        let r = env_rank(slurm).unwrap();
        assert_eq!((r.rank, r.world, r.master.as_str()), (3, 8, "node1:29500"));
        let mpi = env(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
        ]);
        assert_eq!(
            env_rank(mpi).unwrap().source,
            "OMPI_COMM_WORLD_RANK/SIZE (Open MPI)"
        );
    }

    #[test]
    fn bad_launcher_variables_say_which_and_why() {
        let msg = |vars: &[(&str, &str)]| env_rank(env(vars)).unwrap_err().to_string();
        assert!(msg(&[]).contains("no launcher variables found"));
        assert!(
            msg(&[("RANK", "x"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])
                .contains("RANK=\"x\" is not a whole number")
        );
        assert!(
            msg(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])
                .contains("RANK=2 must be below WORLD_SIZE=2")
        );
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "2")]).contains("MASTER_ADDR is not set"));
    }

    #[test]
    fn workers_on_every_interface_are_dialled_at_their_host() {
        assert_eq!(advertised("0.0.0.0:4001", "node7:7000"), "node7:4001");
        assert_eq!(advertised("[::]:4001", "10.0.0.2:7000"), "10.0.0.2:4001");
        assert_eq!(advertised("10.0.0.3:4001", "node7:7000"), "10.0.0.3:4001");
    }

    #[test]
    fn ready_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_ready("weft worker: control http://127.0.0.1:4000 data 127.0.0.1:4001 pid 42\n"),
            Some(("http://127.0.0.1:4000".into(), "127.0.0.1:4001".into(), 42))
        );
        assert_eq!(parse_ready("error: no token"), None);
        assert_eq!(parse_ready("weft worker: control x data y pid z"), None);
    }
}
