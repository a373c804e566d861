//! Reading a streamed set again, for training (pieces in a shuffled order, rows drawn from a
//! shuffle buffer) and for evaluation (in file order), on a thread that prepares the next
//! batches while the model trains on the last ones. Memory holds the chunk being read, the
//! shuffle buffer and a few batches.

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use ndarray::{Array1, Array2};
use weft_common::rng::Rng;

use super::{pieces, Part, Reader, StreamSet};
use crate::error::{At, DataError};
use crate::frame::Values;
use crate::label::{class_keys, read_label, targets};
use crate::prepare::read_weights;
use crate::table::Table;

/// Batches prepared ahead of the one being trained on.
const AHEAD: usize = 3;

/// Rows of one split, ready for the model.
#[derive(Debug)]
pub struct Batch {
    pub part: Part,
    pub x: Array2<f32>,
    pub y: Array1<f32>,
    /// Row weights (`data.weight_column`).
    pub w: Option<Array1<f32>>,
}

/// What to read and how.
#[derive(Debug, Clone)]
pub struct Order {
    /// The splits to read (their rows only).
    pub parts: Vec<Part>,
    /// Pieces to read, in this order.
    pub pieces: Vec<usize>,
    /// Rows per batch.
    pub batch: usize,
    /// The shuffle buffer's rows and the random stream (`seed`, `stream`) that draws from it;
    /// `None` keeps file order.
    pub shuffle: Option<(usize, u64, u64)>,
}

impl StreamSet {
    /// The training order of epoch `epoch` for rank `rank` of `world`: its shard's pieces in
    /// an order shuffled by `seed` and the epoch, rows drawn from a buffer of `buffer` rows.
    pub fn train_order(
        &self,
        seed: u64,
        epoch: usize,
        (rank, world): (usize, usize),
        batch: usize,
        buffer: usize,
    ) -> Order {
        let mut pieces = self.shard(Part::Train, rank, world);
        let stream = 20_000 + (epoch as u64) * (world as u64).max(1) + rank as u64;
        Rng::new(seed, stream).shuffle(&mut pieces);
        Order {
            parts: vec![Part::Train],
            pieces,
            batch: batch.max(1),
            shuffle: Some((buffer.max(1), seed, stream + (1 << 40))),
        }
    }

    /// Every row of `parts` in file order, in batches of `batch` rows (only the pieces that
    /// have some are read).
    pub fn eval_order(&self, parts: &[Part], batch: usize) -> Order {
        Order {
            parts: parts.to_vec(),
            pieces: (0..self.pieces.len())
                .filter(|&i| parts.iter().any(|p| self.counts[i][*p as usize] > 0))
                .collect(),
            batch: batch.max(1),
            shuffle: None,
        }
    }

    /// Reads `order` on a thread; the batches come out of the returned iterator (each split's
    /// last batch may be short). Dropping it stops the thread.
    pub fn read(self: &Arc<Self>, order: Order) -> EpochBatches {
        let (tx, rx) = sync_channel::<Msg>(AHEAD);
        let set = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("weft-data-feed".into())
            .spawn(move || {
                let end = match produce(&set, &order, &tx) {
                    Ok(()) => Msg::End,
                    Err(e) => Msg::Failed(e),
                };
                let _ = tx.send(end);
            });
        match thread {
            Ok(_) => EpochBatches { rx, ended: false },
            Err(e) => {
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Msg::Failed(DataError::Internal(format!(
                    "starting the data reader: {e}"
                ))));
                EpochBatches { rx, ended: false }
            }
        }
    }
}

/// What the reader thread sends: batches, then how it ended.
enum Msg {
    Batch(Batch),
    End,
    Failed(DataError),
}

/// The batches of one [`Order`], prepared on a thread. A thread that stops without saying
/// it ended (a panic) is an error, never a silently shorter read.
pub struct EpochBatches {
    rx: Receiver<Msg>,
    ended: bool,
}

