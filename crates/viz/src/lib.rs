//! weft-viz: how plans and runs are drawn — the layered graph layout, the plan as SVG, the
//! viewer's collapsible view of a plan, and loss charts. Pure (no I/O), so the notebook, the
//! CLI (`weft plan --format svg`) and the browser (through weft-web's wasm) draw the same
//! pictures.

pub mod chart;
pub mod draw;
pub mod layout;
pub mod svg;
pub mod view;

use serde_json::{json, Value};
use weft_planner::Plan;

/// The view of a plan with `open` parts expanded, drawn: JSON with the SVG, the node list
/// (for search and the detail panel) and each node's box.
pub fn render(plan: &Plan, open: view::Open) -> Value {
    let v = view::build(plan, open);
    let d = draw::draw(&v);
    json!({
        "svg": d.svg,
        "width": d.width,
        "height": d.height,
        "boxes": d.boxes,
        "nodes": v.nodes,
        "edges": v.edges.len(),
        "plan_nodes": plan.nodes.len(),
        "params": plan.cost.params,
        "flops": plan.cost.train_flops_per_step,
    })
}
