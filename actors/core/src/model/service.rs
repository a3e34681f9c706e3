//! A service: its spec (task template, mode, update and rollback settings) and its record.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

impl RestartCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(RestartCondition::None),
            "on-failure" => Some(RestartCondition::OnFailure),
            "any" => Some(RestartCondition::Any),
            _ => None,
        }
    }
}

/// Durations are stored as nanoseconds, the unit the Docker API uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ns: u64,
    /// 0 means unlimited.
    pub max_attempts: u64,
    /// 0 means the attempts are counted over the task's whole life.
    pub window_ns: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ns: Duration::from_secs(5).as_nanos() as u64,
            max_attempts: 0,
            window_ns: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTemplate {
    pub driver: String,
    pub image: String,
    pub args: Vec<String>,
    /// `KEY=VALUE` strings, as in docker's `--env`.
    pub env: Vec<String>,
    pub restart_policy: RestartPolicy,
    pub stop_grace_period_ns: u64,
    /// Working directory and user inside the container (docker driver).
    pub workdir: String,
    pub user: String,
    /// Labels put on the container (beside shoal's own).
    pub container_labels: BTreeMap<String, String>,
    pub resources: Resources,
    /// Networks the task joins, by id (`host` keeps the node's own network
    /// namespace); none gives a process task a sandbox of its own on the
    /// node's bridge only.
    pub networks: Vec<crate::model::network::NetworkRef>,
    /// The health check the driver runs (`None`: the image's own, if any).
    pub healthcheck: Option<HealthConfig>,
    /// Bumped by `service update --force`: a changed counter makes every
    /// task out of date, so the updater replaces them all.
    pub force_update: u64,
    /// Secrets and configs the task gets as files (see `secrets`).
    pub secrets: Vec<crate::model::secret::FileRef>,
    pub configs: Vec<crate::model::secret::FileRef>,
    /// Constraints, spread preferences and replicas per node.
    pub placement: crate::model::placement::Placement,
    /// Bind mounts, volumes and tmpfs mounts (docker's `Mounts`).
    pub mounts: Vec<crate::model::mount::Mount>,
    /// How the task is confined beyond the defaults (docker's
    /// `--hostname`, `--read-only`, `--cap-add`, `--cap-drop`, seccomp);
    /// boxed: rarely set, and a command holding a template stays small.
    pub isolation: Box<Isolation>,
    /// docker's container options beyond the basics (`--entrypoint`,
    /// `--tty`, `--init`, `--group`, `--sysctl`, `--ulimit`, `--dns*`,
    /// `--host`); boxed for the same reason.
    pub options: Box<crate::model::container::ContainerOptions>,
}

/// What a task asks of its confinement; the defaults are docker's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The task's hostname (empty: the task id's first 12 characters).
    pub hostname: String,
    /// The root filesystem is read-only (`--read-only`).
    pub read_only: bool,
    /// Capabilities added to and dropped from docker's default set, as
    /// given (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// No seccomp filter (`--security-opt seccomp=unconfined`).
    pub seccomp_unconfined: bool,
    /// The signal that asks the task to stop (`--stop-signal`, a name such
    /// as `SIGUSR1`; empty: SIGTERM).
    pub stop_signal: String,
}

impl TaskTemplate {
    /// `--network host`: the node's own network namespace.
    pub fn host_network(&self) -> bool {
        self.networks.iter().any(|n| n.target == "host")
    }
}

/// docker's `HealthConfig`. `test` is `["CMD", prog, args..]`,
/// `["CMD-SHELL", command]` or `["NONE"]` (no health check at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    pub test: Vec<String>,
    pub interval_ns: u64,
    pub timeout_ns: u64,
    pub retries: u64,
    pub start_period_ns: u64,
}

impl HealthConfig {
    /// docker's defaults for what the user left at 0.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_RETRIES: u64 = 3;

    /// The check is `["NONE"]` (or empty): there is nothing to run.
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_none_or(|t| t == "NONE")
    }

    pub fn interval(&self) -> Duration {
        match self.interval_ns {
            0 => Self::DEFAULT_INTERVAL,
            n => Duration::from_nanos(n),
        }
    }

    pub fn timeout(&self) -> Duration {
        match self.timeout_ns {
            0 => Self::DEFAULT_TIMEOUT,
            n => Duration::from_nanos(n),
        }
    }

    pub fn retries(&self) -> u64 {
        match self.retries {
            0 => Self::DEFAULT_RETRIES,
            n => n,
        }
    }
}

