//! The conformance suite (`tests/conformance/`) run by the CPU executor.

mod conformance;

use weft_executors::cpu::CpuExecutor;
use weft_executors::Executor;
use weft_planner::Plan;

fn cpu(plan: &Plan) -> Box<dyn Executor> {
    Box::new(CpuExecutor::new(plan))
}

testgen_conformance!(cpu);
