//! Bad data: the exact messages a user reads.

use std::path::Path;

use weft_data::{load_table, prepare, read_table, TaskKind};
use weft_dsl::{Builtin, DataSpec, FeatureSelect, OneColumn, Preprocess, Source, SplitSpec};

fn spec(source: Source, label: Option<&str>) -> DataSpec {
    DataSpec {
        shuffle: None,
        shuffle_buffer: None,
        image: None,
        na_values: weft_dsl::default_na_values(),
        weight_column: None,
        source,
        features: FeatureSelect::default(),
        label: label.map(String::from),
        preprocess: vec![],
        split: SplitSpec {
            train: 0.5,
            test: 0.5,
            shuffle: false,
            ..SplitSpec::default()
        },
    }
}

/// Writes `text` to `data/x.csv` in a temporary folder and runs load + prepare on it.
fn csv_error(text: &str, label: &str, task: TaskKind) -> String {
    csv_error_with(
        text,
        spec(Source::Csv("data/x.csv".into()), Some(label)),
        task,
    )
}

fn csv_error_with(text: &str, spec: DataSpec, task: TaskKind) -> String {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("data/x.csv"), text).unwrap_or_else(|e| panic!("{e}"));
    match load_table(&spec.source, dir.path()).and_then(|t| prepare(&spec, 1, &t, task)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn iris_error(spec: &DataSpec) -> String {
    let table = load_table(&spec.source, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    match prepare(spec, 1, &table, TaskKind::Classification) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

const IRIS_COLUMNS: &str = "sepal_length, sepal_width, petal_length, petal_width, species";

#[test]
fn missing_label_column_suggests_the_nearest() {
    let s = spec(Source::Builtin(Builtin::Iris), Some("specie"));
    assert_eq!(
        iris_error(&s),
        format!("label column `specie` not found in iris; did you mean `species`? valid: {IRIS_COLUMNS}")
    );
}

#[test]
fn unknown_feature_column_suggests_the_nearest() {
    let mut s = spec(Source::Builtin(Builtin::Iris), None);
    s.features.exclude = vec!["petal_lenght".into()];
    assert_eq!(
        iris_error(&s),
        format!("column `petal_lenght` not found in iris; did you mean `petal_length`? valid: {IRIS_COLUMNS}")
    );
}

#[test]
fn a_csv_without_a_label_needs_data_label() {
    assert_eq!(
        csv_error_with(
            "a,b\n1,2\n3,4\n",
            spec(Source::Csv("data/x.csv".into()), None),
            TaskKind::Classification
        ),
        "data/x.csv has no default label column; set `data.label` to one of: a, b"
    );
}

#[test]
fn a_word_in_a_numeric_column_names_row_and_line() {
    let mut text = String::from("age,y\n");
    for i in 0..20 {
        text.push_str(&format!(
            "{},{}\n",
            if i == 16 {
                "abc".into()
            } else {
                (20 + i).to_string()
            },
            i % 2
        ));
    }
    assert_eq!(
        csv_error(&text, "y", TaskKind::Classification),
        "data/x.csv: column `age` is not numeric: row 17 (line 18) has `abc`"
    );
}

#[test]
fn empty_cells_and_nan_are_missing_values() {
    // Without a stage that covers them, missing values are errors saying what to add.
    let advice = |c: &str| {
        format!("; add `impute: {{strategy: median, columns: [{c}]}}` (or mean, most_frequent, constant) or `drop_missing: {{columns: [{c}]}}` to data.preprocess")
    };
    assert_eq!(
        csv_error("age,y\n1,0\n2,1\n3,0\n,1\n", "y", TaskKind::Classification),
        format!(
            "data/x.csv: column `age` has a missing value at row 4 (line 5){}",
            advice("age")
        )
    );
    assert_eq!(
        csv_error("age,y\n1.5,0\n2,1\nNaN,0\n", "y", TaskKind::Classification),
        format!(
            "data/x.csv: column `age` has a missing value at row 3 (line 4){}",
            advice("age")
        )
    );
    assert_eq!(
        csv_error("age,y\n1.5,0\n2,1\nNA,0\n", "y", TaskKind::Classification),
        format!(
            "data/x.csv: column `age` has a missing value at row 3 (line 4){}",
            advice("age")
        )
    );
    assert_eq!(
        csv_error("name,y\nann,0\n,1\n", "y", TaskKind::Classification),
        "data/x.csv: string column `name` has a missing value at row 2 (line 3); add `impute: {strategy: most_frequent, columns: [name]}` (or constant with value:) or `drop_missing: {columns: [name]}` to data.preprocess, before any stage that encodes it"
    );
    assert_eq!(
        csv_error("age,y\n1,a\n2,b\n3,\n4,a\n", "y", TaskKind::Classification),
        "data/x.csv: label column `y` has a missing value at row 3 (line 4); rows without a label cannot train: remove them from the data"
    );
}

#[test]
fn empty_and_header_only_files() {
    assert_eq!(
        csv_error("", "y", TaskKind::Classification),
        "data/x.csv is empty: no header row"
    );
    assert_eq!(
        csv_error("age,y\n", "y", TaskKind::Classification),
        "data/x.csv has a header but no rows"
    );
}

#[test]
fn missing_files_and_globs_that_match_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let e = load_table(&Source::Csv("data/x.csv".into()), dir.path())
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    // Relative paths name what they resolved to.
    let at = |p: &str| dir.path().join(p).display().to_string();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read data/x.csv (resolved against the spec's folder: {}): No such file or directory",
            at("data/x.csv")
        )
    );
    let e = load_table(&Source::Parquet("data/x.parquet".into()), dir.path())
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read data/x.parquet (resolved against the spec's folder: {}): No such file or directory",
            at("data/x.parquet")
        )
    );
    let e = load_table(&Source::Parquet("data/*.parquet".into()), dir.path())
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        format!(
            "no files match data/*.parquet (resolved against the spec's folder: {})",
            at("data/*.parquet")
        )
    );
    let e = load_table(&Source::Parquet(".".into()), dir.path())
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        format!(
            ". (resolved against the spec's folder: {}) holds no .parquet files",
            at(".")
        )
    );
    let e = read_table(Path::new("nowhere/new.csv"))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        "cannot read nowhere/new.csv: No such file or directory"
    );
    std::fs::write(dir.path().join("notes.txt"), "hi").unwrap_or_else(|e| panic!("{e}"));
    let e = read_table(&dir.path().join("notes.txt"))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert!(e.to_string().ends_with("notes.txt: unsupported file type; expected a .csv, .parquet or Arrow IPC (.arrow, .feather, .ipc) file, or a folder of .parquet files"), "{e}");
}

