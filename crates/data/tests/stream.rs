//! Streamed data sets (`data.shuffle: buffer`): what streaming passes learn equals what a
//! table in memory gives, every row is trained once per epoch in a shuffled order, shards
//! split the pieces, and the split is reproducible without holding the rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use weft_data::stream::Batch;
use weft_data::{load_table, prepare, prepare_stream_chunked, Part, StreamSet, TaskKind};
use weft_dsl::Spec;

fn spec(text: &str) -> Spec {
    weft_dsl::load("t.yaml", text, &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn all(set: &Arc<StreamSet>, part: Part) -> Vec<Batch> {
    set.read(set.eval_order(&[part], 7))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Rows as (features, label), in order.
fn pairs(x: &ndarray::Array2<f32>, y: &ndarray::Array1<f32>) -> Vec<(Vec<f32>, f32)> {
    x.rows()
        .into_iter()
        .zip(y)
        .map(|(r, y)| (r.to_vec(), *y))
        .collect()
}

/// The rows of batches as (features, label) in order.
fn rows(batches: &[Batch]) -> Vec<(Vec<f32>, f32)> {
    batches.iter().flat_map(|b| pairs(&b.x, &b.y)).collect()
}

#[test]
fn streaming_the_raw_csv_learns_what_memory_learns_and_gives_the_same_rows() {
    same_as_memory("shuffle: false");
}

#[test]
fn a_split_by_key_is_the_same_in_memory_and_streamed() {
    same_as_memory("key: customer");
}

/// The shipped raw table (blank cells, NA, strings; medians, most frequent, one-hot) split
/// with `split` options: streamed in 24 chunks of 50 rows, it gives the pipeline and the
/// rows a table in memory gives.
fn same_as_memory(split: &str) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs");
    let text =
        std::fs::read_to_string(base.join("raw-tabular.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let text = text.replace(
        "split: {train: 0.7, test: 0.3}",
        &format!("split: {{train: 0.7, test: 0.3, {split}}}\n  shuffle_buffer: 100"),
    );
    let s = spec(&text);
    let table = load_table(&s.data.source, &base).unwrap_or_else(|e| panic!("{e}"));
    let memory = prepare(&s.data, s.seed, &table, TaskKind::Classification)
        .unwrap_or_else(|e| panic!("{e}"));
    // Chunks of 50 rows: every fit merges 24 parts (the median takes two passes).
    let set = prepare_stream_chunked(&s.data, s.seed, &base, TaskKind::Classification, 50)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.pipeline, memory.pipeline);
    assert_eq!(set.rows(Part::Train), memory.train.len() as u64);
    assert_eq!(set.rows(Part::Test), memory.test.len() as u64);
    let set = Arc::new(set);
    for (part, d) in [(Part::Train, &memory.train), (Part::Test, &memory.test)] {
        let got = rows(&all(&set, part));
        assert_eq!(got, pairs(&d.x, &d.y), "{part:?}");
    }
}

fn write_parquet(path: &Path, rows: usize, per_group: usize) {
    let x: Vec<f32> = (0..rows).map(|i| i as f32).collect();
    let z: Vec<f32> = (0..rows).map(|i| ((i * 7919) % 101) as f32 * 0.5).collect();
    let c: Vec<&str> = (0..rows).map(|i| ["a", "b", "c"][i % 3]).collect();
    let y: Vec<i64> = (0..rows).map(|i| (i % 2) as i64).collect();
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(Float32Array::from(x)) as _),
        ("z", Arc::new(Float32Array::from(z)) as _),
        ("c", Arc::new(StringArray::from(c)) as _),
        ("y", Arc::new(Int64Array::from(y)) as _),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(per_group))
        .build();
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}"));
    let mut w =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap_or_else(|e| panic!("{e}"));
    w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    w.close().unwrap_or_else(|e| panic!("{e}"));
}

const PARQUET_SPEC: &str = "name: t
data:
  source: {parquet: parts}
  label: y
  preprocess: [{one_hot: {column: c}}, {standard_scale: {columns: [z]}}]
  split: {train: 0.75, test: 0.25}
  shuffle_buffer: 64
