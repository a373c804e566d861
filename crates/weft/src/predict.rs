//! `weft predict`: a saved run's model and preprocessing applied to a new file.

use std::fmt::Write;
use std::path::Path;

use ndarray::{Array1, Array2};
use weft_data::Table;
use weft_exec::Device;
use weft_runtime::rundir::{self, SavedModel};
use weft_runtime::{metrics, train};

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
    let mut exec = Device::Cpu.executor(&saved.plan)?;
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

    /// mse, mae and R² against the input's labels (regression with a label column).
    pub fn regression_metrics(&self) -> Option<Vec<(&'static str, f64)>> {
        let labels = self.labels.as_ref()?;
        if self.classes.is_some() || labels.is_empty() {
            return None;
        }
        use weft_dsl::Metric;
        let m = metrics::evaluate(
            &[Metric::Mse, Metric::Mae, Metric::R2],
            &weft_common::Task::Regression { targets: 1 },
            &self.outputs,
            labels,
        );
        let get = |k: &str| m.get(k).and_then(serde_json::Value::as_f64);
        Some(vec![
            ("mse", get("mse")?),
            ("mae", get("mae")?),
            ("r2", get("r2")?),
        ])
    }

    /// Column names: `prediction`, then `p_<class>` per class (classification).
    pub fn header(&self) -> Vec<String> {
        let mut h = vec!["prediction".to_string()];
        h.extend(self.classes.iter().flatten().map(|c| format!("p_{c}")));
        h
    }

    /// Row `i` as cells matching [`Predictions::header`]: the class name (or value), then the
    /// class probabilities (a single sigmoid output gives both classes' probabilities).
    pub fn row(&self, i: usize, predicted: &[usize]) -> Vec<String> {
        let out = self.outputs.row(i);
        match &self.classes {
            Some(classes) => {
                let name = classes.get(predicted[i]).map(String::as_str).unwrap_or("?");
                let mut cells = vec![name.to_string()];
                if out.len() == 1 {
                    cells.extend([(1.0 - out[0]).to_string(), out[0].to_string()]);
                } else {
                    cells.extend(out.iter().map(f32::to_string));
                }
                cells
            }
            None => vec![out[0].to_string()],
        }
    }

    /// Jupyter (evcxr): the first 20 predictions as a table, and the accuracy if known.
    pub fn evcxr_display(&self) {
        use crate::notebook::esc;
        let mut h = String::new();
        if let Some(acc) = self.accuracy() {
            let _ = write!(
                h,
                r#"<p>accuracy: <span class="accuracy">{acc:.4}</span> on {} rows</p>"#,
                self.rows()
            );
        }
        if let Some(m) = self.regression_metrics() {
            let text: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            let _ = write!(h, "<p>{} on {} rows</p>", text.join(", "), self.rows());
        }
        h.push_str("<table><tr>");
        for name in self.header() {
            let _ = write!(h, "<th>{}</th>", esc(&name));
        }
        h.push_str("</tr>");
        let predicted = self.classes_predicted();
        for i in 0..self.rows().min(20) {
            h.push_str("<tr>");
            for cell in self.row(i, &predicted) {
                let _ = write!(h, "<td>{}</td>", esc(&cell));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if self.rows() > 20 {
            let _ = write!(h, "<p>… {} more rows</p>", self.rows() - 20);
        }
        crate::notebook::emit("text/html", &h);
    }

    /// Every row as CSV (RFC 4180 quoting), with the header.
    pub fn to_csv(&self) -> String {
        let mut out = csv_line(self.header());
        out.push_str(&self.csv_rows());
        out
    }

    /// Every row as CSV lines, without the header.
    fn csv_rows(&self) -> String {
        let predicted = self.classes_predicted();
        (0..self.rows())
            .map(|i| csv_line(self.row(i, &predicted)))
            .collect()
    }
}

fn csv_line(cells: Vec<String>) -> String {
    let quoted: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    quoted.join(",") + "\n"
}

/// What [`predict_stream`] measured over the whole input.
#[derive(Debug, Clone, Default)]
pub struct StreamSummary {
    pub rows: usize,
    /// Accuracy against the input's labels (classification with a label column).
    pub accuracy: Option<f64>,
    /// mse, mae and R² against the input's labels (regression with a label column).
    pub regression: Option<Vec<(&'static str, f64)>>,
}

/// Rows of the input read, transformed and predicted at a time by [`predict_stream`].
pub const STREAM_ROWS: usize = 8192;

/// Predicts every row of `input` (CSV, or Parquet: a file, folder or glob) a piece at a time,
/// writing CSV to `out` as it goes (header first): memory holds one piece of
/// [`STREAM_ROWS`] rows, whatever the input's size. Metrics are summed over the pieces.
pub fn predict_stream(
    model_dir: &Path,
    input: &Path,
    out: &mut dyn std::io::Write,
) -> Result<StreamSummary> {
    let (saved, mut exec) = load_on_cpu(model_dir)?;
    let classes = saved.pipeline.classes().map(<[String]>::to_vec);
    let io = |e: std::io::Error| crate::Error::Io {
        path: "the predictions' output".into(),
        message: e.to_string(),
    };
    let mut header = vec!["prediction".to_string()];
    header.extend(classes.iter().flatten().map(|c| format!("p_{c}")));
    out.write_all(csv_line(header).as_bytes()).map_err(io)?;
    let (mut rows, mut labelled, mut hits) = (0usize, 0usize, 0.0f64);
    // Regression sums: squared and absolute error, Σy, Σy².
    let (mut sse, mut sae, mut sy, mut syy) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let image = saved.plan.nodes.iter().find_map(|n| match n.op {
        weft_planner::Op::Input { .. } => n.shape.image.map(|i| weft_dsl::ImageSpec {
            channels: i.c,
            height: i.h,
            width: i.w,
        }),
        _ => None,
    });
    let pieces = match weft_data::read_whole_input(input, image) {
        Some(table) => Box::new(std::iter::once(table)),
        None => weft_data::stream_table(input, STREAM_ROWS)?,
    };
    for piece in pieces {
        let table = piece?;
        let x = saved.pipeline.transform(&table)?;
        let labels = saved.pipeline.labels(&table)?;
        let outputs = train::predict_all(exec.as_mut(), &x, 4096)?;
        let p = Predictions {
            outputs,
            classes: classes.clone(),
            labels,
        };
        out.write_all(p.csv_rows().as_bytes()).map_err(io)?;
        rows += p.rows();
        if let Some(acc) = p.accuracy() {
            hits += acc * p.rows() as f64;
            labelled += p.rows();
        }
        if let (Some(y), None) = (&p.labels, &p.classes) {
            for (o, t) in p.outputs.column(0).iter().zip(y) {
                let (o, t) = (f64::from(*o), f64::from(*t));
                sse += (o - t) * (o - t);
                sae += (o - t).abs();
                sy += t;
                syy += t * t;
            }
            labelled += p.rows();
        }
    }
    out.flush().map_err(io)?;
    let n = labelled as f64;
    let regression = (classes.is_none() && labelled > 0).then(|| {
        let tot = syy - sy * sy / n;
        let r2 = if tot > 0.0 { 1.0 - sse / tot } else { 0.0 };
        vec![("mse", sse / n), ("mae", sae / n), ("r2", r2)]
    });
    Ok(StreamSummary {
        rows,
        accuracy: (classes.is_some() && labelled > 0).then(|| hits / n),
        regression,
    })
}

/// The model saved in `model_dir`, and a CPU executor holding its weights.
pub(crate) fn load_on_cpu(model_dir: &Path) -> Result<(SavedModel, Box<dyn weft_exec::Executor>)> {
    let saved = rundir::load_model(model_dir)?;
    let mut exec = Device::Cpu.executor(&saved.plan)?;
    exec.set_params(&saved.params()?)?;
    exec.set_buffers(&saved.tensors);
    Ok((saved, exec))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn csv_quotes_class_names_and_matches_the_accuracy() {
        let p = Predictions {
            outputs: array![[0.9, 0.1], [0.2, 0.8]],
            classes: Some(vec!["small, cheap".into(), "big".into()]),
            labels: Some(array![0.0, 0.0]),
        };
        assert_eq!(
            p.to_csv(),
            "prediction,\"p_small, cheap\",p_big\n\"small, cheap\",0.9,0.1\nbig,0.2,0.8\n"
        );
        assert_eq!(p.accuracy(), Some(0.5));
    }
}
