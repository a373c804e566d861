//! Streamed data sets (`data.shuffle: buffer`): a source too large for memory is read piece
//! by piece, every pass holding a bounded number of rows.
//!
//! [`prepare_stream`] learns what [`crate::prepare`] learns from a table in memory, by passes
//! over the files: a scan (the kind of each text column, the rows of pieces whose metadata
//! does not say), then one pass per stage that learns from data (two for a median), the
//! first also checking every row (missing values, strings, labels, weights) and counting the
//! classes. Rows are split by a hash of their position (or by position, `split.shuffle:
//! false`), so no pass holds them. Training and evaluation read the pieces again through
//! [`feed`].

mod feed;
mod held;
mod pieces;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_common::TaskKind;
use weft_dsl::{DataSpec, Preprocess, Source};

use crate::error::DataError;
use crate::fit::StageFit;
use crate::frame::{Frame, Values};
use crate::label::{class_keys, order_classes, read_label, targets, ClassOrder};
use crate::pipeline::Pipeline;
use crate::prepare::{
    check_covered, encoded_columns, feature_columns, feature_stages, read_weights,
};
use crate::stage::Stage;
use crate::table::Table;

pub use feed::{Batch, EpochBatches, Order};
#[cfg(feature = "remote")]
pub use held::prepare_held;
pub use held::spool_ipc_stream;
pub use pieces::{Piece, PieceKind};

/// Rows read from a piece at a time.
pub const CHUNK_ROWS: usize = 16_384;

/// The random stream of hash splits.
const SPLIT_STREAM: u64 = 3;

/// A split of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Part {
    Train,
    Test,
    Validation,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Test, Part::Validation];

    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Test => "test",
            Part::Validation => "validation",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which split a row belongs to, from its position alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SplitRule {
    /// A uniform number drawn from the row's position under `seed` picks the split: the
    /// splits hold about their fractions of the rows.
    Hash {
        seed: u64,
        train: f64,
        test: f64,
        validation: f64,
        /// A key column whose value is hashed instead of the position (`split.key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Rows in file order: the first `train`, then `test`, then `validation` rows.
    Position {
        train: u64,
        test: u64,
        validation: u64,
    },
}

impl SplitRule {
    /// The split of row `row` (of the whole data set), whose split key is `key` when the
    /// rule has one.
    pub fn part(&self, row: u64, key: Option<&str>) -> Option<Part> {
        match *self {
            SplitRule::Hash {
                seed,
                train,
                test,
                validation,
                ..
            } => {
                let u = match key {
                    Some(k) => crate::split::key_fraction(seed, k),
                    None => f64::from(weft_common::rng::uniform_at(seed, SPLIT_STREAM, row)),
                };
                if u < train {
                    Some(Part::Train)
                } else if u < train + test {
                    Some(Part::Test)
                } else if u < train + test + validation {
                    Some(Part::Validation)
                } else {
                    None
                }
            }
            SplitRule::Position {
                train,
                test,
                validation,
            } => {
                if row < train {
                    Some(Part::Train)
                } else if row < train + test {
                    Some(Part::Test)
                } else if row < train + test + validation {
                    Some(Part::Validation)
                } else {
                    None
                }
            }
        }
    }
}

/// A data set streamed from its files: what preparing it learnt, and how to read it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSet {
    /// The fitted preprocessing (saved with the model as a table's is).
    pub pipeline: Pipeline,
    pub pieces: Vec<Piece>,
    pub split: SplitRule,
    pub weight_column: Option<String>,
    /// Rows of each piece in each split (train, test, validation), after the pipeline.
    pub counts: Vec<[u64; 3]>,
    /// Train rows of each class (classification).
    pub class_counts: Option<Vec<u64>>,
    /// Rows read from a piece at a time.
    pub chunk_rows: usize,
    /// The source's name in messages.
    pub name: String,
    /// Keeps an object store's spooled files while the set is read.
    #[serde(skip)]
    #[allow(dead_code)] // held for what dropping it does
    keep: Keep,
}

