//! `weft predict` streams: the input is read, predicted and written a piece at a time, so
//! its memory does not grow with the input (a 1M-row CSV predicts in a fraction of its size).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

mod support;
use support::{run_json, BIN};

/// Rows of `x0..x9,y` with y = [x0 + x1 > 0], from a fixed generator.
fn write_rows(path: &Path, rows: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "x0,x1,x2,x3,x4,x5,x6,x7,x8,x9,y").unwrap();
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
    };
    for _ in 0..rows {
        let x: Vec<f64> = (0..10).map(|_| next()).collect();
        let cells: Vec<String> = x.iter().map(|v| format!("{v:.4}")).collect();
        writeln!(f, "{},{}", cells.join(","), u8::from(x[0] + x[1] > 0.0)).unwrap();
    }
}

/// Runs `weft args…`; its exit code, its peak resident memory in bytes (the kernel's
/// VmHWM, read until it exits) and its stderr.
fn run_measured(args: &[&str]) -> (i32, u64, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut peak = 0u64;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        }) {
            peak = peak.max(kb * 1024);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    (status.code().unwrap_or(-1), peak, reader.join().unwrap())
}

#[test]
fn predict_streams_a_large_csv_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_rows(&dir.path().join("train.csv"), 2000, 1);
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: stream\ndata: {source: {csv: train.csv}, label: y, preprocess: [standard_scale]}\nmodel: [{dense: {units: 16, activation: relu}}, {dense: {units: 2, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 20, optimizer: {adam: {lr: 0.01}}}\n",
    )
    .unwrap();
    let run = run_json(spec.to_str().unwrap(), &dir.path().join("runs"), &[]);
    let model = run["run_dir"].as_str().unwrap().to_string();

    let big = dir.path().join("big.csv");
    write_rows(&big, 1_000_000, 2);
    let size = std::fs::metadata(&big).unwrap().len();
    let out = dir.path().join("out.csv");
    let (code, rss, err) = run_measured(&[
        "predict",
        "--model",
        &model,
        "--input",
        big.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
            .count();
    assert_eq!(lines, 1_000_001, "a header and one line per row");
    assert!(support::predicted_accuracy(&err) > 0.95, "{err}");
    println!(
        "predict: {} MB of CSV, peak RSS {} MB",
        size >> 20,
        rss >> 20
    );
    assert!(
        rss < size / 2,
        "peak RSS {} MB for a {} MB input",
        rss >> 20,
        size >> 20
    );
}
