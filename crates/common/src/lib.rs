//! weft-common: the few things every stage shares — the seeded RNG, the task and the data's
//! shape, unit formatting. No dependencies beyond serde, so dsl and planner stay pure.

pub mod builtin;
pub mod order;
pub mod rng;
pub mod task;
pub mod units;

pub use task::{DataShape, Task, TaskKind};