model: [{dense: {units: 2, activation: softmax}}]
";

fn parquet_set(dir: &Path) -> StreamSet {
    std::fs::create_dir_all(dir.join("parts")).unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&dir.join("parts/a.parquet"), 1000, 100);
    write_parquet(&dir.join("parts/b.parquet"), 500, 100);
    let s = spec(PARQUET_SPEC);
    prepare_stream_chunked(&s.data, 3, dir, TaskKind::Classification, 64)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_training_epoch_reads_every_train_row_once_in_an_order_that_changes_each_epoch() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let set = Arc::new(parquet_set(dir.path()));
    assert_eq!(set.pieces.len(), 15, "one piece per row group");
    let (train, test) = (set.rows(Part::Train), set.rows(Part::Test));
    assert_eq!(train + test, 1500);
    // A hash split holds about its fraction.
    assert!((1050..1200).contains(&train), "{train}");
    let in_order = rows(&all(&set, Part::Train));
    // Feature 0 is `x` scaled by nothing: the row's number (of its file).
    let key = |r: &(Vec<f32>, f32)| format!("{:?}", r.0);
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for r in &in_order {
        *want.entry(key(r)).or_default() += 1;
    }
    let mut orders = Vec::new();
    for epoch in 1..=2 {
        let batches: Vec<Batch> = set
            .read(set.train_order(3, epoch, (0, 1), 32, 64))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(batches.iter().rev().skip(1).all(|b| b.x.nrows() == 32));
        let got = rows(&batches);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for r in &got {
            *seen.entry(key(r)).or_default() += 1;
        }
        assert_eq!(seen, want, "every train row exactly once");
        assert_ne!(got, in_order, "shuffled");
        orders.push(got);
    }
    assert_ne!(orders[0], orders[1], "a new order each epoch");
    // The same epoch reads the same order again (resuming relies on it).
    let again = rows(
        &set.read(set.train_order(3, 1, (0, 1), 32, 64))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(again, orders[0]);
}

#[test]
fn shards_split_the_pieces_by_rows_and_each_rank_reads_only_its_own() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let set = Arc::new(parquet_set(dir.path()));
    let shards = set.shards(Part::Train, 2);
    let (a, b) = (&shards[0], &shards[1]);
    assert!(a.0.iter().all(|i| !b.0.contains(i)));
    assert_eq!(a.0.len() + b.0.len(), 15);
    assert_eq!(a.1 + b.1, set.rows(Part::Train));
    assert!(a.1.abs_diff(b.1) <= 80, "balanced: {} vs {}", a.1, b.1);
    let mut total = 0;
    for (rank, shard) in shards.iter().enumerate() {
        let batches: Vec<Batch> = set
            .read(set.train_order(3, 1, (rank, 2), 16, 8))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let n: usize = batches.iter().map(|b| b.x.nrows()).sum();
        assert_eq!(n as u64, shard.1);
        total += n;
    }
    assert_eq!(total as u64, set.rows(Part::Train));
}

