//! Rows handed to the workers (what each Spark task of `python/weft_spark` does, here
//! without Spark): `weft spark-task` ranks get their rows as Arrow IPC streams on stdin,
//! rank 0 announces where it listens, prepares from the workers' files by ranged reads and
//! drives the run; `weft predict --input -` answers batch for batch.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;

mod support;
use support::{BIN, REPO};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Iris's rows as batches of 25, and their schema.
fn iris() -> (Arc<arrow_schema::Schema>, Vec<RecordBatch>) {
    let path = format!("{REPO}/crates/data/src/iris.csv");
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::fs::File::open(&path).unwrap(), None)
        .unwrap();
    let schema = Arc::new(schema);
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(25)
        .build(std::fs::File::open(&path).unwrap())
        .unwrap();
    (schema, reader.map(Result::unwrap).collect())
}

fn stream(schema: &arrow_schema::Schema, batches: &[RecordBatch]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = StreamWriter::try_new(&mut bytes, schema).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    bytes
}

fn rank(rank: usize, port: &str, runs: &std::path::Path) -> Child {
    Command::new(BIN)
        .current_dir(REPO)
        .args([
            "spark-task",
            "specs/iris.yaml",
            "--set",
            "train.epochs=40",
            "--runs-dir",
        ])
        .arg(runs)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port)
        .env("WEFT_TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn ranks_fed_on_stdin_train_together_and_predict_batch_for_batch() {
    let (schema, batches) = iris();
    let runs = tempfile::tempdir().unwrap();
    // Rank 0 holds the even batches, rank 1 the odd ones; neither sees the other's rows.
    let (even, odd): (Vec<_>, Vec<_>) = batches
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, RecordBatch)>| v.into_iter().map(|(_, b)| b).collect::<Vec<_>>();
    // Rank 0 says where it listens before it reads its rows.
    let mut r0 = rank(0, "0", runs.path());
    let mut in0 = r0.stdin.take().unwrap();
    let mut out0 = BufReader::new(r0.stdout.take().unwrap());
    let mut line = String::new();
    out0.read_line(&mut line).unwrap();
    in0.write_all(&stream(&schema, &strip(even))).unwrap();
    let addr = line
        .strip_prefix("weft spark-task: rendezvous ")
        .unwrap_or_else(|| panic!("rank 0 said {line:?}"))
        .trim()
        .to_string();
    let port = addr.rsplit(':').next().unwrap();
    assert_ne!(port, "0", "{addr}");
    let mut r1 = rank(1, port, runs.path());
    let mut in1 = r1.stdin.take().unwrap();
    in1.write_all(&stream(&schema, &strip(odd))).unwrap();

    // Rank 0's epoch lines (which the Spark task relays to the driver), then its result.
    let mut relayed = Vec::new();
    loop {
        line.clear();
        out0.read_line(&mut line).unwrap();
        match line.strip_prefix("weft spark-task: progress ") {
            Some(p) => relayed.push(p.trim().to_string()),
            None => break,
        }
    }
    assert!(
        relayed.first().is_some_and(|l| l.starts_with("epoch 1/")),
        "{relayed:?}"
    );
    let status = r0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut r0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "rank 0 failed: {err}");
    let result: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(result["comm"]["workers"], 2, "{result}");
    let acc = result["metrics"]["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "test accuracy {acc}");
    let notes = result["notes"].to_string();
    assert!(
        notes.contains("worker 1 trained on the") && notes.contains("rows it holds"),
        "{notes}"
    );
    // Rank 1 ends when the driver is done with it.
    assert!(r1.wait().unwrap().success());
    drop((in0, in1));

    // Predictions, one batch out per batch in, before the next batch is sent.
    let run_dir = result["run_dir"].as_str().unwrap();
    let mut p = Command::new(BIN)
        .args(["predict", "--model", run_dir, "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = StreamWriter::try_new(p.stdin.take().unwrap(), &schema).unwrap();
    let mut reader = None;
    let mut rows = 0;
    for b in &batches {
        w.write(b).unwrap();
        w.get_mut().flush().unwrap();
        let r = reader.get_or_insert_with(|| {
            arrow_ipc::reader::StreamReader::try_new(p.stdout.take().unwrap(), None).unwrap()
        });
        let out = r.next().unwrap().unwrap();
        assert_eq!(out.num_rows(), b.num_rows());
        rows += out.num_rows();
    }
    w.finish().unwrap();
    drop(w);
    assert!(reader.unwrap().next().is_none());
    assert!(p.wait().unwrap().success());
    assert_eq!(rows, 150);
}

#[test]
fn a_rank_whose_task_goes_away_exits() {
    let (schema, batches) = iris();
    let runs = tempfile::tempdir().unwrap();
    // Rank 0 of 2 waits for a rank 1 that never comes; its task then ends (stdin closes).
    let mut r0 = rank(0, "0", runs.path());
    let mut in0 = r0.stdin.take().unwrap();
    in0.write_all(&stream(&schema, &batches)).unwrap();
    let mut line = String::new();
    BufReader::new(r0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("weft spark-task: rendezvous"), "{line}");
    let closed = Instant::now();
    drop(in0);
    let status = loop {
        if let Some(s) = r0.try_wait().unwrap() {
            break s;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(10),
            "rank 0 outlived its task"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut r0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("standard input closed"), "{err}");
}