/// Something kept alive with a set (the folder of spooled files, removed when dropped).
#[derive(Clone, Default)]
struct Keep(Option<Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "spooled files"
        } else {
            "-"
        })
    }
}

impl StreamSet {
    /// Rows of a split in every piece.
    pub fn rows(&self, part: Part) -> u64 {
        self.counts.iter().map(|c| c[part.index()]).sum()
    }

    /// The pieces rank `rank` of `world` reads for `part`: pieces are dealt largest first to
    /// the rank with the fewest rows so far, so shards are balanced by row count.
    pub fn shard(&self, part: Part, rank: usize, world: usize) -> Vec<usize> {
        self.shards(part, world)
            .swap_remove(rank.min(world.max(1) - 1))
            .0
    }

    /// True when the workers hold the rows (each trains on its own pieces).
    pub fn is_held(&self) -> bool {
        self.pieces.iter().any(|p| p.holder.is_some())
    }

    /// Every rank's pieces and rows of `part`. Pieces a worker holds are that worker's.
    pub fn shards(&self, part: Part, world: usize) -> Vec<(Vec<usize>, u64)> {
        let world = world.max(1);
        if self.is_held() {
            let mut shards = vec![(Vec::new(), 0u64); world];
            for (i, p) in self.pieces.iter().enumerate() {
                let rows = self.counts[i][part.index()];
                let s = &mut shards[p.holder.unwrap_or(0).min(world - 1)];
                if rows > 0 {
                    s.0.push(i);
                    s.1 += rows;
                }
            }
            return shards;
        }
        let mut order: Vec<usize> = (0..self.pieces.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.counts[i][part.index()]), i));
        let mut shards = vec![(Vec::new(), 0u64); world];
        for i in order {
            let rows = self.counts[i][part.index()];
            if rows == 0 {
                continue;
            }
            let (k, _) = shards
                .iter()
                .enumerate()
                .min_by_key(|(k, s)| (s.1, *k))
                .unwrap_or((0, &shards[0]));
            shards[k].0.push(i);
            shards[k].1 += rows;
        }
        for s in &mut shards {
            s.0.sort_unstable();
        }
        shards
    }
}

impl StreamSet {
    /// What each of `world` workers reads of the train split: `worker 0 read 8 of 15 pieces
    /// (1,050 rows, 2.1 MiB)`.
    pub fn describe_shards(&self, world: usize) -> Vec<String> {
        self.shards(Part::Train, world)
            .iter()
            .enumerate()
            .map(|(rank, (pieces, rows))| {
                let bytes: u64 = pieces.iter().map(|&i| self.pieces[i].bytes).sum();
                if self.is_held() {
                    return format!(
                        "worker {rank} trained on the {rows} train rows it holds ({})",
                        weft_common::units::human_bytes(bytes as f64)
                    );
                }
                format!(
                    "worker {rank} read {} of {} pieces of {} ({rows} train rows, {})",
                    pieces.len(),
                    self.pieces.len(),
                    self.name,
                    weft_common::units::human_bytes(bytes as f64)
                )
            })
            .collect()
    }
}

/// What every pass needs to read a chunk.
struct Reader {
    inputs: Vec<String>,
    na: Vec<String>,
    text: Vec<String>,
    /// Every column read: the inputs, the label and the weight column.
    columns: Vec<String>,
    split: SplitRule,
}

impl Reader {
    /// A reader of `inputs` (`text` of them read as text), the label, the weight column and
    /// the split's key column.
    fn new(
        (inputs, na, text): (Vec<String>, Vec<String>, Vec<String>),
        label: &str,
        weight: Option<&String>,
        split: SplitRule,
    ) -> Reader {
        let mut columns = inputs.clone();
        columns.push(label.to_string());
        columns.extend(weight.cloned());
        if let SplitRule::Hash { key: Some(k), .. } = &split {
            columns.push(k.clone());
        }
        Reader {
            inputs,
            na,
            text,
            columns,
            split,
        }
    }

