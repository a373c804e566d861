//! Distributed data-parallel training, end to end with real worker processes: collectives,
//! equivalence with one worker, every strategy, failures, tokens and garbage on the wire.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weft::Experiment;
use weft_dist::bench::CollectiveJob;
use weft_dist::{driver, launch, ring};

mod support;
use support::{checkpoint_start, BIN};

/// A small higgs-like problem; `{extra}` is appended (parallelism, overrides).
fn spec(rows: usize, epochs: usize, batch: usize, extra: &str) -> String {
    format!(
        "name: dist-test
seed: 7
data:
  source: {{synthetic: {{rows: {rows}, features: 12, classes: 2, informative: 8, seed: 3}}}}
  preprocess: [{{standard_scale: {{}}}}]
  split: {{train: 0.75, test: 0.25}}
model:
  - dense: {{units: 32, activation: relu}}
  - dense: {{units: 2, activation: softmax}}
train: {{loss: cross_entropy, optimizer: {{adam: {{lr: 0.01}}}}, batch_size: {batch}, epochs: {epochs}}}
evaluate: [accuracy]
{extra}"
    )
}

fn run(yaml: &str) -> weft::RunResult {
    run_set(yaml, &[])
}

/// Runs with `path=value` overrides.
fn run_set(yaml: &str, sets: &[(&str, &str)]) -> weft::RunResult {
    let dir = tempfile::tempdir().unwrap();
    let mut exp = Experiment::from_yaml(yaml).unwrap();
    for (path, value) in sets {
        exp = exp.set(path, value).unwrap();
    }
    exp.run_with(dir.path(), &mut weft_runtime::train::Quiet)
        .unwrap()
}

