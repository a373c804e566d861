//! weft-dist: the distributed runtime.
//!
//! A driver (the process that reads the spec) starts or finds workers, sends each one the
//! plan and its share of the data over an HTTP control API ([`worker`] on the worker,
//! [`driver`] on the driver), and gathers their metrics. Workers exchange gradients or
//! parameters over a TCP data plane ([`transport`], [`frame`]) with ring collectives
//! ([`ring`]) or through a parameter server ([`ps`]); each strategy is an [`exchange`] of the
//! one training loop (weft-runtime), which every worker runs ([`job`]).

pub mod bench;
pub mod bucketed;
pub mod compress;
pub mod driver;
pub mod error;
pub mod exchange;
pub mod frame;
#[cfg(feature = "worker")]
pub mod http;
pub mod job;
pub mod launch;
pub mod protocol;
pub mod ps;
pub mod rendezvous;
pub mod ring;
pub mod shard;
pub mod transport;
#[cfg(feature = "worker")]
pub mod worker;

pub use error::DistError;
