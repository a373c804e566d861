//! `weft check` catches what `run` would refuse, from headers and metadata alone, and every
//! error names the spec's file:line:col and the path a relative file resolved to; odd input
//! (a non-UTF-8 spec, `/dev/zero`, YAML tags, `--set …=null`) gets a clear answer.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;
use support::{run_json, stderr, stdout, weft};

const IRIS_CSV: &str = include_str!("../../data/src/iris.csv");

/// A folder with `iris.csv` and a spec `s.yaml` made of `body`.
fn setup(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iris.csv"), IRIS_CSV).unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(&spec, body).unwrap();
    (dir, spec)
}

const MODEL: &str = "model: [{dense: {units: 8, activation: relu}}, {dense: {units: 3, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 2}\n";

/// `weft check` fails with exit 2 and a message holding every `want`.
fn refused(spec: &Path, extra: &[&str], want: &[&str]) {
    let mut args = vec!["check", spec.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = weft(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for w in want {
        assert!(err.contains(w), "wanted `{w}` in: {err}");
    }
}

#[test]
fn check_catches_what_run_would_refuse_with_the_spec_location() {
    let cases: &[(&str, &[&str])] = &[
        (
            "name: x\ndata: {source: {csv: missing.csv}, label: species}\n",
            &["s.yaml:2:16: data.source: cannot read missing.csv (resolved against the spec's folder: ", "missing.csv): No such file"],
        ),
        (
            "name: x\ndata: {source: {csv: iris.csv}, label: specie}\n",
            &["s.yaml:2:40: data.label: label column `specie` not found in iris.csv; did you mean `species`?"],
        ),
        (
            "name: x\ndata: {source: {csv: iris.csv}, label: species}\nmodel: [{dense: {units: 1}}]\ntrain: {loss: mse}\n",
            &["s.yaml:2:40: data.label: iris.csv: label column `species` holds strings but the task is regression"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 5, activation: softmax}}]\n",
            &["s.yaml:3:", "model[0].dense.units", "3 classes"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 100000000000}}, {dense: {units: 3, activation: softmax}}]\nexecutor: {memory_limit_gib: 4}\n",
            &["model[0].dense.units: the run needs"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 3, activation: softmax}}]\nparallelism: {pipeline: {stages: 2}}\n",
            &["s.yaml:4:", "parallelism.pipeline: pipeline parallelism is not available"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 3, activation: softmax}}]\nparallelism: {data: {workers: 3}}\nexecutor: {cluster: {hosts: [\"127.0.0.1:7000\"]}}\n",
            &["parallelism.data.workers: 3 workers, but executor.cluster.hosts lists 1"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{dense: {units: 3, activation: softmax}}]\nexecutor:\n  cluster: spark\n  spark: {master: \"local-cluster[2,1,1024]\", conf: {spark.executor.memory: [1g]}}\n",
            &["s.yaml:6:", "executor.spark.conf.spark.executor.memory: a Spark setting is one value (text, number or true/false), not [\"1g\"]"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel:\n  inputs: {x: features}\n  nodes:\n    a: {dense: {units: 8}, input: x}\n    b: {dense: {units: 5}, input: x}\n    s: {add: [a, b]}\n    out: {dense: {units: 3, activation: softmax}, input: s}\n  output: out\n",
            &["s.yaml:8:14: model.nodes.s.add: `add` needs inputs of the same width, but `a` has 8, `b` has 5"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 1, height: 2, width: 2}}\nmodel: [{conv2d: {filters: 2, kernel: 3}}, {flatten: {}}, {dense: {units: 3}}]\n",
            &["s.yaml:3:", "model[0].conv2d: the window 3×3 is larger than its input image 1×2×2; use `padding: same` or a smaller window"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 1, height: 2, width: 2}}\nmodel: [{conv2d: {filters: 2, kernel: 2, padding: same}}, {dense: {units: 3}}]\n",
            &["s.yaml:3:", "model[1].dense: `dense` reads the image [B,2,2,2] and takes a row of features; put `flatten: {}` (or `global_avg_pool2d: {}`) before it"],
        ),
        (
            "name: x\ndata: {source: builtin:iris}\nmodel: [{max_pool2d: {size: 2}}, {dense: {units: 3}}]\n",
            &["s.yaml:3:", "model[0].max_pool2d: `max_pool2d` needs an image, but reads the row of features [B,4]; set `data.image: {channels, height, width}`"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 1, height: 3, width: 3}}\nmodel: [{conv2d: {filters: 2, kernel: 2}}, {flatten: {}}, {dense: {units: 3}}]\n",
            &["s.yaml:2:", "data.image: an image of 1×3×3 (channels × height × width) is 9 values, but the model reads 4 feature columns"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 1, height: 2, width: 2}}\nmodel:\n  inputs: {x: features}\n  nodes:\n    a: {conv2d: {filters: 2, kernel: 2, padding: same}, input: x}\n    b: {conv2d: {filters: 3, kernel: 2, padding: same}, input: x}\n    s: {add: [a, b]}\n    f: {flatten: {}, input: s}\n    out: {dense: {units: 3}, input: f}\n  output: out\n",
            &["s.yaml:8:", "model.nodes.s.add: `add` needs inputs of the same width, but `a` is [B,2,2,2], `b` is [B,3,2,2]"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 3, height: 60000, width: 60000}}\nmodel: [{flatten: {}}, {dense: {units: 3}}]\n",
            &["s.yaml:2:", "data.image: an image of 3×60000×60000 values is over weft's 67108864 (channels × height × width)"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, image: {channels: 1, height: 2, width: 2}}\nmodel: [{conv2d: {filters: 3, kernel: [2, 0], padding: nope}}]\n",
            &["s.yaml:3:", "unknown padding `nope`; valid: `valid`, `same`, a whole number or [height, width]"],
        ),
        (
            "name: x\ndata: {source: builtin:iris, split: {train: 0.9, test: 0.3}}\nmodel: [{dense: {units: 3, activation: softmax}}]\n",
            &["s.yaml:2:", "data.split"],
        ),
    ];
    for (body, want) in cases {
        let body = if body.contains("model:") {
            body.to_string()
        } else {
            format!("{body}{MODEL}")
        };
        let (_dir, spec) = setup(&body);
        refused(&spec, &[], want);
    }
}

