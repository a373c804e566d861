//! weft: declarative deep-learning workflows. One spec (YAML or JSON) → validated → planned
//! → trained on a CPU, a GPU or many workers. This crate is the library and notebook API
//! (`Experiment`); the `weft` command line is weft-cli, built on it.
//!
//! ```no_run
//! let exp = weft::Experiment::from_file("specs/iris.yaml")?;
//! let result = exp.run()?;
//! println!("test accuracy {:?}", result.test("accuracy"));
//! # Ok::<(), weft::Error>(())
//! ```
//!
//! In Jupyter (evcxr), plans, run results and predictions display themselves (SVG, HTML).

pub mod data;
pub mod distributed;
mod error;
mod experiment;
#[cfg(feature = "worker")]
pub mod held;
pub mod notebook;
mod plan_view;
pub mod predict;
pub mod predict_ipc;
pub mod progress;
pub mod report;
mod run;
mod spark;

pub use error::{Error, Result};
pub use experiment::{read_spec_text, Check, Experiment, RunResult, TrainSummary};
pub use plan_view::PlanView;
pub use predict::Predictions;
pub use weft_data::Table;
pub use weft_dsl::{Spec, SpecError};
pub use weft_planner::Plan;
pub use weft_runtime::rundir::SavedModel;
pub use weft_runtime::train::{EpochRecord, Progress};

/// Reads a CSV or Parquet file (or a folder of Parquet files) into a table, e.g. for
/// `RunResult::predict`.
pub fn read_table(path: impl AsRef<std::path::Path>) -> Result<Table> {
    Ok(weft_data::read_table(path.as_ref())?)
}

/// Number of layers (sequential) or nodes (graph) of a spec's model.
pub fn layer_count(spec: &Spec) -> usize {
    match &spec.model {
        weft_dsl::ModelSpec::Sequential(l) => l.len(),
        weft_dsl::ModelSpec::Graph(g) => g.nodes.len(),
    }
}
