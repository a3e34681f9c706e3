//! The planners: pure functions from the state, the time and a source of
//! randomness (for new tasks' ids) to the writes that move the cluster
//! towards what its specs ask. The actors call them and propose what they
//! return; nothing here waits, reads a clock or writes.
//!
//! * `service::plan` — the orchestrator's pass over one service, by its mode
//!   (`replicated`, `global`, `job`; `rebalance` once a replicated service
//!   is where its spec wants it), each slot's restarts by `restart`;
//! * `update` — one step of a service's rolling update or rollback;
//! * `schedule` — which node each pending task goes to; `backlog` — the
//!   scheduler's pass over the tasks waiting for one, with every node's
//!   `loads`;
//! * `sessions` — the dispatcher's sessions: heartbeats, deadlines, which
//!   nodes are down, what each node is sent (`assignments`); `statuses` —
//!   which status reports it writes;
//! * `reaper` — which finished tasks are past the history limit;
//! * `agent` — which task actors a worker starts and stops.

pub mod agent;
pub mod assignments;
pub mod backlog;
pub mod global;
pub mod job;
pub mod loads;
pub mod reaper;
pub mod rebalance;
pub mod replicated;
pub mod restart;
pub mod schedule;
pub mod service;
pub mod sessions;
pub mod statuses;
pub mod update;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::command::{Command, TaskUpdate};
use crate::model::Task;

/// The writes of one pass (proposed as one `Batch`), and when to look again
/// if nothing changes before (zero: at once).
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub commands: Vec<Command>,
    pub wake_in: Option<Duration>,
    /// The pass stopped at `limits::MAX_TASKS_PER_PASS`: plan again once
    /// these commands are in.
    pub more: bool,
}

impl Plan {
    /// Adds a pass's task changes (stamped `at`), then the tasks it makes:
    /// in that order, so a slot's old task is shut down in the same entry
    /// that creates its successor, before it.
    pub fn write(&mut self, updates: Vec<TaskUpdate>, create: Vec<Task>, at: DateTime<Utc>) {
        if !updates.is_empty() {
            self.commands.push(Command::UpdateTasks { updates, at });
        }
        if !create.is_empty() {
            self.commands.push(Command::CreateTasks(create));
        }
    }
}
