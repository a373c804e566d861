//! GPU-only checks beyond the shared conformance suite: the matmul kernel on awkward shapes,
//! both tile sizes and transposed operands; CPU-vs-GPU parity of whole training steps
//! (dropout masks included); deferred losses; and the errors a GPU's limits give. The suite
//! itself runs in `gpu.rs`; this file uses its helpers.

use ndarray::Array2;
use weft_common::rng::Rng;
use weft_conformance::support::{classes, inputs, labels, ok, plan};
use weft_exec::cpu::CpuExecutor;
use weft_exec::gpu::{bench, GpuContext, GpuExecutor, Want};
use weft_exec::{ExecError, Executor};
use weft_planner::{Plan, Task};

fn ctx() -> std::sync::Arc<GpuContext> {
    GpuContext::shared(Want::Any, 0)
        .expect("opening the GPU")
        .expect("no GPU adapter: install mesa-vulkan-drivers (scripts/setup.sh does)")
}

fn random(r: usize, c: usize, stream: u64) -> Array2<f32> {
    let mut rng = Rng::new(3, stream);
    Array2::from_shape_simple_fn((r, c), || rng.normal())
}

#[test]
fn matmul_matches_the_cpu_on_odd_shapes_both_tiles_and_transposes() {
    let ctx = ctx();
    // Sizes that are not multiples of any tile, a K smaller than one K step, a single row.
    for &(m, k, n) in &[(67, 45, 129), (1, 300, 7), (130, 3, 65), (129, 17, 257)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta { random(k, m, 1) } else { random(m, k, 1) };
            let b = if tb { random(n, k, 2) } else { random(k, n, 2) };
            let want = {
                let a = if ta { a.t().to_owned() } else { a.clone() };
                let b = if tb { b.t().to_owned() } else { b.clone() };
                a.dot(&b)
            };
            for tile in [64, 128] {
                let (got, _) = ok(bench::matmul(&ctx, &a, &b, ta, tb, Some(tile), 0));
                assert_eq!(got.dim(), (m, n));
                for ((i, j), w) in want.indexed_iter() {
                    let g = got[[i, j]];
                    assert!(
                        (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
                        "{m}×{k}×{n} ta={ta} tb={tb} tile={tile}: C[{i},{j}] = {g}, want {w}"
                    );
                }
            }
        }
    }
}

/// Trains `p` on both executors with batches of `rows` rows (`features` wide, labels of
/// `task`) at rate `lr`: every step's loss and the final parameters agree.
fn trains_like_the_cpu(p: &Plan, rows: &[usize], features: usize, task: &Task, lr: f32) {
    trains_like_the_cpu_on(ok(GpuExecutor::new(ctx(), p)), p, rows, features, task, lr);
}

fn trains_like_the_cpu_on(
    mut gpu: GpuExecutor,
    p: &Plan,
    rows: &[usize],
    features: usize,
    task: &Task,
    lr: f32,
) {
    let mut cpu = CpuExecutor::new(p);
    for (step, &rows) in rows.iter().enumerate() {
        let step = step as u64;
        let x = inputs(rows, features, step);
        let y = labels(rows, task);
        let lc = ok(cpu.train_step(x.view(), y.view(), step, lr));
        let lg = ok(gpu.train_step(x.view(), y.view(), step, lr));
        assert!(
            (lc - lg).abs() <= 1e-4 * lc.abs().max(1.0),
            "step {step} ({rows} rows): loss cpu {lc}, gpu {lg}"
        );
    }
    for (i, (c, g)) in ok(cpu.params()).iter().zip(ok(gpu.params())).enumerate() {
        for (a, b) in c.iter().zip(g.iter()) {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-3 * a.abs(),
                "param {i}: cpu {a}, gpu {b}"
            );
        }
    }
}

/// The same plan and batches on both executors: the parameters after several steps agree
/// (dropout masks come from the same counter-based generator on both).
#[test]
fn training_steps_match_the_cpu_with_dropout_clipping_and_adam() {
    let p = plan(
        "[{dense: {units: 32, activation: relu}}, {dropout: {rate: 0.3}}, {dense: {units: 16, activation: gelu}}, {layer_norm: {}}, {dense: {units: 3, activation: softmax}}]",
        "{optimizer: {adam: {lr: 0.01}}, batch_size: 40, clip_grad_norm: 0.5}",
        6,
        classes(3),
    );
    trains_like_the_cpu(&p, &[40, 39, 38, 37, 36, 35], 6, &classes(3), 0.01);
}