#[test]
fn the_hash_split_is_the_same_whatever_the_pieces() {
    // The same rows in one row group or in many: the same rows train.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let many = Arc::new(parquet_set(dir.path()));
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(other.path().join("parts")).unwrap_or_else(|e| panic!("{e}"));
    write_parquet(&other.path().join("parts/a.parquet"), 1000, 1000);
    write_parquet(&other.path().join("parts/b.parquet"), 500, 500);
    let s = spec(PARQUET_SPEC);
    let one = Arc::new(
        prepare_stream_chunked(&s.data, 3, other.path(), TaskKind::Classification, 1000)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(one.pieces.len(), 2);
    assert_eq!(rows(&all(&one, Part::Test)), rows(&all(&many, Part::Test)));
}

#[test]
fn dropped_rows_are_counted_as_memory_drops_them() {
    // drop_missing after an impute of another column: the counts come from a last pass.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut csv = String::from("h,colour,y\n");
    for i in 0..200 {
        let h = if i % 7 == 0 {
            String::new()
        } else {
            format!("{}", i % 13)
        };
        let colour = if i % 5 == 0 {
            ""
        } else {
            ["red", "blue"][i % 2]
        };
        csv.push_str(&format!("{h},{colour},{}\n", i % 2));
    }
    std::fs::write(dir.path().join("x.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    let s = spec(
        "name: t
data:
  source: {csv: x.csv}
  label: y
  preprocess:
    - impute: {strategy: median, columns: [h]}
    - drop_missing: {columns: [colour]}
    - one_hot: {column: colour}
  split: {train: 0.6, test: 0.4, shuffle: false}
  shuffle_buffer: 10
model: [{dense: {units: 2, activation: softmax}}]
",
    );
    let table = load_table(&s.data.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let memory =
        prepare(&s.data, 1, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    let set = prepare_stream_chunked(&s.data, 1, dir.path(), TaskKind::Classification, 32)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.pipeline, memory.pipeline);
    assert_eq!(set.rows(Part::Train), memory.train.len() as u64);
    assert_eq!(set.rows(Part::Test), memory.test.len() as u64);
    assert!(memory.train.len() < 120, "rows were dropped");
    // The train rows of each class are those that remain (class_weight: balanced uses them).
    let mut kept = vec![0u64; 2];
    for &y in &memory.train.y {
        kept[y as usize] += 1;
    }
    assert_eq!(set.class_counts, Some(kept));
    let set = Arc::new(set);
    assert_eq!(rows(&all(&set, Part::Train)).len(), memory.train.len());
}

#[test]
fn a_category_only_test_rows_have_is_an_error_before_training() {
    // one_hot refuses unseen categories by default: found while preparing, as in memory.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut csv = String::from("c,y\n");
    for i in 0..100 {
        let c = if i >= 90 {
            "violet"
        } else {
            ["red", "blue"][i % 2]
        };
        csv.push_str(&format!("{c},{}\n", i % 2));
    }
    std::fs::write(dir.path().join("x.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    let s = spec(
        "name: t
data:
  source: {csv: x.csv}
  label: y
  preprocess: [{one_hot: {column: c}}]
  split: {train: 0.8, test: 0.2, shuffle: false}
  shuffle_buffer: 10
model: [{dense: {units: 2, activation: softmax}}]
",
    );
    let e = prepare_stream_chunked(&s.data, 1, dir.path(), TaskKind::Classification, 32)
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert!(e.to_string().contains("violet"), "{e}");
}

#[test]
fn csv_columns_have_the_types_memory_gives_them() {
    // true/false is Boolean (0/1) when arrow types the whole file; a numeric column with NA
    // is text that parses as numbers; both as in memory.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut csv = String::from("flag,n,y\n");
    for i in 0..120 {
        let flag = if i % 3 == 0 { "true" } else { "FALSE" };
        let n = if i % 11 == 0 {
            "NA".to_string()
        } else {
            format!("{}", i % 7)
        };
        let y = if i % 4 == 0 { "true" } else { "false" };
        csv.push_str(&format!("{flag},{n},{y}\n"));
    }
    std::fs::write(dir.path().join("x.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    let s = spec(
        "name: t
data:
  source: {csv: x.csv}
  label: y
  preprocess: [{impute: {strategy: mean, columns: [n]}}]
  split: {train: 0.7, test: 0.3, shuffle: false}
  shuffle_buffer: 10
model: [{dense: {units: 2, activation: softmax}}]
",
    );
    let table = load_table(&s.data.source, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let memory =
        prepare(&s.data, 1, &table, TaskKind::Classification).unwrap_or_else(|e| panic!("{e}"));
    let set = prepare_stream_chunked(&s.data, 1, dir.path(), TaskKind::Classification, 16)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.pipeline, memory.pipeline);
    let set = Arc::new(set);
    let want = pairs(&memory.train.x, &memory.train.y);
    assert_eq!(rows(&all(&set, Part::Train)), want);
}