#[test]
fn check_reads_headers_only_and_check_rows_reads_every_row() {
    // A missing value on the last row: only reading the rows finds it.
    let mut csv = IRIS_CSV.trim_end().to_string();
    csv.push_str("\n5.0,,1.4,0.2,setosa\n");
    let (dir, spec) = setup(&format!(
        "name: x\ndata: {{source: {{csv: iris.csv}}, label: species}}\n{MODEL}"
    ));
    std::fs::write(dir.path().join("iris.csv"), csv).unwrap();
    let o = weft(&["check", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("rows not read (`check --rows` reads them)"),
        "{}",
        stdout(&o)
    );
    refused(
        &spec,
        &["--rows"],
        &[
            "s.yaml:2:16: data.source",
            "`sepal_width` has a missing value at row 151",
        ],
    );
}

#[test]
fn a_file_without_line_ends_is_refused_without_reading_it_whole() {
    let body = format!("name: x\ndata: {{source: {{csv: /dev/zero}}, label: species}}\n{MODEL}");
    let (_dir, spec) = setup(&body);
    let t = Instant::now();
    refused(
        &spec,
        &[],
        &["data.source: /dev/zero: no line ends in its first 16 MiB; is this a CSV file?"],
    );
    let o = weft(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn odd_spec_files_and_values_get_clear_answers() {
    // Not UTF-8: the byte, line and column.
    let (dir, spec) = setup("name: x\ndata: {source: builtin:iris}\n");
    std::fs::write(&spec, b"name: x\ndata: {source: \xffbuiltin:iris}\n").unwrap();
    refused(
        &spec,
        &[],
        &["s.yaml: byte 23 (line 2, column 16) is not valid UTF-8 (0xff)"],
    );
    // `!!str` makes a string, which epochs is not; unknown tags are refused.
    std::fs::write(
        &spec,
        format!("name: x\ndata: {{source: builtin:iris}}\n{MODEL}")
            .replace("epochs: 2", "epochs: !!str 2"),
    )
    .unwrap();
    refused(
        &spec,
        &[],
        &["train.epochs: expected an integer, found the string \"2\""],
    );
    std::fs::write(
        &spec,
        format!("name: x\ndata: {{source: builtin:iris}}\n{MODEL}")
            .replace("epochs: 2", "epochs: !big 2"),
    )
    .unwrap();
    refused(&spec, &[], &["the tag `!big` is not supported"]);
    // `--set x=null` unsets x: back to its default.
    std::fs::write(
        &spec,
        format!("name: x\ndata: {{source: builtin:iris}}\n{MODEL}parallelism: {{data: {{workers: 2}}}}\n"),
    )
    .unwrap();
    let o = weft(&[
        "check",
        spec.to_str().unwrap(),
        "--set",
        "parallelism.data=null",
        "--resolved",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["parallelism"]["data"].is_null(), "{v}");
    drop(dir);
}

#[test]
fn an_empty_test_split_says_so_instead_of_reporting_zeros() {
    let (dir, spec) = setup(&format!(
        "name: x\ndata: {{source: builtin:iris, split: {{train: 1.0, test: 0.0}}}}\n{MODEL}"
    ));
    let r = run_json(spec.to_str().unwrap(), &dir.path().join("runs"), &[]);
    assert!(r["metrics"].get("test").is_none(), "{r}");
    assert!(r["notes"].to_string().contains("no test rows"), "{r}");
}

/// The plan's text grows with the layers, not with their square (a list search per node
/// made 20,000 layers take 29 s).
#[test]
fn plan_text_of_forty_thousand_layers_is_quick() {
    let mut body = String::from("name: deep\ndata: {source: builtin:iris}\nmodel:\n");
    for _ in 0..40_000 {
        body.push_str("  - dense: {units: 2, activation: relu}\n");
    }
    body.push_str(
        "  - dense: {units: 3, activation: softmax}\ntrain: {loss: cross_entropy, epochs: 1}\n",
    );
    let (_dir, spec) = setup(&body);
    let t = Instant::now();
    let o = weft(&["plan", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().count() > 200_000);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
}

/// `predict` on labelled input of a regression model prints mse, mae and R², as a
/// classification model prints accuracy.
#[test]
fn regression_predict_reports_mse_mae_and_r2() {
    let (dir, spec) = setup(
        "name: reg\ndata: {source: builtin:iris, label: petal_width, features: {exclude: [species]}, preprocess: [standard_scale]}\nmodel: [{dense: {units: 16, activation: relu}}, {dense: {units: 1}}]\ntrain: {loss: mse, epochs: 60, batch_size: 16, optimizer: {adam: {lr: 0.01}}}\nevaluate: [mse, mae, r2]\n",
    );
    let r = run_json(spec.to_str().unwrap(), &dir.path().join("runs"), &[]);
    let run_dir = PathBuf::from(r["run_dir"].as_str().unwrap());
    let o = weft(&[
        "predict",
        "--model",
        run_dir.to_str().unwrap(),
        "--input",
        run_dir.join("test.csv").to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r2: f64 = err
        .split("r2 ")
        .nth(1)
        .and_then(|t| t.split([' ', '(']).next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no r2 in: {err}"));
    assert!(err.contains("mse ") && err.contains("mae "), "{err}");
    assert!(r2 > 0.8, "{err}");
    let test_r2 = r["metrics"]["test"]["r2"].as_f64().unwrap();
    assert!(
        (r2 - test_r2).abs() < 1e-4,
        "predict's r2 {r2} vs the run's {test_r2}"
    );
}

#[test]
fn a_spark_run_without_a_python_that_has_pyspark_says_what_to_install() {
    let (_dir, spec) = setup(&format!(
        "name: x\ndata: {{source: {{csv: iris.csv}}, label: species}}\n{MODEL}"
    ));
    let runs = tempfile::tempdir().unwrap();
    let o = weft(&[
        "run",
        spec.to_str().unwrap(),
        "--runs-dir",
        runs.path().to_str().unwrap(),
        "--set",
        "executor.cluster=spark",
        "--set",
        "executor.spark.python=/no/such/python3",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("/no/such/python3: cannot start it")
            && err.contains("needs a Python with pyspark and weft_spark installed (`pip install pyspark ./python`)"),
        "{err}"
    );
    // The run directory keeps no job files behind.
    let left: Vec<_> = walk(runs.path())
        .into_iter()
        .filter(|p| p.contains("spark-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
