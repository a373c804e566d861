//! Errors of the distributed runtime. Every network error names the peer (rank and
//! address) and what was being done, so a user can tell which machine to look at.

use weft_exec::ExecError;
use weft_runtime::RunError;

use crate::frame::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A peer did not answer within the spec's `parallelism.data.timeout_s`.
    #[error(
        "{peer} did not answer within {seconds:.1}s while {doing} (parallelism.data.timeout_s)"
    )]
    Timeout {
        peer: String,
        doing: String,
        seconds: f64,
    },
    /// The connection closed or reset: the peer process died or was killed.
    #[error("{peer} closed the connection while {doing}: it stopped or was killed")]
    PeerLost { peer: String, doing: String },
    #[error("{peer}: {source}")]
    Frame {
        peer: String,
        #[source]
        source: FrameError,
    },
    /// The peer answered with a different token.
    #[error("{peer} refused the connection: {message}")]
    Refused { peer: String, message: String },
    #[error("{peer}: {message}")]
    Protocol { peer: String, message: String },
    #[error("could not {doing}: {message}")]
    Io { doing: String, message: String },
    /// A worker reported a failure (its message says where).
    #[error("worker {rank} ({addr}) failed: {message}")]
    Worker {
        rank: usize,
        addr: String,
        message: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("training was stopped: {0}")]
    Aborted(String),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Run(RunError),
}

/// A training loop's error back as the distributed runtime's: an exchange's own error comes
/// out as it went in.
impl From<RunError> for DistError {
    fn from(e: RunError) -> DistError {
        match e {
            RunError::Exchange(inner) => match inner.downcast::<DistError>() {
                Ok(d) => *d,
                Err(other) => DistError::Run(RunError::Exchange(other)),
            },
            RunError::Exec(e) => DistError::Exec(e),
            RunError::Aborted(why) => DistError::Aborted(why),
            e => DistError::Run(e),
        }
    }
}

/// An exchange's error, carried through the training loop.
impl From<DistError> for RunError {
    fn from(e: DistError) -> RunError {
        match e {
            DistError::Exec(e) => RunError::Exec(e),
            DistError::Run(e) => e,
            e => RunError::Exchange(Box::new(e)),
        }
    }
}

impl DistError {
    pub fn io(doing: impl Into<String>, e: impl std::fmt::Display) -> DistError {
        DistError::Io {
            doing: doing.into(),
            message: e.to_string(),
        }
    }
}

pub type Result<T, E = DistError> = std::result::Result<T, E>;
