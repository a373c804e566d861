//! `weft bench allreduce | traffic | scaling`: the distributed runtime measured against a
//! baseline taken in the same run (the link's own rate; one worker), as ratios.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_common::units::human_bytes;
use weft_dist::bench::CollectiveJob;
use weft_dist::driver;
use weft_dist::launch::{self, WorkerProc};
use weft_runtime::train::Quiet;

use weft::Experiment;
use weft::{Error, Result};

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: what.into(),
        message: e.to_string(),
    }
}

/// One TCP stream's throughput over loopback in bytes/s (the link an all-reduce on this
/// machine can at best use): `bytes` through one connection between two threads.
pub fn loopback_rate(bytes: usize) -> Result<f64> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| io("loopback", e))?;
    let addr = l.local_addr().map_err(|e| io("loopback", e))?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k,
            }
        }
    });
    let mut s = TcpStream::connect(addr).map_err(|e| io("loopback", e))?;
    let chunk = vec![7u8; 1 << 20];
    let t = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&chunk).map_err(|e| io("loopback", e))?;
        sent += chunk.len();
    }
    drop(s);
    let got = reader
        .join()
        .map_err(|_| io("loopback", "reader panicked"))?
        .map_err(|e| io("loopback", e))?;
    Ok(got as f64 / t.elapsed().as_secs_f64())
}

fn workers_for(n: usize, hosts: &[String], token: &str) -> Result<Vec<WorkerProc>> {
    let t = Duration::from_secs(30);
    let w = if hosts.is_empty() {
        launch::spawn_local(n, token, t)?
    } else {
        if hosts.len() < n {
            return Err(io(
                "--hosts",
                format!("{n} workers asked for, {} hosts given", hosts.len()),
            ));
        }
        launch::connect_hosts(&hosts[..n], token, t)?
    };
    Ok(w)
}

/// Ring all-reduce bus bandwidth for 1 KiB…`max_bytes` at each worker count, next to the
/// link rate (measured on loopback, or `link_mbit` for an emulated link).
pub fn allreduce(
    counts: &[usize],
    hosts: &[String],
    max_bytes: u64,
    link_mbit: Option<f64>,
    json_out: bool,
) -> Result<()> {
    let token = weft::distributed::token(hosts.is_empty())?;
    let link = match link_mbit {
        Some(m) => m * 1e6 / 8.0,
        None => loopback_rate(512 << 20)?,
    };
    let mut sizes = Vec::new();
    let mut b = 1024u64;
    while b <= max_bytes {
        sizes.push((b / 4) as usize);
        b *= 4;
    }
    if !json_out {
        println!(
            "link: {:.2} GB/s ({})",
            link / 1e9,
            if link_mbit.is_some() {
                "as given"
            } else {
                "one TCP stream on loopback, measured now"
            }
        );
        println!(
            "{:>3} {:>10} {:>11} {:>11} {:>11} {:>7} {:>14} {:>14}",
            "N", "size", "time", "algbw", "busbw", "/link", "bytes/worker", "2(N-1)K/N"
        );
    }
    for &n in counts {
        let mut workers = workers_for(n, hosts, &token)?;
        let job = CollectiveJob {
            sizes: sizes.clone(),
            reps: 5,
            compression: Default::default(),
        };
        let results = driver::collective(&mut workers, &token, &job, Duration::from_secs(120))?;
        for (i, &elements) in sizes.iter().enumerate() {
            // The slowest worker's time is the collective's.
            let seconds = results
                .iter()
                .filter_map(|r| r.get(i))
                .map(|r| r.seconds)
                .fold(0.0, f64::max);
            let max_error = results
                .iter()
                .filter_map(|r| r.get(i))
                .map(|r| r.max_error)
                .fold(0.0, f64::max);
            let sent = results
                .iter()
                .filter_map(|r| r.get(i))
                .map(|r| r.bytes_sent)
                .max()
                .unwrap_or(0);
            let bytes = 4.0 * elements as f64;
            let algbw = bytes / seconds;
            let busbw = algbw * 2.0 * (n as f64 - 1.0) / n as f64;
            let formula = 2.0 * (n as f64 - 1.0) * bytes / n as f64;
            if json_out {
                println!(
                    "{}",
                    json!({"bench": "allreduce", "workers": n, "bytes": bytes, "seconds": seconds, "algbw": algbw, "busbw": busbw, "link": link, "ratio": busbw / link, "bytes_sent_per_worker": sent, "formula_bytes": formula, "max_error": max_error})
                );
            } else {
                println!(
                    "{n:>3} {:>10} {:>9.3}ms {:>7.3}GB/s {:>7.3}GB/s {:>6.0}% {:>14} {:>14.0}",
                    human_bytes(bytes),
                    seconds * 1e3,
                    algbw / 1e9,
                    busbw / 1e9,
                    100.0 * busbw / link,
                    sent,
                    formula
                );
            }
            if max_error != 0.0 {
                return Err(io(
                    "allreduce",
                    format!("wrong sum at N={n}, {} values: error {max_error}", elements),
                ));
            }
        }
    }
    Ok(())
}

