//! Passes for a target device, run on the device-independent plan: what a device runs that
//! the other does not is a planner pass, so `weft plan`, the viewer and the notebook show
//! exactly what executes (`weft plan --set executor.device=gpu` prints the GPU's plan).
//!
//! - `cpu`: no rewrite. The CPU executor keeps one buffer per node between steps, so the
//!   plan carries no memory plan.
//! - `gpu`: (1) matmul epilogues: a `MatMul` read only by its `BiasAdd` / `BiasAct` becomes
//!   one `MatMulBias` kernel and the product is never stored; (2) the memory plan: the
//!   activations of every schedule packed into slots reused by liveness, with inputs that
//!   take the whole batch read in place from the batch buffer.

use std::collections::HashMap;

use weft_dsl::Activation;

use crate::error::PlanError;
use crate::op::Op;
use crate::plan::Cost;
pub use crate::plan::Target;
use crate::plan::{MemoryPlan, Plan, PlanNode};

/// One pass of a target: its name (as `weft plan --verbose` prints it) and what it does.
type Pass = (&'static str, fn(&mut Plan) -> Result<String, PlanError>);

/// What each pass of a lowering did: its name and a summary line.
pub type PassSummaries = Vec<(&'static str, String)>;

/// The passes of a target, in the order they run.
fn passes(target: Target) -> &'static [Pass] {
    match target {
        Target::Cpu => &[],
        Target::Gpu => &[("epilogue", matmul_epilogues), ("memory", memory_plan)],
    }
}

/// Lowers a device-independent (`cpu`) plan for `target`; returns it with each pass's
/// summary. A plan already lowered for another target is refused (plan the spec again).
pub fn lower(mut plan: Plan, target: Target) -> Result<(Plan, PassSummaries), PlanError> {
    if plan.device == target {
        return Ok((plan, Vec::new()));
    }
    if plan.device != Target::Cpu {
        return Err(PlanError::Internal(format!(
            "a plan lowered for {} cannot be lowered for {}; plan the spec for {} instead",
            plan.device.name(),
            target.name(),
            target.name()
        )));
    }
    let mut log = Vec::new();
    for (name, pass) in passes(target) {
        log.push((*name, pass(&mut plan)?));
    }
    plan.device = target;
    Ok((plan, log))
}

/// `MatMul → BiasAdd | BiasAct` pairs (the matmul read by nothing else) become one
/// `MatMulBias`; the matmul node is removed and ids are renumbered (topological order kept).
fn matmul_epilogues(plan: &mut Plan) -> Result<String, PlanError> {
    let mut readers: Vec<usize> = vec![0; plan.nodes.len()];
    for n in &plan.nodes {
        for i in &n.inputs {
            readers[*i] += 1;
        }
    }
    let mut removed = vec![false; plan.nodes.len()];
    let mut fused = 0;
    for id in 0..plan.nodes.len() {
        let n = &plan.nodes[id];
        let act = match n.op {
            Op::BiasAdd => Activation::Linear,
            // Softmax is row-wise: it cannot run per element in an epilogue.
            Op::BiasAct(a) if a != Activation::Softmax => a,
            _ => continue,
        };
        let [m, bias] = n.inputs[..] else { continue };
        let Op::MatMul { ta, tb } = plan.nodes[m].op else {
            continue;
        };
        if readers[m] != 1 || bias == m {
            continue;
        }
        let (a, b, mm_flops) = {
            let mm = &plan.nodes[m];
            (mm.inputs[0], mm.inputs[1], mm.flops)
        };
        let n = &mut plan.nodes[id];
        n.op = Op::MatMulBias { ta, tb, act };
        n.inputs = vec![a, b, bias];
        n.flops = n.flops.saturating_add(mm_flops);
        removed[m] = true;
        fused += 1;
    }
    if fused == 0 {
        return Ok("no change (no matmul read only by its bias)".into());
    }
    renumber(plan, &removed)?;
    Ok(format!(
        "fused {fused} MatMul → bias (+ activation) pair(s) into MatMulBias epilogues"
    ))
}

/// Drops the `removed` nodes and renumbers the others in order, everywhere ids appear.
fn renumber(plan: &mut Plan, removed: &[bool]) -> Result<(), PlanError> {
    let mut new_id: HashMap<usize, usize> = HashMap::new();
    let nodes: Vec<PlanNode> = std::mem::take(&mut plan.nodes)
        .into_iter()
        .filter(|n| !removed[n.id])
        .enumerate()
        .map(|(i, mut n)| {
            new_id.insert(n.id, i);
            n.id = i;
            n
        })
        .collect();
    let map = |id: usize| {
        new_id.get(&id).copied().ok_or_else(|| {
            PlanError::Internal(format!(
                "node {id} is still read after the epilogue pass removed it"
            ))
        })
    };
    let map_all = |ids: &[usize]| ids.iter().map(|i| map(*i)).collect::<Result<Vec<_>, _>>();
    plan.nodes = nodes
        .into_iter()
        .map(|mut n| {
            n.inputs = map_all(&n.inputs)?;
            Ok(n)
        })
        .collect::<Result<_, PlanError>>()?;
    for p in &mut plan.params {
        p.node = map(p.node)?;
        p.grad = map(p.grad)?;
    }
    plan.inputs = map_all(&plan.inputs)?;
    plan.target = map(plan.target)?;
    plan.loss = map(plan.loss)?;
    plan.output = map(plan.output)?;
    let keep = |ids: &mut Vec<usize>| -> Result<(), PlanError> {
        *ids = map_all(
            &ids.iter()
                .copied()
                .filter(|i| !removed[*i])
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    };
    keep(&mut plan.schedules.train)?;
    keep(&mut plan.schedules.gradients)?;
    keep(&mut plan.schedules.eval)?;
    keep(&mut plan.schedules.predict)?;
    plan.cost = Cost::of(
        &plan.nodes,
        &plan.params,
        &plan.schedules,
        plan.train.batch_size,
    );
    Ok(())
}

/// The GPU's memory plan. An input that takes every feature column in order is the batch
/// buffer itself, and the labels are theirs (no copy, no slot).
fn memory_plan(plan: &mut Plan) -> Result<String, PlanError> {
    let features = plan.features.len();
    let mem = MemoryPlan::new(plan, |n| match &n.op {
        Op::Input { columns } => takes_whole_batch(columns, features),
        // The labels are uploaded with the batch.
        Op::Target => true,
        _ => false,
    });
    let summary = format!(
        "{} buffers for the activations of every schedule, reused by liveness",
        mem.slots.len()
    );
    plan.memory = Some(mem);
    Ok(summary)
}

/// True when an input's columns are every feature, in order (it is the batch as is).
pub fn takes_whole_batch(columns: &[usize], features: usize) -> bool {
    columns.len() == features && columns.iter().enumerate().all(|(i, c)| i == *c)
}
