//! weft-planner
pub mod rng;
