//! `executor.cluster: env`: every process of a launcher (torchrun, a Kubernetes indexed
//! Job, Slurm, MPI) runs the same `weft run spec.yaml`. Rank 0 is the driver and also a
//! worker; every other rank starts a worker and registers it with rank 0 at
//! MASTER_ADDR:MASTER_PORT over the data plane (token checked), then serves until the
//! driver closes the registration (it exits when the driver does).

use std::net::{IpAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{DistError, Result};
use crate::frame::{Hello, Kind};
use crate::launch::{env_rank, EnvRank, WorkerProc};
use crate::protocol::Started;
use crate::transport::{accept_loop, Counters, Link};

/// This machine's address on the route to `addr` (no packet is sent).
pub fn route_to(addr: &str) -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(addr).ok()?;
    Some(s.local_addr().ok()?.ip())
}

#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    control: String,
    data: String,
    pid: u32,
    /// The URL of the rows the worker holds (a Spark task's partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<String>,
}

/// How long a registration link may sit idle: the length of a training run.
const HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// This process's rank as the launcher set it.
pub fn rank_from_env() -> Result<EnvRank> {
    env_rank(|k| std::env::var(k).ok())
}

/// A worker on this process, bound to the interface that reaches the driver.
fn local_worker(master: &str, token: &str) -> Result<Started> {
    holding_worker(master, token, None)
}

/// A worker on this process that holds the rows `shard`, bound to the interface that
/// reaches the driver at `master`.
#[cfg(feature = "worker")]
pub fn holding_worker(
    master: &str,
    token: &str,
    shard: Option<crate::shard::Shard>,
) -> Result<Started> {
    let ip = route_to(master).ok_or_else(|| {
        DistError::Config(format!("no route to MASTER_ADDR:MASTER_PORT = {master}"))
    })?;
    let limits = crate::http::Limits::default();
    crate::worker::start_worker_holding(&format!("{ip}:0"), None, token, limits, shard)
}

/// Without the worker server (a library build without feature `worker`) this process
/// cannot take part in an `env` cluster.
#[cfg(not(feature = "worker"))]
pub fn holding_worker(
    _master: &str,
    _token: &str,
    _shard: Option<crate::shard::Shard>,
) -> Result<Started> {
    Err(DistError::Config(
        "executor.cluster: env needs a worker server in this process, and this build of weft has none (feature `worker`, on in the `weft` command); start the run with `weft run`".into(),
    ))
}

/// Rank 0: starts its own worker, waits for every other rank to register, and returns all
/// of them in rank order, with the address the parameter server should bind.
pub fn driver_workers(token: &str, timeout: Duration) -> Result<(Vec<WorkerProc>, String)> {
    let me = rank_from_env()?;
    if me.rank != 0 {
        return Err(DistError::Config(format!(
            "only rank 0 drives the run; this process is rank {} ({})",
            me.rank, me.source
        )));
    }
    let own = local_worker(&me.master, token)?;
    listen(&me, token, timeout)?.gather(own, timeout)
}

/// Rank 0 listening for the other ranks: registrations queue up until
/// [`Listening::gather`], so rank 0 can announce where it listens before it is ready.
pub struct Listening {
    me: EnvRank,
    /// The address it listens at (MASTER_PORT 0 picks a free port).
    pub addr: String,
    ip: String,
    incoming: std::sync::mpsc::Receiver<(Link, Hello)>,
}

