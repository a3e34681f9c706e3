//! The task driver interface. Drivers live in `shoal-node` (process, docker);
//! tests and simulations use fakes.
//!
//! A driver, not the task actor, owns what runs: a restarted task actor finds
//! its process again through `inspect` instead of starting a second one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::model::{DriverInfo, Health, Task};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Killed by the kernel's OOM killer at the task's memory limit
    /// (docker's `OOMKilled`; exit code 137).
    OomKilled,
}

impl Exit {
    /// The exit code docker would show (128 + signal for a killed process).
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::OomKilled => 137,
        }
    }
}

/// What a driver knows about a task it was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Running { pid: Option<u32> },
    Exited(Exit),
}

/// What went wrong underneath a driver error (an OS or engine error).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The task cannot run here at all (bad image/executable): REJECTED.
    #[error("{0}")]
    Rejected(String),
    /// As `Rejected`, because of `cause`.
    #[error("{what}: {cause}")]
    RejectedBy {
        what: String,
        #[source]
        cause: Cause,
    },
    /// The task could not start this time: FAILED, and the restart policy decides.
    #[error("{0}")]
    Failed(String),
    /// As `Failed`, because of `cause`.
    #[error("{what}: {cause}")]
    FailedBy {
        what: String,
        #[source]
        cause: Cause,
    },
    /// The node could not prepare what any task needs there (its network
    /// sandbox, its confinement): FAILED, marked a node fault, so the
    /// slot's next task backs off (`orchestrator/restart.rs`).
    #[error("{what}: {cause}")]
    NodeFaultBy {
        what: String,
        #[source]
        cause: Cause,
    },
}

impl DriverError {
    pub fn rejected_by(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DriverError::RejectedBy {
            what: what.into(),
            cause: Arc::new(cause),
        }
    }

    pub fn failed_by(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DriverError::FailedBy {
            what: what.into(),
            cause: Arc::new(cause),
        }
    }

    pub fn node_fault_by(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DriverError::NodeFaultBy {
            what: what.into(),
            cause: Arc::new(cause),
        }
    }

    /// Whether the node, not the task, is why it failed.
    pub fn is_node_fault(&self) -> bool {
        matches!(self, DriverError::NodeFaultBy { .. })
    }

    /// Whether the task can never run here (REJECTED) rather than failed this once.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            DriverError::Rejected(_) | DriverError::RejectedBy { .. }
        )
    }
}

/// What a task actor needs to know to start its task.
#[derive(Debug, Clone)]
pub struct Launch {
    pub task: Task,
    pub node_id: String,
    /// The task's secret and config files (values in memory only).
    pub files: Vec<shoal_core::model::secret::TaskFile>,
}

pub trait Driver: Send + Sync + 'static {
    fn info(&self) -> DriverInfo;
    /// Whether the driver can run tasks right now (a docker engine may go away).
    fn available(&self) -> bool {
        true
    }
    /// Stops and forgets what this driver runs for tasks not in `keep` (tasks
    /// no longer assigned to this node, found again after a restart).
    fn retain(&self, _keep: &std::collections::HashSet<String>) {}
    /// Starts the task; if it is already known, does nothing and reports what it knows.
    fn start(&self, launch: Launch) -> BoxFuture<Result<Lifecycle, DriverError>>;
    fn inspect(&self, task_id: &str) -> Option<Lifecycle>;
    /// Whether a `start` of the task is still under way: `inspect` knows
    /// nothing of it yet, but the task has not gone.
    fn starting(&self, _task_id: &str) -> bool {
        false
    }
    /// Resolves when the task's process has ended (at once if it already has).
    fn wait(&self, task_id: &str) -> BoxFuture<Option<Exit>>;
    /// Asks the task to stop; kills it after `grace`. Resolves when it is gone.
    fn stop(&self, task_id: &str, grace: Duration) -> BoxFuture<()>;
    /// Forgets a finished task.
    fn remove(&self, task_id: &str);
    /// What the task's health check says, as it changes, if the driver runs
    /// one for it (on a task of its own: never in the caller's handler).
    fn health(&self, _task_id: &str) -> Option<tokio::sync::watch::Receiver<Health>> {
        None
    }
    /// Where this node reaches the task's network (its sandbox's address,
    /// the loopback for a task on the node's own network), if it runs here.
    fn address(&self, _task_id: &str) -> Option<std::net::IpAddr> {
        None
    }
}

pub type Drivers = BTreeMap<String, Arc<dyn Driver>>;
