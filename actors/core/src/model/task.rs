//! A task: one run of a service's template in one slot, and its status.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::service::{Service, TaskTemplate};

/// The task states in swarmkit's order. Observed state only moves forward.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::New,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
        TaskState::Remove,
        TaskState::Orphaned,
    ];

    /// Lowercase name, as the Docker API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// A task in this observed state will never run again.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

/// A running task's health, as its health check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskStatus {
    pub state: TaskState,
    pub timestamp: DateTime<Utc>,
    pub message: String,
    pub err: Option<String>,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    /// What the task's health check says (`None`: it has none).
    pub health: Option<Health>,
    /// It failed because its node could not prepare what every task needs
    /// there (its network sandbox, its confinement), not because of the task
    /// itself: the slot's next task backs off (`orchestrator/restart.rs`).
    pub node_fault: bool,
}

impl TaskStatus {
    pub fn new(state: TaskState, message: impl Into<String>, at: DateTime<Utc>) -> Self {
        TaskStatus {
            state,
            timestamp: at,
            message: message.into(),
            ..TaskStatus::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service_id: String,
    pub service_name: String,
    /// The service's labels when the task was made (swarmkit's
    /// `ServiceAnnotations`): what `{{.Service.Labels}}` expands to.
    pub service_labels: BTreeMap<String, String>,
    pub slot: u64,
    pub node_id: Option<String>,
    /// The service version this task's spec was taken from.
    pub spec_version: u64,
    pub spec: TaskTemplate,
    pub desired_state: TaskState,
    pub status: TaskStatus,
    /// When earlier tasks of this slot were restarted, for `max_attempts` within `window`.
    pub restart_history: Vec<DateTime<Utc>>,
    /// How many tasks of this slot in a row before it failed for a node
    /// fault (`TaskStatus::node_fault`): the exponent of its backoff.
    pub node_faults: u32,
    /// When the task was first reported RUNNING (the updater's monitor
    /// period counts from here).
    pub started_at: Option<DateTime<Utc>>,
    /// Its address on each network of its spec, given when it is assigned
    /// to a node and given back when it ends or is removed.
    pub attachments: Vec<crate::model::network::Attachment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Task {
    /// `web.3`, the name `service ps` shows; a global task (slot 0) is
    /// named after its node, as docker names it: `web.NODEID`.
    pub fn name(&self) -> String {
        match (self.slot, &self.node_id) {
            (0, Some(node)) => format!("{}.{}", self.service_name, node),
            _ => format!("{}.{}", self.service_name, self.slot),
        }
    }

    /// Desired to run (or to be ready to run) and not finished.
    pub fn is_runnable(&self) -> bool {
        self.desired_state <= TaskState::Running && !self.status.state.is_terminal()
    }

    /// Running, and healthy if it has a health check: up for the updater.
    pub fn is_up(&self) -> bool {
        self.status.state == TaskState::Running
            && match self.status.health {
                None => true,
                Some(h) => h == Health::Healthy,
            }
    }

    /// A new task `id` of `svc` for `slot`, to run its current spec.
    pub fn for_slot(
        id: String,
        svc: &Service,
        slot: u64,
        history: Vec<DateTime<Utc>>,
        desired_state: TaskState,
        now: DateTime<Utc>,
    ) -> Task {
        Task {
            id,
            service_id: svc.id.clone(),
            service_name: svc.spec.name.clone(),
            service_labels: svc.spec.labels.clone(),
            slot,
            node_id: None,
            spec_version: svc.version,
            spec: svc.spec.task_template.clone(),
            desired_state,
            status: TaskStatus {
                state: TaskState::New,
                timestamp: now,
                message: "created".into(),
                ..Default::default()
            },
            restart_history: history,
            node_faults: 0,
            started_at: None,
            attachments: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }
}
