//! `weft bench`: training throughput on the benchmark workloads, optionally side by side
//! with a baseline command run in the same invocation (ratios, since machines are noisy).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use weft_runtime::train::Quiet;

use weft::Experiment;
use weft::{Error, Result};

/// The baseline workloads of `scripts/baselines` (same shapes, optimizer and split).
pub(crate) const HIGGS: &str = "name: bench-higgs
seed: 0
data:
  source: {synthetic: {rows: 100000, features: 28, classes: 2, informative: 20, seed: 0}}
  split: {train: 0.8, test: 0.2}
model:
  - dense: {units: 500, activation: relu}
  - dense: {units: 500, activation: relu}
  - dense: {units: 2, activation: softmax}
train: {loss: cross_entropy, optimizer: {adam: {lr: 0.001}}, batch_size: 32, epochs: 1}
evaluate: [accuracy]
";

const MNIST: &str = "name: bench-mnist-shape
seed: 0
data:
  source: {synthetic: {rows: 60000, features: 784, classes: 10, informative: 50, seed: 0}}
  split: {train: 0.8, test: 0.2}
model:
  - dense: {units: 100, activation: relu}
  - dense: {units: 10, activation: softmax}
train: {loss: cross_entropy, optimizer: {adam: {lr: 0.001}}, batch_size: 128, epochs: 1}
evaluate: [accuracy]
";

/// LeNet-5's shape on MNIST-shaped images (1×28×28): conv 6@5×5 → pool → conv 16@5×5 →
/// pool → dense 120 → 84 → 10.
pub(crate) const LENET: &str = "name: bench-lenet
seed: 0
data:
  source: {synthetic: {rows: 15000, features: 784, classes: 10, informative: 50, seed: 0}}
  image: {channels: 1, height: 28, width: 28}
  split: {train: 0.8, test: 0.2}
model:
  - conv2d: {filters: 6, kernel: 5, activation: relu}
  - max_pool2d: {size: 2}
  - conv2d: {filters: 16, kernel: 5, activation: relu}
  - max_pool2d: {size: 2}
  - flatten: {}
  - dense: {units: 120, activation: relu}
  - dense: {units: 84, activation: relu}
  - dense: {units: 10, activation: softmax}
train: {loss: cross_entropy, optimizer: {adam: {lr: 0.001}}, batch_size: 64, epochs: 1}
evaluate: [accuracy]
";

/// (name, spec, batch size, baseline workload key)
const BENCHES: &[(&str, &str, usize, &str)] = &[
    ("higgs-b32", HIGGS, 32, "w3_b32"),
    ("higgs-b1024", HIGGS, 1024, "w3_b1024"),
    ("mnist-b128", MNIST, 128, "w4"),
    ("lenet-b64", LENET, 64, "w5_b64"),
    ("lenet-b256", LENET, 256, "w5_b256"),
];

