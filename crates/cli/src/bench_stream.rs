//! `weft bench stream`: one epoch of the HIGGS model on a generated HIGGS-shaped Parquet data
//! set streamed from disk (`data.shuffle: buffer`), side by side with the same model on an
//! in-memory set of 100k rows of the same problem, in one invocation: samples/s of both and
//! their ratio, the time the streaming passes took, and each process's peak memory with the
//! streamed run's RSS over time (sampled from /proc). `--workers 2` adds the streamed run on
//! that many local workers, each reading its own shard.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft::{Error, Result};
use weft_common::units::human_bytes;

/// Rows per generated file and per row group.
const FILE_ROWS: usize = 1 << 20;
const GROUP_ROWS: usize = 1 << 17;
/// Rows of the in-memory comparison.
const MEMORY_ROWS: usize = 100_000;

fn spec(source: &str, batch: usize, epochs: usize, extra: &str) -> String {
    format!(
        "name: bench-stream
seed: 0
data:
  source: {{parquet: \"{source}\"}}
  label: label
  preprocess: [standard_scale]
  split: {{train: 0.8, test: 0.2}}
{extra}model:
  - dense: {{units: 500, activation: relu}}
  - dense: {{units: 500, activation: relu}}
  - dense: {{units: 2, activation: softmax}}
train: {{loss: cross_entropy, optimizer: {{adam: {{lr: 0.001}}}}, batch_size: {batch}, epochs: {epochs}}}
evaluate: [accuracy]
"
    )
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `rows` rows of part `part` of the HIGGS-shaped problem (28 features, 2 classes)
/// to `path`, in row groups.
fn write_part(path: &Path, part: u64, rows: usize) -> Result<()> {
    Ok(weft_data::write_parquet_part(
        path,
        &higgs(rows),
        part,
        GROUP_ROWS,
    )?)
}

/// The HIGGS-shaped problem: 28 features (20 informative), 2 classes.
pub(crate) fn higgs(rows: usize) -> weft_dsl::SyntheticSpec {
    weft_dsl::SyntheticSpec {
        rows,
        features: 28,
        classes: 2,
        informative: Some(20),
        seed: 0,
    }
}

/// The data set of `rows` rows in `dir` (kept when a marker says it is already there) and
/// the in-memory comparison's file; returns the streamed set's bytes on disk.
fn data(dir: &Path, rows: usize) -> Result<u64> {
    let marker = dir.join("rows.txt");
    let parts = dir.join("parts");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&rows.to_string()) {
        let _ = std::fs::remove_dir_all(&parts);
        std::fs::create_dir_all(&parts).map_err(|e| io(&parts, e))?;
        let started = Instant::now();
        for (k, start) in (0..rows).step_by(FILE_ROWS).enumerate() {
            let n = FILE_ROWS.min(rows - start);
            write_part(&parts.join(format!("part-{k:05}.parquet")), k as u64 + 1, n)?;
            eprint!(
                "\rgenerating {}: {} of {rows} rows",
                parts.display(),
                start + n
            );
        }
        eprintln!(" ({:.0} s)", started.elapsed().as_secs_f64());
        write_part(&dir.join("memory.parquet"), 0, MEMORY_ROWS)?;
        std::fs::write(&marker, rows.to_string()).map_err(|e| io(&marker, e))?;
    }
    let mut bytes = 0;
    for e in std::fs::read_dir(&parts)
        .map_err(|e| io(&parts, e))?
        .flatten()
    {
        bytes += e.metadata().map_or(0, |m| m.len());
    }
    Ok(bytes)
}

/// Resident memory of a process and its descendants (the workers of a distributed run):
/// (current total, each process's peak) from /proc, in bytes.
fn rss(pid: u32) -> (u64, Vec<(u32, u64)>) {
    let field = |status: &str, key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let mut todo = vec![pid];
    let (mut now, mut peaks) = (0, Vec::new());
    while let Some(p) = todo.pop() {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        now += field(&status, "VmRSS:");
        peaks.push((p, field(&status, "VmHWM:")));
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        todo.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    (now, peaks)
}

/// What one `weft run` did: its JSON result, wall seconds, peak RSS per process (the run's
/// own first) and its total RSS over time.
struct Measured {
    result: Value,
    wall: f64,
    peaks: Vec<u64>,
    over_time: Vec<(f64, u64)>,
}

fn measure(spec_path: &Path, runs: &Path) -> Result<Measured> {
    let exe = std::env::current_exe().map_err(|e| io(Path::new("weft"), e))?;
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args([
            "run",
            &spec_path.display().to_string(),
            "--json",
            "--runs-dir",
        ])
        .arg(runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io(&exe, e))?;
    let pid = child.id();
    let mut peaks: std::collections::BTreeMap<u32, u64> = Default::default();
    let mut over_time = Vec::new();
    let mut last = -1.0f64;
    loop {
        let (now, p) = rss(pid);
        for (proc_id, peak) in p {
            let e = peaks.entry(proc_id).or_default();
            *e = (*e).max(peak);
        }
        let t = started.elapsed().as_secs_f64();
        if t - last >= 1.0 {
            over_time.push((t, now));
            last = t;
        }
        if child.try_wait().map_err(|e| io(&exe, e))?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().map_err(|e| io(&exe, e))?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(io(spec_path, format!("weft run failed ({})", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(text.trim()).map_err(|e| io(spec_path, e))?;
    let mut peaks: Vec<(u32, u64)> = peaks.into_iter().collect();
    // The run's own process first, then its workers in the order they started.
    peaks.sort_by_key(|(p, _)| (*p != pid, *p));
    Ok(Measured {
        result,
        wall,
        peaks: peaks.into_iter().map(|(_, b)| b).collect(),
        over_time,
    })
}

/// `weft bench stream`.
pub fn stream(
    rows: usize,
    workers: &[usize],
    data_dir: Option<&Path>,
    batch: usize,
    json_out: bool,
) -> Result<()> {
    let dir: PathBuf = data_dir.map_or_else(
        || std::env::temp_dir().join("weft-bench-stream"),
        Path::to_path_buf,
    );
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let on_disk = data(&dir, rows)?;
    let runs = dir.join("runs");
    let mut rows_out = Vec::new();
    let mut runs_to_do: Vec<(String, String, usize)> = vec![
        // Several epochs, so that warming up does not weigh on the figure.
        (
            "in memory (shuffle: full), 5 epochs".into(),
            spec("memory.parquet", batch, 5, ""),
            1,
        ),
        (
            "streamed (shuffle_buffer: 65536)".into(),
            spec("parts/*.parquet", batch, 1, "  shuffle_buffer: 65536\n"),
            1,
        ),
    ];
    for &n in workers.iter().filter(|&&n| n > 1) {
        runs_to_do.push((
            format!("streamed, {n} workers (allreduce)"),
            spec(
                "parts/*.parquet",
                batch,
                1,
                &format!("  shuffle_buffer: 65536\nparallelism: {{data: {{workers: {n}, sync: allreduce}}}}\n"),
            ),
            n,
        ));
    }
    let mut memory_sps = f64::NAN;
    for (k, (name, text, n)) in runs_to_do.iter().enumerate() {
        let path = dir.join(format!("bench-{k}.yaml"));
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        let m = measure(&path, &runs)?;
        let sps = m.result["train"]["samples_per_sec"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let train_s = m.result["train"]["seconds"].as_f64().unwrap_or(f64::NAN);
        if k == 0 {
            memory_sps = sps;
        }
        let samples = sps * train_s;
        rows_out.push(json!({
            "run": name,
            "workers": n,
            "train_rows": samples.round(),
            "samples_per_sec": sps,
            "ratio_to_in_memory": sps / memory_sps,
            "train_seconds": train_s,
            "wall_seconds": m.wall,
            "test_accuracy": m.result["metrics"]["test"]["accuracy"],
            "peak_rss_bytes": m.peaks,
            "rss_over_time": m.over_time,
            "notes": m.result["notes"],
        }));
    }
    if json_out {
        println!(
            "{}",
            json!({"benchmark": "stream", "rows": rows, "bytes_on_disk": on_disk, "batch": batch, "runs": rows_out})
        );
        return Ok(());
    }
    println!(
        "HIGGS-shaped Parquet: {rows} rows, {} on disk ({}); model 28-500-500-2, batch {batch}",
        human_bytes(on_disk as f64),
        dir.join("parts").display()
    );
    println!(
        "{:<36}{:>12}{:>13}{:>8}{:>10}{:>10}{:>9}  peak RSS",
        "run", "rows", "samples/s", "ratio", "train s", "wall s", "test acc"
    );
    for r in &rows_out {
        let peaks: Vec<String> = r["peak_rss_bytes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(human_bytes)
            .collect();
        println!(
            "{:<36}{:>12}{:>13.0}{:>7.2}x{:>10.1}{:>10.1}{:>9.4}  {}",
            r["run"].as_str().unwrap_or(""),
            r["train_rows"].as_f64().unwrap_or(0.0),
            r["samples_per_sec"].as_f64().unwrap_or(f64::NAN),
            r["ratio_to_in_memory"].as_f64().unwrap_or(f64::NAN),
            r["train_seconds"].as_f64().unwrap_or(f64::NAN),
            r["wall_seconds"].as_f64().unwrap_or(f64::NAN),
            r["test_accuracy"].as_f64().unwrap_or(f64::NAN),
            peaks.join(" / ")
        );
        for note in r["notes"].as_array().into_iter().flatten() {
            if let Some(n) = note.as_str().filter(|n| n.starts_with("worker ")) {
                println!("    {n}");
            }
        }
    }
    if let Some(r) = rows_out.get(1) {
        let points: Vec<String> = r["rss_over_time"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
            .map(|(t, b)| format!("{t:.0}s {}", human_bytes(b)))
            .collect();
        let step = (points.len() / 12).max(1);
        let shown: Vec<&String> = points.iter().step_by(step).collect();
        println!(
            "RSS of the streamed run over time: {}",
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
