//! weft-web: the browser viewer's Rust side, compiled to WebAssembly with wasm-bindgen.
//! The page (`web/static/`) hands it spec text and gets back the plan, located errors and a
//! drawn graph; the dsl and planner are linked in, so editing a spec recompiles it in the
//! browser as the user types. Everything here is pure, so it is tested natively too.

use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;
use weft_common::builtin::{synthetic_feature, IRIS_CLASSES, IRIS_FEATURES};
use weft_dsl::{Builtin, Source, Spec, SpecError};
use weft_planner::{DataShape, Plan, PlanError, Task, TaskKind};
use weft_viz::{chart, view};

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
    let task = |classes: usize| match spec.train.loss.task_kind() {
        TaskKind::Regression => Task::Regression { targets: 1 },
        TaskKind::Classification => Task::Classification { classes },
    };
    match &spec.data.source {
        Source::Builtin(Builtin::Iris) => Some(DataShape {
            features: IRIS_FEATURES.map(String::from).to_vec(),
            task: task(IRIS_CLASSES),
            vocab: Default::default(),
        }),
        Source::Synthetic(s) => Some(DataShape {
            features: (0..s.features).map(synthetic_feature).collect(),
            task: task(s.classes),
            vocab: Default::default(),
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

fn shape_of(known_plan: &str) -> Option<DataShape> {
    let v: Value = serde_json::from_str(known_plan).ok()?;
    Some(DataShape {
        features: serde_json::from_value(v.get("features")?.clone()).ok()?,
        task: serde_json::from_value(v.get("task")?.clone()).ok()?,
        vocab: v
            .get("vocab")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default(),
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
    weft_viz::render(&plan, open).to_string()
}

/// wasm: a line chart of epoch records (JSON list of `{epoch, train_loss, validation_loss}`)
/// as SVG, `w` × `h` pixels.
#[wasm_bindgen]
pub fn loss_chart(records: &str, w: f64, h: f64) -> String {
    let recs: Vec<Value> = serde_json::from_str(records).unwrap_or_default();
    chart::svg(&recs, w, h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_viz::draw;
    use weft_viz::view::{build, Kind, Open};

    const SPECS: [(&str, &str); 4] = [
        ("iris.yaml", include_str!("../../../specs/iris.yaml")),
        (
            "iris-graph.yaml",
            include_str!("../../../specs/iris-graph.yaml"),
        ),
        (
            "higgs-allreduce.yaml",
            include_str!("../../../specs/higgs-allreduce.yaml"),
        ),
        (
            "mnist-shape.yaml",
            include_str!("../../../specs/mnist-shape.yaml"),
        ),
    ];

    fn overlaps(a: &[f64; 4], b: &[f64; 4]) -> bool {
        a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
    }

    #[test]
    fn every_plan_node_is_drawn_once_without_overlaps_and_edges_go_down() {
        for (file, text) in SPECS {
            let plan = compile(file, text, None).unwrap();
            let v = build(&plan, Open::default());
            let ops = v.nodes.iter().filter(|n| n.kind == Kind::Op).count();
            assert_eq!(ops, plan.nodes.len(), "{file}");
            let stages = v.nodes.iter().filter(|n| n.kind == Kind::Stage).count();
            assert_eq!(stages, plan.workflow.len() - 1, "{file}: all but Train");
            let d = draw::draw(&v);
            for i in 0..d.boxes.len() {
                for j in i + 1..d.boxes.len() {
                    assert!(
                        !overlaps(&d.boxes[i], &d.boxes[j]),
                        "{file}: {} and {} overlap",
                        v.nodes[i].name,
                        v.nodes[j].name
                    );
                }
            }
            for e in &v.edges {
                let (a, b) = (&d.boxes[e.from], &d.boxes[e.to]);
                assert!(
                    a[1] < b[1],
                    "{file}: edge {} → {} goes up",
                    v.nodes[e.from].name,
                    v.nodes[e.to].name
                );
            }
            // Deterministic: the same plan draws the same picture.
            assert_eq!(d.svg, draw::draw(&build(&plan, Open::default())).svg);
        }
    }

    #[test]
    fn groups_collapse_to_one_box_and_bands_keep_them_apart() {
        let plan = compile("iris.yaml", SPECS[0].1, None).unwrap();
        let backward = plan
            .nodes
            .iter()
            .filter(|n| n.phase == weft_planner::Phase::Backward)
            .count();
        let open = Open {
            backward: false,
            ..Open::default()
        };
        let v = build(&plan, open);
        let groups: Vec<_> = v.nodes.iter().filter(|n| n.kind == Kind::Group).collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].op, format!("Backward ({backward} nodes)"));
        assert_eq!(
            v.nodes.iter().filter(|n| n.kind == Kind::Op).count(),
            plan.nodes.len() - backward
        );
        assert!(
            v.edges.iter().all(|e| e.from != e.to),
            "no loops into a collapsed group"
        );
        // Every forward node sits above every update node.
        let d = draw::draw(&build(&plan, Open::default()));
        let v = build(&plan, Open::default());
        let ys = |g: weft_planner::Phase| {
            v.nodes
                .iter()
                .zip(&d.boxes)
                .filter(|(n, _)| n.group == Some(g))
                .map(|(_, b)| b[1])
                .collect::<Vec<_>>()
        };
        let lowest_forward = ys(weft_planner::Phase::Forward)
            .into_iter()
            .fold(0.0, f64::max);
        assert!(ys(weft_planner::Phase::Update)
            .into_iter()
            .all(|y| y > lowest_forward));
        // Closed train stage: just the workflow.
        let closed = build(
            &plan,
            Open {
                train: false,
                forward: false,
                backward: false,
                update: false,
            },
        );
        assert_eq!(closed.nodes.len(), plan.workflow.len());
        assert!(closed.nodes.iter().all(|n| n.kind == Kind::Stage));
    }

    #[test]
    fn spec_errors_come_back_with_their_line() {
        let text = format!("{}bogus_key: 1\n", SPECS[0].1);
        let line = text.lines().count();
        let problems = compile("iris.yaml", &text, None).unwrap_err();
        assert_eq!(problems[0].line, line);
        assert!(
            problems[0]
                .text
                .starts_with(&format!("iris.yaml:{line}:1: ")),
            "{}",
            problems[0].text
        );
        let csv = SPECS[0]
            .1
            .replace("source: builtin:iris", "source: {csv: data.csv}");
        let problems = compile("x.yaml", &csv, None).unwrap_err();
        assert!(problems[0].message.contains("weft serve"));
    }

    #[test]
    fn wasm_entry_points_speak_json() {
        let out: Value = serde_json::from_str(&compile_spec("iris.yaml", SPECS[0].1, "")).unwrap();
        assert_eq!(out["ok"], true);
        let plan = out["plan"].to_string();
        // A served plan's data shape is reused for specs the browser cannot load.
        let csv = SPECS[0]
            .1
            .replace("source: builtin:iris", "source: {csv: data.csv}");
        let out: Value = serde_json::from_str(&compile_spec("x.yaml", &csv, &plan)).unwrap();
        assert_eq!(out["ok"], true, "{out}");
        let r: Value = serde_json::from_str(&render_plan(
            &plan,
            r#"{"train":true,"forward":true,"backward":false,"update":true}"#,
        ))
        .unwrap();
        assert!(r["svg"].as_str().unwrap().starts_with("<svg"));
        assert_eq!(
            r["plan_nodes"],
            out["plan"]["nodes"].as_array().unwrap().len()
        );
        let bad: Value = serde_json::from_str(&render_plan("{}", "{}")).unwrap();
        assert!(bad["error"].as_str().unwrap().contains("not a weft plan"));
        let chart = loss_chart(
            r#"[{"epoch":1,"train_loss":0.9},{"epoch":2,"train_loss":0.5,"validation_loss":0.6}]"#,
            300.0,
            200.0,
        );
        assert!(chart.contains(r#"data-points="2""#) && chart.contains("<polyline"));
    }
}
