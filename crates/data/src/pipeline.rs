//! `Pipeline`: the fitted preprocessing, saved with a model and replayed on new data.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::frame::Frame;
use crate::label::{class_keys, encode_classes, read_label, targets};
use crate::stage::Stage;
use crate::table::Table;

/// What `prepare` learnt: which columns go in, the fitted stages, what comes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The input feature columns, in order.
    pub inputs: Vec<String>,
    /// Cell texts read as missing values (`data.na_values`).
    #[serde(default)]
    pub na_values: Vec<String>,
    /// Input columns that held text when the pipeline was fitted: read as text in new data.
    #[serde(default)]
    pub text_inputs: Vec<String>,
    /// Fitted stages, applied in order.
    pub stages: Vec<Stage>,
    /// The model's input columns (after `one_hot`), in order.
    pub features: Vec<String>,
    pub label: String,
    /// Class names by class index; `None` for regression.
    pub classes: Option<Vec<String>>,
}

impl Pipeline {
    /// The feature matrix of every row of `table` (which needs the `inputs` columns; the
    /// label may be absent).
    pub fn transform(&self, table: &Table) -> Result<Array2<f32>, DataError> {
        let mut frame = Frame::read(table, &self.inputs, &self.na_values, &self.text_inputs)?;
        // Rows the model was trained without cannot be predicted: say which.
        for stage in &self.stages {
            if let Stage::DropMissing { columns } = stage {
                for c in columns {
                    if let Some(i) = frame
                        .position(c)
                        .and_then(|p| frame.cols[p].first_missing())
                    {
                        return Err(DataError::BadStageColumn {
                            stage: "drop_missing",
                            column: c.clone(),
                            problem: format!(
                                "has a missing value at {}; the model was trained without such rows (drop_missing), so it cannot predict this one",
                                frame.at(i)
                            ),
                        });
                    }
                }
            }
        }
        frame.check_text(&self.encoded_columns())?;
        self.apply(&mut frame)?;
        frame.to_matrix()
    }

    /// The label of every row of `table` (class indices, or regression targets), or `None`
    /// when `table` has no label column.
    pub fn labels(&self, table: &Table) -> Result<Option<Array1<f32>>, DataError> {
        if !table.column_names().contains(&self.label) {
            return Ok(None);
        }
        let values = read_label(table, &self.label)?;
        let y = match &self.classes {
            Some(classes) => {
                let keys = class_keys(table, &self.label, &values)?;
                encode_classes(&table.name, &self.label, &keys, classes, 0..keys.len())
                    .map_err(|e| e.shift_rows(table.first_row))?
            }
            None => targets(table, &self.label, &values)?,
        };
        Ok(Some(Array1::from(y)))
    }

    pub fn feature_names(&self) -> &[String] {
        &self.features
    }

    /// Class names by index; `None` for regression.
    pub fn classes(&self) -> Option<&[String]> {
        self.classes.as_deref()
    }

    pub fn num_features(&self) -> usize {
        self.features.len()
    }

    /// The pipeline as JSON, to save beside a model.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    pub fn from_json(text: &str) -> Result<Pipeline, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Columns that stages turn from strings into numbers.
    pub(crate) fn encoded_columns(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::StringIndex { column, .. }
                | Stage::OneHot { column, .. }
                | Stage::EmbedIndex { column, .. } => Some(column.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Runs every stage over `frame` and checks that the expected columns came out.
    pub(crate) fn apply(&self, frame: &mut Frame) -> Result<(), DataError> {
        for stage in &self.stages {
            stage.apply(frame)?;
        }
        if frame.names() != self.features {
            return Err(DataError::Internal(format!(
                "pipeline produced columns [{}], expected [{}]",
                frame.names().join(", "),
                self.features.join(", ")
            )));
        }
        Ok(())
    }
}
