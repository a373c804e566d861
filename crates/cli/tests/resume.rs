//! Resume is exact: a run killed at any moment (kill -9, or Ctrl-C mid-epoch) and resumed
//! ends with the same bytes of weights as the run that was never stopped; one process
//! trains a run at a time; a finished run has nothing to resume; a failed run says so.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{checkpoint_start, kill, run_json, stderr, stdout, weft, BIN};

/// Adam (moments and bias correction), dropout (the RNG), batch norm (running statistics),
/// a validation split with patience (the early-stopping counters) and a decaying learning
/// rate: everything a resumed run must restore. Epochs of 2,000 batches (~0.25 s).
fn spec(dir: &Path, epochs: usize, optimizer: &str) -> PathBuf {
    spec_with(dir, epochs, optimizer, "executor: {device: cpu}")
}

/// [`spec`] with another `executor` / `parallelism` section.
fn spec_with(dir: &Path, epochs: usize, optimizer: &str, tail: &str) -> PathBuf {
    let text = format!(
        "name: resume
seed: 11
data:
  source: {{synthetic: {{rows: 60000, features: 10, classes: 3, informative: 6, seed: 5}}}}
  preprocess: [standard_scale]
  split: {{train: 0.8, validation: 0.1, test: 0.1}}
model:
  - dense: {{units: 128, activation: relu}}
  - batch_norm: {{}}
  - dropout: {{rate: 0.2}}
  - dense: {{units: 3, activation: softmax}}
train:
  loss: cross_entropy
  optimizer: {optimizer}
  batch_size: 24
  epochs: {epochs}
  schedule: {{cosine: {{}}}}
  stop: {{patience: 1000}}
{tail}
"
    );
    let path = dir.join("resume.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn weights(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join("model.safetensors")).unwrap()
}

/// The one run folder under `runs/resume/`.
fn run_dir(runs: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs.join("resume"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// Starts a run, stops it with `signal` once `ready` holds for its folder, waits for it.
fn interrupt(spec: &Path, runs: &Path, signal: &str, ready: impl Fn(&Path) -> bool) -> String {
    interrupt_with(spec, runs, &[], signal, ready)
}

/// [`interrupt`] with extra arguments (`--set …`).
fn interrupt_with(
    spec: &Path,
    runs: &Path,
    extra: &[&str],
    signal: &str,
    ready: impl Fn(&Path) -> bool,
) -> String {
    let child = Command::new(BIN)
        .args(["run", spec.to_str().unwrap(), "--runs-dir"])
        .arg(runs)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if run_dir(runs).is_some_and(|d| ready(&d)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never got there"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(signal, child.id());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the run was stopped");
    stderr(&out)
}

fn resume(spec: &Path, dir: &Path) -> Value {
    let o = weft(&[
        "run",
        spec.to_str().unwrap(),
        "--resume",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn kill_9_at_any_moment_then_resume_gives_bit_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let path = spec(tmp.path(), 12, "{adam: {lr: 0.003}}");
    let whole = run_json(path.to_str().unwrap(), &tmp.path().join("whole"), &[]);
    let reference = weights(Path::new(whole["run_dir"].as_str().unwrap()));

    // Kill points spread over the run: after the first checkpoint, at a pseudo-random delay
    // (a different one every run of the test, printed when it fails).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for k in 0..3u64 {
        let runs = tmp.path().join(format!("killed{k}"));
        let delay =
            Duration::from_millis((seed.wrapping_mul(2654435761).wrapping_add(k * 977)) % 2500);
        let ready = |d: &Path| {
            d.join("checkpoint.safetensors").is_file() && {
                std::thread::sleep(delay);
                true
            }
        };
        interrupt(&path, &runs, "-9", ready);
        let dir = run_dir(&runs).unwrap();
        let at = checkpoint_start(&dir).unwrap();
        let resumed = resume(&path, &dir);
        assert_eq!(
            weights(&dir),
            reference,
            "killed {delay:?} after the first checkpoint (it held {at}): the weights differ from the uninterrupted run's"
        );
        assert_eq!(resumed["history"].as_array().unwrap().len(), 12);
        assert_eq!(resumed["metrics"]["test"], whole["metrics"]["test"]);
        // Resuming a finished run has nothing to do, and says so.
        let o = weft(&[
            "run",
            path.to_str().unwrap(),
            "--resume",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing to do"), "{}", stderr(&o));
        assert_eq!(weights(&dir), reference, "and leaves it as it was");
    }
}

#[test]
fn a_killed_allreduce_run_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let tail = "executor: {device: cpu}\nparallelism: {data: {workers: 2, sync: allreduce}}";
    let path = spec_with(tmp.path(), 5, "{adam: {lr: 0.003}}", tail);
    let whole = run_json(path.to_str().unwrap(), &tmp.path().join("whole"), &[]);
    let reference = weights(Path::new(whole["run_dir"].as_str().unwrap()));
    // The driver is killed; its local workers go with it.
    let runs = tmp.path().join("killed");
    interrupt(&path, &runs, "-9", |d| {
        d.join("checkpoint.safetensors").is_file()
    });
    let dir = run_dir(&runs).unwrap();
    let at = checkpoint_start(&dir).unwrap();
    resume(&path, &dir);
    assert_eq!(
        weights(&dir),
        reference,
        "every worker resumed with the model and Adam's moments (checkpoint {at})"
    );

    // Ctrl-C on the driver: the workers stop, the finished epochs are saved, and the run
    // says it was interrupted and how to resume it.
    let runs = tmp.path().join("interrupted");
    let err = interrupt(&path, &runs, "-INT", |d| {
        d.join("checkpoint.safetensors").is_file()
    });
    assert!(err.contains("--resume"), "{err}");
    let dir = run_dir(&runs).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted", "{summary}");
    resume(&path, &dir);
    assert_eq!(weights(&dir), reference, "resumed after Ctrl-C");
}

#[test]
fn ctrl_c_checkpoints_mid_epoch_and_the_resumed_run_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let path = spec(tmp.path(), 4, "{sgd: {lr: 0.05, momentum: 0.9}}");
    let whole = run_json(path.to_str().unwrap(), &tmp.path().join("whole"), &[]);
    let reference = weights(Path::new(whole["run_dir"].as_str().unwrap()));

    let runs = tmp.path().join("interrupted");
    // Interrupted during epoch 2, between its checkpoints.
    let err = interrupt_with(
        &path,
        &runs,
        &["--set", "train.batch_size=24"],
        "-INT",
        |d| {
            d.join("metrics.jsonl").is_file() && {
                std::thread::sleep(Duration::from_millis(30));
                true
            }
        },
    );
    let dir = run_dir(&runs).unwrap();
    assert!(err.contains("interrupted (Ctrl-C)"), "{err}");
    assert!(
        err.contains("--set train.batch_size=24 --resume"),
        "prints the resume command, with its --set: {err}"
    );
    let at = checkpoint_start(&dir).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "interrupted", "{summary}");
    let resumed = resume(&path, &dir);
    assert_eq!(weights(&dir), reference, "stopped at {at}");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 4);
}

#[test]
fn one_process_trains_a_run_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let path = spec(tmp.path(), 3, "adam");
    let runs = tmp.path().join("runs");
    interrupt(&path, &runs, "-9", |d| {
        d.join("checkpoint.safetensors").is_file()
    });
    let dir = run_dir(&runs).unwrap();
    // Another process holds the run (as a second `--resume` would).
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    let o = weft(&[
        "run",
        path.to_str().unwrap(),
        "--resume",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another weft process is training this run"),
        "{}",
        stderr(&o)
    );
    drop(lock);
    resume(&path, &dir);
}

#[test]
fn a_diverged_run_leaves_a_failed_summary_and_no_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let path = spec(tmp.path(), 3, "{sgd: {lr: 1.0e30}}");
    let runs = tmp.path().join("runs");
    let o = weft(&[
        "run",
        path.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("diverged"), "{}", stderr(&o));
    let dir = run_dir(&runs).unwrap();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "failed", "{summary}");
    assert!(summary["error"].as_str().unwrap().contains("diverged"));
    assert!(
        !dir.join("model.safetensors").exists(),
        "no NaN model is saved"
    );
}

#[test]
fn predict_refuses_a_model_holding_nan() {
    let tmp = tempfile::tempdir().unwrap();
    let path = spec(tmp.path(), 1, "adam");
    let run = run_json(path.to_str().unwrap(), &tmp.path().join("runs"), &[]);
    let dir = PathBuf::from(run["run_dir"].as_str().unwrap());
    // A NaN written into the last value of the weights file (as a damaged copy would hold).
    let mut bytes = weights(&dir);
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let o = weft(&[
        "predict",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("test.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds NaN"), "{}", stderr(&o));
}

#[test]
fn a_streamed_run_stopped_mid_epoch_resumes_to_the_same_weights() {
    // The same run reading Parquet row groups through a shuffle buffer: the resumed epoch
    // reads the pieces in the same order and skips the batches already trained.
    let tmp = tempfile::tempdir().unwrap();
    let data = weft_dsl::SyntheticSpec {
        rows: 60000,
        features: 10,
        classes: 3,
        informative: Some(6),
        seed: 5,
    };
    weft_data::write_parquet_part(&tmp.path().join("data.parquet"), &data, 1, 4096).unwrap();
    let path = spec(tmp.path(), 3, "{sgd: {lr: 0.05, momentum: 0.9}}");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "  source: {synthetic: {rows: 60000, features: 10, classes: 3, informative: 6, seed: 5}}",
        "  source: {parquet: data.parquet}\n  label: label\n  shuffle_buffer: 5000",
    );
    std::fs::write(&path, text).unwrap();
    let whole = run_json(path.to_str().unwrap(), &tmp.path().join("whole"), &[]);
    let reference = weights(Path::new(whole["run_dir"].as_str().unwrap()));

    let runs = tmp.path().join("interrupted");
    let err = interrupt(&path, &runs, "-INT", |d| {
        d.join("metrics.jsonl").is_file() && {
            std::thread::sleep(Duration::from_millis(30));
            true
        }
    });
    let dir = run_dir(&runs).unwrap();
    assert!(err.contains("interrupted (Ctrl-C)"), "{err}");
    let at = checkpoint_start(&dir).unwrap();
    let resumed = resume(&path, &dir);
    assert_eq!(weights(&dir), reference, "stopped at {at}");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 3);
}