/// Batches above 128 rows reduce over the rows in chunks (bias and gamma gradients, batch
/// norm's statistics and input gradient, the gradient norm); smaller ones in one pass.
/// Both, in either order, train like the CPU; layer norm (a workgroup per row) too. 9000
/// rows make 141 chunks, more than the second pass would itself split. The 40×110
/// weight's squares are summed by two workgroups.
#[test]
fn large_batches_reduce_in_chunks_like_the_cpu() {
    let p = plan(
        "[{dense: {units: 40, activation: relu}}, {batch_norm: {}}, {dense: {units: 110, activation: tanh}}, {layer_norm: {}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.05, momentum: 0.9}}, batch_size: 1500, clip_grad_norm: 0.3}",
        5,
        classes(2),
    );
    trains_like_the_cpu(&p, &[100, 1500, 129, 128, 9000, 700], 5, &classes(2), 0.05);
}

/// A device of its own that allows 64 KiB per storage binding.
fn ctx_with_64_kib_bindings() -> GpuContext {
    GpuContext::open(Want::Any, |l| l.max_storage_buffer_binding_size = 64 << 10)
        .expect("opening the GPU")
        .expect("an adapter")
}

/// Parameters share arenas (one optimizer dispatch per arena); a model larger than the
/// adapter's storage binding is split over several, and trains the same.
#[test]
fn a_model_larger_than_one_binding_is_split_over_arenas() {
    // 64 KiB per binding: 16384 values; the model has 2800 + 10000 + 6000 + 120 weights.
    let small = ctx_with_64_kib_bindings();
    let p = plan(
        "[{dense: {units: 100, activation: relu}}, {dense: {units: 100, activation: tanh}}, {dense: {units: 60, activation: relu}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {adam: {lr: 0.01}}, batch_size: 30, clip_grad_norm: 0.5}",
        28,
        classes(2),
    );
    let gpu = ok(GpuExecutor::new(std::sync::Arc::new(small), &p));
    assert_eq!(gpu.layout().arenas.len(), 2, "{:?}", gpu.layout());
    assert_eq!(ok(GpuExecutor::new(ctx(), &p)).layout().arenas.len(), 1);
    trains_like_the_cpu_on(gpu, &p, &[30, 30, 17, 30], 28, &classes(2), 0.01);
}

#[test]
fn deferred_losses_add_up_to_the_step_losses() {
    let p = plan(
        "[{dense: {units: 8, activation: tanh}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.1}}, batch_size: 10}",
        4,
        classes(2),
    );
    let (mut a, mut b) = (CpuExecutor::new(&p), ok(GpuExecutor::new(ctx(), &p)));
    let mut want = 0.0f64;
    for step in 0..5u64 {
        let x = inputs(10 + step as usize, 4, step);
        let y = labels(x.nrows(), &classes(2));
        want += f64::from(ok(a.train_step(x.view(), y.view(), step, 0.1))) * x.nrows() as f64;
        assert_eq!(
            ok(b.train_step_deferred(x.view(), y.view(), step, 0.1)),
            None
        );
    }
    let (sum, rows) = ok(b.deferred_losses());
    assert_eq!(rows, 10 + 11 + 12 + 13 + 14);
    assert!(
        (sum - want).abs() <= 1e-4 * want,
        "deferred {sum}, steps {want}"
    );
    assert_eq!(ok(b.deferred_losses()), (0.0, 0), "read back once");
}