    /// How `set`'s chunks are read.
    fn of(set: &StreamSet) -> Reader {
        let p = &set.pipeline;
        Reader::new(
            (p.inputs.clone(), p.na_values.clone(), p.text_inputs.clone()),
            &p.label,
            set.weight_column.as_ref(),
            set.split.clone(),
        )
    }

    fn frame(&self, t: &Table) -> Result<Frame, DataError> {
        Frame::read(t, &self.inputs, &self.na, &self.text)
    }

    /// Positions in `t` of the rows of each split.
    fn parts(&self, t: &Table) -> Result<[Vec<usize>; 3], DataError> {
        let keys = match &self.split {
            SplitRule::Hash { key: Some(k), .. } => Some(crate::prepare::key_values(t, k)?),
            _ => None,
        };
        let mut out: [Vec<usize>; 3] = Default::default();
        for i in 0..t.num_rows() {
            let key = keys.as_ref().map(|k| k[i].as_str());
            if let Some(p) = self.split.part((t.first_row + i) as u64, key) {
                out[p.index()].push(i);
            }
        }
        Ok(out)
    }
}

/// Calls `f` with every chunk of every piece, in file order.
fn each_chunk(
    pieces: &[Piece],
    columns: &[String],
    chunk_rows: usize,
    mut f: impl FnMut(usize, &Table) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for (i, piece) in pieces.iter().enumerate() {
        for t in pieces::read(piece, columns, chunk_rows)? {
            f(i, &t?)?;
        }
    }
    Ok(())
}

/// Learns a streamed data set's pipeline and split by passes over its files (see the module).
pub fn prepare_stream(
    spec: &DataSpec,
    seed: u64,
    base_dir: &Path,
    task: TaskKind,
) -> Result<StreamSet, DataError> {
    prepare_stream_chunked(spec, seed, base_dir, task, CHUNK_ROWS)
}

/// [`prepare_stream`] reading `chunk_rows` rows at a time.
pub fn prepare_stream_chunked(
    spec: &DataSpec,
    seed: u64,
    base_dir: &Path,
    task: TaskKind,
    chunk_rows: usize,
) -> Result<StreamSet, DataError> {
    let chunk_rows = chunk_rows.max(1);
    // Parquet objects are read row group by row group with ranged reads (by whichever
    // process trains on them); CSV and Arrow objects are spooled to a local folder first.
    let ranged = cfg!(feature = "remote") && matches!(spec.source, Source::Parquet(_));
    if let Some(url) = crate::source::remote_path(&spec.source).filter(|_| !ranged) {
        return spooled(spec, seed, url, task, chunk_rows);
    }
    let name = match &spec.source {
        Source::Csv(p) | Source::Parquet(p) | Source::Arrow(p) => p.clone(),
        _ => "data".into(),
    };
    let schema = crate::schema::read_schema(&spec.source, base_dir)?;
    let (pieces, counted) = pieces::list(&spec.source, base_dir)?;
    prepare_pieces(
        spec,
        seed,
        task,
        chunk_rows,
        (name, schema, pieces, counted),
    )
}