/// Every tensor of the two runs' models agrees within `rel` of its largest value (≥ 1).
fn assert_same_model(a: &weft::RunResult, b: &weft::RunResult, rel: f32, what: &str) {
    let names = |r: &weft::RunResult| {
        r.model
            .tensors
            .iter()
            .map(|t| t.0.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(a), names(b), "{what}: the same tensors");
    assert!(!a.model.tensors.is_empty(), "{what}: a model with tensors");
    for ((name, x), (_, y)) in a.model.tensors.iter().zip(&b.model.tensors) {
        let diff = x
            .iter()
            .zip(y.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        let scale = x.iter().map(|p| p.abs()).fold(0.0f32, f32::max).max(1.0);
        assert!(diff <= rel * scale, "{what} {name}: max difference {diff}");
    }
}

fn accuracy(r: &weft::RunResult) -> f64 {
    r.test("accuracy").unwrap()
}

/// A `weft worker` process with token `token`; returns it and its control and data addresses.
fn worker(token: &str) -> (Child, String, String) {
    support::spawn_worker(token, &[])
}

fn hosts_spec(controls: &[String]) -> String {
    let hosts: Vec<String> = controls
        .iter()
        .map(|c| format!("\"{}\"", c.trim_start_matches("http://")))
        .collect();
    format!("executor: {{cluster: {{hosts: [{}]}}}}\n", hosts.join(", "))
}

fn write_spec(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("spec.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

#[test]
fn ring_allreduce_sums_exactly_over_two_to_five_processes() {
    let token = "ring-test-token-0123";
    for n in 2..=5usize {
        let mut workers = launch::spawn_local(n, token, Duration::from_secs(10)).unwrap();
        let sizes = vec![1, 7, 1000, 100_003];
        let job = CollectiveJob {
            sizes: sizes.clone(),
            reps: 2,
            compression: Default::default(),
        };
        let results =
            driver::collective(&mut workers, token, &job, Duration::from_secs(10)).unwrap();
        for (rank, per_size) in results.iter().enumerate() {
            assert_eq!(per_size.len(), sizes.len(), "rank {rank} of {n}");
            for r in per_size {
                assert_eq!(r.max_error, 0.0, "N={n} rank {rank} size {}", r.elements);
                // Scatter-reduce sends every chunk but (r+1), all-gather every chunk but
                // (r+2): 2(N−1)K/N values in all, plus a 12-byte header per frame.
                let len = r.elements;
                let c = |i: usize| ring::chunk(len, n, i % n).len();
                let values = 2 * len - c(rank + 1) - c(rank + 2);
                let want = 4 * values as u64 + 2 * (n as u64 - 1) * 12;
                assert_eq!(r.bytes_sent, want, "N={n} rank {rank} size {len}");
                let formula = 2.0 * (n - 1) as f64 * len as f64 / n as f64 * 4.0;
                assert!((r.bytes_sent as f64 - formula).abs() <= 8.0 * n as f64 + 24.0 * n as f64);
            }
        }
    }
}

#[test]
fn allreduce_with_n_workers_equals_one_worker_at_n_times_the_batch() {
    // 600 rows → 450 train rows: with 2 × 8 and 3 × 8 the last global batch is partial, so
    // some workers get a short or empty slice (unequal shards) and must not deadlock.
    for n in [2usize, 3] {
        let one = run(&spec(600, 3, 8 * n, "parallelism: {data: {workers: 1}}\n"));
        let many = run(&spec(
            600,
            3,
            8,
            &format!("parallelism: {{data: {{workers: {n}, sync: allreduce}}}}\n"),
        ));
        assert_eq!(many.comm.as_ref().unwrap().workers, n);
        assert_eq!(
            one.train.steps, many.train.steps,
            "same number of global steps"
        );
        assert_same_model(&one, &many, 2e-4, &format!("N={n}"));
    }
}

#[test]
fn every_strategy_trains_as_well_as_one_worker() {
    let single = accuracy(&run(&spec(3000, 15, 16, "")));
    assert!(single > 0.8, "the single-worker run learns ({single})");
    let ps = |a: &str| {
        format!("parallelism: {{data: {{workers: 2, sync: parameter_server, algorithm: {a}}}}}\n")
    };
    let mut cases: Vec<(String, String)> = [
        "sync", "downpour", "easgd", "aeasgd", "adag", "dynsgd", "hogwild",
    ]
    .iter()
    .map(|a| (format!("parameter_server/{a}"), ps(a)))
    .collect();
    // EAMSGD's workers run momentum SGD at the algorithm's own rate (Distributed Keras):
    // it is tuned there, as a user would.
    cases.push((
        "parameter_server/eamsgd".into(),
        "parallelism: {data: {workers: 2, sync: parameter_server, algorithm: eamsgd, learning_rate: 0.05}}\n".into(),
    ));
    cases.push(("staleness 1".into(), "parallelism: {data: {workers: 2, sync: parameter_server, algorithm: downpour, staleness: 1}}\n".into()));
    for s in ["local_sgd", "gossip"] {
        cases.push((
            s.into(),
            format!("parallelism: {{data: {{workers: 2, sync: {s}}}}}\n"),
        ));
    }
    for c in ["fp16", "int8", "{topk: {ratio: 0.1}}"] {
        cases.push((
            format!("allreduce + {c}"),
            format!("parallelism: {{data: {{workers: 2, compression: {c}}}}}\n"),
        ));
    }
    let mut failures = Vec::new();
    for (name, extra) in &cases {
        // ADAG commits the accumulated update divided by the window, so it needs a larger
        // learning rate for the same progress per epoch.
        let sets: &[(&str, &str)] = if name.ends_with("adag") {
            &[("train.optimizer.adam.lr", "0.03")]
        } else {
            &[]
        };
        let acc = accuracy(&run_set(&spec(3000, 15, 16, extra), sets));
        // Asynchronous commits interleave as the scheduler runs the two workers, so each
        // such run is one draw: it gets a wider margin than the deterministic ones.
        let asynchronous = extra.contains("parameter_server") && !name.ends_with("/sync");
        let margin = if asynchronous { 0.04 } else { 0.02 };
        eprintln!("{name}: accuracy {acc:.4} (one worker {single:.4})");
        if acc < single - margin {
            failures.push(format!("{name}: {acc:.4} vs {single:.4} (margin {margin})"));
        }
    }
    assert!(
        failures.is_empty(),
        "further below one worker than allowed: {failures:?}"
    );
}

#[test]
fn topk_without_error_feedback_is_worse_than_with_it() {
    let with = run(&spec(
        3000,
        4,
        16,
        "parallelism: {data: {workers: 2, compression: {topk: {ratio: 0.01}}}}\n",
    ));
    let without = run(&spec(
        3000,
        4,
        16,
        "parallelism: {data: {workers: 2, compression: {topk: {ratio: 0.01, error_feedback: false}}}}\n",
    ));
    let loss = |r: &weft::RunResult| r.history.last().unwrap().train_loss;
    eprintln!(
        "top-k 1%: loss {} with error feedback, {} without",
        loss(&with),
        loss(&without)
    );
    assert!(loss(&with) < loss(&without) - 0.01);
    // And it really sends less than a dense all-reduce would: 1% of values, index + value.
    let comm = with.comm.unwrap();
    let dense = run(&spec(3000, 4, 16, "parallelism: {data: {workers: 2}}\n"))
        .comm
        .unwrap();
    assert!(comm.bytes_sent_per_worker < dense.bytes_sent_per_worker / 10.0);
}

/// Waits until a file under `root` named `name` exists; returns its folder.
fn wait_for(root: &Path, name: &str, limit: Duration) -> PathBuf {
    let t = Instant::now();
    while t.elapsed() < limit {
        for run in std::fs::read_dir(root.join("dist-test"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if run.path().join(name).exists() {
                return run.path();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {name} under {} after {limit:?}", root.display());
}

fn kill9(pid: u32) {
    support::kill("-9", pid);
}

/// Reads a child's stderr as it comes, on a thread: the receiver hears once the first
/// epoch is reported (a progress line `epoch …`), the thread returns everything.
fn watch_stderr(child: &mut Child) -> (mpsc::Receiver<()>, std::thread::JoinHandle<String>) {
    let (first_epoch, seen) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("epoch ") {
                let _ = first_epoch.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (seen, reader)
}

#[test]
fn kill_9_of_a_worker_stops_a_sync_run_cleanly_and_it_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let token = "kill-test-token-0123";
    let mut ws: Vec<(Child, String, String)> = (0..3).map(|_| worker(token)).collect();
    let controls: Vec<String> = ws.iter().map(|w| w.1.clone()).collect();
    let yaml = spec(
        2000,
        300,
        16,
        &format!(
            "parallelism: {{data: {{workers: 3, timeout_s: 5}}}}\n{}",
            hosts_spec(&controls)
        ),
    );
    let path = write_spec(tmp.path(), &yaml);
    let runs = tmp.path().join("runs");
    let mut driver = Command::new(BIN)
        .args([
            "run",
            path.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .env("WEFT_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed as soon as the first epoch is reported: 299 epochs are still to go.
    let (seen, reader) = watch_stderr(&mut driver);
    seen.recv_timeout(Duration::from_secs(60))
        .expect("the run reports its first epoch within a minute");
    let victim = ws[1].0.id();
    kill9(victim);
    let killed = Instant::now();
    let status = driver.wait().unwrap();
    let took = killed.elapsed();
    let stderr = reader.join().unwrap();
    let run_dir = wait_for(&runs, "checkpoint.safetensors", Duration::from_secs(1));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(10), "reported after {took:?}");
    assert!(
        stderr.contains("worker 1"),
        "names the dead worker: {stderr}"
    );
    assert!(stderr.contains("--resume"), "says how to resume: {stderr}");
    let epoch_before = checkpoint_start(&run_dir).unwrap()["epoch"]
        .as_u64()
        .unwrap()
        - 1;
    let before = epoch_before;
    assert!((1..300).contains(&before), "checkpointed epoch {before}");
    for w in &mut ws {
        let _ = w.0.kill();
    }

    // Resume on two fresh workers (only `parallelism`/`executor` may change).
    let fresh: Vec<(Child, String, String)> = (0..2).map(|_| worker(token)).collect();
    let controls: Vec<String> = fresh.iter().map(|w| w.1.clone()).collect();
    let yaml = spec(
        2000,
        300,
        16,
        &format!(
            "parallelism: {{data: {{workers: 2, timeout_s: 5}}}}\n{}",
            hosts_spec(&controls)
        ),
    );
    let path = write_spec(tmp.path(), &yaml);
    let out = Command::new(BIN)
        .args([
            "run",
            path.to_str().unwrap(),
            "--resume",
            run_dir.to_str().unwrap(),
            "--json",
        ])
        .env("WEFT_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let epochs: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        epochs,
        (1..=300).collect::<Vec<u64>>(),
        "every epoch once, resumed after {epoch_before}"
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(result["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.8);
}

/// Child processes of `pid` (Linux).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn kill_9_of_a_worker_leaves_an_async_run_going() {
    let tmp = tempfile::tempdir().unwrap();
    // 1000 epochs: the kill lands right after the first epoch is reported,
    // with hundreds of epochs still to go even on a fast machine.
    let yaml = spec(2000, 1000, 16, "parallelism: {data: {workers: 3, sync: parameter_server, algorithm: downpour, timeout_s: 5}}\n");
    let path = write_spec(tmp.path(), &yaml);
    let runs = tmp.path().join("runs");
    let mut driver = Command::new(BIN)
        .args([
            "run",
            path.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--json",
        ])
        .env("RUST_LOG", "weft_dist::driver=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, reader) = watch_stderr(&mut driver);
    seen.recv_timeout(Duration::from_secs(60))
        .expect("the run reports its first epoch within a minute");
    let kids = children(driver.id());
    assert_eq!(kids.len(), 3, "three local workers");
    kill9(kids[2]);
    let out = driver.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("goes on with 2 workers"), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        result["notes"][0]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{result}"
    );
    let finished: Vec<&str> = stderr.lines().filter(|l| l.contains("driver:")).collect();
    assert_eq!(result["train"]["epochs"], 1000, "{finished:?}");
}

#[test]
fn missing_or_wrong_tokens_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut w, control, data) = worker("the-token-0123456789");
    let path = write_spec(
        tmp.path(),
        &spec(
            200,
            1,
            16,
            &format!(
                "parallelism: {{data: {{workers: 1}}}}\n{}",
                hosts_spec(std::slice::from_ref(&control))
            ),
        ),
    );
    let out = Command::new(BIN)
        .args(["run", path.to_str().unwrap()])
        .env("WEFT_TOKEN", "not-the-token-0123456")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("executor.cluster.hosts[0]") && stderr.contains("wrong token"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["run", path.to_str().unwrap()])
        .env_remove("WEFT_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("set WEFT_TOKEN"), "{stderr}");

    // The control API without a token.
    let client = driver::http_client(Duration::from_secs(5)).unwrap();
    let e = driver::get_json(&client, &control, "/v1/health", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains("no token given"), "{e}");

    // The data plane with a wrong token: an error frame says why, then it closes.
    let hello = weft_dist::frame::Hello {
        token: "nope".into(),
        rank: 0,
        world: 1,
        role: "ring:x".into(),
    };
    let e = weft_dist::transport::Link::connect(
        &data,
        "worker",
        &hello,
        Default::default(),
        Duration::from_secs(5),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("refused") && e.contains("wrong token"), "{e}");
    let _ = w.kill();
}

#[test]
fn garbage_on_the_data_port_leaves_the_worker_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let token = "garbage-test-token-0123";
    let mut ws: Vec<(Child, String, String)> = (0..2).map(|_| worker(token)).collect();
    for (_, _, data) in &ws {
        // Random bytes, a frame with a bad magic, one with a huge length, one cut short.
        let mut junk: Vec<Vec<u8>> = vec![b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0xff; 64]];
        junk.push(weft_dist::frame::encode_frame(
            weft_dist::frame::Kind::Hello,
            0,
            &[1, 2, 3],
        ));
        let mut huge = weft_dist::frame::encode_frame(weft_dist::frame::Kind::F32, 0, &[]);
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        junk.push(huge);
        for bytes in junk {
            let mut s = TcpStream::connect(data).unwrap();
            let _ = s.write_all(&bytes);
            let mut sink = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The worker closes the connection (or resets it, with bytes left unread).
            if let Err(e) = s.read_to_end(&mut sink) {
                assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the worker kept a garbage connection open"
                );
            }
        }
        // And one that connects and sends nothing, then goes away.
        drop(TcpStream::connect(data).unwrap());
    }
    let controls: Vec<String> = ws.iter().map(|w| w.1.clone()).collect();
    let path = write_spec(
        tmp.path(),
        &spec(
            400,
            2,
            16,
            &format!(
                "parallelism: {{data: {{workers: 2}}}}\n{}",
                hosts_spec(&controls)
            ),
        ),
    );
    let out = Command::new(BIN)
        .args([
            "run",
            path.to_str().unwrap(),
            "--json",
            "--runs-dir",
            tmp.path().join("runs").to_str().unwrap(),
        ])
        .env("WEFT_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for w in &mut ws {
        let _ = w.0.kill();
    }
}

#[test]
fn env_cluster_runs_like_torchrun_with_rank_0_as_the_driver() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = write_spec(
        tmp.path(),
        &spec(
            600,
            3,
            16,
            "parallelism: {data: {workers: 3}}\nexecutor: {cluster: env}\n",
        ),
    );
    let start = |rank: usize| {
        Command::new(BIN)
            .args([
                "run",
                path.to_str().unwrap(),
                "--json",
                "--runs-dir",
                tmp.path().join("runs").to_str().unwrap(),
            ])
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", "3")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("WEFT_TOKEN", "env-test-token-012345")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Workers may start before the driver: they retry until it listens.
    let others: Vec<Child> = (1..3).map(start).collect();
    std::thread::sleep(Duration::from_millis(300));
    let driver = start(0).wait_with_output().unwrap();
    assert!(
        driver.status.success(),
        "{}",
        String::from_utf8_lossy(&driver.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&driver.stdout).unwrap();
    assert_eq!(result["comm"]["workers"], 3);
    assert!(result["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.7);
    for w in others {
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("serving as a worker for the driver at 127.0.0.1"),
            "{stderr}"
        );
    }
}

#[test]
fn gossip_exchanges_models_larger_than_the_socket_buffers() {
    // 3.3M parameters (13 MB) between three workers, every step: sends and receives must
    // overlap or every worker waits on a full socket.
    let yaml = "name: big-gossip
seed: 1
data:
  source: {synthetic: {rows: 96, features: 12, classes: 2, seed: 3}}
  split: {train: 0.75, test: 0.25}
model:
  - dense: {units: 1800, activation: relu}
  - dense: {units: 1800, activation: relu}
  - dense: {units: 2, activation: softmax}
train: {loss: cross_entropy, optimizer: {sgd: {lr: 0.01}}, batch_size: 8, epochs: 1}
evaluate: [accuracy]
parallelism: {data: {workers: 3, sync: gossip, communication_window: 1, timeout_s: 60}}
";
    let r = run(yaml);
    let comm = r.comm.unwrap();
    assert_eq!(comm.strategy, "gossip");
    assert!(comm.bytes_sent_per_worker > 2.0 * 13e6, "{comm:?}");
}

/// `executor.device: gpu` in a distributed spec: every worker runs its steps on the GPU
/// executor (Mesa's software adapter where there is no GPU), and the model equals the CPU
/// workers' (same data order, same all-reduce, same kernels' results within f32 rounding).
#[test]
fn gpu_workers_train_the_same_model_as_cpu_workers() {
    let yaml = spec(
        600,
        3,
        8,
        "parallelism: {data: {workers: 2, sync: allreduce, timeout_s: 120}}\n",
    );
    let cpu = run_set(&yaml, &[("executor.device", "cpu")]);
    let gpu = run_set(&yaml, &[("executor.device", "gpu")]);
    assert_eq!(gpu.train.device, "2 workers × gpu");
    assert_eq!(cpu.train.device, "2 workers × cpu");
    assert_same_model(&cpu, &gpu, 1e-3, "gpu vs cpu");
    assert!((accuracy(&cpu) - accuracy(&gpu)).abs() <= 0.01);
}

/// A token no frame can carry (over 65,535 bytes) is refused when the worker starts, with
/// the limit in the message; such a worker used to start and then panic on every job.
#[test]
fn a_token_too_long_for_a_frame_is_refused_at_start() {
    let o = Command::new(BIN)
        .args(["worker", "--listen", "127.0.0.1:0"])
        .env("WEFT_TOKEN", "t".repeat(70_000))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the token is 70000 bytes; at most 65535 fit in a frame"),
        "{err}"
    );
}
