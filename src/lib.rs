//! weft: declarative deep-learning workflows. One spec (YAML or JSON) → validated → planned
//! → trained on a CPU. This crate is the notebook and library API (`Experiment`) and the
//! home of the `weft` command line (feature `cli`, on by default).
//!
//! ```no_run
//! let exp = weft::Experiment::from_file("specs/iris.yaml")?;
//! let result = exp.run()?;
//! println!("test accuracy {:?}", result.test("accuracy"));
//! # Ok::<(), weft::Error>(())
//! ```
//!
//! In Jupyter (evcxr), plans, run results and predictions display themselves (SVG, HTML).

pub mod bench;
mod bench_dist;
#[cfg(feature = "gpu")]
pub mod bench_gpu;
pub mod devices;
pub mod distributed;
mod error;
mod experiment;
pub mod notebook;
mod plan_view;
pub mod predict;
pub mod progress;
pub mod report;
#[cfg(feature = "cli")]
pub mod serve;

pub use error::{Error, Result};
pub use experiment::{Check, Experiment, RunResult, TrainSummary};
pub use plan_view::PlanView;
pub use predict::Predictions;
pub use weft_data::Table;
pub use weft_dsl::{Spec, SpecError};
pub use weft_executors::rundir::SavedModel;
pub use weft_executors::train::{EpochRecord, Progress};
pub use weft_planner::Plan;

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