/// Rank 0: listens at MASTER_ADDR:MASTER_PORT (on the interface that reaches it).
pub fn listen(me: &EnvRank, token: &str, timeout: Duration) -> Result<Listening> {
    let port = me.master.rsplit(':').next().unwrap_or("29500");
    let ip = route_to(&me.master)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "0.0.0.0".into());
    let bind = format!("{ip}:{port}");
    let listener = TcpListener::bind(&bind)
        .map_err(|e| DistError::io(format!("listen on {bind} (MASTER_PORT)"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DistError::io("read the rendezvous address", e))?
        .to_string();
    let ours = Hello {
        token: token.into(),
        rank: 0,
        world: me.world as u32,
        role: "driver".into(),
    };
    let incoming = accept_loop(
        listener,
        token.into(),
        ours,
        Arc::new(Counters::default()),
        timeout,
    );
    Ok(Listening {
        me: me.clone(),
        addr,
        ip,
        incoming,
    })
}

impl Listening {
    /// With rank 0's own worker started (`own`): waits for every other rank to register,
    /// and returns all workers in rank order, with the address the parameter server
    /// should bind.
    pub fn gather(self, own: Started, timeout: Duration) -> Result<(Vec<WorkerProc>, String)> {
        let Listening {
            me,
            addr: bind,
            ip,
            incoming,
        } = self;
        let mut procs: Vec<Option<WorkerProc>> = (0..me.world).map(|_| None).collect();
        procs[0] = Some(
            WorkerProc::remote(
                0,
                own.control.clone(),
                own.data.clone(),
                Some(std::process::id()),
                None,
            )
            .holding(own.shard.clone()),
        );
        // Other ranks may start well after rank 0 (a launcher starts them one by one).
        let deadline = Instant::now() + timeout.max(Duration::from_secs(120));
        while procs.iter().any(Option::is_none) {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (mut link, hello) = incoming.recv_timeout(wait).map_err(|_| {
                let missing: Vec<String> = procs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.is_none())
                    .map(|(r, _)| r.to_string())
                    .collect();
                DistError::Timeout {
                    peer: format!("rank {}", missing.join(", ")),
                    doing: format!("waiting for every rank to register at {bind}"),
                    seconds: timeout.max(Duration::from_secs(120)).as_secs_f64(),
                }
            })?;
            let rank = hello.rank as usize;
            if hello.role != "register"
                || rank == 0
                || rank >= me.world
                || hello.world as usize != me.world
            {
                tracing::warn!(
                    "rendezvous: ignoring {} rank {} of {}",
                    hello.role,
                    hello.rank,
                    hello.world
                );
                continue;
            }
            // A bad registration is that rank's problem: it is skipped and may try again.
            let reg = link.recv("reading its registration").and_then(|(_, body)| {
                serde_json::from_slice::<Registration>(&body)
                    .map_err(|e| link.protocol(format!("bad registration: {e}")))
            });
            let reg = match reg {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("rendezvous: rank {rank}: {e}");
                    continue;
                }
            };
            link.set_timeout(HOLD)?;
            procs[rank] = Some(
                WorkerProc::remote(rank, reg.control, reg.data, Some(reg.pid), Some(link))
                    .holding(reg.shard),
            );
        }
        Ok((procs.into_iter().flatten().collect(), format!("{ip}:0")))
    }
}

/// Ranks above 0: starts a worker, registers it with rank 0 and serves until the driver
/// is done. Returns this process's rank and world size.
pub fn serve_env_worker(token: &str, timeout: Duration) -> Result<EnvRank> {
    let me = rank_from_env()?;
    let started = local_worker(&me.master, token)?;
    register(&me, started, token, timeout)?;
    Ok(me)
}

/// A rank above 0 with its worker started: registers it with rank 0 and returns when the
/// driver is done (it closes the registration).
pub fn register(me: &EnvRank, started: Started, token: &str, timeout: Duration) -> Result<()> {
    let hello = Hello {
        token: token.into(),
        rank: me.rank as u32,
        world: me.world as u32,
        role: "register".into(),
    };
    // Rank 0 may still be starting: connecting retries for a while.
    let (mut link, _) = Link::connect(
        &me.master,
        "the driver (rank 0)",
        &hello,
        Arc::new(Counters::default()),
        timeout.max(Duration::from_secs(120)),
    )?;
    let reg = Registration {
        control: started.control,
        data: started.data,
        pid: std::process::id(),
        shard: started.shard,
    };
    let body = serde_json::to_vec(&reg).map_err(|e| DistError::Config(e.to_string()))?;
    link.send(Kind::Control, 0, &body)?;
    link.set_timeout(HOLD)?;
    // The driver never sends on this link: it closes it when the run ends.
    match link.recv_any("waiting for the run to end") {
        Err(DistError::PeerLost { .. }) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}