/// Runs the baseline command with `{key}` (workload key), `{batch}` and `{name}` (this
/// benchmark's name, so another weft build can be the baseline:
/// `--baseline "target/native/release/weft bench {name} --json"`) filled in; reads the last
/// JSON line it prints (`samples_per_s`, or weft's own `samples_per_sec`).
fn baseline(cmd: &str, name: &str, key: &str, batch: usize) -> Result<Value> {
    let line = cmd
        .replace("{key}", key)
        .replace("{name}", name)
        .replace("{batch}", &batch.to_string());
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .map_err(|e| Error::Io {
            path: line.clone(),
            message: e.to_string(),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .ok_or_else(|| Error::Io {
            path: line,
            message: format!(
                "printed no JSON line; stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
}

/// Options of the distributed benchmarks.
#[derive(Debug, Clone, Default)]
pub struct DistOptions {
    /// Worker counts (`--workers 2,4,8`).
    pub workers: Vec<usize>,
    /// Existing workers' control addresses (`--hosts`) instead of local processes.
    pub hosts: Vec<String>,
    /// Largest all-reduce, bytes.
    pub max_bytes: u64,
    /// The emulated link's rate, for ratios (`--link-mbit 1000`).
    pub link_mbit: Option<f64>,
    /// Batch size per worker for `scaling`.
    pub batch: usize,
    /// Matrix sizes for `gpu` (`--sizes 1024,2048`).
    pub sizes: Vec<usize>,
    /// Batch sizes for `gpu` (`--batches 32,1024`).
    pub batches: Vec<usize>,
    /// Python with PyTorch for `gpu`'s baseline (`--torch python3`).
    pub torch: Option<String>,
    /// Where `stream` keeps its data set (`--data DIR`).
    pub data_dir: Option<std::path::PathBuf>,
}

/// Runs the named benchmarks (all single-process ones when empty) and prints a table or
/// JSON lines. `allreduce`, `traffic` and `scaling` measure the distributed runtime.
pub fn run(
    names: &[String],
    rows: Option<usize>,
    baseline_cmd: Option<&str>,
    json_out: bool,
    dist: &DistOptions,
) -> Result<()> {
    let counts = |default: &[usize]| {
        if dist.workers.is_empty() {
            default.to_vec()
        } else {
            dist.workers.clone()
        }
    };
    const ALONE: [&str; 6] = ["allreduce", "traffic", "scaling", "layout", "gpu", "stream"];
    let known: Vec<&str> = BENCHES.iter().map(|b| b.0).chain(ALONE).collect();
    for n in names {
        if !known.contains(&n.as_str()) {
            return Err(Error::Io {
                path: n.clone(),
                message: format!("unknown benchmark; valid: {}", known.join(", ")),
            });
        }
        if names.len() > 1 && ALONE.contains(&n.as_str()) {
            return Err(Error::Io {
                path: n.clone(),
                message: format!("`{n}` runs on its own: `weft bench {n}`"),
            });
        }
    }
    match names.first().map(String::as_str) {
        Some("allreduce") => {
            return crate::bench_dist::allreduce(
                &counts(&[2, 4, 8]),
                &dist.hosts,
                dist.max_bytes,
                dist.link_mbit,
                json_out,
            )
        }
        Some("traffic") => {
            return crate::bench_dist::traffic(
                HIGGS,
                counts(&[4])[0],
                rows.unwrap_or(4000),
                json_out,
            )
        }
        Some("scaling") => {
            return crate::bench_dist::scaling(
                HIGGS,
                &counts(&[2]),
                rows.unwrap_or(100_000),
                dist.batch,
                json_out,
            )
        }
        Some("layout") => return layout(json_out),
        Some("gpu") => return gpu(rows, json_out, dist),
        Some("stream") => {
            return crate::bench_stream::stream(
                rows.unwrap_or(36_000_000),
                &dist.workers,
                dist.data_dir.as_deref(),
                dist.batch,
                json_out,
            )
        }
        _ => {}
    }
    let tmp = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    if !json_out {
        println!(
            "{:<14}{:>14}{:>10}{:>16}{:>9}",
            "benchmark", "weft samples/s", "test acc", "baseline", "ratio"
        );
    }
    for (name, spec, batch, key) in BENCHES
        .iter()
        .filter(|b| names.is_empty() || names.iter().any(|n| n == b.0))
    {
        let mut exp = Experiment::from_yaml(spec)?.set("train.batch_size", batch)?;
        if let Some(r) = rows {
            exp = exp.set("data.source.synthetic.rows", r)?;
        }
        let result = exp.run_with(Path::new(&tmp), &mut Quiet)?;
        let sps = result.train.samples_per_sec;
        let acc = result.test("accuracy").unwrap_or(f64::NAN);
        let base = baseline_cmd
            .map(|c| baseline(c, name, key, *batch))
            .transpose()?;
        let base_sps = base.as_ref().and_then(|b| {
            b["samples_per_s"]
                .as_f64()
                .or(b["samples_per_sec"].as_f64())
        });
        if json_out {
            println!(
                "{}",
                json!({"benchmark": name, "samples_per_sec": sps, "test_accuracy": acc, "device": result.train.device, "baseline": base, "ratio": base_sps.map(|b| sps / b)})
            );
        } else {
            let (b, ratio) = match base_sps {
                Some(b) => (format!("{b:.0}"), format!("{:.2}x", sps / b)),
                None => ("-".into(), "-".into()),
            };
            println!("{name:<14}{sps:>14.0}{acc:>10.4}{b:>16}{ratio:>9}");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

#[cfg(feature = "gpu")]
fn gpu(rows: Option<usize>, json_out: bool, dist: &DistOptions) -> Result<()> {
    let or = |v: &[usize], d: &[usize]| if v.is_empty() { d.to_vec() } else { v.to_vec() };
    crate::bench_gpu::gpu(&crate::bench_gpu::GpuOptions {
        sizes: or(&dist.sizes, &[1024, 2048, 4096, 8192]),
        batches: or(&dist.batches, &[32, 1024, 8192]),
        lenet_batches: vec![64, 256],
        rows: rows.unwrap_or(200_000),
        torch: dist.torch.clone(),
        json: json_out,
    })
}

#[cfg(not(feature = "gpu"))]
fn gpu(_: Option<usize>, _: bool, _: &DistOptions) -> Result<()> {
    Err(Error::Io {
        path: "gpu".into(),
        message: "this build of weft has no GPU executor (the `gpu` feature)".into(),
    })
}

/// A plan of about 2,000 nodes: 200 dense layers (the viewer's benchmark, as in the browser
/// test `web/tests/viewer.mjs`).
pub fn big_spec(layers: usize) -> String {
    let dense = "  - dense: {units: 16, activation: relu}\n".repeat(layers);
    format!("name: big\ndata: {{source: {{synthetic: {{rows: 100, features: 8, classes: 2}}}}}}\nmodel:\n{dense}  - dense: {{units: 2, activation: softmax}}\ntrain: {{loss: cross_entropy, optimizer: adam, batch_size: 16, epochs: 1}}\n")
}

/// `weft bench layout`: the viewer's layout (and layout + SVG) of a 2,000-node plan,
/// natively; the target is 100 ms for the layout.
fn layout(json_out: bool) -> Result<()> {
    let plan: weft_planner::Plan = (*Experiment::from_yaml(&big_spec(200))?.plan()?).clone();
    let view = weft_viz::view::build(&plan, weft_viz::view::Open::default());
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..7)
            .map(|_| {
                let s = std::time::Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let layout_ms = time(&|| {
        std::hint::black_box(weft_viz::draw::layout(&view));
    });
    let all_ms = time(&|| {
        std::hint::black_box(weft_viz::render(&plan, weft_viz::view::Open::default()));
    });
    if json_out {
        println!(
            "{}",
            json!({"bench": "layout", "nodes": view.nodes.len(), "edges": view.edges.len(), "layout_ms": layout_ms, "view_layout_svg_ms": all_ms, "target_ms": 100.0})
        );
    } else {
        println!(
            "layout of {} nodes, {} edges: {layout_ms:.1} ms (target 100 ms: {:.1}x under); view + layout + SVG: {all_ms:.1} ms",
            view.nodes.len(),
            view.edges.len(),
            100.0 / layout_ms
        );
    }
    Ok(())
}
