//! Raw tables: missing values (`na_values`, `impute`, `drop_missing`) and categories the
//! train split did not have (`one_hot.handle_unknown`), written as a user writes them.

use std::path::Path;

use weft_data::{load_table, prepare, read_table, Prepared, Stage, TaskKind};
use weft_dsl::DataSpec;

/// The `data` section of a spec whose data part is `data` (YAML), on `x.csv` in `dir`.
fn data_spec(data: &str) -> DataSpec {
    let split = if data.contains("split:") {
        ""
    } else {
        "  split: {train: 0.5, test: 0.5, shuffle: false}\n"
    };
    let text = format!(
        "name: t\ndata:\n  source: {{csv: x.csv}}\n  label: y\n{split}{data}model: [{{dense: {{units: 2, activation: softmax}}}}]\n"
    );
    let (spec, _) = weft_dsl::load("t.yaml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    spec.data
}

fn run(dir: &Path, csv: &str, data: &str) -> Result<Prepared, String> {
    std::fs::write(dir.join("x.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    let spec = data_spec(data);
    load_table(&spec.source, dir)
        .and_then(|t| prepare(&spec, 1, &t, TaskKind::Classification))
        .map_err(|e| e.to_string())
}

fn ok(dir: &Path, csv: &str, data: &str) -> Prepared {
    run(dir, csv, data).unwrap_or_else(|e| panic!("{e}"))
}

/// Train rows are the first half (no shuffle): what `impute` learns comes from them only.
const RAW: &str = "h,colour,y
1.0,red,0
,blue,1
3.0,,0
5.0,red,1
100.0,blue,0
,,1
7.0,blue,0
NA,red,1
";

#[test]
fn impute_learns_from_the_train_split_and_predict_applies_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = ok(
        dir.path(),
        RAW,
        "  preprocess:\n    - impute: {strategy: median, columns: [h]}\n    - impute: {strategy: most_frequent, columns: [colour]}\n    - one_hot: {column: colour}\n",
    );
    // Train rows 1-4: h = 1, 3, 5 → median 3; colours red, blue, red → red.
    assert_eq!(
        p.pipeline.stages[0],
        Stage::Impute {
            columns: vec!["h".into()],
            fill: vec![weft_data::stage::Fill::Number(3.0)]
        }
    );
    assert_eq!(
        p.pipeline.features,
        ["h", "colour=blue", "colour=red"],
        "categories from the train split"
    );
    // Row 2 (h missing) got 3; row 3 (colour missing) is red.
    assert_eq!(p.train.x.row(1).to_vec(), [3.0, 1.0, 0.0]);
    assert_eq!(p.train.x.row(2).to_vec(), [3.0, 0.0, 1.0]);
    // Saved and replayed: a new table with blanks is filled the same way.
    let json = p.pipeline.to_json().unwrap_or_default();
    let back = weft_data::Pipeline::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("new.csv"), "h,colour\n,blue\n2.0,\n").unwrap_or_default();
    let t = read_table(&dir.path().join("new.csv")).unwrap_or_else(|e| panic!("{e}"));
    let x = back.transform(&t).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(x.row(0).to_vec(), [3.0, 1.0, 0.0]);
    assert_eq!(x.row(1).to_vec(), [2.0, 0.0, 1.0]);
}

#[test]
fn every_strategy_fills_as_documented() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let fill = |strategy: &str| -> Vec<f32> {
        let p = ok(
            dir.path(),
            RAW,
            &format!("  features: {{include: [h]}}\n  preprocess: [{{impute: {{{strategy}}}}}]\n"),
        );
        p.train.x.column(0).to_vec()
    };
    assert_eq!(fill("strategy: mean"), [1.0, 3.0, 3.0, 5.0]);
    assert_eq!(fill("strategy: median"), [1.0, 3.0, 3.0, 5.0]);
    assert_eq!(
        fill("strategy: most_frequent"),
        [1.0, 1.0, 3.0, 5.0],
        "ties: the smallest"
    );
    assert_eq!(fill("strategy: constant, value: -1"), [1.0, -1.0, 3.0, 5.0]);
    // Strings take most_frequent or constant; mean of strings is refused.
    let p = ok(
        dir.path(),
        RAW,
        "  features: {include: [colour]}\n  preprocess: [{impute: {strategy: constant, value: unknown, columns: [colour]}}, {one_hot: {column: colour}}]\n",
    );
    assert!(p.pipeline.features.contains(&"colour=unknown".to_string()));
    let e = run(
        dir.path(),
        RAW,
        "  features: {include: [colour]}\n  preprocess: [{impute: {strategy: mean, columns: [colour]}}, {one_hot: {column: colour}}]\n",
    )
    .err()
    .unwrap_or_default();
    assert!(
        e.contains("impute") && e.contains("`colour`") && e.contains("holds strings"),
        "{e}"
    );
}

