//! `weft predict`: a saved run's model and preprocessing applied to a new file.

use std::fmt::Write;
use std::path::Path;

use ndarray::{Array1, Array2};
use weft_data::Table;
use weft_executors::rundir::{self, SavedModel};
use weft_executors::{metrics, train, Device};

use crate::error::Result;

/// Predictions for the rows of an input file.
pub struct Predictions {
    pub outputs: Array2<f32>,
    /// Class names (classification), in output column order.
    pub classes: Option<Vec<String>>,
    /// The input's labels, when it has the label column.
    pub labels: Option<Array1<f32>>,
}

/// Loads the model in `model_dir` and predicts every row of `input` (CSV or Parquet).
pub fn predict(model_dir: &Path, input: &Path) -> Result<Predictions> {
    let saved = rundir::load_model(model_dir)?;
    let table = weft_data::read_table(input)?;
    predict_with(&saved, &table)
}

/// Predicts every row of `table` with a model in memory.
pub fn predict_with(saved: &SavedModel, table: &Table) -> Result<Predictions> {
    let x = saved.pipeline.transform(table)?;
    let labels = saved.pipeline.labels(table)?;
    let mut exec = Device::Cpu.executor(&saved.plan);
    exec.set_params(&saved.params()?)?;
    exec.set_buffers(&saved.tensors);
    let outputs = train::predict_all(exec.as_mut(), &x, 4096)?;
    Ok(Predictions {
        outputs,
        classes: saved.pipeline.classes().map(<[String]>::to_vec),
        labels,
    })
}

impl Predictions {
    pub fn rows(&self) -> usize {
        self.outputs.nrows()
    }

    /// Predicted class index per row (classification).
    pub fn classes_predicted(&self) -> Vec<usize> {
        metrics::predicted_classes(&self.outputs)
    }

    /// Accuracy against the input's labels, when there are labels and classes.
    pub fn accuracy(&self) -> Option<f64> {
        let labels = self.labels.as_ref()?;
        self.classes.as_ref()?;
        let pred = self.classes_predicted();
        let hits = pred
            .iter()
            .zip(labels)
            .filter(|(p, y)| **p == **y as usize)
            .count();
        Some(hits as f64 / pred.len().max(1) as f64)
    }

    /// Jupyter (evcxr): the first 20 predictions as a table, and the accuracy if known.
    pub fn evcxr_display(&self) {
        let mut h = String::new();
        if let Some(acc) = self.accuracy() {
            let _ = write!(
                h,
                r#"<p>accuracy: <span class="accuracy">{acc:.4}</span> on {} rows</p>"#,
                self.rows()
            );
        }
        h.push_str("<table><tr>");
        let csv = self.to_csv();
        for (i, line) in csv.lines().take(21).enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            if i > 0 {
                h.push_str("<tr>");
            }
            for cell in line.split(',') {
                let _ = write!(h, "<{tag}>{}</{tag}>", crate::notebook::esc(cell));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if self.rows() > 20 {
            let _ = write!(h, "<p>… {} more rows</p>", self.rows() - 20);
        }
        crate::notebook::emit("text/html", &h);
    }

    /// `prediction` (class name or value) and, for classification, one probability per class.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        match &self.classes {
            Some(classes) => {
                let binary_sigmoid = self.outputs.ncols() == 1;
                let _ = write!(out, "prediction");
                for c in classes {
                    let _ = write!(out, ",p_{c}");
                }
                out.push('\n');
                for (row, k) in self
                    .outputs
                    .rows()
                    .into_iter()
                    .zip(self.classes_predicted())
                {
                    let _ = write!(out, "{}", classes.get(k).map(String::as_str).unwrap_or("?"));
                    if binary_sigmoid {
                        let _ = write!(out, ",{},{}", 1.0 - row[0], row[0]);
                    } else {
                        for p in row {
                            let _ = write!(out, ",{p}");
                        }
                    }
                    out.push('\n');
                }
            }
            None => {
                out.push_str("prediction\n");
                for v in self.outputs.column(0) {
                    let _ = writeln!(out, "{v}");
                }
            }
        }
        out
    }
}
