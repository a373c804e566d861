//! Planner errors: spec problems found while building the graph (with a spec path), and bugs.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlanError {
    /// The spec asks for something that does not fit (shapes, units vs classes, …).
    #[error("{path}: {message}")]
    Spec { path: String, message: String },
    /// An op has no gradient rule (a bug in weft if the op came from a spec).
    #[error("internal error: no gradient rule for {op}")]
    BackwardNotSupported { op: String },
    /// A bug in weft, never the user's fault.
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}

impl PlanError {
    pub fn spec(path: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError::Spec {
            path: path.into(),
            message: message.into(),
        }
    }
}
