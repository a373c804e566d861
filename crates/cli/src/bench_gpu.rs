//! `weft bench gpu`: the GPU executor's matmul and training throughput (higgs' MLP, and
//! LeNet-5's shape for the convolutions), side by side with
//! PyTorch on the same GPU in the same invocation (`--torch PYTHON` runs
//! `scripts/bench_gpu_torch.py`), as ratios; plus the time per training step split into
//! recording, submitting and waiting, so the next optimisation is clear.

use std::process::Command;
use std::time::Instant;

use ndarray::{Array1, Array2};
use serde_json::{json, Value};
use weft_common::rng::Rng;
use weft_exec::gpu::{bench, GpuContext, GpuExecutor, StepTiming, Want};
use weft_exec::{ExecError, Executor};
use weft_runtime::train::gather;

use weft::Experiment;
use weft::{Error, Result};

/// What `weft bench gpu` measures.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    pub sizes: Vec<usize>,
    pub batches: Vec<usize>,
    /// LeNet's batch sizes (64 and 256).
    pub lenet_batches: Vec<usize>,
    /// Rows of higgs-synthetic; LeNet trains on at most 60,000 (MNIST's size).
    pub rows: usize,
    /// Python with torch for the baseline (`--torch python3`).
    pub torch: Option<String>,
    pub json: bool,
}

