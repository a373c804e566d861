//! `weft predict --input - --output -`: predictions as Arrow IPC streams, batch for batch,
//! for a caller that streams rows through weft (a Spark task's `transform`, which runs no
//! Python per row). Each input batch gives one output batch of the same rows in the same
//! order, written and flushed before the next input batch is read, so the caller can send a
//! batch, read its predictions, and hold no more than that.
//!
//! Output columns: `prediction` (the class name, as the label column names it, for
//! classification; the predicted value, Float64, for regression) and `probability` (one
//! Float64 per class, in the model's class order; classification only).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use weft_runtime::{metrics, train};

use crate::error::{Error, Result};

/// The schema of the predictions of a model with `classes` (none: regression).
fn output_schema(classes: Option<&[String]>) -> Arc<Schema> {
    Arc::new(Schema::new(match classes {
        Some(_) => vec![
            Field::new("prediction", DataType::Utf8, false),
            Field::new(
                "probability",
                DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
                false,
            ),
        ],
        None => vec![Field::new("prediction", DataType::Float64, false)],
    }))
}

/// Predicts every batch of the Arrow IPC stream `input` with the model in `model_dir`,
/// writing one batch of predictions per input batch to `output`; returns the rows.
pub fn predict_ipc(
    model_dir: &Path,
    input: &mut impl Read,
    output: &mut impl Write,
) -> Result<usize> {
    let (saved, mut exec) = crate::predict::load_on_cpu(model_dir)?;
    let classes = saved.pipeline.classes().map(<[String]>::to_vec);
    let shown = "standard input";
    let bad = |e: arrow_schema::ArrowError| Error::Io {
        path: shown.into(),
        message: format!("not a readable Arrow IPC stream: {e}"),
    };
    let out_err = |e: arrow_schema::ArrowError| Error::Io {
        path: "standard output".into(),
        message: e.to_string(),
    };
    let reader = StreamReader::try_new(input, None).map_err(bad)?;
    let schema = output_schema(classes.as_deref());
    let mut writer = StreamWriter::try_new(output, &schema).map_err(out_err)?;
    let mut rows = 0usize;
    for batch in reader {
        let table = weft_data::Table {
            name: shown.into(),
            first_row: rows,
            batch: batch.map_err(bad)?,
        };
        let x = saved.pipeline.transform(&table)?;
        let outputs = train::predict_all(exec.as_mut(), &x, 4096)?;
        rows += table.num_rows();
        let columns: Vec<ArrayRef> = match &classes {
            Some(names) => {
                let predicted = metrics::predicted_classes(&outputs);
                let mut name = StringBuilder::new();
                let mut prob = ListBuilder::new(Float64Builder::new());
                for (i, &c) in predicted.iter().enumerate() {
                    name.append_value(names.get(c).map_or("?", String::as_str));
                    let out = outputs.row(i);
                    if out.len() == 1 {
                        let p = f64::from(out[0]);
                        prob.values().append_slice(&[1.0 - p, p]);
                    } else {
                        for &p in out {
                            prob.values().append_value(f64::from(p));
                        }
                    }
                    prob.append(true);
                }
                vec![Arc::new(name.finish()), Arc::new(prob.finish())]
            }
            None => vec![Arc::new(Float64Array::from_iter_values(
                outputs.column(0).iter().map(|&v| f64::from(v)),
            ))],
        };
        let out = RecordBatch::try_new(schema.clone(), columns).map_err(out_err)?;
        writer.write(&out).map_err(out_err)?;
        writer.get_mut().flush().map_err(|e| Error::Io {
            path: "standard output".into(),
            message: e.to_string(),
        })?;
    }
    writer.finish().map_err(out_err)?;
    Ok(rows)
}
