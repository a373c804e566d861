//! The fitted pipeline survives a JSON round trip and replays on new files.

use std::path::Path;

use weft_data::{load_table, prepare, read_table, Pipeline, TaskKind};
use weft_dsl::{ColumnsOpt, DataSpec, FeatureSelect, MinMaxScale, Preprocess, Source, SplitSpec};

const TRAIN: &str = "\
age,city,smoker,outcome
34,paris,0,sick
51,lyon,1,well
29,paris,0,well
62,nice,1,sick
45,lyon,0,well
38,paris,1,sick
";

fn fitted(dir: &Path) -> Pipeline {
    std::fs::write(dir.join("train.csv"), TRAIN).unwrap_or_else(|e| panic!("{e}"));
    let spec = DataSpec {
        shuffle: None,
        shuffle_buffer: None,
        image: None,
        na_values: weft_dsl::default_na_values(),
        weight_column: None,
        source: Source::Csv("train.csv".into()),
        features: FeatureSelect::default(),
        label: Some("outcome".into()),
        preprocess: vec![
            Preprocess::OneHot(weft_dsl::OneHot {
                handle_unknown: weft_dsl::HandleUnknown::Ignore,
                min_frequency: None,
                column: "city".into(),
            }),
            Preprocess::StandardScale(ColumnsOpt::default()),
            Preprocess::MinMaxScale(MinMaxScale {
                columns: Some(vec!["city=paris".into()]),
                min: -1.0,
                max: 1.0,
            }),
        ],
        split: SplitSpec::default(),
    };
    let table = load_table(&spec.source, dir).unwrap_or_else(|e| panic!("{e}"));
    prepare(&spec, 5, &table, TaskKind::Classification)
        .unwrap_or_else(|e| panic!("{e}"))
        .pipeline
}

#[test]
fn pipeline_json_round_trip_transforms_the_same() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pipeline = fitted(dir.path());
    let json = pipeline.to_json().unwrap_or_else(|e| panic!("{e}"));
    let loaded = Pipeline::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, pipeline);

    // New data: no label column, columns in another order, an unseen city.
    std::fs::write(
        dir.path().join("new.csv"),
        "smoker,city,age\n1,lyon,40\n0,rome,70\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let table = read_table(&dir.path().join("new.csv")).unwrap_or_else(|e| panic!("{e}"));
    let x = pipeline.transform(&table).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        x,
        loaded.transform(&table).unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(x.dim(), (2, loaded.num_features()));
    assert_eq!(loaded.labels(&table).map(|l| l.is_none()).ok(), Some(true));
    let names = loaded.feature_names();
    assert!(names.iter().any(|n| n.starts_with("city=")), "{names:?}");
    let paris = names
        .iter()
        .position(|n| n == "city=paris")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(
        x[[0, paris]],
        -1.0,
        "not paris maps to the min of min_max_scale"
    );
}

#[test]
fn labels_of_a_labelled_file_are_class_indices() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pipeline = fitted(dir.path());
    let table = read_table(&dir.path().join("train.csv")).unwrap_or_else(|e| panic!("{e}"));
    let y = pipeline.labels(&table).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        y.map(|y| y.to_vec()),
        Some(vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    );
    assert_eq!(
        pipeline.classes(),
        Some(&["sick".to_string(), "well".into()][..])
    );
}

#[test]
fn a_predict_file_missing_a_feature_is_an_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pipeline = fitted(dir.path());
    std::fs::write(dir.path().join("new.csv"), "age,smoker\n40,1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("new.csv");
    let table = read_table(&path).unwrap_or_else(|e| panic!("{e}"));
    let e = pipeline
        .transform(&table)
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        format!(
            "column `city` not found in {}; valid: age, smoker",
            path.display()
        )
    );
}
