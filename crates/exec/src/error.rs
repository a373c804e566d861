//! Executor errors: shapes, what this build cannot run, the GPU, bugs.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The spec asks for something this build cannot run (names the spec path).
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    /// The GPU failed: no adapter, a limit, out of memory, a lost or hung device.
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}
