//! Splitting row numbers into train, test and validation sets.

use weft_common::rng::Rng;
use weft_dsl::SplitSpec;

use crate::error::DataError;

/// The random stream of split shuffles (synthetic data uses stream 2).
const STREAM: u64 = 1;

/// 0-based table rows of each split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
    pub validation: Option<Vec<usize>>,
}

/// Splits rows `0..rows`: shuffled with `spec.seed` (default `seed`) when `spec.shuffle`,
/// then train, test and validation take consecutive runs. Sizes are the fractions of `rows`
/// rounded; when the fractions add up to 1 train takes what the others leave, so every
/// row is used.
pub fn split_rows(rows: usize, spec: &SplitSpec, seed: u64) -> Result<Split, DataError> {
    let (n_train, n_test, n_val) = split_sizes(rows, spec)?;
    let mut order: Vec<usize> = (0..rows).collect();
    if spec.shuffle {
        Rng::new(spec.seed.unwrap_or(seed), STREAM).shuffle(&mut order);
    }
    let test = order[n_train..n_train + n_test].to_vec();
    let validation =
        (n_val > 0).then(|| order[n_train + n_test..n_train + n_test + n_val].to_vec());
    order.truncate(n_train);
    Ok(Split {
        train: order,
        test,
        validation,
    })
}

/// Splits rows by a hash of each row's value of the key column (`split.key`): the same
/// rule as a streamed set's, so a row lands in the same split either way.
pub fn split_by_key(keys: &[String], spec: &SplitSpec, seed: u64) -> Result<Split, DataError> {
    split_sizes(keys.len(), spec)?;
    let mut split = Split {
        train: Vec::new(),
        test: Vec::new(),
        validation: spec.validation.map(|_| Vec::new()),
    };
    for (r, k) in keys.iter().enumerate() {
        match key_fraction(spec.seed.unwrap_or(seed), k) {
            u if u < spec.train => split.train.push(r),
            u if u < spec.train + spec.test => split.test.push(r),
            u if u < spec.train + spec.test + spec.validation.unwrap_or(0.0) => {
                if let Some(v) = split.validation.as_mut() {
                    v.push(r);
                }
            }
            _ => {}
        }
    }
    Ok(split)
}

/// A uniform number in [0, 1) drawn from a key's value under `seed`.
pub(crate) fn key_fraction(seed: u64, key: &str) -> f64 {
    f64::from(weft_common::rng::uniform_at(
        seed,
        KEY_STREAM,
        crate::stage::fnv1a(key.as_bytes()),
    ))
}

/// The random stream of key hashes.
const KEY_STREAM: u64 = 4;

/// The rows of train, test and validation out of `rows`, checked (see [`split_rows`]).
pub(crate) fn split_sizes(
    rows: usize,
    spec: &SplitSpec,
) -> Result<(usize, usize, usize), DataError> {
    let validation = spec.validation.unwrap_or(0.0);
    let sum = spec.train + spec.test + validation;
    if sum > 1.0 + 1e-9 {
        return Err(DataError::SplitTooLarge {
            sum: (sum * 1e9).round() / 1e9,
            train: spec.train,
            test: spec.test,
            validation,
        });
    }
    let size = |frac: f64| (frac * rows as f64).round() as usize;
    let n_test = size(spec.test);
    let n_val = size(validation);
    let n_train = if (sum - 1.0).abs() <= 1e-9 {
        rows.saturating_sub(n_test + n_val)
    } else {
        size(spec.train).min(rows.saturating_sub(n_test + n_val))
    };
    for (split, fraction, n) in [
        ("train", spec.train, n_train),
        ("test", spec.test, n_test),
        ("validation", validation, n_val),
    ] {
        if fraction > 0.0 && n == 0 {
            return Err(DataError::EmptySplit {
                split,
                fraction,
                rows,
            });
        }
    }
    Ok((n_train, n_test, n_val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(train: f64, test: f64, validation: Option<f64>) -> SplitSpec {
        SplitSpec {
            train,
            test,
            validation,
            ..SplitSpec::default()
        }
    }

    #[test]
    fn sizes_round_and_use_every_row() {
        let s = split_rows(150, &spec(0.7, 0.3, None), 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.train.len(), s.test.len()), (105, 45));
        let s = split_rows(101, &spec(0.6, 0.2, Some(0.2)), 1).unwrap_or_else(|e| panic!("{e}"));
        let v = s.validation.as_ref().map_or(0, Vec::len);
        assert_eq!((s.train.len(), s.test.len(), v), (61, 20, 20));
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.extend(s.validation.unwrap_or_default());
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
    }

    #[test]
    fn a_subsample_leaves_rows_out() {
        let s = split_rows(100, &spec(0.5, 0.2, None), 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.train.len(), s.test.len()), (50, 20));
    }

    #[test]
    fn empty_and_oversized_splits_are_errors() {
        let e = split_rows(10, &spec(0.99, 0.01, None), 1)
            .err()
            .unwrap_or_else(|| panic!("expected an error"));
        assert_eq!(
            e.to_string(),
            "split: a test fraction of 0.01 of 10 rows leaves the test split empty"
        );
        let e = split_rows(10, &spec(0.8, 0.3, None), 1)
            .err()
            .unwrap_or_else(|| panic!("expected an error"));
        assert_eq!(
            e.to_string(),
            "split: fractions add up to 1.1 (train 0.8 + test 0.3 + validation 0); they must add up to at most 1"
        );
    }

    #[test]
    fn no_shuffle_keeps_file_order() {
        let mut s = spec(0.5, 0.5, None);
        s.shuffle = false;
        let s = split_rows(4, &s, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.train, s.test), (vec![0, 1], vec![2, 3]));
    }
}
