//! Image models as a user trains them: the shipped CNN on scikit-learn's 8×8 digits reaches
//! its accuracy on the CPU, the GPU (lavapipe where there is no GPU) gives the CPU's
//! figures, two data-parallel workers (all-reduce and a parameter server) train it, and
//! `weft predict` scores the pixel columns.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

mod support;
use support::{run_json, stderr, weft, REPO};

const SPEC: &str = "specs/digits-cnn.yaml";

fn accuracy(v: &Value) -> f64 {
    v["metrics"]["test"]["accuracy"]
        .as_f64()
        .expect("test accuracy")
}

#[test]
fn the_digits_cnn_reaches_its_accuracy_and_predict_scores_pixels() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json(SPEC, runs.path(), &[]);
    assert!(
        accuracy(&v) >= 0.97,
        "digits test accuracy {}",
        accuracy(&v)
    );
    let dir = v["run_dir"].as_str().unwrap();
    let o = weft(&[
        "predict",
        "--model",
        dir,
        "--input",
        &format!("{REPO}/specs/data/digits.csv"),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // Every row scored, and the accuracy over all of them (train rows included) is high.
    let acc: f64 = err
        .split("accuracy on ")
        .nth(1)
        .and_then(|s| s.split(": ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in: {err}"));
    assert!(acc >= 0.98, "{err}");
}

#[test]
fn gpu_and_cpu_train_the_cnn_alike() {
    let runs = tempfile::tempdir().unwrap();
    let short = ["--set", "train.epochs=3"];
    let cpu = run_json(
        SPEC,
        runs.path(),
        &[&short[..], &["--set", "executor.device=cpu"]].concat(),
    );
    let gpu = run_json(
        SPEC,
        runs.path(),
        &[&short[..], &["--set", "executor.device=gpu"]].concat(),
    );
    assert!(
        gpu["train"]["device"].as_str().unwrap().starts_with("gpu"),
        "{}",
        gpu["train"]
    );
    let (a, b) = (accuracy(&cpu), accuracy(&gpu));
    assert!((a - b).abs() <= 0.01, "cpu {a}, gpu {b}");
    assert!(a > 0.85, "3 epochs: {a}");
}

#[test]
fn two_data_parallel_workers_train_the_cnn() {
    let runs = tempfile::tempdir().unwrap();
    for sync in [
        "{workers: 2, sync: allreduce}",
        "{workers: 2, sync: parameter_server, algorithm: downpour}",
    ] {
        let v = run_json(
            SPEC,
            runs.path(),
            &["--set", &format!("parallelism.data={sync}")],
        );
        assert_eq!(v["comm"]["workers"], 2, "{}", v["comm"]);
        assert!(accuracy(&v) >= 0.97, "{sync}: {}", accuracy(&v));
    }
}