/// [`prepare_stream`] of the pieces of a source already listed: its name in messages, its
/// schema, its pieces and whether their rows are counted.
fn prepare_pieces(
    spec: &DataSpec,
    seed: u64,
    task: TaskKind,
    chunk_rows: usize,
    (name, schema, mut pieces, counted): (String, crate::TableSchema, Vec<Piece>, bool),
) -> Result<StreamSet, DataError> {
    let (inputs, label) = feature_columns(spec, &name, &schema.column_names())?;
    let (stages, order) = feature_stages(spec, &label)?;

    // The scan: which inputs hold text (a string column is text when a present value is no
    // number, as in memory), and the rows of pieces not counted yet. A CSV file's types are
    // those inferred over all of it.
    let types = match pieces.first().and_then(|p| p.csv_schema.clone()) {
        Some(csv) => Arc::new(csv),
        None => schema.schema.clone(),
    };
    let candidates: Vec<String> = inputs
        .iter()
        .filter(|c| {
            types.field_with_name(c).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    arrow_schema::DataType::Utf8
                        | arrow_schema::DataType::LargeUtf8
                        | arrow_schema::DataType::Utf8View
                        | arrow_schema::DataType::Dictionary(..)
                )
            })
        })
        .cloned()
        .collect();
    let mut text: Vec<String> = Vec::new();
    if !candidates.is_empty() || !counted {
        let mut rows = vec![0u64; pieces.len()];
        each_chunk(&pieces, &candidates, chunk_rows, |i, t| {
            rows[i] += t.num_rows() as u64;
            for c in &candidates {
                if text.contains(c) {
                    continue;
                }
                let array = t.column(c, "column")?;
                let (values, _) = crate::frame::read_with_missing(
                    &t.name,
                    c,
                    "column",
                    array,
                    &spec.na_values,
                    false,
                )
                .map_err(|e| e.shift_rows(t.first_row))?;
                if matches!(values, Values::Text(_)) {
                    text.push(c.clone());
                }
            }
            Ok(())
        })?;
        for (p, r) in pieces.iter_mut().zip(rows) {
            p.rows = r;
        }
        pieces::number(&mut pieces);
    }
    text.sort_by_key(|c| inputs.iter().position(|i| i == c));
    let total: u64 = pieces.iter().map(|p| p.rows).sum();
    if total == 0 {
        return Err(DataError::NoRows { file: name });
    }

    let s = &spec.split;
    let split = if s.shuffle {
        // The same checks as a split in memory (fractions, splits left empty).
        crate::split::split_sizes(usize::try_from(total).unwrap_or(usize::MAX), s)?;
        SplitRule::Hash {
            seed: s.seed.unwrap_or(seed),
            train: s.train,
            test: s.test,
            validation: s.validation.unwrap_or(0.0),
            key: s.key.clone(),
        }
    } else {
        let (a, b, c) = crate::split::split_sizes(usize::try_from(total).unwrap_or(usize::MAX), s)?;
        SplitRule::Position {
            train: a as u64,
            test: b as u64,
            validation: c as u64,
        }
    };
    let reader = Reader::new(
        (inputs.clone(), spec.na_values.clone(), text),
        &label,
        spec.weight_column.as_ref(),
        split,
    );

    // Stages are fitted in order, each on the train rows as the stages before it left them.
    // `shape` is a frame without rows that goes through the fitted stages (its columns and
    // their kinds are what the next stage fits on).
    let with_rows = pieces.iter().find(|p| p.rows > 0).unwrap_or(&pieces[0]);
    let first = pieces::read(with_rows, &reader.columns, 1)?
        .next()
        .transpose()?
        .ok_or_else(|| DataError::NoRows { file: name.clone() })?;
    let mut shape = reader.frame(&first)?.take(&[]);
    let mut fitted: Vec<Stage> = Vec::with_capacity(stages.len());
    let mut checks = Checks::new(task, &label, spec.weight_column.as_deref());
    let mut counts = vec![[0u64; 3]; pieces.len()];
    let mut counted_after = None;
    for p in &stages {
        let mut fit = StageFit::new(p, &shape)?;
        for pass in 0..fit.passes() {
            let check = !checks.done;
            let count = counted_after.is_none() && pass == 0;
            pass_over(&pieces, &reader, chunk_rows, |i, t, frame, parts| {
                if check {
                    checks.chunk(&stages, t, frame, parts)?;
                }
                let mut train = frame.take(&parts[0]);
                apply(&fitted, &mut train)?;
                fit.update(&train, pass)?;
                if count {
                    counts_after(&fitted, i, frame, parts, &train, &mut counts, false)?;
                }
                Ok(())
            })?;
            fit.end_pass(pass);
            checks.done = true;
            if count {
                counted_after = Some(fitted.len());
            }
        }
        let stage = fit.finish()?;
        stage.apply(&mut shape)?;
        fitted.push(stage);
    }
    // Counts are final when no stage that drops rows came after the pass that counted. A
    // last pass through the whole pipeline also runs when stages refuse values the train
    // split lacked (a category in a test row: an error now, not after training), and when
    // rows are dropped (the train rows of each class are those that remain, as in memory).
    let drops_after = |k: usize| {
        fitted[k..]
            .iter()
            .any(|s| matches!(s, Stage::DropMissing { .. }))
    };
    let need_count = match counted_after {
        None => true,
        Some(k) => drops_after(k),
    };
    let strict = fitted.iter().any(|s| {
        matches!(
            s,
            Stage::StringIndex { .. }
                | Stage::OneHot {
                    handle_unknown: weft_dsl::HandleUnknown::Error,
                    ..
                }
        )
    });
    let drops = drops_after(0);
    let mut kept_classes: Option<HashMap<String, u64>> = None;
    if !checks.done || need_count || strict || drops {
        counts = vec![[0u64; 3]; pieces.len()];
        let check = !checks.done;
        let count_classes = drops && task == TaskKind::Classification;
        let mut kept: HashMap<String, u64> = HashMap::new();
        pass_over(&pieces, &reader, chunk_rows, |i, t, frame, parts| {
            if check {
                checks.chunk(&stages, t, frame, parts)?;
            }
            let mut train = frame.take(&parts[0]);
            apply(&fitted, &mut train)?;
            if count_classes {
                let keys = class_keys(t, &label, &read_label(t, &label)?)?;
                for &r in &train.rows {
                    *kept.entry(keys[r - t.first_row].clone()).or_default() += 1;
                }
            }
            counts_after(&fitted, i, frame, parts, &train, &mut counts, true)
        })?;
        kept_classes = count_classes.then_some(kept);
    }

    let (classes, mut class_counts) = checks.classes(&name, &label, order)?;
    if let (Some(kept), Some(names)) = (&kept_classes, &classes) {
        class_counts = Some(
            names
                .iter()
                .map(|n| kept.get(n).copied().unwrap_or(0))
                .collect(),
        );
    }
    let set = StreamSet {
        pipeline: Pipeline {
            inputs: inputs.clone(),
            na_values: spec.na_values.clone(),
            text_inputs: reader.text.clone(),
            stages: fitted,
            features: shape.names(),
            label,
            classes,
        },
        pieces,
        split: reader.split,
        weight_column: spec.weight_column.clone(),
        counts,
        class_counts,
        chunk_rows,
        name,
        keep: Keep::default(),
    };
    for part in Part::ALL {
        let fraction = match part {
            Part::Train => s.train,
            Part::Test => s.test,
            Part::Validation => s.validation.unwrap_or(0.0),
        };
        if fraction > 0.0 && set.rows(part) == 0 {
            return Err(DataError::EmptySplit {
                split: part.name(),
                fraction,
                rows: usize::try_from(total).unwrap_or(usize::MAX),
            });
        }
    }
    Ok(set)
}

