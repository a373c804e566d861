//! Fitting a preprocess stage by passes over the train rows, a part at a time: the same code
//! fits a whole table in memory (one part) and a data set streamed from files (many parts),
//! so both give the same stage. Moments merge by Chan's formula; the median is exact for
//! f32 values in two passes (a histogram of the top 16 bits of each value's order key, then
//! of the low 16 bits inside the buckets that hold the middle ranks); categories are counted.

use std::collections::{BTreeMap, HashMap};

use weft_common::order::{from_order_key as from_key, order_key};
use weft_dsl::{HandleUnknown, ImputeStrategy, Preprocess};

use crate::error::DataError;
use crate::frame::{category_order, Frame, Values};
use crate::stage::{impute_covers, keys_of, position, scaled_columns, Fill, Stage};

/// A stage being fitted: [`StageFit::new`] on the first part (it fixes the columns), then
/// [`StageFit::update`] with every train part for each of [`StageFit::passes`], then
/// [`StageFit::finish`].
pub(crate) struct StageFit {
    spec: Preprocess,
    kind: Kind,
}

enum Kind {
    Moments(Vec<String>, Vec<Moments>),
    Range(Vec<String>, Vec<(f64, f64)>),
    Counts(String, HashMap<String, u64>),
    Impute(Vec<String>, Vec<ImputeAcc>),
    Nothing(Vec<String>),
}

/// Count, mean and sum of squared deviations, merged part by part (Chan et al.).
#[derive(Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn add(&mut self, v: &[f64]) {
        if v.is_empty() {
            return;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let m2 = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
        let total = self.n + n;
        let delta = mean - self.mean;
        self.mean += delta * n / total;
        self.m2 += m2 + delta * delta * self.n * n / total;
        self.n = total;
    }
}

enum ImputeAcc {
    Sum(f64, u64),
    Median(Median),
    Counts(HashMap<String, u64>, bool),
    Constant(Fill),
}

/// The exact median of f32 values in two passes over them. The counts are sparse: memory
/// grows with the distinct 16-bit prefixes a column has, not 2^16 per column.
struct Median {
    /// Pass 1: counts by the top 16 bits of the order key.
    high: BTreeMap<u16, u64>,
    /// Pass 2: for each bucket holding a middle rank, the counts by the low 16 bits.
    low: Vec<(u16, BTreeMap<u16, u64>)>,
}

/// The key holding rank `r` of `counts` (in key order) and how many values come before it.
fn rank_in(counts: &BTreeMap<u16, u64>, r: u64) -> Option<(u16, u64)> {
    let mut before = 0;
    for (&k, &c) in counts {
        if before + c > r {
            return Some((k, before));
        }
        before += c;
    }
    None
}

impl Median {
    fn new() -> Median {
        Median {
            high: BTreeMap::new(),
            low: Vec::new(),
        }
    }

    fn count(&self) -> u64 {
        self.high.values().sum()
    }

    /// The 0-based ranks of the middle value(s).
    fn ranks(&self) -> [u64; 2] {
        let n = self.count();
        [(n.max(1) - 1) / 2, n / 2]
    }

    fn add(&mut self, pass: usize, x: f32) {
        let k = order_key(x);
        let (high, low) = ((k >> 16) as u16, (k & 0xffff) as u16);
        if pass == 0 {
            *self.high.entry(high).or_default() += 1;
        } else if let Some((_, l)) = self.low.iter_mut().find(|(b, _)| *b == high) {
            *l.entry(low).or_default() += 1;
        }
    }

    fn end_pass(&mut self, pass: usize) {
        if pass == 0 {
            for r in self.ranks() {
                if let Some((b, _)) = rank_in(&self.high, r) {
                    if !self.low.iter().any(|(x, _)| *x == b) {
                        self.low.push((b, BTreeMap::new()));
                    }
                }
            }
        }
    }

    fn value(&self) -> f64 {
        let at = |r: u64| -> Option<f64> {
            let (b, before) = rank_in(&self.high, r)?;
            let (_, low) = self.low.iter().find(|(x, _)| *x == b)?;
            let (l, _) = rank_in(low, r - before)?;
            Some(f64::from(from_key(u32::from(b) << 16 | u32::from(l))))
        };
        let [lo, hi] = self.ranks();
        match (at(lo), at(hi)) {
            (Some(a), Some(b)) => (a + b) / 2.0,
            _ => f64::NAN,
        }
    }
}

