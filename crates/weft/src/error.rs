//! The facade's error: every stage's error, each already saying where and what.

use thiserror::Error;

#[derive(Error)]
pub enum Error {
    #[error("{0}")]
    Spec(#[from] weft_dsl::SpecError),
    #[error("{0}")]
    Data(#[from] weft_data::DataError),
    #[error("{0}")]
    Exec(#[from] weft_exec::ExecError),
    /// Boxed: a run's error holds the data's and the executor's.
    #[error("{0}")]
    Run(Box<weft_runtime::RunError>),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A distributed run stopped (a worker died, a network problem); says how to resume.
    #[error("{message}{}", resume.as_ref().map(|r| format!("\n{r}")).unwrap_or_default())]
    Stopped {
        message: String,
        resume: Option<String>,
    },
    /// `--resume` of a run that has nothing left to train (not a failure: the CLI exits 0).
    #[error("{0}")]
    NothingToDo(String),
}

impl From<weft_dist::DistError> for Error {
    fn from(e: weft_dist::DistError) -> Error {
        match e {
            weft_dist::DistError::Exec(e) => Error::Exec(e),
            weft_dist::DistError::Run(e) => Error::Run(Box::new(e)),
            other => Error::Stopped {
                message: other.to_string(),
                resume: None,
            },
        }
    }
}

impl From<weft_runtime::RunError> for Error {
    fn from(e: weft_runtime::RunError) -> Error {
        Error::Run(Box::new(e))
    }
}

impl Error {
    /// True when the user can fix it (spec, data, files); false for bugs in weft.
    pub fn is_user_error(&self) -> bool {
        use weft_exec::ExecError;
        use weft_runtime::RunError;
        match self {
            Error::Exec(ExecError::Internal(_)) => false,
            Error::Run(e) => !matches!(
                **e,
                RunError::Internal(_) | RunError::Exec(ExecError::Internal(_))
            ),
            _ => true,
        }
    }
}

/// Debug prints the located message too: notebooks and `fn main() -> Result` show errors
/// with Debug, and users should see the same text as the CLI prints.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
