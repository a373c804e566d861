//! Evaluation metrics: accuracy, macro precision / recall / F1, binary AUC, confusion
//! matrix; mse, mae and R² for regression.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};
use serde_json::{json, Value};
use weft_dsl::Metric;
use weft_planner::Task;

/// Predicted class per row: argmax of probabilities, or p ≥ 0.5 for one sigmoid column.
pub fn predicted_classes(probs: &Array2<f32>) -> Vec<usize> {
    if probs.ncols() == 1 {
        return probs
            .column(0)
            .iter()
            .map(|p| usize::from(*p >= 0.5))
            .collect();
    }
    probs
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// The probability of class 1 (binary problems), for AUC.
fn positive_scores(probs: &Array2<f32>) -> Vec<f32> {
    if probs.ncols() == 1 {
        probs.column(0).to_vec()
    } else {
        probs.column(1).to_vec()
    }
}

/// Every requested metric, by name. `probs` are the model's outputs for the rows of `y`.
pub fn evaluate(
    metrics: &[Metric],
    task: &Task,
    probs: &Array2<f32>,
    y: &Array1<f32>,
) -> BTreeMap<String, Value> {
    let mut tally = Tally::new(metrics, task);
    tally.add(probs, y.view());
    tally.finish()
}

/// Rows whose scores AUC keeps exactly; beyond, scores are counted in bins.
const EXACT_AUC_ROWS: usize = 1 << 20;
/// Bits of a score's order key that pick its bin (2^20 bins per class, 16 MiB): a bin is
/// about 2^-12 of its value wide, so only pairs that close count as ties.
const AUC_BITS: u32 = 20;

/// Scores for AUC: each row's, up to [`EXACT_AUC_ROWS`]; then counts per bin and class.
#[derive(Debug, Clone)]
enum Scores {
    Exact(Vec<f32>, Vec<bool>),
    Binned(Vec<u64>, Vec<u64>),
}

impl Scores {
    fn add(&mut self, scores: &[f32], positive: impl Iterator<Item = bool>) {
        if let Scores::Exact(s, p) = self {
            if s.len() + scores.len() <= EXACT_AUC_ROWS {
                s.extend_from_slice(scores);
                p.extend(positive);
                return;
            }
            let mut bins = Scores::Binned(vec![0; 1 << AUC_BITS], vec![0; 1 << AUC_BITS]);
            bins.add(s, p.iter().copied());
            *self = bins;
        }
        if let Scores::Binned(neg, pos) = self {
            for (x, is_pos) in scores.iter().zip(positive) {
                let bin = (weft_common::order::order_key(*x) >> (32 - AUC_BITS)) as usize;
                if is_pos {
                    pos[bin] += 1;
                } else {
                    neg[bin] += 1;
                }
            }
        }
    }

    fn auc(&self) -> f64 {
        match self {
            Scores::Exact(s, p) => {
                let truth: Vec<usize> = p.iter().map(|p| usize::from(*p)).collect();
                auc(s, &truth)
            }
            Scores::Binned(neg, pos) => {
                // Rank sum over bins: a positive outranks the negatives of lower bins and
                // ties with half of its own bin's.
                let (n_pos, n_neg) = (pos.iter().sum::<u64>(), neg.iter().sum::<u64>());
                if n_pos == 0 || n_neg == 0 {
                    return f64::NAN;
                }
                let (mut below, mut sum) = (0u64, 0.0f64);
                for (p, n) in pos.iter().zip(neg) {
                    sum += *p as f64 * (below as f64 + 0.5 * *n as f64);
                    below += n;
                }
                sum / (n_pos as f64 * n_neg as f64)
            }
        }
    }
}

/// Metrics counted batch by batch (evaluation of rows that are streamed): a confusion matrix,
/// or sums of errors and the targets' moments; AUC keeps each row's score up to 2^20 rows,
/// then counts per bin (bounded memory whatever the rows).
#[derive(Debug, Clone)]
pub struct Tally {
    metrics: Vec<Metric>,
    task: Task,
    cm: Vec<Vec<u64>>,
    scores: Scores,
    rows: u64,
    sq_err: f64,
    abs_err: f64,
    /// The targets' mean and sum of squared deviations (Welford).
    mean: f64,
    m2: f64,
}

impl Tally {
    pub fn new(metrics: &[Metric], task: &Task) -> Tally {
        let k = match task {
            Task::Classification { classes } => *classes,
            Task::Regression { .. } => 0,
        };
        Tally {
            metrics: metrics.to_vec(),
            task: task.clone(),
            cm: vec![vec![0u64; k]; k],
            scores: Scores::Exact(Vec::new(), Vec::new()),
            rows: 0,
            sq_err: 0.0,
            abs_err: 0.0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// Counts a batch: the model's outputs for the rows of `y`.
    pub fn add(&mut self, probs: &Array2<f32>, y: ndarray::ArrayView1<f32>) {
        match self.task {
            Task::Classification { classes: k } => {
                for (t, p) in y.iter().zip(predicted_classes(probs)) {
                    let t = *t as usize;
                    if t < k && p < k {
                        self.cm[t][p] += 1;
                    }
                }
                if self.metrics.contains(&Metric::Auc) {
                    let positive = y.iter().map(|t| *t as usize == 1);
                    self.scores.add(&positive_scores(probs), positive);
                }
            }
            Task::Regression { .. } => {
                for (p, t) in probs.column(0).iter().zip(y) {
                    let (p, t) = (f64::from(*p), f64::from(*t));
                    self.sq_err += (p - t).powi(2);
                    self.abs_err += (p - t).abs();
                    let n = (self.rows + 1) as f64;
                    let d = t - self.mean;
                    self.mean += d / n;
                    self.m2 += d * (t - self.mean);
                    self.rows += 1;
                }
                return;
            }
        }
        self.rows += y.len() as u64;
    }

    /// Every requested metric, by name.
    pub fn finish(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let n = self.rows.max(1) as f64;
        match self.task {
            Task::Classification { classes: k } => {
                let cm = &self.cm;
                let correct: u64 = (0..k).map(|i| cm[i][i]).sum();
                let (mut p_sum, mut r_sum, mut f_sum) = (0.0, 0.0, 0.0);
                for (c, row) in cm.iter().enumerate() {
                    let tp = row[c] as f64;
                    let predicted: f64 = cm.iter().map(|r| r[c] as f64).sum();
                    let actual: f64 = row.iter().map(|v| *v as f64).sum();
                    let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
                    let r = if actual > 0.0 { tp / actual } else { 0.0 };
                    p_sum += p;
                    r_sum += r;
                    f_sum += if p + r > 0.0 {
                        2.0 * p * r / (p + r)
                    } else {
                        0.0
                    };
                }
                let kf = k.max(1) as f64;
                for m in &self.metrics {
                    let v = match m {
                        Metric::Accuracy => json!(correct as f64 / n),
                        Metric::Precision => json!(p_sum / kf),
                        Metric::Recall => json!(r_sum / kf),
                        Metric::F1 => json!(f_sum / kf),
                        Metric::Auc => json!(self.scores.auc()),
                        Metric::ConfusionMatrix => json!(cm),
                        Metric::Mse | Metric::Mae | Metric::R2 => continue,
                    };
                    out.insert(m.name().to_string(), v);
                }
            }
            Task::Regression { .. } => {
                let (mse, mae, var) = (self.sq_err / n, self.abs_err / n, self.m2 / n);
                for m in &self.metrics {
                    let v = match m {
                        Metric::Mse => mse,
                        Metric::Mae => mae,
                        Metric::R2 => {
                            if var > 0.0 {
                                1.0 - mse / var
                            } else {
                                0.0
                            }
                        }
                        _ => continue,
                    };
                    out.insert(m.name().to_string(), json!(v));
                }
            }
        }
        out
    }
}

/// Area under the ROC curve by the rank-sum (Mann–Whitney) formula, ties averaged.
pub fn auc(scores: &[f32], truth: &[usize]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = avg;
        }
        i = j + 1;
    }
    let pos = truth.iter().filter(|t| **t == 1).count() as f64;
    let neg = truth.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = truth
        .iter()
        .zip(&ranks)
        .filter(|(t, _)| **t == 1)
        .map(|(_, r)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        // truth: 0 0 1 1 2 ; predicted: 0 1 1 1 2
        let probs = array![
            [0.9, 0.1, 0.0],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.6, 0.1],
            [0.0, 0.1, 0.9]
        ];
        let y = array![0.0, 0.0, 1.0, 1.0, 2.0];
        let all = [
            Metric::Accuracy,
            Metric::Precision,
            Metric::Recall,
            Metric::F1,
            Metric::ConfusionMatrix,
        ];
        let m = evaluate(&all, &Task::Classification { classes: 3 }, &probs, &y);
        assert_eq!(m["accuracy"], json!(0.8));
        // precision: 1, 2/3, 1 → 0.8889; recall: 0.5, 1, 1 → 0.8333
        assert!((m["precision"].as_f64().unwrap() - 8.0 / 9.0).abs() < 1e-9);
        assert!((m["recall"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-9);
        assert_eq!(
            m["confusion_matrix"],
            json!([[1, 1, 0], [0, 2, 0], [0, 0, 1]])
        );
    }

    #[test]
    fn binned_auc_matches_the_exact_one_beyond_a_million_rows() {
        // 1.5M rows with overlapping scores: the tally switches to bins past 2^20 rows.
        let n = 1_500_000usize;
        let mut rng = weft_common::rng::Rng::new(3, 0);
        let y: Vec<f32> = (0..n).map(|i| (i % 3 == 0) as u8 as f32).collect();
        let s: Vec<f32> = y
            .iter()
            .map(|t| (0.35 * t + 0.65 * rng.uniform()).min(0.999_999))
            .collect();
        let probs = Array2::from_shape_vec((n, 1), s.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut tally = Tally::new(&[Metric::Auc], &Task::Classification { classes: 2 });
        for (p, t) in probs
            .axis_chunks_iter(ndarray::Axis(0), 100_000)
            .zip(y.chunks(100_000))
        {
            tally.add(&p.to_owned(), ndarray::ArrayView1::from(t));
        }
        assert!(matches!(tally.scores, Scores::Binned(..)));
        let truth: Vec<usize> = y.iter().map(|t| *t as usize).collect();
        let exact = auc(&s, &truth);
        let binned = tally.finish()["auc"].as_f64().unwrap_or(f64::NAN);
        assert!((exact - binned).abs() < 1e-4, "{exact} vs {binned}");
    }

    #[test]
    fn auc_handles_ties_and_perfect_rankings() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1]), 1.0);
        assert_eq!(auc(&[0.5, 0.5], &[0, 1]), 0.5);
        assert!((auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]) - 0.75).abs() < 1e-12);
    }
}
