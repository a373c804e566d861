//! Embedding inputs (`{embedding: {column, dim}}` in a graph model): a categorical column of
//! hundreds of values whose categories decide the label trains to high accuracy with a
//! dictionary or hashed ids, predicts (an unseen category is id 0, not an error), and shows
//! in the plan.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod support;

use std::path::Path;

use support::{run_json, stderr, stdout, test_accuracy as accuracy, weft};

/// 300 users whose label is mostly their own (a hash of the name), and a noisy number.
fn write_data(dir: &Path) {
    let mut csv = String::from("user,x,y\n");
    for i in 0..9000u64 {
        let user = (i * 7919) % 300;
        let own = ((user * 2_654_435_761) >> 7) % 2;
        let flip = (i * 31 % 17) == 0;
        let y = if flip { 1 - own } else { own };
        let x = ((i * 37) % 100) as f64 / 100.0;
        // A few missing users: id 0.
        let name = if i % 97 == 0 {
            String::new()
        } else {
            format!("u{user}")
        };
        csv.push_str(&format!("{name},{x},{y}\n"));
    }
    std::fs::write(dir.join("users.csv"), csv).unwrap();
}

fn write_spec(dir: &Path, embedding: &str) -> String {
    let spec = format!(
        "name: users
seed: 3
data:
  source: {{csv: users.csv}}
  label: y
  split: {{train: 0.8, test: 0.2}}
model:
  inputs:
    x: features
    u: {{embedding: {embedding}}}
  nodes:
    h: {{concat: [x, u]}}
    d: {{dense: {{units: 16, activation: relu}}, input: h}}
    out: {{dense: {{units: 2, activation: softmax}}, input: d}}
  output: out
train: {{loss: cross_entropy, optimizer: {{adam: {{lr: 0.02}}}}, batch_size: 64, epochs: 15}}
evaluate: [accuracy]
"
    );
    let path = dir.join("users.yaml");
    std::fs::write(&path, spec).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_dictionary_embedding_learns_each_category_and_predicts_unseen_ones() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let spec = write_spec(dir.path(), "{column: user, dim: 4}");
    let plan = weft(&["plan", &spec]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(text.contains("Embedding: name=u"), "{text}");
    assert!(text.contains("shape=[301,4]"), "300 users and id 0: {text}");
    assert!(text.contains("EmbeddingGrad"), "{text}");
    let v = run_json(&spec, &dir.path().join("runs"), &[]);
    // 1 in 17 labels is flipped: about 0.94 is the best there is.
    assert!(accuracy(&v) > 0.85, "{v}");
    let run_dir = v["run_dir"].as_str().unwrap();
    std::fs::write(
        dir.path().join("new.csv"),
        "user,x\nu5,0.5\nnobody,0.1\n,0.3\n",
    )
    .unwrap();
    let o = weft(&[
        "predict",
        "--model",
        run_dir,
        "--input",
        dir.path().join("new.csv").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 4, "{}", stdout(&o));
}

#[test]
fn hashed_ids_need_no_dictionary_and_learn_as_well() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let spec = write_spec(dir.path(), "{column: user, dim: 4, buckets: 4096}");
    // The table's size is known without reading the rows.
    let plan = weft(&["plan", &spec]);
    assert!(
        stdout(&plan).contains("shape=[4097,4]"),
        "{}",
        stdout(&plan)
    );
    let v = run_json(&spec, &dir.path().join("runs"), &[]);
    assert!(accuracy(&v) > 0.85, "{v}");
}

#[test]
fn an_embedding_of_an_unknown_column_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let spec = write_spec(dir.path(), "{column: usr, dim: 4}");
    let o = weft(&["check", &spec]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("users.yaml:") && e.contains("usr"), "{e}");
}

#[test]
fn drop_missing_on_an_embedded_column_drops_its_rows() {
    // The ids are made after a stage that names the column, so it still sees the blanks.
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    let spec = write_spec(dir.path(), "{column: user, dim: 4}").replace(".yaml", "");
    let text = std::fs::read_to_string(format!("{spec}.yaml"))
        .unwrap()
        .replace(
            "  label: y\n",
            "  label: y\n  preprocess: [{drop_missing: {columns: [user]}}]\n",
        );
    std::fs::write(format!("{spec}.yaml"), text).unwrap();
    let o = weft(&["check", "--rows", &format!("{spec}.yaml")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&weft(&["plan", &format!("{spec}.yaml")]));
    assert!(
        plan.contains("stages=[drop_missing(user), embedding_ids(user: dictionary)]"),
        "{plan}"
    );
    let v = run_json(&format!("{spec}.yaml"), &dir.path().join("runs"), &[]);
    assert!(accuracy(&v) > 0.85, "{v}");
}
