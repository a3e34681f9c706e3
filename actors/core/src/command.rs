//! Commands are the payload of Raft log entries: the only way cluster state changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    Cluster, Node, Service, ServiceSpec, Task, TaskState, TaskStatus, UpdateStatus,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    InitCluster {
        cluster: Cluster,
        node: Node,
    },
    /// Adds a node or replaces its descriptive fields (hostname, role, drivers, labels).
    UpsertNode(Node),
    SetNodeState {
        node_id: String,
        state: crate::model::NodeState,
        message: String,
        at: DateTime<Utc>,
    },
    /// The leader's dispatcher found the node's clock beyond the bound (or
    /// back within it: `None`).
    SetNodeClockSkew {
        node_id: String,
        skew_ms: Option<i64>,
    },
    /// `node update` and `node promote|demote`: only the fields given change.
    UpdateNode {
        id: String,
        role: Option<crate::model::NodeRole>,
        availability: Option<crate::model::Availability>,
        labels_add: Vec<(String, String)>,
        labels_rm: Vec<String>,
        at: DateTime<Utc>,
    },
    /// `node rm`: the node leaves the state and its certificate is refused from now on.
    RemoveNode {
        id: String,
    },
    /// `swarm join-token --rotate`.
    RotateJoinTokens {
        worker: Option<String>,
        manager: Option<String>,
        at: DateTime<Utc>,
    },
    /// `swarm update`: the cluster's settings.
    UpdateClusterSpec {
        spec: crate::model::ClusterSpec,
        at: DateTime<Utc>,
    },
    CreateService(Box<Service>),
    /// `service` is what the user typed (id, name or unique id prefix),
    /// resolved when the entry applies: a manager's possibly stale local
    /// state must not decide which service a write means.
    UpdateService {
        service: String,
        spec: ServiceSpec,
        /// Refuse the update unless the service is still at this version.
        expected_version: Option<u64>,
        at: DateTime<Utc>,
    },
    /// `service rollback` (`manual`: Spec and PreviousSpec swap places) and
    /// the updater's failure action `rollback` (PreviousSpec becomes the
    /// spec and is used up, as swarmkit does). Starts a rollback rollout.
    RollbackService {
        service: String,
        expected_version: Option<u64>,
        manual: bool,
        message: String,
        at: DateTime<Utc>,
    },
    /// The updater's bookkeeping. Refused unless the service is still at
    /// `expected_version`: a plan made from a spec that has changed since
    /// never lands, in a `Batch` with it or alone. `status: None` only checks.
    UpdateProgress {
        service_id: String,
        expected_version: u64,
        status: Option<UpdateStatus>,
        at: DateTime<Utc>,
    },
    /// Removes the service and marks all its tasks for removal, atomically.
    RemoveService {
        service: String,
        at: DateTime<Utc>,
    },
    CreateTasks(Vec<Task>),
    UpdateTasks {
        updates: Vec<TaskUpdate>,
        at: DateTime<Utc>,
    },
    DeleteTasks(Vec<String>),
    /// `secret`/`config` create, update (rotation) and rm.
    Secrets(crate::model::secret::SecretCommand),
    /// `network create|rm`, and a node's block on an attachable network.
    Networks(crate::model::network::NetworkCommand),
    /// Several commands applied as one: all or nothing.
    Batch(Vec<Command>),
    /// Several proposers' writes sharing one Raft entry (the Proposer packs
    /// the writes queued at one moment): applied in order, each alone and
    /// with its own result, so one refused write neither fails nor undoes
    /// the others (unlike `Batch`). Only ever a whole entry's command: the
    /// Proposer does not take it from a caller, and the state machine
    /// refuses it anywhere else (inside a `Batch`, or nested).
    Packed(Vec<Proposal>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskUpdate {
    Assign {
        task_id: String,
        node_id: String,
    },
    /// The scheduler could not place the task; it stays PENDING with this reason.
    Pending {
        task_id: String,
        reason: String,
    },
    Desired {
        task_id: String,
        state: TaskState,
    },
    /// Observed status reported by `node_id`: refused unless the task is
    /// that node's.
    Status {
        task_id: String,
        node_id: String,
        status: TaskStatus,
    },
}

/// The first cluster version at which writers use `Command::Packed` and
/// `ProposeMany`: builds before them could read neither, so below it every
/// write is an entry, and a forwarded request, of its own.
pub const PACKED_SINCE: u32 = 2;

/// A command together with the id its proposer waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: u128,
    pub command: Command,
}

impl Proposal {
    /// The writes this entry carries, each with the id its proposer waits
    /// for: the proposal itself, or the ones packed into it.
    pub fn writes(&self) -> Vec<(u128, &Command)> {
        match &self.command {
            Command::Packed(all) => all.iter().map(|p| (p.id, &p.command)).collect(),
            command => vec![(self.id, command)],
        }
    }

    /// The commands of this entry, unpacked (what a reader of the log wants).
    pub fn into_commands(self) -> Vec<Command> {
        match self.command {
            Command::Packed(all) => all.into_iter().map(|p| p.command).collect(),
            command => vec![command],
        }
    }
}