#[test]
fn a_batch_beyond_the_adapters_limit_is_a_clear_error_and_changes_nothing() {
    // An adapter that allows 64 KiB per storage buffer: a 28-wide input at 1024 rows needs
    // 112 KiB.
    let small = ctx_with_64_kib_bindings();
    let p = plan(
        "[{dense: {units: 4, activation: relu}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {adam: {lr: 0.1}}, batch_size: 1024}",
        28,
        classes(2),
    );
    let mut exec = ok(GpuExecutor::new(std::sync::Arc::new(small), &p));
    let x = inputs(1024, 28, 0);
    let y = labels(1024, &classes(2));
    let err = exec.train_step(x.view(), y.view(), 0, 0.1).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ExecError::Gpu(_)), "{text}");
    for want in [
        "input batch (1024 rows × 28)",
        "112.00 KiB",
        "64.00 KiB",
        "max_storage_buffer_binding_size",
        "smaller batch_size",
    ] {
        assert!(text.contains(want), "`{want}` missing from: {text}");
    }
    // A batch that fits still runs, and the refused one left no trace: Adam's first step
    // matches the CPU's.
    let mut cpu = CpuExecutor::new(&p);
    let x = inputs(100, 28, 0);
    let y = labels(100, &classes(2));
    let (lg, lc) = (
        ok(exec.train_step(x.view(), y.view(), 1, 0.1)),
        ok(cpu.train_step(x.view(), y.view(), 1, 0.1)),
    );
    assert!((lg - lc).abs() < 1e-5, "gpu {lg}, cpu {lc}");
    for (c, g) in ok(cpu.params()).iter().zip(ok(exec.params())) {
        for (a, b) in c.iter().zip(g.iter()) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * a.abs(), "cpu {a}, gpu {b}");
        }
    }
}

#[test]
fn too_many_workgroups_is_a_clear_error() {
    let small = GpuContext::open(Want::Any, |l| l.max_compute_workgroups_per_dimension = 4)
        .expect("opening the GPU")
        .expect("an adapter");
    let p = plan(
        "[{dense: {units: 8, activation: relu}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.1}}, batch_size: 1024}",
        4,
        classes(2),
    );
    let mut exec = ok(GpuExecutor::new(std::sync::Arc::new(small), &p));
    let (x, y) = (inputs(1024, 4, 0), labels(1024, &classes(2)));
    let err = exec
        .train_step(x.view(), y.view(), 0, 0.1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "a matmul at batch 1024 needs 16 workgroups in one dimension; this adapter allows 4"
        ),
        "{err}"
    );
    // Small batches fit the grid.
    let (x, y) = (inputs(200, 4, 0), labels(200, &classes(2)));
    assert!(ok(exec.train_step(x.view(), y.view(), 1, 0.1)).is_finite());
}

#[test]
fn labels_must_match_the_rows_on_both_executors() {
    let p = plan(
        "[{dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.1}}, batch_size: 8}",
        4,
        classes(2),
    );
    let (x, y) = (inputs(8, 4, 0), labels(7, &classes(2)));
    let mut cpu = CpuExecutor::new(&p);
    let mut gpu = ok(GpuExecutor::new(ctx(), &p));
    for exec in [&mut cpu as &mut dyn Executor, &mut gpu] {
        let err = exec
            .train_step(x.view(), y.view(), 0, 0.1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("8 input rows but 7 labels"), "{err}");
    }
}

#[test]
fn a_wrong_number_of_features_is_an_error_not_a_panic() {
    let p = plan(
        "[{dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.1}}, batch_size: 8}",
        4,
        classes(2),
    );
    let mut exec = ok(GpuExecutor::new(ctx(), &p));
    let x = inputs(8, 5, 0);
    let err = exec.predict(x.view()).unwrap_err().to_string();
    assert!(
        err.contains("input has 5 feature columns, the model expects 4"),
        "{err}"
    );
}

#[test]
fn a_lost_device_is_an_error_that_says_so() {
    let ctx = std::sync::Arc::new(
        GpuContext::open(Want::Any, |_| {})
            .expect("opening the GPU")
            .expect("an adapter"),
    );
    let p = plan(
        "[{dense: {units: 4, activation: relu}}, {dense: {units: 2, activation: softmax}}]",
        "{optimizer: {sgd: {lr: 0.1}}, batch_size: 16}",
        4,
        classes(2),
    );
    let mut exec = ok(GpuExecutor::new(ctx.clone(), &p));
    let (x, y) = (inputs(16, 4, 0), labels(16, &classes(2)));
    assert!(ok(exec.train_step(x.view(), y.view(), 0, 0.1)).is_finite());
    ctx.device.destroy();
    let err = exec
        .train_step(x.view(), y.view(), 1, 0.1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("GPU device was lost"), "{err}");
}
