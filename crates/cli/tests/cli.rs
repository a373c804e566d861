//! The `weft` command line as a user runs it: training reaches its accuracy, runs are saved
//! and reproducible, predict replays a saved model, plans match their golden files.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod support;
use support::{checkpoint_start, run_json, stderr, stdout, test_accuracy as accuracy, weft, REPO};

#[test]
fn iris_trains_to_the_target_accuracy_and_saves_a_complete_run() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json("specs/iris.yaml", runs.path(), &[]);
    assert!(accuracy(&v) >= 0.93, "iris test accuracy {}", accuracy(&v));
    assert_eq!(v["train"]["epochs"], 60);
    assert!(v["train"]["samples_per_sec"].as_f64().unwrap() > 0.0);
    let dir = PathBuf::from(v["run_dir"].as_str().unwrap());
    assert!(dir.starts_with(runs.path().join("iris")));
    for f in [
        "spec.resolved.json",
        "plan.json",
        "metrics.jsonl",
        "model.safetensors",
        "preprocess.json",
        "summary.json",
        "test.csv",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 60, "one metrics line per epoch");
    // No temporary files are left behind by the atomic writes.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn iris_graph_form_with_a_residual_add_reaches_the_same_accuracy() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json("specs/iris-graph.yaml", runs.path(), &[]);
    assert!(
        accuracy(&v) >= 0.93,
        "iris-graph test accuracy {}",
        accuracy(&v)
    );
}

