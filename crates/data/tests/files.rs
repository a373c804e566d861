//! CSV and Parquet sources: type inference, one_hot on strings, folders and globs.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use weft_data::{load_table, prepare, read_schema, read_table, TaskKind};
use weft_dsl::{ColumnsOpt, DataSpec, FeatureSelect, OneColumn, Preprocess, Source, SplitSpec};

fn spec(source: Source, label: &str, preprocess: Vec<Preprocess>) -> DataSpec {
    DataSpec {
        shuffle: None,
        shuffle_buffer: None,
        image: None,
        na_values: weft_dsl::default_na_values(),
        weight_column: None,
        source,
        features: FeatureSelect::default(),
        label: Some(label.into()),
        preprocess,
        split: SplitSpec {
            train: 0.5,
            test: 0.5,
            shuffle: false,
            ..SplitSpec::default()
        },
    }
}

const PEOPLE: &str = "\
age,height,city,smoker,outcome
34,1.80,paris,0,sick
51,1.65,lyon,1,well
29,1.72,paris,0,well
62,1.58,nice,1,sick
45,1.90,lyon,0,well
38,1.70,paris,1,sick
";

#[test]
fn csv_types_are_inferred_and_strings_are_one_hot_encoded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("data/people.csv"), PEOPLE).unwrap_or_else(|e| panic!("{e}"));
    let source = Source::Csv("data/people.csv".into());
    let table = load_table(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.name, "data/people.csv");
    let types: Vec<String> = table
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(types, ["Int64", "Float64", "Utf8", "Int64", "Utf8"]);

    let one_hot = Preprocess::OneHot(weft_dsl::OneHot {
        handle_unknown: weft_dsl::HandleUnknown::Ignore,
        min_frequency: None,
        column: "city".into(),
    });
    let spec = spec(
        source,
        "outcome",
        vec![one_hot, Preprocess::StandardScale(ColumnsOpt::default())],
    );
    let p = prepare(&spec, 0, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    // Categories come from the train rows (the first three: paris, lyon, paris).
    assert_eq!(
        p.pipeline.feature_names(),
        ["age", "height", "city=lyon", "city=paris", "smoker"]
    );
    assert_eq!(
        p.pipeline.classes(),
        Some(&["sick".to_string(), "well".into()][..])
    );
    assert_eq!(p.train.y.to_vec(), [0.0, 1.0, 1.0]);
    // one_hot outputs are not scaled; the numeric columns are.
    assert_eq!(p.train.x.column(2).to_vec(), [0.0, 1.0, 0.0]);
    assert_eq!(p.train.x.column(3).to_vec(), [1.0, 0.0, 1.0]);
    assert!(p.train.x.column(0).sum().abs() < 1e-5);
    // `nice` was never seen in training: all zeros.
    assert_eq!(p.test.x.row(0).to_vec()[2..4], [0.0, 0.0]);
}

#[test]
fn string_index_turns_a_string_feature_into_numbers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("p.csv"), PEOPLE).unwrap_or_else(|e| panic!("{e}"));
    let index = Preprocess::StringIndex(OneColumn {
        column: "city".into(),
    });
    let mut spec = spec(Source::Csv("p.csv".into()), "outcome", vec![index]);
    spec.split.train = 1.0;
    spec.split.test = 0.0;
    let table = load_table(&spec.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let p = prepare(&spec, 0, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    // paris ×3 → 0, lyon ×2 → 1, nice ×1 → 2.
    assert_eq!(p.train.x.column(2).to_vec(), [0.0, 1.0, 0.0, 2.0, 1.0, 0.0]);
}

#[test]
fn regression_takes_a_numeric_label() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("p.csv"), PEOPLE).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = spec(Source::Csv("p.csv".into()), "height", vec![]);
    spec.features.exclude = vec!["city".into(), "outcome".into()];
    let table = load_table(&spec.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let p = prepare(&spec, 0, &table, TaskKind::Regression).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.train.y.to_vec(), [1.80, 1.65, 1.72]);
    assert_eq!(p.pipeline.classes(), None);
    assert_eq!(p.pipeline.feature_names(), ["age", "smoker"]);
}

