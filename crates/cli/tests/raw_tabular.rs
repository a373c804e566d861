//! `specs/raw-tabular.yaml` trains from a raw CSV with blank cells in numeric and string
//! columns and string features, cleaned by the spec alone; `predict` applies the same
//! cleaning to new raw rows. The data is generated here (UPDATE_DATA=1 rewrites the
//! shipped copy; otherwise the test checks it is what this generator makes).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

mod support;
use support::{run_json, stderr, weft, REPO};

/// A deterministic generator (64-bit LCG), so the shipped file is reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 1,200 customers: churn is likelier for the young, big spenders and the `basic` plan;
/// about 8% of cells are blank (or `NA`) in age, spend, plan and region.
fn generate() -> String {
    let mut r = Lcg(2026);
    let plans = ["basic", "plus", "pro"];
    let regions = ["north", "south", "east", "west"];
    let mut out = String::from("customer,age,monthly_spend,plan,region,churned\n");
    for i in 0..1200 {
        let age = 18.0 + 60.0 * r.next();
        let spend = 10.0 + 190.0 * r.next();
        let plan = plans[(r.next() * 3.0) as usize % 3];
        let region = regions[(r.next() * 4.0) as usize % 4];
        let score = -0.06 * (age - 45.0)
            + 0.025 * (spend - 100.0)
            + if plan == "basic" { 1.2 } else { -0.4 }
            + 0.6 * (r.next() - 0.5);
        let churned = u8::from(score > 0.0);
        let blank = |r: &mut Lcg, text: String| {
            let u = r.next();
            if u < 0.06 {
                String::new()
            } else if u < 0.08 {
                "NA".into()
            } else {
                text
            }
        };
        let age = blank(&mut r, format!("{age:.0}"));
        let spend = blank(&mut r, format!("{spend:.2}"));
        let plan = blank(&mut r, plan.to_string());
        let region = blank(&mut r, region.to_string());
        out.push_str(&format!(
            "c{i:04},{age},{spend},{plan},{region},{churned}\n"
        ));
    }
    out
}

