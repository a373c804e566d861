//! weft-planner: compiles a validated spec into an execution plan — the workflow DAG, the
//! compute graph with inferred shapes, reverse-mode autodiff, optimizer updates, dead-code
//! elimination into schedules, data-parallel planning (fusion buckets, bytes on the wire), a
//! cost model, and text / DOT / JSON forms.
//!
//! Pure: no file system, threads or clocks; the same code runs in the CLI and in wasm32.

pub mod autodiff;
pub mod build;
pub mod compile;
pub mod cost;
pub mod display;
pub mod error;
pub mod fuse;
pub mod graph;
pub mod memory;
pub mod op;
pub mod parallel;
pub mod plan;
pub mod target;
pub mod workflow;

pub use error::PlanError;
pub use op::{
    ConvPart, Image, LossKind, NormAxis, NormPart, Op, ParamInit, Phase, PoolKind, Rows, Shape,
    Window,
};
pub use plan::{
    Bucket, Cost, DataParallelPlan, MemoryPlan, ParamRef, PassLog, Plan, PlanNode, ScheduleKind,
    Schedules, Slot, Storage, Target, Traffic, PLAN_VERSION,
};
pub use weft_common::{DataShape, Task, TaskKind};
