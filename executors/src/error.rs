//! Executor errors, by stage: data, shapes, numerical trouble, I/O of run files, bugs.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Data(#[from] weft_data::DataError),
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Training diverged (the loss became NaN or infinite).
    #[error("training diverged at epoch {epoch}, step {step}: the loss is {loss}; try a lower learning rate or `train.clip_grad_norm`")]
    Diverged { epoch: usize, step: u64, loss: f32 },
    /// A parameter became NaN or infinite (found before a checkpoint, which is not written).
    #[error("training diverged at epoch {epoch}, step {step}: a parameter is {value} (the last good checkpoint is kept); try a lower learning rate or `train.clip_grad_norm`")]
    NonFiniteParams { epoch: usize, step: u64, value: f32 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Model { path: String, message: String },
    /// The spec asks for something this build cannot run (names the spec path).
    #[error("{path}: {message}")]
    Unsupported { path: String, message: String },
    /// The GPU failed: no adapter, a limit, out of memory, a lost or hung device.
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}

impl ExecError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> ExecError {
        ExecError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