fn torch_lines(python: &str, args: &[String]) -> Result<Vec<Value>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/bench_gpu_torch.py"
    );
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| Error::Io {
            path: python.to_string(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Io {
            path: script.to_string(),
            message: format!(
                "the PyTorch baseline failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

pub fn gpu(o: &GpuOptions) -> Result<()> {
    let ctx = GpuContext::shared(Want::Any, 0)?.ok_or_else(|| {
        Error::Exec(ExecError::Gpu(
            "wgpu finds no adapter; see `weft devices`".into(),
        ))
    })?;
    if !o.json {
        println!("device: {}", ctx.name());
        if ctx.is_software() {
            println!("note: a software adapter (no GPU here): these are not GPU figures");
        }
    }
    // --- matmul
    let torch_mm = match &o.torch {
        Some(py) => torch_lines(py, &["matmul".into(), join(&o.sizes)])?,
        None => Vec::new(),
    };
    if !o.json {
        println!(
            "\n{:<8}{:>14}{:>14}{:>9}{:>12}",
            "matmul", "weft GFLOP/s", "torch GFLOP/s", "ratio", "max rel err"
        );
    }
    for &n in &o.sizes {
        let mut rng = Rng::new(1, n as u64);
        let a = Array2::from_shape_fn((n, n), |_| rng.normal());
        let b = Array2::from_shape_fn((n, n), |_| rng.normal());
        let (_, one) = bench::matmul(&ctx, &a, &b, false, false, None, 1)?;
        let reps = ((0.5 / one.max(1e-6)) as usize).clamp(2, 50);
        let (c, secs) = bench::matmul(&ctx, &a, &b, false, false, None, reps)?;
        let gflops = 2.0 * (n as f64).powi(3) * reps as f64 / secs / 1e9;
        // Spot-check 16 entries against an f64 dot product.
        let mut err = 0.0f64;
        for s in 0..16 {
            let (i, j) = ((s * 7919) % n, (s * 104_729) % n);
            let exact: f64 = (0..n)
                .map(|k| f64::from(a[[i, k]]) * f64::from(b[[k, j]]))
                .sum();
            let scale = (0..n)
                .map(|k| (f64::from(a[[i, k]]) * f64::from(b[[k, j]])).abs())
                .sum::<f64>()
                .max(1e-30);
            err = err.max((f64::from(c[[i, j]]) - exact).abs() / scale);
        }
        let torch = torch_mm
            .iter()
            .find(|v| v["size"].as_u64() == Some(n as u64))
            .and_then(|v| v["gflops"].as_f64());
        print_row(
            o.json,
            json!({"matmul": n, "gflops": gflops, "torch_gflops": torch, "ratio": torch.map(|t| gflops / t), "max_rel_err": err}),
            || {
                format!(
                    "{n:<8}{gflops:>14.1}{:>14}{:>9}{err:>12.1e}",
                    opt(torch, 1),
                    ratio(Some(gflops), torch)
                )
            },
        );
    }
    // --- training
    let lenet_rows = o.rows.min(60_000);
    let workloads = [
        ("higgs", crate::bench::HIGGS, &o.batches, o.rows),
        ("lenet", crate::bench::LENET, &o.lenet_batches, lenet_rows),
    ];
    for (name, spec, batches, rows) in workloads {
        let torch_train = match &o.torch {
            Some(py) => torch_lines(py, &[name.into(), join(batches), rows.to_string()])?,
            None => Vec::new(),
        };
        if !o.json {
            println!(
                "\n{:<14}{:>16}{:>16}{:>9}{:>12}{:>12}{:>12}",
                format!("{name} batch"),
                "weft samples/s",
                "torch samples/s",
                "ratio",
                "encode/step",
                "submit/step",
                "wait/step"
            );
        }
        for &batch in batches {
            let (sps, t) = train(&ctx, spec, rows, batch)?;
            let torch = torch_train
                .iter()
                .find(|v| v["batch"].as_u64() == Some(batch as u64))
                .and_then(|v| v["samples_per_s"].as_f64());
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / t.steps.max(1) as f64;
            print_row(
                o.json,
                json!({"workload": name, "train_batch": batch, "samples_per_sec": sps, "torch_samples_per_sec": torch, "ratio": torch.map(|x| sps / x), "steps": t.steps, "encode_us": per(t.encode), "submit_us": per(t.submit), "wait_us": per(t.wait)}),
                || {
                    format!(
                        "{batch:<14}{sps:>16.0}{:>16}{:>9}{:>10.1}us{:>10.1}us{:>10.1}us",
                        opt(torch, 0),
                        ratio(Some(sps), torch),
                        per(t.encode),
                        per(t.submit),
                        per(t.wait)
                    )
                },
            );
        }
    }
    Ok(())
}

fn print_row(json_out: bool, v: Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{v}");
    } else {
        println!("{}", text());
    }
}

fn opt(v: Option<f64>, places: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.places$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// One warm-up pass of up to 50 steps, then one timed epoch of the benchmark `spec` (a
/// synthetic source of `rows` rows) at `batch` on the GPU executor, reading the loss back
/// every 16 steps as `weft run` does.
fn train(
    ctx: &std::sync::Arc<GpuContext>,
    spec: &str,
    rows: usize,
    batch: usize,
) -> Result<(f64, StepTiming)> {
    let exp = Experiment::from_yaml(spec)?
        .set("data.source.synthetic.rows", rows)?
        .set("train.batch_size", batch)?;
    let (_, prepared) = exp.prepare_data()?;
    let plan = exp.plan_for(&prepared)?;
    let mut exec = GpuExecutor::new(ctx.clone(), &plan)?;
    let data = &prepared.train;
    let (mut xb, mut yb) = (Array2::zeros((0, 0)), Array1::zeros(0));
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut step = 0u64;
    let mut epoch = |exec: &mut GpuExecutor, limit: usize| -> Result<usize> {
        Rng::new(0, step).shuffle(&mut order);
        let mut done = 0;
        for (i, idx) in order.chunks(batch).take(limit).enumerate() {
            gather(data, idx, &mut xb, &mut yb);
            exec.train_step_deferred(xb.view(), yb.view(), step, 1e-3)?;
            step += 1;
            done += idx.len();
            if i % 16 == 15 {
                exec.deferred_losses()?;
            }
        }
        let (loss, seen) = exec.deferred_losses()?;
        if seen > 0 && !loss.is_finite() {
            return Err(Error::Exec(ExecError::Gpu(format!(
                "the benchmark's loss is {loss}"
            ))));
        }
        Ok(done)
    };
    epoch(&mut exec, 50)?;
    let before = exec.timing();
    let started = Instant::now();
    let done = epoch(&mut exec, usize::MAX)?;
    let secs = started.elapsed().as_secs_f64();
    let after = exec.timing();
    let t = StepTiming {
        steps: after.steps - before.steps,
        encode: after.encode - before.encode,
        submit: after.submit - before.submit,
        wait: after.wait - before.wait,
    };
    Ok((done as f64 / secs, t))
}
