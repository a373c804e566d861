//! What the command-line tests share: running the binary as a user does, and reading what
//! a run leaves behind.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The repository root: spec paths in these tests are relative to it, as a user types them.
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
pub const BIN: &str = env!("CARGO_BIN_EXE_weft");

pub fn weft(args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(REPO)
        .args(args)
        .output()
        .expect("weft runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `weft run SPEC --json` into a fresh runs folder; returns the parsed JSON.
pub fn run_json(spec: &str, runs: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", spec, "--json", "--runs-dir", runs.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = weft(&args);
    assert!(o.status.success(), "weft run {spec} failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("--json prints one JSON object")
}

/// Sends a signal (`-9`, `-INT`) to a process.
pub fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Where a run's checkpoint stands (the `start` of its safetensors metadata, as any
/// safetensors reader shows it), or `None` without one.
pub fn checkpoint_start(run_dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(run_dir.join("checkpoint.safetensors")).ok()?;
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: Value = serde_json::from_slice(bytes.get(8..8 + n)?).ok()?;
    serde_json::from_str(header["__metadata__"]["start"].as_str()?).ok()
}

/// Starts `weft worker` on loopback with `token` (and `extra` flags); returns it with its
/// control and data addresses from its ready line. It ends with the test (stdin closes).
pub fn spawn_worker(token: &str, extra: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(BIN)
        .args(["worker", "--listen", "127.0.0.1:0", "--exit-with-parent"])
        .args(extra)
        .env("WEFT_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (control, data, _) = weft_dist::launch::parse_ready(&line).unwrap();
    (child, control, data)
}

/// The test accuracy of `weft run --json`'s output.
pub fn test_accuracy(v: &Value) -> f64 {
    v["metrics"]["test"]["accuracy"]
        .as_f64()
        .expect("test accuracy")
}

/// The accuracy `weft predict` prints on standard error (`accuracy on FILE: 0.97 …`).
pub fn predicted_accuracy(stderr: &str) -> f64 {
    stderr
        .split("accuracy on ")
        .nth(1)
        .and_then(|t| t.split(": ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in: {stderr}"))
}
