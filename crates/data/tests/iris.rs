//! builtin:iris end to end: loading, splitting, scaling fitted on the train split only.

use std::path::Path;

use ndarray::Axis;
use weft_data::{load_table, prepare, Prepared, TaskKind};
use weft_dsl::{Builtin, ColumnsOpt, DataSpec, FeatureSelect, Preprocess, Source, SplitSpec};

fn iris_spec(preprocess: Vec<Preprocess>, split: SplitSpec) -> DataSpec {
    DataSpec {
        shuffle: None,
        shuffle_buffer: None,
        image: None,
        na_values: weft_dsl::default_na_values(),
        weight_column: None,
        source: Source::Builtin(Builtin::Iris),
        features: FeatureSelect::default(),
        label: None,
        preprocess,
        split,
    }
}

fn split(train: f64, test: f64) -> SplitSpec {
    SplitSpec {
        train,
        test,
        ..SplitSpec::default()
    }
}

fn run(spec: &DataSpec, seed: u64) -> Prepared {
    let table = load_table(&spec.source, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    prepare(spec, seed, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn iris_has_150_rows_5_columns_and_3_balanced_classes() {
    let table = load_table(&Source::Builtin(Builtin::Iris), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.name, "iris");
    assert_eq!(table.num_rows(), 150);
    assert_eq!(
        table.column_names(),
        [
            "sepal_length",
            "sepal_width",
            "petal_length",
            "petal_width",
            "species"
        ]
    );
    let p = run(&iris_spec(vec![], split(1.0, 0.0)), 1);
    assert_eq!(
        p.pipeline.classes(),
        Some(
            &[
                "setosa".to_string(),
                "versicolor".into(),
                "virginica".into()
            ][..]
        )
    );
    let mut counts = [0; 3];
    for &c in &p.train.y {
        counts[c as usize] += 1;
    }
    assert_eq!(counts, [50, 50, 50]);
    // The first row of Fisher's data.
    let x = weft_data::read_table(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/iris.csv"))
        .unwrap_or_else(|e| panic!("{e}"));
    let first = p.pipeline.transform(&x).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.row(0).to_vec(), [5.1, 3.5, 1.4, 0.2]);
}

#[test]
fn split_70_30_gives_105_and_45_rows() {
    let p = run(&iris_spec(vec![], split(0.7, 0.3)), 42);
    assert_eq!((p.train.len(), p.test.len()), (105, 45));
    assert_eq!((p.train.num_features(), p.test.num_features()), (4, 4));
    assert!(p.validation.is_none());
    assert_eq!(
        p.pipeline.feature_names(),
        ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    );
}

#[test]
fn validation_split_is_carved_out() {
    let mut s = split(0.6, 0.2);
    s.validation = Some(0.2);
    let p = run(&iris_spec(vec![], s), 42);
    let v = p.validation.as_ref().map(|d| d.len());
    assert_eq!((p.train.len(), p.test.len(), v), (90, 30, Some(30)));
}

#[test]
fn standard_scale_is_fitted_on_the_train_split_only() {
    let p = run(
        &iris_spec(
            vec![Preprocess::StandardScale(ColumnsOpt::default())],
            split(0.7, 0.3),
        ),
        42,
    );
    let mean = p
        .train
        .x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| panic!("no rows"));
    let std = p.train.x.std_axis(Axis(0), 0.0);
    for j in 0..4 {
        assert!(
            mean[j].abs() < 1e-5,
            "train mean of column {j} is {}",
            mean[j]
        );
        assert!(
            (std[j] - 1.0).abs() < 1e-4,
            "train std of column {j} is {}",
            std[j]
        );
    }
    let test_mean = p
        .test
        .x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| panic!("no rows"));
    assert!(
        test_mean.iter().all(|m| m.abs() > 1e-4),
        "test means {test_mean}"
    );
}

#[test]
fn min_max_scale_maps_the_train_range_to_min_max() {
    let mm = weft_dsl::MinMaxScale {
        columns: Some(vec!["petal_length".into()]),
        min: -1.0,
        max: 1.0,
    };
    let p = run(
        &iris_spec(vec![Preprocess::MinMaxScale(mm)], split(0.7, 0.3)),
        42,
    );
    let col = p.train.x.column(2);
    let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(
        (lo + 1.0).abs() < 1e-6 && (hi - 1.0).abs() < 1e-6,
        "{lo} {hi}"
    );
    // Other columns are untouched.
    assert!(p.train.x.column(0).iter().all(|&v| v > 4.0));
}

#[test]
fn same_seed_same_split_other_seed_other_split() {
    let spec = iris_spec(vec![], split(0.7, 0.3));
    let (a, b, c) = (run(&spec, 7), run(&spec, 7), run(&spec, 8));
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    assert_ne!(a.train.x, c.train.x);
    // split.seed overrides the spec's seed.
    let mut pinned = spec.clone();
    pinned.split.seed = Some(3);
    assert_eq!(run(&pinned, 7).train, run(&pinned, 8).train);
}

#[test]
fn string_index_on_the_label_orders_classes_by_frequency() {
    let idx = Preprocess::StringIndex(weft_dsl::OneColumn {
        column: "species".into(),
    });
    let p = run(&iris_spec(vec![idx], split(0.7, 0.3)), 42);
    let classes = p.pipeline.classes().unwrap_or_default().to_vec();
    let mut counts = vec![0; 3];
    for &c in &p.train.y {
        counts[c as usize] += 1;
    }
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]),
        "{counts:?} for {classes:?}"
    );
    assert_eq!(
        p.pipeline.stages.len(),
        0,
        "the label's string_index is not a feature stage"
    );
}

#[test]
fn include_and_exclude_choose_features() {
    let mut spec = iris_spec(vec![], split(0.7, 0.3));
    spec.features.include = Some(vec![
        "petal_width".into(),
        "sepal_length".into(),
        "petal_length".into(),
    ]);
    spec.features.exclude = vec!["petal_length".into()];
    let p = run(&spec, 1);
    assert_eq!(p.pipeline.feature_names(), ["petal_width", "sepal_length"]);
    assert_eq!(p.train.num_features(), 2);
}