#[test]
fn predict_on_the_saved_test_split_reproduces_the_test_accuracy() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json("specs/iris.yaml", runs.path(), &[]);
    let dir = v["run_dir"].as_str().unwrap();
    let out = runs.path().join("pred.csv");
    let o = weft(&[
        "predict",
        "--model",
        dir,
        "--input",
        &format!("{dir}/test.csv"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o)
        .lines()
        .find(|l| l.starts_with("accuracy on"))
        .map(str::to_string)
        .expect("accuracy line");
    let acc: f64 = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (acc - accuracy(&v)).abs() < 1e-9,
        "predict {acc} vs run {}",
        accuracy(&v)
    );
    let csv = std::fs::read_to_string(out).unwrap();
    assert!(
        csv.starts_with("prediction,p_setosa,p_versicolor,p_virginica\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 46, "header + 45 test rows");
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let runs = tempfile::tempdir().unwrap();
    let a = run_json("specs/iris.yaml", runs.path(), &["--set", "train.epochs=5"]);
    let b = run_json("specs/iris.yaml", runs.path(), &["--set", "train.epochs=5"]);
    let c = run_json(
        "specs/iris.yaml",
        runs.path(),
        &["--set", "train.epochs=5", "--set", "seed=43"],
    );
    let weights = |v: &Value| {
        std::fs::read(Path::new(v["run_dir"].as_str().unwrap()).join("model.safetensors")).unwrap()
    };
    assert_ne!(a["run_dir"], b["run_dir"], "every run gets its own folder");
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn set_overrides_change_the_run() {
    let runs = tempfile::tempdir().unwrap();
    let v = run_json(
        "specs/iris.yaml",
        runs.path(),
        &[
            "--set",
            "train.epochs=3",
            "--set",
            "train.optimizer.sgd.lr=0.1",
        ],
    );
    assert_eq!(v["train"]["epochs"], 3);
    let spec: Value = serde_json::from_slice(
        &std::fs::read(Path::new(v["run_dir"].as_str().unwrap()).join("spec.resolved.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(spec["train"]["optimizer"]["sgd"]["lr"], 0.1);
    assert_eq!(
        spec["train"]["optimizer"]["sgd"]["momentum"], 0.0,
        "defaults are filled in"
    );
}

#[test]
fn a_bad_spec_exits_2_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(&spec, "name: bad\ndata: {source: builtin:iris}\nmodel:\n  - dense: {units: 3, activation: rleu}\n").unwrap();
    let o = weft(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim(),
        format!("error: {}:4:35: model[0].dense.activation: unknown activation `rleu`; did you mean `relu`? valid: linear, sigmoid, tanh, softplus, relu, leaky_relu, elu, swish, gelu, selu, softmax", spec.display())
    );
}

#[test]
fn bad_data_names_the_file_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.csv"), "a,b,y\n1,2,x\n3,oops,y\n5,6,x\n").unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: d\ndata: {source: {csv: d.csv}, label: y}\nmodel: [dense: {units: 2}]\n",
    )
    .unwrap();
    let o = weft(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("column `b` is not numeric: row 2 (line 3) has `oops`"),
        "{err}"
    );
}

/// `weft plan` reads the data's schema, not its rows: the plan of a file whose rows are bad
/// (or that is large) prints at once, with the classes the output layer says; the run reads
/// the rows and then checks both.
#[test]
fn plan_reads_the_schema_and_run_checks_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("a,b,y\n");
    for i in 0..3000 {
        rows.push_str(&format!("{i},{},{}\n", i % 7, ["x", "y", "z"][i % 3]));
    }
    std::fs::write(dir.path().join("d.csv"), &rows).unwrap();
    let spec = dir.path().join("s.yaml");
    let text = "name: d\ndata: {source: {csv: d.csv}, label: y}\nmodel:\n  - dense: {units: 4, activation: softmax}\ntrain: {epochs: 1}\n";
    std::fs::write(&spec, text).unwrap();
    let o = weft(&["plan", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("task=classification(4 classes), features=2"),
        "{}",
        stdout(&o)
    );
    let o = weft(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("s.yaml:4:20: model[0].dense.units: the output layer has 4 units but the data has 3 classes"),
        "{err}"
    );
}

/// The default build is portable: it runs on a CPU without AVX (qemu emulating a Nehalem,
/// SSE4.2 only), picking its SIMD at run time, where a `target-cpu=native` build dies with an
/// illegal instruction. `scripts/setup.sh` installs qemu-user.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_binary_runs_on_a_cpu_without_avx() {
    let runs = tempfile::tempdir().unwrap();
    let o = Command::new("qemu-x86_64")
        .current_dir(REPO)
        .args([
            "-cpu",
            "Nehalem",
            env!("CARGO_BIN_EXE_weft"),
            "run",
            "specs/iris.yaml",
        ])
        .args([
            "--set",
            "executor.device=cpu",
            "--set",
            "train.epochs=3",
            "--json",
        ])
        .arg("--runs-dir")
        .arg(runs.path())
        .output()
        .expect("qemu-x86_64 (apt qemu-user; scripts/setup.sh installs it)");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(v["train"]["epochs"], 3, "{v}");
    assert!(
        v["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.5,
        "{v}"
    );
}

/// A spec cannot start more local worker processes than the machine holds (`workers: 10000`
/// used to spawn until the machine died): `check` and `run` refuse at the spec line, and
/// `executor.max_local_workers` moves the limit.
#[test]
fn local_workers_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(&spec, "name: many\ndata: {source: builtin:iris}\nmodel: [dense: {units: 3}]\nparallelism:\n  data: {workers: 10000}\n").unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for cmd in ["check", "run"] {
        let started = std::time::Instant::now();
        let o = weft(&[cmd, spec.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(started.elapsed().as_secs() < 10);
        let want = format!("s.yaml:5:19: parallelism.data.workers: 10000 local workers, but at most {} may run on this machine (4 per core on this {cores}-core machine; executor.max_local_workers sets it)", 4 * cores);
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    }
    let o = weft(&[
        "check",
        spec.to_str().unwrap(),
        "--set",
        "executor.max_local_workers=2",
    ]);
    assert!(stderr(&o).contains("10000 local workers, but at most 2 may run on this machine (executor.max_local_workers)"), "{}", stderr(&o));
}

/// Sizes multiply without overflowing: `batch_size: 2^64-1` used to panic in the cost model
/// (debug) or wrap (release). The plan saturates its figures, and a run takes the whole
/// split as its batch, on one process and on workers.
#[test]
fn a_batch_size_of_u64_max_plans_and_runs() {
    let max = format!("train.batch_size={}", u64::MAX);
    for device in ["cpu", "gpu"] {
        let set = format!("executor.device={device}");
        let o = weft(&["plan", "specs/iris.yaml", "--set", &max, "--set", &set]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("batch_size=18446744073709551615"),
            "{}",
            stdout(&o)
        );
    }
    let runs = tempfile::tempdir().unwrap();
    let small = "data.source.synthetic.rows=2000";
    for (spec, rows) in [
        ("specs/iris.yaml", None),
        ("specs/higgs-allreduce.yaml", Some(small)),
    ] {
        let mut args = vec![
            "--set",
            &max,
            "--set",
            "train.epochs=1",
            "--set",
            "executor.device=cpu",
        ];
        args.extend(rows.iter().flat_map(|r| ["--set", *r]));
        let v = run_json(spec, runs.path(), &args);
        assert_eq!(v["train"]["epochs"], 1, "{v}");
    }
}

/// Sizes are refused before anything is allocated: a layer of 10^11 units (which used to
/// abort with `memory allocation of 1600000000000 bytes failed`) and 10^11 synthetic rows are
/// located errors naming the bytes, from `check` and `run`, in well under a second of work.
#[test]
fn a_run_that_cannot_fit_in_memory_is_refused_before_allocating() {
    for (set, at) in [
        (
            "model[0].dense.units=100000000000",
            "specs/iris.yaml:12:20: model[1].dense.units: the run needs ",
        ),
        (
            "data.source.synthetic.rows=100000000000",
            "specs/higgs-synthetic.yaml:6:11: data.source: the run needs ",
        ),
    ] {
        let spec = if set.starts_with("data") {
            "specs/higgs-synthetic.yaml"
        } else {
            "specs/iris.yaml"
        };
        for cmd in ["check", "run"] {
            let o = weft(&[
                cmd,
                spec,
                "--set",
                set,
                "--set",
                "executor.memory_limit_gib=64",
            ]);
            assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(at), "{err}");
            assert!(
                err.contains("but 64.00 GiB may be used (executor.memory_limit_gib)"),
                "{err}"
            );
        }
    }
    let o = weft(&[
        "check",
        "specs/iris.yaml",
        "--set",
        "executor.memory_limit_gib=0.00001",
    ]);
    assert_eq!(
        stderr(&o).trim(),
        "error: specs/iris.yaml:12:20: model[1].dense.units: the run needs 19.68 KiB of memory (16.75 KiB for the model, its gradients and adam state and the activations at batch 16, 2.93 KiB for the data), but 10.49 KiB may be used (executor.memory_limit_gib)"
    );
}

#[test]
fn check_prints_the_resolved_spec_with_defaults() {
    let o = weft(&["check", "specs/iris.yaml", "--resolved"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["train"]["optimizer"]["adam"]["beta2"], 0.999);
    assert_eq!(v["executor"]["device"], "auto");
    assert_eq!(v["data"]["split"]["shuffle"], true);
}

#[test]
fn schema_describes_the_spec() {
    let o = weft(&["schema"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let props = v["properties"].as_object().expect("properties");
    for key in [
        "name",
        "data",
        "model",
        "train",
        "evaluate",
        "parallelism",
        "executor",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
}

/// Every shipped spec, as written (short forms included), passes a real JSON Schema
/// validator (Python's `jsonschema`, installed by scripts/setup.sh) against `weft schema`;
/// a misspelled kind does not.
#[test]
fn every_shipped_spec_validates_against_the_schema() {
    let python = Path::new(REPO).join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/setup.sh first: it makes .tools/venv with jsonschema and PyYAML"
    );
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, stdout(&weft(&["schema"]))).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 3}}]\ntrain: {optimizer: adma}\n",
    )
    .unwrap();
    let script = r#"
import glob, json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for f in sys.argv[2:]:
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in v.iter_errors(yaml.safe_load(open(f)))]
    print(f, "ok" if not errors else "INVALID " + "; ".join(errors))
"#;
    let mut specs: Vec<PathBuf> = std::fs::read_dir(Path::new(REPO).join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 7, "{specs:?}");
    let o = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&schema)
        .args(&specs)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for s in &specs {
        assert!(out.contains(&format!("{} ok", s.display())), "{out}");
    }
    assert!(out.contains(&format!("{} INVALID", bad.display())), "{out}");
}

