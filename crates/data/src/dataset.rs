//! `Dataset`: a feature matrix and its targets, ready for training.

use ndarray::{Array1, Array2, Axis};

/// Rows of features and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Rows × features, row-major.
    pub x: Array2<f32>,
    /// The class index (as f32) for classification, the target value for regression.
    pub y: Array1<f32>,
    /// Each row's weight in the loss (`data.weight_column`); `None`: every row weighs 1.
    pub w: Option<Array1<f32>>,
}

impl Dataset {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_features(&self) -> usize {
        self.x.ncols()
    }

    /// The given rows, in the given order (a shard, a batch, a shuffled epoch).
    pub fn select(&self, rows: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), rows),
            y: self.y.select(Axis(0), rows),
            w: self.w.as_ref().map(|w| w.select(Axis(0), rows)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn select_takes_rows_in_order_and_stays_row_major() {
        let d = Dataset {
            x: array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
            y: array![0.0, 1.0, 2.0],
            w: None,
        };
        let s = d.select(&[2, 0]);
        assert_eq!(s.x, array![[4.0, 5.0], [0.0, 1.0]]);
        assert_eq!(s.y, array![2.0, 0.0]);
        assert!(s.x.is_standard_layout());
        assert_eq!((s.len(), s.num_features()), (2, 2));
    }
}
