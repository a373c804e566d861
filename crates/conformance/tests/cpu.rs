//! The conformance suite (weft-conformance) run by the CPU executor.

use weft_exec::cpu::CpuExecutor;
use weft_exec::Executor;
use weft_planner::Plan;

fn cpu(plan: &Plan) -> Box<dyn Executor> {
    Box::new(CpuExecutor::new(plan))
}

weft_conformance::testgen_conformance!(cpu);