fn batch(offset: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (0..rows as i64).map(|i| i + offset).collect();
    let x: Vec<f64> = ids.iter().map(|&i| i as f64 * 0.5).collect();
    let label: Vec<&str> = ids
        .iter()
        .map(|&i| if i % 2 == 0 { "even" } else { "odd" })
        .collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
        ("label", Arc::new(StringArray::from(label)) as ArrayRef),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), None).unwrap_or_else(|e| panic!("{e}"));
    writer.write(batch).unwrap_or_else(|e| panic!("{e}"));
    writer.close().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn parquet_file_round_trips() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let original = batch(0, 10);
    write_parquet(&dir.path().join("a.parquet"), &original);
    let table = load_table(&Source::Parquet("a.parquet".into()), dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.name, "a.parquet");
    assert_eq!(table.batch.columns(), original.columns());
    let read = read_table(&dir.path().join("a.parquet")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.batch.num_rows(), 10);
}

#[test]
fn parquet_folder_and_glob_read_every_part_in_name_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&parts.join("part-1.parquet"), &batch(4, 6));
    write_parquet(&parts.join("part-0.parquet"), &batch(0, 4));
    std::fs::write(parts.join("_SUCCESS"), "").unwrap_or_else(|e| panic!("{e}"));
    for source in ["parts", "parts/*.parquet", "parts/part-?.parquet"] {
        let table = load_table(&Source::Parquet(source.into()), dir.path())
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        let ids = table
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map(|a| a.values().to_vec());
        assert_eq!(ids, Some((0..10).collect()), "{source}");
        let spec = spec(Source::Parquet(source.into()), "label", vec![]);
        let p =
            prepare(&spec, 0, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.train.len(), p.test.len()), (5, 5));
        assert_eq!(
            p.pipeline.classes(),
            Some(&["even".to_string(), "odd".into()][..])
        );
    }
}

#[test]
fn parquet_parts_with_different_schemas_are_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&dir.path().join("a.parquet"), &batch(0, 3));
    let other =
        RecordBatch::try_from_iter([("id", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)])
            .unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&dir.path().join("b.parquet"), &other);
    let e = load_table(&Source::Parquet("*.parquet".into()), dir.path())
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(
        e.to_string(),
        "b.parquet: its schema differs from a.parquet: columns [id] instead of [id, x, label]"
    );
}

/// The schema comes from headers and metadata: a CSV's types from its first rows (a bad cell
/// far down is only found when the rows are read for training), a Parquet's columns and
/// row counts from its footers.
#[test]
fn schema_is_read_without_the_rows() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut csv = String::from("a,b,y\n");
    for i in 0..5000 {
        csv.push_str(&format!("{i},{}.5,{}\n", i * 2, i % 3));
    }
    csv.push_str("not-a-number,1.0,0\n");
    std::fs::write(dir.path().join("big.csv"), &csv).unwrap_or_else(|e| panic!("{e}"));
    let source = Source::Csv("big.csv".into());
    let schema = read_schema(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema.column_names(), ["a", "b", "y"]);
    assert_eq!(schema.rows, None);
    let d = spec(source.clone(), "y", vec![]);
    let (features, label) = schema
        .features(&d)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap();
    assert_eq!(
        (features, label.as_str()),
        (vec!["a".to_string(), "b".into()], "y")
    );
    let e = load_table(&source, dir.path())
        .and_then(|t| prepare(&d, 1, &t, TaskKind::Classification))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not-a-number"), "{e}");

    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&parts.join("part-0.parquet"), &batch(0, 4));
    write_parquet(&parts.join("part-1.parquet"), &batch(4, 6));
    let schema =
        read_schema(&Source::Parquet("parts".into()), dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema.column_names(), ["id", "x", "label"]);
    assert_eq!(schema.rows, Some(10));
}

