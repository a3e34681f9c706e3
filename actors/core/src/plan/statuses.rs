//! The status reports the dispatcher writes into the state: which are
//! taken in (only a node's reports about its own tasks, and only news),
//! their times moved onto the leader's clock, one write at a time with
//! reports arriving meanwhile coalesced, newest per task. Bounded by the
//! tasks, not by how often nodes report.

use std::collections::BTreeMap;

use crate::clock::Offsets;
use crate::command::TaskUpdate;
use crate::limits::MAX_UPDATES_PER_PROPOSAL;
use crate::model::TaskStatus;
use crate::state::ClusterState;

/// Status reports waiting for a write, and whether one is in flight.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatusQueue {
    /// Newest report per task: (task id) → (node id, status).
    queued: BTreeMap<String, (String, TaskStatus)>,
    writing: bool,
}

impl StatusQueue {
    /// Queues the reports of `node_id` for tasks that are its own in
    /// `state`; a report about another node's task is dropped (the state
    /// machine would refuse it too), and so is one that says nothing new.
    /// `clock` (the node's, against the leader's) moves the reports' times
    /// onto the leader's clock.
    pub fn queue(
        &mut self,
        state: &ClusterState,
        node_id: &str,
        clock: Option<&Offsets>,
        updates: Vec<(String, TaskStatus)>,
    ) {
        for (task_id, mut status) in updates {
            let Some(task) = state.tasks.get(&task_id) else {
                continue;
            };
            if task.node_id.as_deref() != Some(node_id) {
                tracing::debug!(node = %node_id, task = %task_id, "status for a task of another node refused");
                continue;
            }
            // Times on this manager's clock, whatever the node's says.
            let reported = status.timestamp;
            if let Some(clock) = clock {
                status.timestamp = clock.to_leader(reported);
            }
            let same = match status.timestamp == reported {
                true => task.status == status,
                // A report sent again under a moved clock is not news.
                false => {
                    TaskStatus {
                        timestamp: task.status.timestamp,
                        ..status.clone()
                    } == task.status
                }
            };
            if same {
                continue;
            }
            match self.queued.get(&task_id) {
                Some((_, queued)) if queued.state > status.state => {}
                _ => {
                    self.queued.insert(task_id, (node_id.to_string(), status));
                }
            }
        }
    }

    /// The next write (at most a proposal's worth, in task id order), unless
    /// one is in flight or nothing waits; it is in flight until `written`.
    pub fn next_write(&mut self) -> Option<Vec<TaskUpdate>> {
        if self.writing || self.queued.is_empty() {
            return None;
        }
        let ids: Vec<String> = self
            .queued
            .keys()
            .take(MAX_UPDATES_PER_PROPOSAL)
            .cloned()
            .collect();
        let updates = ids
            .into_iter()
            .filter_map(|task_id| {
                let (node_id, status) = self.queued.remove(&task_id)?;
                Some(TaskUpdate::Status {
                    task_id,
                    node_id,
                    status,
                })
            })
            .collect();
        self.writing = true;
        Some(updates)
    }

    /// The write in flight is done; `failed` (its updates, if it failed)
    /// are queued again unless a newer report came meanwhile (applying a
    /// report twice changes nothing: states only move forward).
    pub fn written(&mut self, failed: Vec<TaskUpdate>) {
        self.writing = false;
        for u in failed {
            if let TaskUpdate::Status {
                task_id,
                node_id,
                status,
            } = u
            {
                self.queued.entry(task_id).or_insert((node_id, status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{sample_task, TaskState};
    use chrono::{DateTime, TimeDelta, Utc};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    fn state() -> ClusterState {
        let mut state = ClusterState::default();
        let mut t = sample_task(TaskState::Assigned, at(0));
        t.node_id = Some("n".into());
        state.tasks.insert("t".into(), t);
        state
    }

    fn status(s: TaskState, ms: i64) -> TaskStatus {
        TaskStatus {
            state: s,
            timestamp: at(ms),
            ..Default::default()
        }
    }

    fn written(updates: &[TaskUpdate]) -> Vec<(String, TaskState)> {
        updates
            .iter()
            .filter_map(|u| match u {
                TaskUpdate::Status {
                    task_id, status, ..
                } => Some((task_id.clone(), status.state)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_a_nodes_own_news_is_written_one_write_at_a_time() {
        let state = state();
        let mut queue = StatusQueue::default();
        // Another node's report, and one that says nothing new: dropped.
        queue.queue(
            &state,
            "m",
            None,
            vec![("t".into(), status(TaskState::Running, 5))],
        );
        let same = state.tasks["t"].status.clone();
        queue.queue(&state, "n", None, vec![("t".into(), same)]);
        assert_eq!(queue.next_write(), None);
        queue.queue(
            &state,
            "n",
            None,
            vec![("t".into(), status(TaskState::Starting, 5))],
        );
        let first = queue.next_write().expect("a write");
        assert_eq!(written(&first), [("t".to_string(), TaskState::Starting)]);
        // In flight: reports coalesce, the newest state per task wins.
        queue.queue(
            &state,
            "n",
            None,
            vec![("t".into(), status(TaskState::Running, 6))],
        );
        queue.queue(
            &state,
            "n",
            None,
            vec![("t".into(), status(TaskState::Starting, 7))],
        );
        assert_eq!(queue.next_write(), None);
        // The first write failed: it is queued again only if nothing newer came.
        queue.written(first);
        let second = queue.next_write().expect("a write");
        assert_eq!(written(&second), [("t".to_string(), TaskState::Running)]);
        queue.written(Vec::new());
        assert_eq!(queue.next_write(), None);
    }

    #[test]
    fn a_reports_times_are_moved_onto_the_leaders_clock() {
        let state = state();
        let mut clock = Offsets::default();
        // The node's clock is ten minutes ahead.
        clock.record(at(600_000), at(0));
        let mut queue = StatusQueue::default();
        queue.queue(
            &state,
            "n",
            Some(&clock),
            vec![("t".into(), status(TaskState::Running, 600_010))],
        );
        let updates = queue.next_write().expect("a write");
        let TaskUpdate::Status { status, .. } = &updates[0] else {
            panic!("{updates:?}");
        };
        assert_eq!(status.timestamp, at(10));
    }
}