#[test]
fn drop_missing_drops_rows_in_every_split_and_predict_refuses_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = ok(
        dir.path(),
        RAW,
        "  preprocess: [{drop_missing: {columns: [h, colour]}}, {one_hot: {column: colour, handle_unknown: ignore}}]\n",
    );
    // Rows 2, 3, 6 and 8 have a blank or NA.
    assert_eq!(p.split.train, [0, 3]);
    assert_eq!(p.split.test, [4, 6]);
    assert_eq!(p.train.len() + p.test.len(), 4);
    std::fs::write(dir.path().join("new.csv"), "h,colour\n1.0,red\n,blue\n").unwrap_or_default();
    let t = read_table(&dir.path().join("new.csv")).unwrap_or_else(|e| panic!("{e}"));
    let e = p
        .pipeline
        .transform(&t)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("drop_missing") && e.contains("row 2"), "{e}");
}

#[test]
fn na_values_are_configurable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let csv = "h,y\n1,0\n-999,1\n3,0\n4,1\n";
    let p = ok(
        dir.path(),
        csv,
        "  na_values: [\"-999\"]\n  preprocess: [{impute: {strategy: constant, value: 0}}]\n",
    );
    assert_eq!(p.train.x.column(0).to_vec(), [1.0, 0.0]);
}

#[test]
fn unknown_categories_follow_handle_unknown() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Test rows hold `green`, which the train rows do not.
    let csv = "c,y\nred,0\nblue,1\nred,0\nblue,1\ngreen,0\nred,1\n";
    let split = "  split: {train: 0.67, test: 0.33, shuffle: false}\n";
    let e = run(
        dir.path(),
        csv,
        &format!("{split}  preprocess: [{{one_hot: {{column: c}}}}]\n"),
    )
    .err()
    .unwrap_or_default();
    assert!(
        e.contains("category `green`") && e.contains("row 5"),
        "the default is error: {e}"
    );
    let p = ok(
        dir.path(),
        csv,
        &format!("{split}  preprocess: [{{one_hot: {{column: c, handle_unknown: ignore}}}}]\n"),
    );
    assert_eq!(p.test.x.row(0).to_vec(), [0.0, 0.0], "ignore: all zeros");
    let p = ok(
        dir.path(),
        csv,
        &format!("{split}  preprocess: [{{one_hot: {{column: c, handle_unknown: infrequent, min_frequency: 2}}}}]\n"),
    );
    assert_eq!(p.pipeline.features, ["c=blue", "c=red", "c=infrequent"]);
    assert_eq!(
        p.test.x.row(0).to_vec(),
        [0.0, 0.0, 1.0],
        "green is infrequent"
    );
}

/// New data is read with the kinds the pipeline was fitted on: a string column that is
/// blank in every new row is filled like any other, and one whose new values look like
/// numbers (`02139`) stays text.
#[test]
fn new_rows_keep_the_column_kinds_of_training() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let csv = "zip,plan,y\n02139,basic,0\n10001,pro,1\nx75,basic,0\n02139,pro,1\n";
    let p = ok(
        dir.path(),
        csv,
        "  preprocess: [{impute: {strategy: most_frequent, columns: [plan]}}, {one_hot: {column: plan}}, {one_hot: {column: zip, handle_unknown: ignore}}]\n",
    );
    assert_eq!(p.pipeline.text_inputs, ["zip", "plan"]);
    std::fs::write(dir.path().join("new.csv"), "zip,plan\n02139,\n").unwrap_or_default();
    let t = read_table(&dir.path().join("new.csv")).unwrap_or_else(|e| panic!("{e}"));
    let x = p.pipeline.transform(&t).unwrap_or_else(|e| panic!("{e}"));
    let at = |name: &str| {
        p.pipeline
            .features
            .iter()
            .position(|f| f == name)
            .unwrap_or(usize::MAX)
    };
    assert_eq!(
        x[[0, at("plan=basic")]],
        1.0,
        "the blank plan is the most frequent one"
    );
    assert_eq!(
        x[[0, at("zip=02139")]],
        1.0,
        "02139 is still the text 02139"
    );
}

/// A column blank in every row (Arrow's Null type) is missing everywhere, not zeros.
#[test]
fn an_entirely_blank_column_is_missing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let csv = "a,b,y\n1,,0\n2,,1\n3,,0\n4,,1\n";
    let e = run(dir.path(), csv, "").err().unwrap_or_default();
    assert!(e.contains("`b` has a missing value at row 1"), "{e}");
    let p = ok(
        dir.path(),
        csv,
        "  preprocess: [{impute: {strategy: constant, value: 7, columns: [b]}}]\n",
    );
    assert_eq!(p.train.x.column(1).to_vec(), [7.0, 7.0]);
}
