//! Data in an S3-compatible store: a real server (moto's, from the Python registry, which
//! scripts/setup.sh installs) holds Parquet parts; `weft run` trains from
//! `s3://bucket/data/*.parquet` with credentials from the environment as the AWS SDKs read
//! them, and `weft predict` reads its input from the store too.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

mod support;
use support::{stderr, stdout, BIN, REPO};

/// moto's server on a free port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Moto {
    let server = Path::new(REPO).join(".tools/venv/bin/moto_server");
    assert!(
        server.exists(),
        "run scripts/setup.sh first: it installs moto's S3 server into .tools/venv"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto { child, port }
}

/// An unsigned PUT (moto does not check signatures): creates a bucket or an object.
fn put(port: u16, path: &str, body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "PUT {path}: {reply}");
}

/// A Parquet part of `rows` rows of x0, x1 and y = [x0 > x1].
fn part(first: i64, rows: usize) -> Vec<u8> {
    let x0: Vec<f64> = (0..rows)
        .map(|i| ((first + i as i64) * 37 % 101) as f64 / 50.0 - 1.0)
        .collect();
    let x1: Vec<f64> = (0..rows)
        .map(|i| ((first + i as i64) * 53 % 97) as f64 / 48.0 - 1.0)
        .collect();
    let y: Vec<i64> = x0.iter().zip(&x1).map(|(a, b)| i64::from(a > b)).collect();
    let batch = RecordBatch::try_from_iter([
        ("x0", Arc::new(Float64Array::from(x0)) as ArrayRef),
        ("x1", Arc::new(Float64Array::from(x1)) as ArrayRef),
        ("y", Arc::new(Int64Array::from(y)) as ArrayRef),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn weft_s3(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap()
}

#[test]
fn trains_from_parquet_parts_in_an_s3_bucket_and_predicts_from_it() {
    let m = moto();
    put(m.port, "/weft-data", b"");
    for (k, first) in [(0, 0i64), (1, 600), (2, 1200)] {
        put(
            m.port,
            &format!("/weft-data/data/part-{k}.parquet"),
            &part(first, 600),
        );
    }
    put(m.port, "/weft-data/data/notes.txt", b"not a part");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s3.yaml");
    std::fs::write(
        &spec,
        "name: s3\ndata: {source: {parquet: \"s3://weft-data/data/*.parquet\"}, label: y, preprocess: [standard_scale]}\nmodel: [{dense: {units: 16, activation: relu}}, {dense: {units: 2, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 30, optimizer: {adam: {lr: 0.01}}}\n",
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let spools = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("weft-remote-"))
            .collect();
        v.sort();
        v
    };
    let before = spools();
    // `check` reads the three Parquet footers with ranged reads: their rows, not the data.
    let o = weft_s3(m.port, &["check", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1800 rows, 2 features"),
        "{}",
        stdout(&o)
    );
    let o = weft_s3(
        m.port,
        &[
            "run",
            spec.to_str().unwrap(),
            "--json",
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let acc = r["metrics"]["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "test accuracy {acc}");
    let plan: Value = serde_json::from_slice(
        &std::fs::read(Path::new(r["run_dir"].as_str().unwrap()).join("plan.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["features"], serde_json::json!(["x0", "x1"]));
    // No temporary spool is left behind.
    assert_eq!(
        spools(),
        before,
        "spooled objects are removed after reading"
    );

    // Streamed from the bucket (`shuffle_buffer`) by two workers: each reads the row groups
    // of its shard straight from the store with ranged reads (nothing is spooled).
    let o = weft_s3(
        m.port,
        &[
            "run",
            spec.to_str().unwrap(),
            "--json",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--set",
            "data.shuffle_buffer=256",
            "--set",
            "parallelism.data={workers: 2, sync: allreduce}",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let streamed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let acc = streamed["metrics"]["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "streamed test accuracy {acc}");
    let notes = streamed["notes"].to_string();
    assert!(
        notes.contains("worker 1 read") && notes.contains("s3://weft-data/data/*.parquet"),
        "{notes}"
    );
    assert_eq!(spools(), before, "nothing was spooled");

    // predict reads its input from the store.
    let model = r["run_dir"].as_str().unwrap();
    let o = weft_s3(
        m.port,
        &[
            "predict",
            "--model",
            model,
            "--input",
            "s3://weft-data/data/part-2.parquet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 601, "a header and 600 rows");
    assert!(
        stderr(&o).contains("accuracy on s3://weft-data/data/part-2.parquet"),
        "{}",
        stderr(&o)
    );

    // A CSV object: `check` reads its first rows for the schema, `run --json` the whole.
    put(
        m.port,
        "/weft-data/iris.csv",
        include_str!("../../data/src/iris.csv").as_bytes(),
    );
    let csv_spec = dir.path().join("csv.yaml");
    std::fs::write(
        &csv_spec,
        "name: s3csv\ndata: {source: {csv: \"s3://weft-data/iris.csv\"}, label: species}\nmodel: [{dense: {units: 3, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 2}\n",
    )
    .unwrap();
    let o = weft_s3(m.port, &["check", csv_spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 features"), "{}", stdout(&o));

    // A missing object, and wrong credentials' errors, name the URL.
    let o = weft_s3(
        m.port,
        &[
            "predict",
            "--model",
            model,
            "--input",
            "s3://weft-data/data/nothing.parquet",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("s3://weft-data/data/nothing.parquet"),
        "{}",
        stderr(&o)
    );
}
