//! weft-runtime: the one training loop ([`train::fit`]) that every mode runs, with the
//! [`exchange::Exchange`] each mode implements (the single process's is [`exchange::Local`];
//! all-reduce, the parameter-server family, local SGD and gossip are in weft-dist), full-batch
//! L-BFGS, evaluation metrics, and run directories (checkpoints written atomically).

pub mod checkpoint;
pub mod error;
pub mod exchange;
mod feed;
pub mod lbfgs;
pub mod metrics;
pub mod rundir;
pub mod train;

pub use error::RunError;
pub use exchange::{Exchange, Local};