/// A missing label or feature is the same located error from the schema as from the rows;
/// `one_hot` makes the input depend on the values, so the schema cannot give it.
#[test]
fn schema_features_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("people.csv"), PEOPLE).unwrap_or_else(|e| panic!("{e}"));
    let source = Source::Csv("people.csv".into());
    let schema = read_schema(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let e = schema
        .features(&spec(source.clone(), "outcom", vec![]))
        .err()
        .unwrap();
    let table = load_table(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let from_rows = prepare(
        &spec(source.clone(), "outcom", vec![]),
        1,
        &table,
        TaskKind::Classification,
    )
    .err()
    .unwrap();
    assert_eq!(e.to_string(), from_rows.to_string());
    let city = weft_dsl::OneHot {
        column: "city".into(),
        handle_unknown: Default::default(),
        min_frequency: None,
    };
    let one_hot = spec(source, "outcome", vec![Preprocess::OneHot(city)]);
    assert!(schema
        .features(&one_hot)
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none());
}

#[test]
fn builtin_and_synthetic_schemas_say_their_classes() {
    let iris = read_schema(&Source::Builtin(weft_dsl::Builtin::Iris), Path::new(""))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut want: Vec<&str> = weft_common::builtin::IRIS_FEATURES.to_vec();
    want.push(weft_common::builtin::IRIS_LABEL);
    assert_eq!(iris.column_names(), want);
    assert_eq!((iris.rows, iris.classes), (Some(150), Some(3)));
}

/// A header that names a column twice is an error naming both (it was accepted, and the
/// spec's `age` silently meant the first).
#[test]
fn duplicate_csv_headers_are_an_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("d.csv"),
        "age,height,age,y\n1,2,3,a\n4,5,6,b\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let source = Source::Csv("d.csv".into());
    let want = "d.csv: the header names column `age` twice (columns 1 and 3); rename one";
    let e = load_table(&source, dir.path()).err().unwrap();
    assert_eq!(e.to_string(), want);
    let e = read_schema(&source, dir.path()).err().unwrap();
    assert_eq!(e.to_string(), want);
}

/// `stream_table` reads a folder of Parquet parts and a CSV a piece at a time; pieces count
/// their rows over the whole data set, so errors name the right row.
#[test]
fn streamed_pieces_count_rows_over_every_part() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("parts")).unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&dir.path().join("parts/a.parquet"), &batch(0, 5));
    write_parquet(&dir.path().join("parts/b.parquet"), &batch(5, 4));
    let pieces: Vec<(usize, usize)> = weft_data::stream_table(&dir.path().join("parts"), 3)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|t| {
            t.map(|t| (t.first_row, t.num_rows()))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert_eq!(pieces, [(0, 3), (3, 2), (5, 3), (8, 1)]);

    // A CSV whose 5th row is not a number: the error names row 5 though it is in piece 2.
    let csv = dir.path().join("x.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4\n5,6\n7,8\nnine,10\n").unwrap_or_else(|e| panic!("{e}"));
    let table_pieces: Vec<weft_data::Table> = weft_data::stream_table(&csv, 3)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|t| t.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(table_pieces.len(), 2);
    std::fs::write(dir.path().join("clean.csv"), "a,b\n1,2\n3,4\n5,6\n7,8\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = spec(Source::Csv("clean.csv".into()), "b", vec![]);
    let clean = load_table(&spec.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let p = prepare(&spec, 1, &clean, TaskKind::Regression).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.pipeline.transform(&table_pieces[0]).is_ok());
    let e = p
        .pipeline
        .transform(&table_pieces[1])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("row 5 (line 6)"), "{e}");
}

/// Arrow IPC: the file format and the stream format (told apart by their magic bytes), a
/// folder of both, read whole, by schema, and in pieces.
#[test]
fn arrow_ipc_files_and_streams_are_sources() {
    use arrow_ipc::writer::{FileWriter, StreamWriter};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir(dir.path().join("ipc")).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (batch(0, 6), batch(6, 4));
    let f = std::fs::File::create(dir.path().join("ipc/a.arrow")).unwrap_or_else(|e| panic!("{e}"));
    let mut w = FileWriter::try_new(f, &a.schema()).unwrap_or_else(|e| panic!("{e}"));
    w.write(&a).unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    let f = std::fs::File::create(dir.path().join("ipc/b.ipc")).unwrap_or_else(|e| panic!("{e}"));
    let mut w = StreamWriter::try_new(f, &b.schema()).unwrap_or_else(|e| panic!("{e}"));
    w.write(&b).unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));

    let source = Source::Arrow("ipc".into());
    let table = load_table(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.num_rows(), 10);
    let schema = weft_data::read_schema(&source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema.column_names(), ["id", "x", "label"]);
    let p = prepare(
        &spec(source, "label", vec![]),
        1,
        &table,
        TaskKind::Classification,
    );
    assert!(p.is_ok(), "{:?}", p.err().map(|e| e.to_string()));
    let pieces: Vec<(usize, usize)> = weft_data::stream_table(&dir.path().join("ipc/b.ipc"), 100)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|t| {
            t.map(|t| (t.first_row, t.num_rows()))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert_eq!(pieces, [(0, 4)]);
    let e = load_table(&Source::Arrow("nothing".into()), dir.path())
        .err()
        .map(|e| e.to_string());
    assert!(e.unwrap_or_default().contains("No such file"));
}
