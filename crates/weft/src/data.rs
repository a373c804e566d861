//! The data a run trains on, whichever way the spec reads it: a table in memory
//! (`data.shuffle: full`) or a set streamed from its files (`data.shuffle: buffer`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use weft_data::{Part, Pipeline, Prepared, StreamSet, Table};
use weft_exec::Executor;
use weft_planner::{DataShape, Plan, Task};
use weft_runtime::metrics::Tally;
use weft_runtime::train::{self, Rows, Splits};
use weft_runtime::RunError;

use crate::error::Result;
use crate::experiment::Experiment;

/// Prepared data: in memory, or streamed.
#[derive(Debug)]
pub enum Data {
    Memory {
        table: Table,
        prepared: Box<Prepared>,
    },
    Stream {
        set: Arc<StreamSet>,
        buffer: usize,
    },
}

impl Data {
    pub fn pipeline(&self) -> &Pipeline {
        match self {
            Data::Memory { prepared, .. } => &prepared.pipeline,
            Data::Stream { set, .. } => &set.pipeline,
        }
    }

    /// What the planner needs to know: feature names and the task.
    pub fn shape(&self) -> DataShape {
        shape_of(self.pipeline())
    }

    /// Rows of a split.
    pub fn rows(&self, part: Part) -> Option<Rows<'_>> {
        match self {
            Data::Memory { prepared, .. } => match part {
                Part::Train => Some(Rows::Memory(&prepared.train)),
                Part::Test => Some(Rows::Memory(&prepared.test)),
                Part::Validation => prepared.validation.as_ref().map(Rows::Memory),
            },
            Data::Stream { set, buffer } => (part != Part::Validation || set.rows(part) > 0)
                .then_some(Rows::Stream {
                    set,
                    part,
                    buffer: *buffer,
                }),
        }
    }

    /// The train and validation splits, for the loop.
    pub fn splits(&self) -> Splits<'_> {
        match self {
            Data::Memory { prepared, .. } => {
                Splits::memory(&prepared.train, prepared.validation.as_ref())
            }
            Data::Stream { set, buffer } => Splits {
                train: Rows::Stream {
                    set,
                    part: Part::Train,
                    buffer: *buffer,
                },
                validation: self.rows(Part::Validation),
            },
        }
    }

    /// Train rows of each class (classification).
    pub fn class_counts(&self) -> Option<Vec<u64>> {
        match self {
            Data::Memory { prepared, .. } => Data::train_class_counts(prepared),
            Data::Stream { set, .. } => set.class_counts.clone(),
        }
    }

    pub(crate) fn train_class_counts(prepared: &Prepared) -> Option<Vec<u64>> {
        let k = prepared.pipeline.classes()?.len();
        let mut counts = vec![0u64; k];
        for &y in &prepared.train.y {
            if let Some(c) = counts.get_mut(y as usize) {
                *c += 1;
            }
        }
        Some(counts)
    }

    /// Metrics and mean loss of every split that has rows, by split name. A streamed set is
    /// read once for all of them.
    pub fn evaluate(
        &self,
        exec: &mut dyn Executor,
        plan: &Plan,
    ) -> std::result::Result<BTreeMap<String, BTreeMap<String, Value>>, RunError> {
        let mut out = BTreeMap::new();
        match self {
            Data::Memory { .. } => {
                for part in Part::ALL {
                    let Some(rows) = self.rows(part).filter(|r| !r.is_empty()) else {
                        continue;
                    };
                    let mut tally = Tally::new(&plan.evaluate, &plan.task);
                    let mut loss = Loss::default();
                    train::each_batch(rows, 4096, |x, y, w| loss.add(exec, &mut tally, x, y, w))?;
                    out.insert(part.name().to_string(), loss.into(tally));
                }
            }
            Data::Stream { set, .. } => {
                let parts: Vec<Part> = Part::ALL.into_iter().filter(|p| set.rows(*p) > 0).collect();
                let mut tallies: Vec<(Tally, Loss)> = parts
                    .iter()
                    .map(|_| (Tally::new(&plan.evaluate, &plan.task), Loss::default()))
                    .collect();
                for b in set.read(set.eval_order(&parts, 4096)) {
                    let b = b?;
                    let k = parts.iter().position(|p| *p == b.part).unwrap_or(0);
                    let (tally, loss) = &mut tallies[k];
                    let w = b.w.as_ref().map(|w| w.to_vec());
                    loss.add(exec, tally, b.x.view(), b.y.view(), w.as_deref())?;
                }
                for (part, (tally, loss)) in parts.into_iter().zip(tallies) {
                    out.insert(part.name().to_string(), loss.into(tally));
                }
            }
        }
        Ok(out)
    }
}

/// A split's mean loss, batch by batch.
#[derive(Default)]
struct Loss {
    sum: f64,
    rows: usize,
}

impl Loss {
    /// Evaluates a batch (one forward pass where the executor can): its predictions go to
    /// `tally`, its loss to this sum.
    fn add(
        &mut self,
        exec: &mut dyn Executor,
        tally: &mut Tally,
        x: ndarray::ArrayView2<f32>,
        y: ndarray::ArrayView1<f32>,
        w: Option<&[f32]>,
    ) -> std::result::Result<(), RunError> {
        if let Some(w) = w {
            exec.set_sample_weights(Some(w));
        }
        let (probs, loss) = exec.predict_and_loss(x, y)?;
        tally.add(&probs, y);
        self.sum += f64::from(loss) * y.len() as f64;
        self.rows += y.len();
        Ok(())
    }

    fn into(self, tally: Tally) -> BTreeMap<String, Value> {
        let mut m = tally.finish();
        let loss = (self.sum / self.rows.max(1) as f64) as f32;
        m.insert("loss".into(), serde_json::json!(loss));
        m
    }
}

/// The planner's view of a fitted pipeline.
pub(crate) fn shape_of(pipeline: &Pipeline) -> DataShape {
    let task = match pipeline.classes() {
        Some(c) => Task::Classification { classes: c.len() },
        None => Task::Regression { targets: 1 },
    };
    DataShape {
        features: pipeline.feature_names().to_vec(),
        task,
        vocab: pipeline
            .stages
            .iter()
            .filter_map(|s| s.vocab())
            .map(|(c, n)| (c.to_string(), n))
            .collect(),
    }
}

impl Experiment {
    /// Reads the data as the spec says: into memory, or (`data.shuffle: buffer`) by
    /// streaming passes that learn the preprocessing without holding the rows.
    pub fn load_data(&self) -> Result<Data> {
        match self.spec.data.streamed() {
            None => {
                let (table, prepared) = self.prepare_data()?;
                Ok(Data::Memory {
                    table,
                    prepared: Box::new(prepared),
                })
            }
            Some(buffer) => {
                let task = self.spec.train.loss.task_kind();
                let set = weft_data::prepare_stream(
                    &self.spec.prepared_data(),
                    self.spec.seed,
                    self.base_dir(),
                    task,
                )
                .map_err(|e| self.data_error(e))?;
                Ok(Data::Stream {
                    set: Arc::new(set),
                    buffer,
                })
            }
        }
    }
}
