//! The scheduler (leader only): assigns NEW and PENDING tasks to nodes.

mod actor;
pub mod placement;

pub use actor::{Scheduler, SchedulerMsg};