/// [`prepare_stream`] of an object store's files, spooled to a local folder that lives as
/// long as the set.
fn spooled(
    spec: &DataSpec,
    seed: u64,
    url: &str,
    task: TaskKind,
    chunk_rows: usize,
) -> Result<StreamSet, DataError> {
    #[cfg(feature = "remote")]
    {
        let (spooled, source, base) = crate::source::spool_source(url, &spec.source)?;
        let mut local = spec.clone();
        local.source = source;
        let mut set = prepare_stream_chunked(&local, seed, &base, task, chunk_rows)?;
        set.name = url.to_string();
        set.keep = Keep(Some(Arc::new(spooled)));
        Ok(set)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = (spec, seed, task, chunk_rows);
        Err(DataError::Io {
            path: url.to_string(),
            message: "this build of weft reads no object stores (it was built without the `remote` feature)".into(),
        })
    }
}

/// One pass: `f(piece, table, frame of every row, rows of each split)` for every chunk.
fn pass_over(
    pieces: &[Piece],
    reader: &Reader,
    chunk_rows: usize,
    mut f: impl FnMut(usize, &Table, &Frame, &[Vec<usize>; 3]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    each_chunk(pieces, &reader.columns, chunk_rows, |i, t| {
        let frame = reader.frame(t)?;
        let parts = reader.parts(t)?;
        f(i, t, &frame, &parts)
    })
}

fn apply(stages: &[Stage], frame: &mut Frame) -> Result<(), DataError> {
    for s in stages {
        s.apply(frame)?;
    }
    Ok(())
}

/// Adds a chunk's rows of each split after the fitted stages (which may drop rows) to piece
/// `i`'s counts; `train` is the train rows already through them.
/// `check_all`: the test and validation rows go through the stages even when none drops
/// rows (so that a stage refusing a value they hold says so now).
fn counts_after(
    fitted: &[Stage],
    i: usize,
    frame: &Frame,
    parts: &[Vec<usize>; 3],
    train: &Frame,
    counts: &mut [[u64; 3]],
    check_all: bool,
) -> Result<(), DataError> {
    let through_stages = check_all
        || fitted
            .iter()
            .any(|s| matches!(s, Stage::DropMissing { .. }));
    counts[i][0] += train.len() as u64;
    for k in 1..3 {
        counts[i][k] += if through_stages && !parts[k].is_empty() {
            let mut f = frame.take(&parts[k]);
            apply(fitted, &mut f)?;
            f.len() as u64
        } else {
            parts[k].len() as u64
        };
    }
    Ok(())
}

/// What the first pass checks of every row, and the classes it counts.
struct Checks<'a> {
    task: TaskKind,
    label: &'a str,
    weight: Option<&'a str>,
    /// Per split: each class's rows and the first row (of the data set) it is at.
    classes: [HashMap<String, (u64, usize, String)>; 3],
    done: bool,
}