impl Iterator for EpochBatches {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.rx.recv() {
            Ok(Msg::Batch(b)) => Some(Ok(b)),
            Ok(Msg::End) => {
                self.ended = true;
                None
            }
            Ok(Msg::Failed(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            Err(_) => {
                self.ended = true;
                Some(Err(DataError::Internal(
                    "the data reader stopped before the end of the data".into(),
                )))
            }
        }
    }
}

/// Why the thread stops early: the reader went away (not an error).
struct Gone;

/// Collects rows of one split into batches and sends them.
struct Builder {
    part: Part,
    batch: usize,
    f: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    w: Option<Vec<f32>>,
    sent: u64,
}

impl Builder {
    fn new(part: Part, batch: usize, f: usize, weighted: bool) -> Builder {
        Builder {
            part,
            batch,
            f,
            x: Vec::with_capacity(batch * f),
            y: Vec::with_capacity(batch),
            w: weighted.then(|| Vec::with_capacity(batch)),
            sent: 0,
        }
    }

    fn push(
        &mut self,
        x: &[f32],
        y: f32,
        w: Option<f32>,
        tx: &SyncSender<Msg>,
    ) -> Result<(), Gone> {
        self.x.extend_from_slice(x);
        self.y.push(y);
        if let (Some(ws), Some(w)) = (self.w.as_mut(), w) {
            ws.push(w);
        }
        if self.y.len() == self.batch {
            self.flush(tx)?;
        }
        Ok(())
    }

    fn flush(&mut self, tx: &SyncSender<Msg>) -> Result<(), Gone> {
        let n = self.y.len();
        if n == 0 {
            return Ok(());
        }
        let x = std::mem::replace(&mut self.x, Vec::with_capacity(self.batch * self.f));
        let y = std::mem::replace(&mut self.y, Vec::with_capacity(self.batch));
        let w = self
            .w
            .as_mut()
            .map(|w| std::mem::replace(w, Vec::with_capacity(self.batch)));
        let batch = match Array2::from_shape_vec((n, self.f), x) {
            Ok(x) => Msg::Batch(Batch {
                part: self.part,
                x,
                y: Array1::from(y),
                w: w.map(Array1::from),
            }),
            Err(e) => Msg::Failed(DataError::Internal(format!("a batch's shape: {e}"))),
        };
        self.sent += n as u64;
        tx.send(batch).map_err(|_| Gone)
    }
}

/// Rows waiting to be drawn at random (a buffer as large as the data set is a full shuffle).
struct Buffer {
    cap: usize,
    f: usize,
    x: Vec<f32>,
    y: Vec<f32>,
    w: Vec<f32>,
    rng: Rng,
}

impl Buffer {
    /// Adds a row; once full, a row drawn at random leaves for `out` to make room.
    fn push(
        &mut self,
        x: &[f32],
        y: f32,
        w: Option<f32>,
        out: &mut Builder,
        tx: &SyncSender<Msg>,
    ) -> Result<(), Gone> {
        if self.y.len() < self.cap {
            self.x.extend_from_slice(x);
            self.y.push(y);
            self.w.extend(w);
            return Ok(());
        }
        let j = self.rng.below(self.cap);
        self.send(j, out, tx)?;
        let f = self.f;
        self.x[j * f..(j + 1) * f].copy_from_slice(x);
        self.y[j] = y;
        if let Some(w) = w {
            self.w[j] = w;
        }
        Ok(())
    }

    /// Sends what is left, in a random order.
    fn drain(&mut self, out: &mut Builder, tx: &SyncSender<Msg>) -> Result<(), Gone> {
        let mut idx: Vec<usize> = (0..self.y.len()).collect();
        self.rng.shuffle(&mut idx);
        for j in idx {
            self.send(j, out, tx)?;
        }
        Ok(())
    }

