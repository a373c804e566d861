//! What a model learns (the task) and what the planner needs to know about the data.

use serde::{Deserialize, Serialize};

/// The learning task, with its output width: one enum for the planner, the metrics, the
/// data loader and the viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    Classification { classes: usize },
    Regression { targets: usize },
}

/// The task before the data is read: what the loss trains for (`mse` is regression, the
/// cross-entropies classification). The data loader reads the label by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Class indices: the label holds strings or integers.
    Classification,
    /// Numbers.
    Regression,
}

impl Task {
    /// Classification whose classes the data has not said yet (its schema was read, not its
    /// rows): the planner takes them from the output layer, and a run, which reads the
    /// rows, plans again with the real number.
    pub const fn classes_from_model() -> Task {
        Task::Classification { classes: 0 }
    }
}

/// What the planner needs to know about the data: feature names and the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataShape {
    pub features: Vec<String>,
    pub task: Task,
    /// Ids each embedding column takes (`embedding` inputs of a graph model), by column.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vocab: std::collections::BTreeMap<String, usize>,
}
