//! Streamed training (`data.shuffle: buffer`) from the command line: a Parquet folder of
//! many row groups trains as well as in memory, evaluates every split, predicts, and trains
//! on two workers that each read only their shard.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float32Array, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use support::{run_json, stderr, weft};

/// Two Gaussian blobs in 4 features, `rows` rows in row groups of 250, in two files.
fn write_data(dir: &Path, rows: usize) {
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    for (k, range) in [(0, 0..rows / 2), (1, rows / 2..rows)] {
        let mut cols: Vec<Vec<f32>> = vec![Vec::new(); 4];
        let mut y = Vec::new();
        for i in range {
            let class = (i * 7 + i / 3) % 2;
            for (j, c) in cols.iter_mut().enumerate() {
                let noise = (((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5) * 2.0;
                c.push(noise + if class == 1 { 1.5 } else { -1.5 } + j as f32 * 10.0);
            }
            y.push(class as i64);
        }
        let mut fields: Vec<(String, arrow_array::ArrayRef)> = cols
            .into_iter()
            .enumerate()
            .map(|(j, c)| (format!("f{j}"), Arc::new(Float32Array::from(c)) as _))
            .collect();
        fields.push(("y".into(), Arc::new(Int64Array::from(y)) as _));
        let batch = RecordBatch::try_from_iter(fields).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(250))
            .build();
        let file = std::fs::File::create(dir.join(format!("parts/part-{k}.parquet"))).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
}

fn write_spec(dir: &Path, extra: &str) -> String {
    let spec = format!(
        "name: streamed
seed: 5
data:
  source: {{parquet: parts}}
  label: y
  preprocess: [standard_scale]
  split: {{train: 0.7, test: 0.2, validation: 0.1}}
  shuffle_buffer: 300
model:
  - dense: {{units: 8, activation: relu}}
  - dense: {{units: 2, activation: softmax}}
train: {{loss: cross_entropy, epochs: 3, batch_size: 32, optimizer: {{adam: {{lr: 0.02}}}}}}
evaluate: [accuracy, auc]
{extra}"
    );
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    path.to_str().unwrap().to_string()
}

fn metric(v: &Value, split: &str, name: &str) -> f64 {
    v["metrics"][split][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no {split}.{name} in {v}"))
}

#[test]
fn a_streamed_parquet_folder_trains_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 4000);
    let spec = write_spec(dir.path(), "");
    let runs = dir.path().join("runs");
    let v = run_json(&spec, &runs, &[]);
    for split in ["train", "test", "validation"] {
        assert!(metric(&v, split, "accuracy") > 0.95, "{split}: {v}");
        assert!(metric(&v, split, "loss") < 0.3, "{split}: {v}");
    }
    // Every epoch read every train row (about 70% of 4000 by the hash split).
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    let run_dir = Path::new(v["run_dir"].as_str().unwrap());
    assert!(run_dir.join("preprocess.json").exists());
    assert!(
        !run_dir.join("test.csv").exists(),
        "the test split stays in the files"
    );
    // The same spec in memory learns as well.
    let full = run_json(
        &spec,
        &runs,
        &[
            "--set",
            "data.shuffle=full",
            "--set",
            "data.shuffle_buffer=null",
        ],
    );
    assert!(metric(&full, "test", "accuracy") > 0.95, "{full}");
    // The saved model predicts from the files.
    let o = weft(&[
        "predict",
        "--model",
        run_dir.to_str().unwrap(),
        "--input",
        dir.path().join("parts").to_str().unwrap(),
        "--output",
        dir.path().join("p.csv").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = std::fs::read_to_string(dir.path().join("p.csv")).unwrap();
    assert_eq!(lines.lines().count(), 4001);
}

#[test]
fn two_workers_each_read_their_own_shard() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path(), 4000);
    let spec = write_spec(
        dir.path(),
        "parallelism: {data: {workers: 2, sync: allreduce}}\n",
    );
    let v = run_json(&spec, &dir.path().join("runs"), &[]);
    assert!(metric(&v, "test", "accuracy") > 0.95, "{v}");
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("worker 0 read") && notes.contains("worker 1 read"),
        "{notes}"
    );
}

#[test]
fn a_streamed_source_made_in_memory_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(
        &path,
        "name: s\ndata:\n  source: builtin:iris\n  shuffle_buffer: 100\nmodel: [{dense: {units: 3, activation: softmax}}]\n",
    )
    .unwrap();
    let o = weft(&["check", path.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("s.yaml:4:") && e.contains("data.shuffle_buffer"),
        "{e}"
    );
    assert!(e.contains("use `shuffle: full`"), "{e}");
}

/// The shipped sample of `specs/higgs-stream.yaml`: 4 files of 2,000 rows in row groups of
/// 500, parts 1–4 of the HIGGS-shaped problem `weft bench stream` writes.
#[test]
fn the_shipped_streaming_spec_trains_from_its_generated_sample() {
    let dir = Path::new(support::REPO).join("specs/data/higgs-stream");
    let spec = weft_dsl::SyntheticSpec {
        rows: 2000,
        features: 28,
        classes: 2,
        informative: Some(20),
        seed: 0,
    };
    if std::env::var_os("UPDATE_DATA").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..4u64 {
            let path = dir.join(format!("part-{k}.parquet"));
            weft_data::write_parquet_part(&path, &spec, k + 1, 500).unwrap();
        }
    }
    // The files hold what the generator makes (values, not bytes: writers differ).
    for k in 0..4u64 {
        let path = dir.join(format!("part-{k}.parquet"));
        let table = weft_data::read_table(&path).unwrap();
        let (cols, labels) = weft_data::generate_part(&spec, k + 1).unwrap();
        let x0 = table
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        assert_eq!(x0.values().to_vec(), cols[0], "{}", path.display());
        let y = table
            .batch
            .column(28)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(y.values().to_vec(), labels);
    }
    let runs = tempfile::tempdir().unwrap();
    let v = run_json("specs/higgs-stream.yaml", runs.path(), &[]);
    assert!(metric(&v, "test", "accuracy") > 0.85, "{v}");
}