#[test]
fn a_class_missing_from_the_train_split_is_named() {
    // No shuffle: train is the first half (a, b), test the second (b, c).
    assert_eq!(
        csv_error("x,y\n1,a\n2,b\n3,b\n4,c\n", "y", TaskKind::Classification),
        "data/x.csv: label column `y` has class `c` at row 4 (line 5), which is not in the train split; classes: a, b"
    );
}

#[test]
fn label_type_must_fit_the_task() {
    assert_eq!(
        csv_error("x,y\n1,0.5\n2,1.5\n", "y", TaskKind::Classification),
        "data/x.csv: label column `y` holds floats (Float64) that are not all whole numbers, but the task is classification; use integer or string classes, or a regression loss (mse)"
    );
    assert_eq!(
        csv_error("x,y\n1,a\n2,b\n", "y", TaskKind::Regression),
        "data/x.csv: label column `y` holds strings but the task is regression (loss: mse), which needs numbers"
    );
    assert_eq!(
        csv_error("x,y\n1,a\n2,a\n3,b\n4,b\n", "y", TaskKind::Classification),
        "data/x.csv: label column `y` has a single class `a` in the train split; classification needs at least two"
    );
}

#[test]
fn a_string_feature_needs_an_encoder() {
    assert_eq!(
        csv_error("city,y\nparis,0\nlyon,1\n", "y", TaskKind::Classification),
        "data/x.csv: column `city` holds strings; encode it with a preprocess stage (`string_index: {column: city}` or `one_hot: {column: city}`) or exclude it"
    );
}

#[test]
fn string_index_fails_on_a_category_unseen_in_training() {
    let mut s = spec(Source::Csv("data/x.csv".into()), Some("y"));
    s.preprocess = vec![Preprocess::StringIndex(OneColumn {
        column: "city".into(),
    })];
    assert_eq!(
        csv_error_with("city,y\nparis,0\nlyon,1\nparis,0\nnice,1\n", s, TaskKind::Classification),
        "data/x.csv: column `city` has category `nice` at row 4 (line 5), which `string_index` did not see in the train split; categories: lyon, paris"
    );
}

#[test]
fn stages_name_unknown_columns() {
    let mut s = spec(Source::Builtin(Builtin::Iris), None);
    s.split.shuffle = true;
    s.preprocess = vec![Preprocess::StandardScale(weft_dsl::ColumnsOpt {
        columns: Some(vec!["sepal_lenght".into()]),
    })];
    assert_eq!(
        iris_error(&s),
        "preprocess `standard_scale`: column `sepal_lenght` is not a feature; did you mean `sepal_length`? valid: sepal_length, sepal_width, petal_length, petal_width"
    );
}

/// A label with thousands of classes names the first 20 and the count, not all of them (a
/// 10,000-class unseen-label error used to print 62 KB).
#[test]
fn long_class_lists_are_cut_short() {
    let mut text = String::from("x,y\n");
    for i in 0..3000 {
        text.push_str(&format!("{i},class{i:05}\n"));
    }
    let e = csv_error(&text, "y", TaskKind::Classification);
    assert!(e.contains(", … ("), "{e}");
    assert!(e.len() < 1000, "{} bytes: {e}", e.len());
}

#[test]
fn whole_number_float_labels_are_classes() {
    // Spark ML's labels are doubles (StringIndexer gives 0.0, 1.0, …): those are classes.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("data")).unwrap_or_else(|e| panic!("{e}"));
    let rows: String = (0..20).map(|i| format!("{i},{}.0\n", i % 2)).collect();
    std::fs::write(dir.path().join("data/x.csv"), format!("x,y\n{rows}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = spec(Source::Csv("data/x.csv".into()), Some("y"));
    let table = load_table(&spec.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let p = prepare(&spec, 1, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.pipeline.classes(),
        Some(&["0".to_string(), "1".to_string()][..])
    );
}