#[test]
fn gpu_without_any_adapter_is_refused_with_its_location_and_auto_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("gpu.yaml");
    std::fs::write(&spec, "name: g\ndata: {source: builtin:iris}\nmodel: [dense: {units: 3}]\nexecutor: {device: gpu}\n").unwrap();
    // WGPU_BACKEND=gl asks for a backend this build does not have: no adapter at all.
    let no_gpu = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .current_dir(REPO)
            .args(args)
            .env("WGPU_BACKEND", "gl")
            .output()
            .expect("weft runs")
    };
    let o = no_gpu(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "gpu.yaml:4:20: executor.device: `gpu` asked for, but wgpu finds no GPU adapter"
        ),
        "{}",
        stderr(&o)
    );
    let runs = dir.path().join("runs");
    let o = no_gpu(&[
        "run",
        spec.to_str().unwrap(),
        "--set",
        "executor.device=auto",
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["train"]["device"].as_str().unwrap().starts_with("cpu"),
        "{v}"
    );
}

/// The same spec on the CPU and on the GPU executor (Mesa's software Vulkan driver where
/// there is no GPU) reaches the same test accuracy, within 1%.
#[test]
fn the_same_spec_reaches_the_same_accuracy_on_cpu_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let small_higgs = [
        "--set",
        "data.source.synthetic.rows=3000",
        "--set",
        "model[0].dense.units=64",
        "--set",
        "model[2].dense.units=64",
        "--set",
        "train.epochs=5",
    ];
    for (spec, extra) in [
        ("specs/iris.yaml", &[][..]),
        ("specs/higgs-synthetic.yaml", &small_higgs[..]),
    ] {
        let on = |device: &str| {
            let mut args = extra.to_vec();
            let set = format!("executor.device={device}");
            args.extend(["--set", set.as_str()]);
            run_json(spec, dir.path(), &args)
        };
        let (cpu, gpu) = (on("cpu"), on("gpu"));
        assert!(cpu["train"]["device"].as_str().unwrap().starts_with("cpu"));
        assert!(
            gpu["train"]["device"]
                .as_str()
                .unwrap()
                .starts_with("gpu: "),
            "{}",
            gpu["train"]
        );
        let (a, b) = (accuracy(&cpu), accuracy(&gpu));
        assert!((a - b).abs() <= 0.01, "{spec}: cpu {a}, gpu {b}");
        assert!(a > 0.7, "{spec}: cpu accuracy {a}");
        // Every epoch's loss agrees too (same initial weights, same batches, same masks).
        let losses = |v: &Value| -> Vec<f64> {
            v["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["train_loss"].as_f64().unwrap())
                .collect()
        };
        assert_eq!(losses(&cpu).len(), losses(&gpu).len(), "{spec}: epochs");
        assert!(!losses(&cpu).is_empty(), "{spec}: a history");
        for (l1, l2) in losses(&cpu).iter().zip(losses(&gpu)) {
            assert!(
                (l1 - l2).abs() <= 1e-3 * l1.abs().max(0.01),
                "{spec}: epoch loss cpu {l1}, gpu {l2}"
            );
        }
    }
}