/// Bytes each worker sent per step, measured, for every strategy at `n` workers, next to
/// the plan's prediction.
pub fn traffic(spec: &str, n: usize, rows: usize, json_out: bool) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("weft-bench-traffic-{}", std::process::id()));
    let strategies = [
        "{sync: allreduce}",
        "{sync: parameter_server, algorithm: sync}",
        "{sync: parameter_server, algorithm: downpour}",
        "{sync: parameter_server, algorithm: easgd}",
        "{sync: local_sgd}",
        "{sync: gossip}",
        "{sync: allreduce, compression: fp16}",
        "{sync: allreduce, compression: int8}",
        "{sync: allreduce, compression: {topk: {ratio: 0.01}}}",
    ];
    if !json_out {
        println!(
            "{:<34} {:>16} {:>16} {:>7}",
            format!("strategy (N={n})"),
            "sent/worker/step",
            "plan predicts",
            "ratio"
        );
    }
    for s in strategies {
        let exp = Experiment::from_yaml(&format!(
            "{spec}parallelism: {{data: {{workers: {n}, {}}}}}\n",
            &s[1..s.len() - 1]
        ))?
        .set("data.source.synthetic.rows", rows)?
        .set("train.epochs", 1)?;
        let plan = exp.plan()?.plan;
        let predicted = plan
            .parallel
            .as_ref()
            .and_then(|p| p.traffic.iter().find(|t| t.chosen))
            .map(|t| t.bytes_per_worker_per_step)
            .unwrap_or(f64::NAN);
        let r = exp.run_with(Path::new(&tmp), &mut Quiet)?;
        let comm = r
            .comm
            .clone()
            .ok_or_else(|| io("traffic", "no comm figures"))?;
        let per_step = comm.bytes_sent_per_worker / r.train.steps.max(1) as f64;
        if json_out {
            println!(
                "{}",
                json!({"bench": "traffic", "strategy": comm.strategy, "compression": comm.compression, "workers": n, "bytes_per_worker_per_step": per_step, "predicted": predicted})
            );
        } else {
            let name = format!(
                "{} {}",
                comm.strategy,
                if comm.compression == "none" {
                    String::new()
                } else {
                    comm.compression.clone()
                }
            );
            println!(
                "{name:<34} {:>16} {:>16} {:>6.2}x",
                human_bytes(per_step),
                human_bytes(predicted),
                per_step / predicted
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Training samples/s at each worker count (all-reduce), next to one process without
/// `parallelism` in the same run.
pub fn scaling(
    spec: &str,
    counts: &[usize],
    rows: usize,
    batch: usize,
    json_out: bool,
) -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("weft-bench-scaling-{}", std::process::id()));
    let base = Experiment::from_yaml(spec)?
        .set("data.source.synthetic.rows", rows)?
        .set("train.batch_size", batch)?;
    let one = base.run_with(Path::new(&tmp), &mut Quiet)?;
    let one_sps = one.train.samples_per_sec;
    if !json_out {
        println!(
            "{:<24} {:>12} {:>9} {:>9}",
            format!("workers (batch {batch}/worker)"),
            "samples/s",
            "vs 1",
            "test acc"
        );
        println!(
            "{:<24} {:>12.0} {:>8.2}x {:>9.4}",
            "1 (no parallelism)",
            one_sps,
            1.0,
            one.test("accuracy").unwrap_or(f64::NAN)
        );
    }
    for &n in counts {
        let exp =
            Experiment::from_yaml(&format!("{spec}parallelism: {{data: {{workers: {n}}}}}\n"))?
                .set("data.source.synthetic.rows", rows)?
                .set("train.batch_size", batch)?;
        let r = exp.run_with(Path::new(&tmp), &mut Quiet)?;
        let sps = r.train.samples_per_sec;
        if json_out {
            println!(
                "{}",
                json!({"bench": "scaling", "workers": n, "batch_per_worker": batch, "samples_per_sec": sps, "single_process": one_sps, "ratio": sps / one_sps, "test_accuracy": r.test("accuracy")})
            );
        } else {
            println!(
                "{:<24} {:>12.0} {:>8.2}x {:>9.4}",
                n,
                sps,
                sps / one_sps,
                r.test("accuracy").unwrap_or(f64::NAN)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
