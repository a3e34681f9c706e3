//! What the dispatcher sends a node: its tasks (assigned and not ended),
//! and the secrets and configs those tasks use (and no others). The tasks
//! are found through an index of which tasks each node was given, kept
//! from the store's changes, so a push reads that node's tasks and not the
//! whole state (with 100k tasks on 1,000 nodes, a scan per pushed node
//! made one round of pushes cost 10^8 steps).

use std::collections::{BTreeSet, HashMap};

use crate::model::secret::{Keyring, Payload};
use crate::model::{Task, TaskState};
use crate::state::{Change, ClusterState};

/// The tasks given to each node. A task's node is set once (when it is
/// assigned, or when a global task is made) and never changes, so the index
/// only grows with new tasks and shrinks as they are deleted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TaskIndex {
    by_node: HashMap<String, BTreeSet<String>>,
    node_of: HashMap<String, String>,
}

impl TaskIndex {
    /// The index of every task of `state` that has a node.
    pub fn build(state: &ClusterState) -> TaskIndex {
        let mut index = TaskIndex::default();
        for t in state.tasks.values() {
            if let Some(node) = &t.node_id {
                index.insert(&t.id, node);
            }
        }
        index
    }

    fn insert(&mut self, task_id: &str, node_id: &str) {
        if self.node_of.contains_key(task_id) {
            return;
        }
        self.node_of
            .insert(task_id.to_string(), node_id.to_string());
        self.by_node
            .entry(node_id.to_string())
            .or_default()
            .insert(task_id.to_string());
    }

    /// Forgets a deleted task; returns the node it was on.
    fn remove(&mut self, task_id: &str) -> Option<String> {
        let node = self.node_of.remove(task_id)?;
        if let Some(tasks) = self.by_node.get_mut(&node) {
            tasks.remove(task_id);
            if tasks.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    /// Takes in `changes` (applied to `state`); returns the nodes whose
    /// tasks they touch (the index remembers the node of a deleted task).
    pub fn note(&mut self, state: &ClusterState, changes: &[Change]) -> BTreeSet<String> {
        let mut nodes = BTreeSet::new();
        for c in changes {
            match c {
                Change::Task { id, .. } => {
                    let node = state.tasks.get(id).and_then(|t| t.node_id.as_ref());
                    if let Some(n) = node {
                        self.insert(id, n);
                        nodes.insert(n.clone());
                    }
                }
                Change::TaskRemoved { id, .. } => {
                    nodes.extend(self.remove(id));
                }
                _ => {}
            }
        }
        nodes
    }

    /// The ids of the tasks given to `node_id`, in id order.
    pub fn on_node(&self, node_id: &str) -> impl Iterator<Item = &String> {
        self.by_node.get(node_id).into_iter().flatten()
    }
}

/// A node's assignments as they stand in the state.
pub struct Assignments<'a> {
    pub tasks: Vec<&'a Task>,
    pub payloads: Vec<Payload>,
}

/// What a node was sent, in short: each task's id and desired state, and
/// each payload's kind, id and data version. A push that would change
/// neither (a task's status moved on) is not sent.
pub type Sent = Vec<(String, TaskState)>;

impl<'a> Assignments<'a> {
    /// The assignments of `node_id` in `state`, its secrets opened with
    /// `keyring` (one that cannot be, on a locked manager, is left out).
    pub fn of(
        state: &'a ClusterState,
        index: &TaskIndex,
        node_id: &str,
        keyring: Option<&dyn Keyring>,
    ) -> Assignments<'a> {
        let tasks: Vec<&Task> = index
            .on_node(node_id)
            .filter_map(|id| state.tasks.get(id))
            .filter(|t| {
                // A global task is made for its node but goes to it only
                // once the scheduler has checked that it fits.
                t.node_id.as_deref() == Some(node_id)
                    && t.status.state >= TaskState::Assigned
                    && !t.status.state.is_terminal()
            })
            .collect();
        // Only what this node's tasks use, by the replicated state.
        let payloads = crate::rules::secret::payloads_for(state, tasks.iter().copied(), keyring);
        Assignments { tasks, payloads }
    }

    /// What sending these tells the node (`Sent`).
    pub fn sent(&self) -> Sent {
        let mut sent: Sent = self
            .tasks
            .iter()
            .map(|t| (t.id.clone(), t.desired_state))
            .collect();
        // A secret the node could not be given yet (a locked manager) is
        // sent once it can be: its arrival changes what was sent.
        sent.extend(self.payloads.iter().map(|p| {
            (
                format!("{}/{}/{}", p.kind.as_str(), p.id, p.data_version),
                TaskState::Running,
            )
        }));
        sent
    }
}
