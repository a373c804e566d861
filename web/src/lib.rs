//! weft-web: the browser viewer's Rust side, compiled to WebAssembly with wasm-bindgen.
//! The page (`web/static/`) hands it spec text and gets back the plan, located errors and a
//! drawn graph; the dsl and planner are linked in, so editing a spec recompiles it in the
//! browser as the user types. Everything here is pure, so it is tested natively too.

pub mod chart;
pub mod draw;
pub mod view;

use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;
use weft_dsl::{Builtin, Loss, Source, Spec, SpecError};
use weft_planner::{DataShape, Plan, PlanError, Task};

/// One located problem, as the editor shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// 1-based line in the spec text (0 when the problem has no place).
    pub line: usize,
    pub col: usize,
    pub path: String,
    pub message: String,
    /// The whole line as the CLI prints it (`spec.yaml:4:35: model[0]…: …`).
    pub text: String,
}

fn problems(e: &SpecError) -> Vec<Problem> {
    e.diagnostics
        .iter()
        .zip(e.lines())
        .map(|(d, text)| {
            let (line, col) = match d.loc {
                Some(l) if l.origin == weft_dsl::Origin::File => (l.line, l.col),
                _ => (0, 0),
            };
            Problem {
                line,
                col,
                path: d.path.clone(),
                message: d.message.clone(),
                text,
            }
        })
        .collect()
}

/// The data's shape without reading it: the served plan's when there is one, else what
/// the spec itself says (built-in and synthetic data).
pub fn data_shape(spec: &Spec, known: Option<DataShape>) -> Option<DataShape> {
    if known.is_some() {
        return known;
    }
    let task = |classes: usize| match spec.train.loss {
        Loss::Mse => Task::Regression { targets: 1 },
        _ => Task::Classification { classes },
    };
    match &spec.data.source {
        Source::Builtin(Builtin::Iris) => Some(DataShape {
            features: ["sepal_length", "sepal_width", "petal_length", "petal_width"]
                .map(String::from)
                .to_vec(),
            task: task(3),
        }),
        Source::Synthetic(s) => Some(DataShape {
            features: (0..s.features).map(|i| format!("x{i}")).collect(),
            task: task(s.classes),
        }),
        _ => None,
    }
}

/// Compiles spec text: `Ok(plan)` or the located problems.
pub fn compile(file: &str, text: &str, known: Option<DataShape>) -> Result<Plan, Vec<Problem>> {
    let (spec, doc) = weft_dsl::load(file, text, &[]).map_err(|e| problems(&e))?;
    let Some(shape) = data_shape(&spec, known) else {
        return Err(vec![Problem {
            line: 0,
            col: 0,
            path: "data.source".into(),
            message: "the browser cannot read this data source; open the spec with `weft serve` to see its plan".into(),
            text: "data.source: needs `weft serve`".into(),
        }]);
    };
    Plan::new(&spec, &shape).map_err(|e| match e {
        PlanError::Spec { path, message } => problems(&doc.error_at(&path, message)),
        other => vec![Problem {
            line: 0,
            col: 0,
            path: String::new(),
            message: other.to_string(),
            text: other.to_string(),
        }],
    })
}

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

fn shape_of(known_plan: &str) -> Option<DataShape> {
    let v: Value = serde_json::from_str(known_plan).ok()?;
    Some(DataShape {
        features: serde_json::from_value(v.get("features")?.clone()).ok()?,
        task: serde_json::from_value(v.get("task")?.clone()).ok()?,
    })
}

/// wasm: compiles `text` (the data's shape from `known_plan`, a plan JSON, when not empty)
/// and returns `{"ok": true, "plan": …}` or `{"ok": false, "problems": […]}`.
#[wasm_bindgen]
pub fn compile_spec(file: &str, text: &str, known_plan: &str) -> String {
    let out = match compile(file, text, shape_of(known_plan)) {
        Ok(plan) => json!({ "ok": true, "plan": plan }),
        Err(p) => json!({ "ok": false, "problems": p }),
    };
    out.to_string()
}

/// wasm: draws a plan (JSON) with the parts in `open` (JSON `{train, forward, backward,
/// update}`) expanded; see [`render`].
#[wasm_bindgen]
pub fn render_plan(plan: &str, open: &str) -> String {
    let plan: Plan = match serde_json::from_str(plan) {
        Ok(p) => p,
        Err(e) => return json!({ "error": format!("not a weft plan: {e}") }).to_string(),
    };
    let open: view::Open = serde_json::from_str(open).unwrap_or_default();
    render(&plan, open).to_string()
}

/// wasm: a line chart of epoch records (JSON list of `{epoch, train_loss, validation_loss}`)
/// as SVG, `w` × `h` pixels.
#[wasm_bindgen]
pub fn loss_chart(records: &str, w: f64, h: f64) -> String {
    let recs: Vec<Value> = serde_json::from_str(records).unwrap_or_default();
    chart::svg(&recs, w, h)
}