/// CPU in billionths of a CPU, memory in bytes; 0 means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub limit_nano_cpus: u64,
    pub limit_memory_bytes: u64,
    /// What the scheduler counts against a node's capacity.
    pub reserve_nano_cpus: u64,
    pub reserve_memory_bytes: u64,
    /// The most processes the task may have at once (`--limit-pids`).
    pub limit_pids: u64,
    /// Named node resources the task reserves (`--generic-resource
    /// gpu=1`): counted against what its node declares, as memory is.
    pub reserve_generic: Vec<crate::model::placement::GenericResource>,
}

impl Default for TaskTemplate {
    fn default() -> Self {
        TaskTemplate {
            driver: "docker".into(),
            image: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            restart_policy: RestartPolicy::default(),
            stop_grace_period_ns: Duration::from_secs(10).as_nanos() as u64,
            workdir: String::new(),
            user: String::new(),
            container_labels: BTreeMap::new(),
            resources: Resources::default(),
            healthcheck: None,
            force_update: 0,
            networks: Vec::new(),
            secrets: Vec::new(),
            configs: Vec::new(),
            placement: Default::default(),
            mounts: Vec::new(),
            isolation: Box::default(),
            options: Box::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    Replicated {
        replicas: u64,
    },
    /// One task on every eligible node (slots are nodes).
    Global,
    /// Tasks that run to completion: `total_completions` slots, at most
    /// `max_concurrent` running at once (docker 20.10's jobs).
    ReplicatedJob {
        max_concurrent: u64,
        total_completions: u64,
    },
    /// One task to completion on every eligible node.
    GlobalJob,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    pub task_template: TaskTemplate,
    /// Published ports and how connections to them are balanced.
    pub endpoint: crate::model::port::EndpointSpec,
    pub update_config: UpdateConfig,
    pub rollback_config: UpdateConfig,
}

/// What the updater does when too many new tasks fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(FailureAction::Pause),
            "continue" => Some(FailureAction::Continue),
            "rollback" => Some(FailureAction::Rollback),
            _ => None,
        }
    }
}

/// Whether a slot's old task stops before its new one starts, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stop-first" => Some(UpdateOrder::StopFirst),
            "start-first" => Some(UpdateOrder::StartFirst),
            _ => None,
        }
    }
}

/// docker's `UpdateConfig` (also its `RollbackConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Slots replaced at once; 0 means all of them.
    pub parallelism: u64,
    pub delay_ns: u64,
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure after it starts.
    pub monitor_ns: u64,
    /// Failures tolerated, as millionths of the slots (docker's float
    /// `MaxFailureRatio` times 10^6, so specs stay comparable).
    pub max_failure_ratio_ppm: u32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ns: 0,
            failure_action: FailureAction::Pause,
            monitor_ns: Duration::from_secs(5).as_nanos() as u64,
            max_failure_ratio_ppm: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// Where a rolling update stands, in docker's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }

    /// The updater is rolling tasks out (forward or back).
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }
}

/// docker's `UpdateStatus`: the updater's whole memory, kept in the
/// replicated state so that a new leader's updater carries on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub message: String,
}

impl ServiceSpec {
    pub fn replicas(&self) -> u64 {
        match self.mode {
            ServiceMode::Replicated { replicas } => replicas,
            // Not the updater's slots: their own plans roll them.
            ServiceMode::Global | ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob => 0,
        }
    }

    /// One task per eligible node (a global service or a global job).
    pub fn is_global(&self) -> bool {
        matches!(self.mode, ServiceMode::Global | ServiceMode::GlobalJob)
    }

    /// Tasks run to completion and are not restarted once they succeed.
    pub fn is_job(&self) -> bool {
        matches!(
            self.mode,
            ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    pub spec: ServiceSpec,
    pub previous_spec: Option<ServiceSpec>,
    /// The rolling update of the current spec, if one was started.
    pub update_status: Option<UpdateStatus>,
    /// One address per network the service joins (endpoint mode `vip`),
    /// given by the state machine when the service is created or updated.
    pub virtual_ips: Vec<crate::model::network::VirtualIp>,
    /// Raft index of the last change; tasks record the version they were made from.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Service {
    /// A service about to be created with `spec` under `id` (its version is
    /// set when the entry applies).
    pub fn new(id: String, spec: ServiceSpec, now: DateTime<Utc>) -> Self {
        Service {
            id,
            spec,
            previous_spec: None,
            update_status: None,
            virtual_ips: Vec::new(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }
}