    /// Row `j` of the buffer into `out`.
    fn send(&self, j: usize, out: &mut Builder, tx: &SyncSender<Msg>) -> Result<(), Gone> {
        let f = self.f;
        let x = &self.x[j * f..(j + 1) * f];
        out.push(x, self.y[j], self.w.get(j).copied(), tx)
    }
}

/// The thread's work: read the pieces, prepare each chunk's rows, batch them.
fn produce(set: &StreamSet, order: &Order, tx: &SyncSender<Msg>) -> Result<(), DataError> {
    let reader = Reader::of(set);
    let f = set.pipeline.num_features();
    let weighted = set.weight_column.is_some();
    let classes: Option<HashMap<&str, usize>> = set
        .pipeline
        .classes
        .as_ref()
        .map(|c| c.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect());
    let mut out: Vec<Builder> = order
        .parts
        .iter()
        .map(|&p| Builder::new(p, order.batch, f, weighted))
        .collect();
    // A buffer per split read: rows of two splits never mix.
    let mut buffers: Vec<Option<Buffer>> = (0..order.parts.len() as u64)
        .map(|k| {
            order.shuffle.map(|(cap, seed, stream)| Buffer {
                cap,
                f,
                x: Vec::new(),
                y: Vec::new(),
                w: Vec::new(),
                rng: Rng::new(seed, stream + k),
            })
        })
        .collect();
    for &i in &order.pieces {
        let piece = &set.pieces[i];
        for t in pieces::read(piece, &reader.columns, set.chunk_rows)? {
            let t = t?;
            let frame = reader.frame(&t)?;
            let parts = reader.parts(&t)?;
            let y_all = labels(set, &t, classes.as_ref(), &parts, &order.parts)?;
            let w_all = match &set.weight_column {
                Some(c) => Some(read_weights(&t, c)?),
                None => None,
            };
            for ((b, buffer), &part) in out.iter_mut().zip(&mut buffers).zip(&order.parts) {
                let rows = &parts[part as usize];
                if rows.is_empty() {
                    continue;
                }
                let mut sub = frame.take(rows);
                set.pipeline.apply(&mut sub)?;
                let x = sub.to_matrix()?;
                let x = x.as_slice().ok_or_else(|| {
                    DataError::Internal("a prepared chunk is not row-major".into())
                })?;
                for (k, &row) in sub.rows.iter().enumerate() {
                    let at = row - t.first_row;
                    let xr = &x[k * f..(k + 1) * f];
                    let w = w_all.as_ref().map(|w| w[at]);
                    let sent = match buffer.as_mut() {
                        Some(buf) => buf.push(xr, y_all[at], w, b, tx),
                        None => b.push(xr, y_all[at], w, tx),
                    };
                    if sent.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    for (b, buffer) in out.iter_mut().zip(&mut buffers) {
        if let Some(buf) = buffer.as_mut() {
            if buf.drain(b, tx).is_err() {
                return Ok(());
            }
        }
        if b.flush(tx).is_err() {
            return Ok(());
        }
    }
    // Prepared counts say how many rows each split has: the files must still agree.
    for b in &out {
        let expected: u64 = order
            .pieces
            .iter()
            .map(|&i| set.counts[i][b.part as usize])
            .sum();
        if b.sent != expected {
            return Err(DataError::Io {
                path: set.name.clone(),
                message: format!(
                    "the data changed while weft was reading it: the {} split had {expected} rows when it was prepared and {} now",
                    b.part.name(),
                    b.sent
                ),
            });
        }
    }
    Ok(())
}

/// The label of every row of `t` (0 for rows of splits not read): class indices, or
/// regression targets.
fn labels(
    set: &StreamSet,
    t: &Table,
    classes: Option<&HashMap<&str, usize>>,
    parts: &[Vec<usize>; 3],
    wanted: &[Part],
) -> Result<Vec<f32>, DataError> {
    let label = &set.pipeline.label;
    let values = read_label(t, label)?;
    let Some(index) = classes else {
        return targets(t, label, &values);
    };
    if let Values::Int(v) = &values {
        // Integer classes without a string per row (the common case of large files).
        let by_int: HashMap<i64, usize> = index
            .iter()
            .filter_map(|(k, &c)| Some((k.parse::<i64>().ok()?, c)))
            .collect();
        if by_int.len() == index.len() {
            let mut y = vec![0f32; v.len()];
            for &part in wanted {
                for &r in &parts[part as usize] {
                    match by_int.get(&v[r]) {
                        Some(&c) => y[r] = c as f32,
                        None => return Err(unseen(set, t, &v[r].to_string(), r)),
                    }
                }
            }
            return Ok(y);
        }
    }
    let keys = class_keys(t, label, &values)?;
    let mut y = vec![0f32; keys.len()];
    for &part in wanted {
        for &r in &parts[part as usize] {
            match index.get(keys[r].as_str()) {
                Some(&c) => y[r] = c as f32,
                None => return Err(unseen(set, t, &keys[r], r)),
            }
        }
    }
    Ok(y)
}

/// A class of row `r` of `t` that the train split did not have.
fn unseen(set: &StreamSet, t: &Table, class: &str, r: usize) -> DataError {
    DataError::UnseenClass {
        file: t.name.clone(),
        column: set.pipeline.label.clone(),
        class: class.to_string(),
        at: At::of(&t.name, t.first_row + r),
        known: set.pipeline.classes.clone().unwrap_or_default(),
    }
}
