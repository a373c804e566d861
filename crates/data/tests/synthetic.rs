//! Synthetic data: shape, class balance, determinism, and a problem worth learning.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use weft_data::{generate, load_table, prepare, TaskKind};
use weft_dsl::{DataSpec, FeatureSelect, Source, SplitSpec, SyntheticSpec};

fn synth(
    rows: usize,
    features: usize,
    classes: usize,
    informative: Option<usize>,
    seed: u64,
) -> SyntheticSpec {
    SyntheticSpec {
        rows,
        features,
        classes,
        informative,
        seed,
    }
}

#[test]
fn columns_are_x0_to_xn_and_label() {
    let table = load_table(
        &Source::Synthetic(synth(1000, 5, 3, None, 0)),
        Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.name, "synthetic");
    assert_eq!(table.num_rows(), 1000);
    assert_eq!(
        table.column_names(),
        ["x0", "x1", "x2", "x3", "x4", "label"]
    );
    assert_eq!(table.batch.column(0).data_type().to_string(), "Float32");
    let labels = table.batch.column(5).as_primitive::<Int64Type>();
    let mut counts = [0; 3];
    for &c in labels.values() {
        counts[c as usize] += 1;
    }
    assert_eq!(counts, [334, 333, 333]);
    let x0 = table.batch.column(0).as_primitive::<Float32Type>();
    assert!(x0.values().iter().all(|v| v.is_finite()));
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a = generate(&synth(500, 8, 2, Some(4), 1)).unwrap_or_else(|e| panic!("{e}"));
    let b = generate(&synth(500, 8, 2, Some(4), 1)).unwrap_or_else(|e| panic!("{e}"));
    let c = generate(&synth(500, 8, 2, Some(4), 2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
}

#[test]
fn rows_are_shuffled() {
    let (_, labels) = generate(&synth(1000, 4, 2, None, 0)).unwrap_or_else(|e| panic!("{e}"));
    let first_half_ones = labels[..500].iter().filter(|&&l| l == 1).count();
    assert!((200..300).contains(&first_half_ones), "{first_half_ones}");
}

#[test]
fn noise_features_carry_no_class_signal() {
    // With 2 informative features out of 6, the class means of x2…x5 agree.
    let (cols, labels) =
        generate(&synth(20_000, 6, 2, Some(2), 3)).unwrap_or_else(|e| panic!("{e}"));
    let mean_of = |j: usize, class: i64| {
        let v: Vec<f32> = cols[j]
            .iter()
            .zip(&labels)
            .filter(|(_, &l)| l == class)
            .map(|(x, _)| *x)
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    for j in 2..6 {
        assert!((mean_of(j, 0) - mean_of(j, 1)).abs() < 0.05, "x{j}");
    }
}

#[test]
fn prepare_uses_label_by_default() {
    let spec = DataSpec {
        shuffle: None,
        shuffle_buffer: None,
        image: None,
        na_values: weft_dsl::default_na_values(),
        weight_column: None,
        source: Source::Synthetic(synth(100, 3, 2, None, 0)),
        features: FeatureSelect::default(),
        label: None,
        preprocess: vec![],
        split: SplitSpec::default(),
    };
    let table = load_table(&spec.source, Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let p = prepare(&spec, 0, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.train.len(), p.test.len()), (80, 20));
    assert_eq!(
        p.pipeline.classes(),
        Some(&["0".to_string(), "1".into()][..])
    );
    assert_eq!(p.pipeline.num_features(), 3);
}

#[test]
fn impossible_settings_are_explained() {
    let e = generate(&synth(10, 4, 2, Some(5), 0))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        "synthetic data: informative is 5; it must be between 1 and features (4)"
    );
    let e = generate(&synth(10, 4, 5, Some(2), 0))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        "synthetic data: 5 classes need at least 3 informative features (one hypercube vertex per class); got 2"
    );
    let e = generate(&synth(10, 4, 1, None, 0))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        "synthetic data: classes is 1; it must be at least 2"
    );
}