impl<'a> Checks<'a> {
    fn new(task: TaskKind, label: &'a str, weight: Option<&'a str>) -> Checks<'a> {
        Checks {
            task,
            label,
            weight,
            classes: Default::default(),
            done: false,
        }
    }

    fn chunk(
        &mut self,
        stages: &[&Preprocess],
        t: &Table,
        frame: &Frame,
        parts: &[Vec<usize>; 3],
    ) -> Result<(), DataError> {
        check_covered(stages, frame)?;
        frame.check_text(&encoded_columns(stages))?;
        let values = read_label(t, self.label)?;
        match self.task {
            TaskKind::Classification => {
                let keys = class_keys(t, self.label, &values)?;
                for (k, rows) in parts.iter().enumerate() {
                    for &r in rows {
                        let e = self.classes[k].entry(keys[r].clone()).or_insert((
                            0,
                            t.first_row + r,
                            t.name.clone(),
                        ));
                        e.0 += 1;
                    }
                }
            }
            TaskKind::Regression => {
                targets(t, self.label, &values)?;
            }
        }
        if let Some(w) = self.weight {
            read_weights(t, w)?;
        }
        Ok(())
    }

    /// The classes of the train split in `order` (an error for one class, or for a class of
    /// another split the train split lacks) and their train rows.
    #[allow(clippy::type_complexity)]
    fn classes(
        &self,
        name: &str,
        label: &str,
        order: ClassOrder,
    ) -> Result<(Option<Vec<String>>, Option<Vec<u64>>), DataError> {
        if self.task == TaskKind::Regression {
            return Ok((None, None));
        }
        let counts: Vec<(&str, u64)> = self.classes[0]
            .iter()
            .map(|(k, v)| (k.as_str(), v.0))
            .collect();
        let classes = order_classes(counts, order, name, label)?;
        let names: Vec<String> = classes.iter().map(|(k, _)| k.to_string()).collect();
        // The first row (in file order) of another split whose class train lacks.
        let unseen = self.classes[1..]
            .iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| !self.classes[0].contains_key(*k))
            .min_by_key(|(_, v)| v.1);
        if let Some((class, (_, row, file))) = unseen {
            return Err(DataError::UnseenClass {
                file: file.clone(),
                column: label.into(),
                class: class.clone(),
                at: crate::error::At::of(file, *row),
                known: names,
            });
        }
        let counts = classes.iter().map(|(_, n)| *n).collect();
        Ok((Some(names), Some(counts)))
    }
}