#[test]
fn devices_lists_the_adapters_and_what_each_setting_picks() {
    let o = weft(&["devices", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let adapters = v["adapters"].as_array().unwrap();
    assert!(
        !adapters.is_empty(),
        "no adapter: the test setup installs mesa-vulkan-drivers"
    );
    for a in adapters {
        assert!(
            a["max_storage_buffer_binding_size"].as_u64().unwrap() > 0,
            "{a}"
        );
        assert!(a["name"].as_str().is_some() && a["backend"].as_str().is_some());
    }
    // `auto` never takes a software adapter.
    let hardware = adapters
        .iter()
        .find(|a| a["software"] == Value::Bool(false));
    match hardware {
        Some(h) => assert_eq!(v["auto"], format!("gpu: {}", h["name"].as_str().unwrap())),
        None => assert_eq!(v["auto"], "cpu"),
    }
    let text = stdout(&weft(&["devices"]));
    assert!(text.contains("executor.device: auto → "), "{text}");
    assert!(text.contains("limits: buffer "), "{text}");
}

/// `weft plan` output is locked by golden files; `UPDATE_GOLDEN=1 cargo test` rewrites them.
#[test]
fn plans_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(Path::new(REPO).join("specs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| Path::new("specs").join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 5);
    let mut failures = Vec::new();
    // Per target: the CPU's plan (`auto` plans for it too) and the GPU's, whose passes fuse
    // matmul epilogues and plan memory.
    let targets = [("", "executor.device=cpu"), (".gpu", "executor.device=gpu")];
    for spec in specs {
        for ((format, ext), (suffix, device)) in [("text", "plan.txt"), ("dot", "plan.dot")]
            .into_iter()
            .flat_map(|f| targets.map(|t| (f, t)))
        {
            let path = spec.to_str().unwrap();
            let o = weft(&["plan", path, "--format", format, "--set", device]);
            assert!(o.status.success(), "{}: {}", spec.display(), stderr(&o));
            let golden = Path::new(REPO).join("specs/golden").join(format!(
                "{}{suffix}.{ext}",
                spec.file_stem().unwrap().to_string_lossy()
            ));
            if update {
                std::fs::write(&golden, stdout(&o)).unwrap();
            } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(stdout(&o).as_str())
            {
                failures.push(golden.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "plans changed (review, then UPDATE_GOLDEN=1 cargo test --test cli): {failures:?}"
    );
}

#[test]
fn plan_verbose_shows_every_pass_and_says_when_one_changed_nothing() {
    let o = weft(&["plan", "specs/iris.yaml", "--verbose"]);
    let out = stdout(&o);
    let passes: Vec<&str> = out.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        passes,
        [
            "== after build: forward graph with shapes: 18 nodes",
            "== after fusion: fused 2 BiasAdd → activation pair(s) into BiasAct",
            "== after autodiff: added 11 backward nodes for 6 parameters",
            "== after updates: added 6 adam node(s)",
            "== after dead-code elimination: a training step runs 32 of 33 nodes, an evaluation 16, a prediction 14",
            "== plan",
        ]
    );
    let o = weft(&[
        "plan",
        "specs/iris.yaml",
        "--verbose",
        "--set",
        "model[0].dense.activation=gelu",
        "--set",
        "model[1].dense.activation=gelu",
    ]);
    assert!(
        stdout(&o).contains("== after fusion: no change (no BiasAdd → activation pair to fuse)")
    );
}

#[test]
fn plan_json_is_versioned_and_has_schedules() {
    let o = weft(&["plan", "specs/iris.yaml", "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["device"], "cpu");
    assert!(
        v.get("memory").is_none(),
        "the CPU keeps one buffer per node"
    );
    assert_eq!(v["cost"]["params"], 4 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3);
    let train = v["schedules"]["train"].as_array().unwrap();
    let predict = v["schedules"]["predict"].as_array().unwrap();
    assert!(train.len() > predict.len());
}

/// The plan is what runs: the GPU's passes (matmul epilogues, memory plan) are planner
/// passes, printed by `weft plan --verbose` and carried in the plan JSON the executor runs.
#[test]
fn gpu_plan_carries_its_passes() {
    let gpu = ["--set", "executor.device=gpu"];
    let o = weft(&["plan", "specs/iris.yaml", "--verbose", gpu[0], gpu[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("== after epilogue: gpu: fused 3 MatMul → bias (+ activation) pair(s) into MatMulBias epilogues"),
        "{text}"
    );
    assert!(text.contains("== after memory: gpu: "), "{text}");
    let o = weft(&[
        "plan",
        "specs/iris.yaml",
        "--format",
        "json",
        gpu[0],
        gpu[1],
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["device"], "gpu");
    let ops: Vec<String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["op"].to_string())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| o.contains("MatMulBias")).count(),
        3,
        "{ops:?}"
    );
    // Every matmul of the forward pass went into an epilogue; backward keeps its own.
    assert!(v["memory"]["slots"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
}

#[test]
fn a_run_resumes_from_its_checkpoint_and_trains_on() {
    let runs = tempfile::tempdir().unwrap();
    let first = run_json("specs/iris.yaml", runs.path(), &["--set", "train.epochs=5"]);
    let dir = first["run_dir"].as_str().unwrap().to_string();
    let state = checkpoint_start(Path::new(&dir)).unwrap();
    assert_eq!(state["epoch"], 6, "a checkpoint after every epoch: {state}");

    // Only parallelism, executor and train.epochs may change when resuming.
    let o = weft(&[
        "run",
        "specs/iris.yaml",
        "--resume",
        &dir,
        "--set",
        "train.batch_size=8",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different spec"), "{}", stderr(&o));

    let o = weft(&[
        "run",
        "specs/iris.yaml",
        "--resume",
        &dir,
        "--set",
        "train.epochs=8",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(resumed["run_dir"], first["run_dir"], "same run directory");
    assert_eq!(resumed["train"]["epochs"], 8, "the whole run's epochs");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 8);
    let epochs: Vec<u64> = std::fs::read_to_string(Path::new(&dir).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(epochs, (1..=8).collect::<Vec<u64>>());
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));

    let o = weft(&[
        "run",
        "specs/iris.yaml",
        "--resume",
        runs.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is this a run directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_answers_the_viewer_api_and_says_when_the_page_is_not_built() {
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(REPO)
        .args(["serve", "specs/iris.yaml", "--port", "0"])
        .env("WEFT_WEB_DIR", empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("scripts/build-web.sh"),
        "{}",
        stderr(&o)
    );

    // A stand-in build: the API does not depend on the page.
    let web = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(web.path().join("pkg")).unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html>").unwrap();
    std::fs::write(web.path().join("pkg/weft_web_bg.wasm"), b"\0asm").unwrap();
    // Killed on drop, so a failed assertion cannot leave a server holding the test's
    // output open.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .current_dir(REPO)
            .args(["serve", "specs/iris.yaml", "--port", "0"])
            .env("WEFT_WEB_DIR", web.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("weft serve: ")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "binds loopback: {line}"
    );
    let client = weft_dist::driver::http_client(std::time::Duration::from_secs(10)).unwrap();
    let spec = weft_dist::driver::get_json(&client, &url, "/api/spec", "").unwrap();
    assert_eq!(spec["file"], "specs/iris.yaml");
    assert!(spec["text"].as_str().unwrap().contains("name: iris"));
    let plan = weft_dist::driver::get_json(&client, &url, "/api/plan", "").unwrap();
    assert_eq!(plan["name"], "iris");
    assert_eq!(plan["features"].as_array().unwrap().len(), 4);
    let metrics = weft_dist::driver::get_json(&client, &url, "/api/metrics", "").unwrap();
    assert_eq!(metrics["streaming"], false);
}

#[test]
fn plan_of_a_run_directory_is_the_plan_it_trained_with() {
    let runs = tempfile::tempdir().unwrap();
    let r = run_json(
        &format!("{REPO}/specs/iris.yaml"),
        runs.path(),
        &["--set", "train.epochs=1", "--set", "model[0].dense.units=7"],
    );
    let dir = r["run_dir"].as_str().unwrap();
    let o = weft(&["plan", dir]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    // The run's own plan (its overrides included), not the spec file's.
    assert!(text.starts_with("Workflow: name=iris"), "{text}");
    assert!(text.contains("name=dense_0.weight, shape=[4,7]"), "{text}");
    let svg = stdout(&weft(&["plan", dir, "--format", "svg"]));
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    let o = weft(&["plan", dir, "--set", "train.epochs=3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--set and --verbose take a spec file"),
        "{}",
        stderr(&o)
    );
    let o = weft(&["plan", runs.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no plan.json here"), "{}", stderr(&o));
}
