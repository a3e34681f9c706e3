//! The scheduler (leader only): assigns NEW and PENDING tasks to nodes, with
//! the placement decisions of `shoal_core::plan::schedule`.

mod actor;

pub use actor::{Scheduler, SchedulerMsg};
