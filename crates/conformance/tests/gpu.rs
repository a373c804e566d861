//! The conformance suite (weft-conformance) run by the GPU executor, unchanged: same
//! cases, same tolerances as the CPU. On a machine without a GPU it runs on Mesa's software
//! Vulkan driver (lavapipe), which `scripts/setup.sh` installs; with no adapter at all the
//! tests fail and say so, rather than pass without running.

use weft_exec::gpu::{GpuContext, GpuExecutor, Want};
use weft_exec::Executor;
use weft_planner::Plan;

fn gpu(plan: &Plan) -> Box<dyn Executor> {
    let ctx = GpuContext::shared(Want::Any, 0)
        .expect("opening the GPU")
        .expect(
        "no GPU adapter: install mesa-vulkan-drivers (scripts/setup.sh does) to run the GPU tests",
    );
    Box::new(GpuExecutor::new(ctx, plan).expect("GPU executor"))
}

weft_conformance::testgen_conformance!(gpu);