impl StageFit {
    /// Chooses the stage's columns from `first` (any part of the train rows: the columns and
    /// their kinds are the same in every part) and checks them.
    pub(crate) fn new(spec: &Preprocess, first: &Frame) -> Result<StageFit, DataError> {
        let kind = match spec {
            Preprocess::StandardScale(opt) => {
                let c = scaled_columns("standard_scale", opt.columns.as_deref(), first)?;
                let n = c.len();
                Kind::Moments(c, vec![Moments::default(); n])
            }
            Preprocess::MinMaxScale(opt) => {
                let c = scaled_columns("min_max_scale", opt.columns.as_deref(), first)?;
                let n = c.len();
                Kind::Range(c, vec![(f64::INFINITY, f64::NEG_INFINITY); n])
            }
            Preprocess::StringIndex(one) => {
                position(first, "string_index", &one.column)?;
                Kind::Counts(one.column.clone(), HashMap::new())
            }
            Preprocess::OneHot(one) => {
                position(first, "one_hot", &one.column)?;
                Kind::Counts(one.column.clone(), HashMap::new())
            }
            Preprocess::EmbedIndex(e) => {
                position(first, "embedding", &e.column)?;
                match e.buckets {
                    // Hashed ids learn nothing.
                    Some(_) => Kind::Nothing(vec![e.column.clone()]),
                    None => Kind::Counts(e.column.clone(), HashMap::new()),
                }
            }
            Preprocess::Impute(spec) => impute_columns(spec, first)?,
            Preprocess::DropMissing(d) => {
                for c in &d.columns {
                    position(first, "drop_missing", c)?;
                }
                Kind::Nothing(d.columns.clone())
            }
        };
        Ok(StageFit {
            spec: spec.clone(),
            kind,
        })
    }

    /// Passes over the train rows the stage needs: 2 for a median, 1 for the rest, 0 for
    /// stages that learn nothing.
    pub(crate) fn passes(&self) -> usize {
        match &self.kind {
            Kind::Nothing(_) => 0,
            Kind::Impute(_, acc) if acc.iter().any(|a| matches!(a, ImputeAcc::Median(_))) => 2,
            Kind::Impute(_, acc) if acc.iter().all(|a| matches!(a, ImputeAcc::Constant(_))) => 0,
            _ => 1,
        }
    }