#[test]
fn the_shipped_raw_spec_trains_from_blank_cells_and_predict_cleans_new_rows() {
    let data = Path::new(REPO).join("specs/data/raw-tabular.csv");
    let text = generate();
    if std::env::var_os("UPDATE_DATA").is_some() {
        std::fs::write(&data, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&data).unwrap_or_default(),
        text,
        "specs/data/raw-tabular.csv is not what the generator makes; rerun with UPDATE_DATA=1"
    );
    let blanks = text.matches(",,").count() + text.matches(",NA").count();
    assert!(blanks > 200, "{blanks} blank cells");

    let runs = tempfile::tempdir().unwrap();
    let r = run_json("specs/raw-tabular.yaml", runs.path(), &[]);
    let acc = r["metrics"]["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.85, "test accuracy {acc}");
    let dir = Path::new(r["run_dir"].as_str().unwrap());
    let pre: Value =
        serde_json::from_slice(&std::fs::read(dir.join("preprocess.json")).unwrap()).unwrap();
    assert_eq!(
        pre["stages"][0]["impute"]["columns"],
        serde_json::json!(["age", "monthly_spend"])
    );

    // New raw rows with blanks, and a region the train split never had.
    let new = runs.path().join("new.csv");
    std::fs::write(
        &new,
        "customer,age,monthly_spend,plan,region\nn1,,180.00,basic,\nn2,70,NA,,atlantis\n",
    )
    .unwrap();
    let o = weft(&[
        "predict",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        new.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        stderr(&o).contains("did not have"),
        "ignore warns: {}",
        stderr(&o)
    );
}

/// `train.class_weight: balanced` on a 5% minority class: the minority's recall rises well
/// above the unweighted run's (same data, same seed).
#[test]
fn balanced_class_weights_lift_the_minority_recall() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Lcg(7);
    let mut csv = String::from("x1,x2,y\n");
    for _ in 0..4000 {
        let (x1, x2) = (r.next() * 4.0 - 2.0, r.next() * 4.0 - 2.0);
        let y = u8::from(x1 + 0.8 * (r.next() - 0.5) > 1.65);
        csv.push_str(&format!("{x1:.4},{x2:.4},{y}\n"));
    }
    std::fs::write(dir.path().join("d.csv"), csv).unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: imb\nseed: 3\ndata: {source: {csv: d.csv}, label: y, split: {train: 0.7, test: 0.3}}\nmodel: [{dense: {units: 8, activation: relu}}, {dense: {units: 2, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 8, batch_size: 64, optimizer: {adam: {lr: 0.01}}}\nevaluate: [recall, confusion_matrix]\n",
    )
    .unwrap();
    let minority_recall = |extra: &[&str]| {
        let v = run_json(spec.to_str().unwrap(), &dir.path().join("runs"), extra);
        let cm = &v["metrics"]["test"]["confusion_matrix"];
        let (miss, hit) = (cm[1][0].as_f64().unwrap(), cm[1][1].as_f64().unwrap());
        hit / (hit + miss)
    };
    let plain = minority_recall(&[]);
    let balanced = minority_recall(&["--set", "train.class_weight=balanced"]);
    println!("minority recall: {plain:.3} unweighted, {balanced:.3} balanced");
    assert!(
        balanced > plain + 0.15 && balanced > 0.8,
        "minority recall: {plain:.3} unweighted, {balanced:.3} balanced"
    );
}

/// `data.weight_column` weighs each row's loss (and is no feature): rows of weight 0 teach
/// nothing, so with every class-1 row at weight 0 the model predicts class 0 for all rows,
/// in one process and on two workers; a negative weight is refused at its row.
#[test]
fn a_weight_column_weighs_rows_on_one_process_and_on_workers() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Lcg(11);
    let mut csv = String::from("x1,x2,w,y\n");
    for _ in 0..600 {
        let (x1, x2) = (r.next() * 4.0 - 2.0, r.next() * 4.0 - 2.0);
        let y = u8::from(x1 > 0.0);
        csv.push_str(&format!(
            "{x1:.4},{x2:.4},{},{y}\n",
            if y == 1 { 0 } else { 1 }
        ));
    }
    std::fs::write(dir.path().join("d.csv"), &csv).unwrap();
    let spec = dir.path().join("s.yaml");
    std::fs::write(
        &spec,
        "name: w\nseed: 3\ndata: {source: {csv: d.csv}, label: y, weight_column: w}\nmodel: [{dense: {units: 8, activation: relu}}, {dense: {units: 2, activation: softmax}}]\ntrain: {loss: cross_entropy, epochs: 10, batch_size: 32, optimizer: {adam: {lr: 0.01}}}\nevaluate: [confusion_matrix]\n",
    )
    .unwrap();
    for extra in [&[][..], &["--set", "parallelism.data.workers=2"][..]] {
        let v = run_json(spec.to_str().unwrap(), &dir.path().join("runs"), extra);
        let cm = &v["metrics"]["test"]["confusion_matrix"];
        assert_eq!(cm[0][1], 0, "{extra:?}: {cm}");
        assert_eq!(cm[1][1], 0, "{extra:?}: class 1 never predicted: {cm}");
        let plan: Value = serde_json::from_slice(
            &std::fs::read(Path::new(v["run_dir"].as_str().unwrap()).join("plan.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            plan["features"],
            serde_json::json!(["x1", "x2"]),
            "w is no feature"
        );
    }
    std::fs::write(
        dir.path().join("d.csv"),
        csv.replacen(",1,0\n", ",-1,0\n", 1),
    )
    .unwrap();
    let o = weft(&["check", spec.to_str().unwrap(), "--rows"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("data.weight_column: d.csv: weight column `w` has -1"),
        "{}",
        stderr(&o)
    );
}
