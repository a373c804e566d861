//! Errors of a run: the executor's, the data's, numerical trouble, I/O of run files, bugs.

use thiserror::Error;
use weft_data::DataError;
use weft_exec::ExecError;

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Data(#[from] DataError),
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
    /// A saved model or checkpoint that cannot be used (names the file).
    #[error("{path}: {message}")]
    Model { path: String, message: String },
    /// The exchange between workers failed (a lost peer, a refused frame): the distributed
    /// runtime's own error, which says which peer and why.
    #[error(transparent)]
    Exchange(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The run was asked to stop (by the driver, or the user).
    #[error("{0}")]
    Aborted(String),
    /// A single process stopped by the user (Ctrl-C) after checkpointing where it stood.
    #[error("{why}; the checkpoint {} is saved", at.describe())]
    Interrupted {
        why: String,
        at: crate::checkpoint::Start,
    },
    #[error("internal error (a bug in weft): {0}")]
    Internal(String),
}

impl RunError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> RunError {
        RunError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