    /// Learns from one part of the train rows in pass `pass`.
    pub(crate) fn update(&mut self, frame: &Frame, pass: usize) -> Result<(), DataError> {
        match &mut self.kind {
            Kind::Moments(columns, acc) if pass == 0 => {
                for (name, m) in columns.iter().zip(acc) {
                    m.add(&numbers(frame, name));
                }
            }
            Kind::Range(columns, acc) if pass == 0 => {
                for (name, (lo, hi)) in columns.iter().zip(acc) {
                    for x in numbers(frame, name) {
                        *lo = lo.min(x);
                        *hi = hi.max(x);
                    }
                }
            }
            Kind::Counts(column, counts) if pass == 0 => {
                let stage = match self.spec {
                    Preprocess::StringIndex(_) => "string_index",
                    Preprocess::EmbedIndex(_) => "embedding",
                    _ => "one_hot",
                };
                if stage == "embedding" {
                    // Missing values are id 0: only the present ones are categories.
                    let col = &frame.cols[position(frame, stage, column)?];
                    for i in (0..col.values.len()).filter(|&i| !col.is_missing(i)) {
                        if let Some(k) = col.values.key(i) {
                            *counts.entry(k).or_default() += 1;
                        }
                    }
                    return Ok(());
                }
                let (_, keys) = keys_of(frame, stage, column)?;
                for k in keys {
                    *counts.entry(k).or_default() += 1;
                }
            }
            Kind::Impute(columns, acc) => {
                for (name, a) in columns.iter().zip(acc) {
                    let col = &frame.cols[position(frame, "impute", name)?];
                    let present = (0..col.values.len()).filter(|&i| !col.is_missing(i));
                    match a {
                        ImputeAcc::Sum(sum, n) if pass == 0 => {
                            for x in numbers(frame, name) {
                                *sum += x;
                                *n += 1;
                            }
                        }
                        ImputeAcc::Median(m) => {
                            for x in numbers(frame, name) {
                                m.add(pass, x as f32);
                            }
                        }
                        ImputeAcc::Counts(counts, _) if pass == 0 => {
                            for i in present {
                                let key = col.values.key(i).or_else(|| match &col.values {
                                    Values::Num(v) => Some(v[i].to_string()),
                                    _ => None,
                                });
                                if let Some(k) = key {
                                    *counts.entry(k).or_default() += 1;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Called after every pass over the train rows.
    pub(crate) fn end_pass(&mut self, pass: usize) {
        if let Kind::Impute(_, acc) = &mut self.kind {
            for a in acc {
                if let ImputeAcc::Median(m) = a {
                    m.end_pass(pass);
                }
            }
        }
    }

    /// The fitted stage.
    pub(crate) fn finish(self) -> Result<Stage, DataError> {
        Ok(match (self.kind, &self.spec) {
            (Kind::Moments(columns, acc), _) => {
                let mean = acc.iter().map(|m| m.mean as f32).collect();
                let std = acc
                    .iter()
                    .map(|m| {
                        let s = (m.m2 / m.n.max(1.0)).sqrt() as f32;
                        if s > 0.0 {
                            s
                        } else {
                            1.0
                        }
                    })
                    .collect();
                Stage::StandardScale { columns, mean, std }
            }
            (Kind::Range(columns, acc), Preprocess::MinMaxScale(opt)) => Stage::MinMaxScale {
                columns,
                data_min: acc.iter().map(|r| r.0 as f32).collect(),
                data_max: acc.iter().map(|r| r.1 as f32).collect(),
                min: opt.min,
                max: opt.max,
            },
            (Kind::Counts(column, counts), Preprocess::EmbedIndex(_)) => {
                if counts.len() >= 1 << 24 {
                    return Err(DataError::BadStageColumn {
                        stage: "embedding",
                        column,
                        problem: format!(
                            "has {} categories; ids are exact in f32 below 2^24: hash them with `buckets:`",
                            counts.len()
                        ),
                    });
                }
                let mut categories: Vec<(String, u64)> = counts.into_iter().collect();
                categories.sort_by(|a, b| b.1.cmp(&a.1).then(category_order(&a.0, &b.0)));
                Stage::EmbedIndex {
                    column,
                    categories: categories.into_iter().map(|(k, _)| k).collect(),
                    buckets: None,
                }
            }
            (Kind::Nothing(mut columns), Preprocess::EmbedIndex(e)) => Stage::EmbedIndex {
                column: columns.pop().unwrap_or_default(),
                categories: Vec::new(),
                buckets: e.buckets,
            },
            (Kind::Counts(column, counts), Preprocess::StringIndex(_)) => {
                let mut categories: Vec<(String, u64)> = counts.into_iter().collect();
                categories.sort_by(|a, b| b.1.cmp(&a.1).then(category_order(&a.0, &b.0)));
                Stage::StringIndex {
                    column,
                    categories: categories.into_iter().map(|(k, _)| k).collect(),
                }
            }
            (Kind::Counts(column, counts), Preprocess::OneHot(one)) => {
                let least = match one.handle_unknown {
                    HandleUnknown::Infrequent => one.min_frequency.unwrap_or(1),
                    _ => 1,
                } as u64;
                let mut categories: Vec<String> = counts
                    .into_iter()
                    .filter(|(_, n)| *n >= least)
                    .map(|(k, _)| k)
                    .collect();
                categories.sort_by(|a, b| category_order(a, b));
                Stage::OneHot {
                    column,
                    categories,
                    handle_unknown: one.handle_unknown,
                }
            }
            (Kind::Impute(columns, acc), _) => {
                let mut fill = Vec::with_capacity(acc.len());
                for (name, a) in columns.iter().zip(acc) {
                    let empty = || {
                        DataError::BadStageColumn {
                        stage: "impute",
                        column: name.clone(),
                        problem: "has no values in the train split to learn from; use `strategy: constant`".into(),
                    }
                    };
                    fill.push(match a {
                        ImputeAcc::Sum(_, 0) => return Err(empty()),
                        ImputeAcc::Sum(sum, n) => Fill::Number((sum / n as f64) as f32),
                        ImputeAcc::Median(m) if m.count() == 0 => return Err(empty()),
                        ImputeAcc::Median(m) => Fill::Number(m.value() as f32),
                        ImputeAcc::Counts(counts, _) if counts.is_empty() => return Err(empty()),
                        ImputeAcc::Counts(counts, text) => {
                            let (best, _) = counts
                                .into_iter()
                                .max_by(|a, b| a.1.cmp(&b.1).then(category_order(&b.0, &a.0)))
                                .unwrap_or_default();
                            if text {
                                Fill::Text(best)
                            } else {
                                Fill::Number(best.parse().unwrap_or(0.0))
                            }
                        }
                        ImputeAcc::Constant(f) => f,
                    });
                }
                Stage::Impute { columns, fill }
            }
            (Kind::Nothing(columns), _) => Stage::DropMissing { columns },
            (_, spec) => {
                return Err(DataError::Internal(format!(
                    "fitting {spec:?}: mismatched state"
                )))
            }
        })
    }
}

/// The columns an `impute` fills (as in [`impute_covers`]) and what learns each one's fill.
fn impute_columns(spec: &weft_dsl::Impute, first: &Frame) -> Result<Kind, DataError> {
    let columns: Vec<String> = match &spec.columns {
        Some(c) => c.clone(),
        None => first
            .cols
            .iter()
            .filter(|c| impute_covers(spec, &c.name, matches!(c.values, Values::Text(_))))
            .map(|c| c.name.clone())
            .collect(),
    };
    let mut acc = Vec::with_capacity(columns.len());
    for name in &columns {
        let col = &first.cols[position(first, "impute", name)?];
        let text = matches!(col.values, Values::Text(_));
        let bad = |problem: String| DataError::BadStageColumn {
            stage: "impute",
            column: name.clone(),
            problem,
        };
        acc.push(match spec.strategy {
            ImputeStrategy::Mean | ImputeStrategy::Median if text => {
                return Err(bad(format!(
                    "holds strings; `{}` needs numbers (use most_frequent or constant)",
                    if spec.strategy == ImputeStrategy::Mean {
                        "mean"
                    } else {
                        "median"
                    }
                )))
            }
            ImputeStrategy::Mean => ImputeAcc::Sum(0.0, 0),
            ImputeStrategy::Median => ImputeAcc::Median(Median::new()),
            ImputeStrategy::MostFrequent => ImputeAcc::Counts(HashMap::new(), text),
            ImputeStrategy::Constant => ImputeAcc::Constant(match (&spec.value, text) {
                (Some(serde_json::Value::Number(n)), true) => Fill::Text(n.to_string()),
                (Some(serde_json::Value::Number(n)), false) => {
                    Fill::Number(n.as_f64().unwrap_or(0.0) as f32)
                }
                (Some(serde_json::Value::String(t)), true) => Fill::Text(t.clone()),
                (Some(serde_json::Value::String(t)), false) => match t.trim().parse::<f32>() {
                    Ok(x) => Fill::Number(x),
                    Err(_) => {
                        return Err(bad(format!("holds numbers; the constant `{t}` is not one")))
                    }
                },
                _ => return Err(bad("`strategy: constant` needs `value:`".into())),
            }),
        });
    }
    Ok(Kind::Impute(columns, acc))
}

/// A numeric column's present values in this part (missing values do not count: they stay
/// missing through a scaler).
fn numbers(frame: &Frame, name: &str) -> Vec<f64> {
    let Some(col) = frame.position(name).map(|p| &frame.cols[p]) else {
        return Vec::new();
    };
    let present = |i: &usize| !col.is_missing(*i);
    match &col.values {
        Values::Num(v) => (0..v.len())
            .filter(present)
            .map(|i| f64::from(v[i]))
            .collect(),
        Values::Int(v) => (0..v.len()).filter(present).map(|i| v[i] as f64).collect(),
        Values::Text(_) => Vec::new(),
    }
}

/// Fits a stage on one frame in memory.
pub(crate) fn fit_frame(spec: &Preprocess, train: &Frame) -> Result<Stage, DataError> {
    let mut fit = StageFit::new(spec, train)?;
    for pass in 0..fit.passes() {
        fit.update(train, pass)?;
        fit.end_pass(pass);
    }
    fit.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median(parts: &[&[f32]]) -> f64 {
        let mut m = Median::new();
        for pass in 0..2 {
            for p in parts {
                for &x in *p {
                    m.add(pass, x);
                }
            }
            m.end_pass(pass);
        }
        m.value()
    }

    #[test]
    fn the_two_pass_median_is_exact_across_parts() {
        assert_eq!(median(&[&[3.0, 1.0], &[2.0]]), 2.0);
        assert_eq!(median(&[&[4.0, 1.0], &[2.0, 3.0]]), 2.5);
        // Middle values in different buckets, and many equal values in one bucket.
        assert_eq!(
            median(&[&[-1e6, 1e6], &[-1e6, 1e6, 7.25, 7.25, 7.25]]),
            7.25
        );
        let v: Vec<f32> = (0..10_001)
            .map(|i| (i as f32 * 0.37).sin() * 1000.0)
            .collect();
        let mut s = v.clone();
        s.sort_by(f32::total_cmp);
        assert_eq!(median(&[&v[..5000], &v[5000..]]), f64::from(s[5000]));
    }

    #[test]
    fn moments_merge_to_the_whole_sets_figures() {
        let v: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.1 + 3.0).collect();
        let (mut whole, mut parts) = (Moments::default(), Moments::default());
        whole.add(&v);
        for c in v.chunks(77) {
            parts.add(c);
        }
        assert!((whole.mean - parts.mean).abs() < 1e-9);
        assert!((whole.m2 - parts.m2).abs() / whole.m2 < 1e-12);
    }
}
