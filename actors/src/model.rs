//! The cluster's domain objects, as they are replicated through Raft.
//!
//! These types are encoded with bincode (see `codec`), so they use no serde
//! attributes that need a self-describing format. The Docker-shaped JSON the
//! control API shows is built from them in `node::api::views`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 25;

/// A random 25-character lowercase alphanumeric id, the shape Swarm uses
/// (from the world's randomness: a harness's seed decides it).
pub fn new_id() -> String {
    crate::world::with_rng(|rng| id_from(rng))
}

/// An id of `new_id`'s shape drawn from `rng` (the CA draws token secrets
/// from the OS, never from a harness's seed).
pub fn id_from(rng: &mut (impl Rng + ?Sized)) -> String {
    (0..ID_LEN)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

/// Whether `id` has the shape `new_id` makes. Checked wherever an id turns
/// into a path or a key, so `../x` never names a file.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b))
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    Worker,
    Manager,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Worker => "worker",
            NodeRole::Manager => "manager",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Availability {
    #[default]
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeState {
    #[default]
    Unknown,
    Down,
    Ready,
    Disconnected,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Down => "down",
            NodeState::Ready => "ready",
            NodeState::Disconnected => "disconnected",
        }
    }
}

/// A task driver a node offers (`process`, `docker`), with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    /// The node's id inside Raft; 0 for a worker that never was a manager.
    pub raft_id: u64,
    pub hostname: String,
    pub role: NodeRole,
    pub availability: Availability,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    pub status_message: String,
    /// How far this node's wall clock is from the cluster's, in
    /// milliseconds, when beyond `crate::clock::SKEW_BOUND` (the leader's
    /// dispatcher measures it from heartbeats); `None` when within it.
    pub clock_skew_ms: Option<i64>,
    pub addr: String,
    pub drivers: Vec<DriverInfo>,
    /// Why this node cannot give a task a network of its own (not root, no
    /// namespaces); `None` when it can.
    pub sandbox_error: Option<String>,
    /// Platform, capacity and engine labels, as the node reports them.
    pub machine: crate::constraints::Machine,
    /// Bumped at every role change: certificates issued for an older
    /// generation are refused, so a demoted manager's old certificate no
    /// longer opens anything.
    pub cert_generation: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Node {
    pub fn has_driver(&self, name: &str) -> bool {
        self.drivers.iter().any(|d| d.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Old tasks kept per slot (Swarm's `TaskHistoryRetentionLimit`).
    pub task_history_limit: u64,
    /// Raft log entries between two snapshots.
    pub snapshot_interval: u64,
    /// Beyond Swarm: move replicas onto a node that becomes ready or active
    /// (`swarm update --rebalance on`; a service's `com.shoal.rebalance`
    /// label overrides it). docs/placement.md has the rule.
    pub rebalance: bool,
    /// Where overlays without `--subnet` get theirs (`swarm init
    /// --default-addr-pool`), and the length of each.
    pub default_addr_pool: Vec<crate::networks::Subnet>,
    pub subnet_size: u8,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            task_history_limit: 5,
            snapshot_interval: 10_000,
            rebalance: false,
            default_addr_pool: vec![
                crate::networks::Subnet::parse(crate::networks::DEFAULT_POOL).unwrap_or(
                    crate::networks::Subnet {
                        addr: std::net::Ipv4Addr::new(10, 200, 0, 0),
                        prefix: 16,
                    },
                ),
            ],
            subnet_size: crate::networks::DEFAULT_MASK,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub spec: ClusterSpec,
    pub join_tokens: JoinTokens,
    /// PEM of the cluster's root CA certificate (public part only).
    pub ca_cert_pem: String,
    /// Nodes removed from the swarm: their certificates are refused.
    pub removed_nodes: Vec<String>,
    /// Autolock's unlock key, sealed under the cluster's DEK (`None`: off).
    pub unlock_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

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
    pub networks: Vec<crate::networks::NetworkRef>,
    /// The health check the driver runs (`None`: the image's own, if any).
    pub healthcheck: Option<HealthConfig>,
    /// Bumped by `service update --force`: a changed counter makes every
    /// task out of date, so the updater replaces them all.
    pub force_update: u64,
    /// Secrets and configs the task gets as files (see `secrets`).
    pub secrets: Vec<crate::secrets::FileRef>,
    pub configs: Vec<crate::secrets::FileRef>,
    /// Constraints, spread preferences and replicas per node.
    pub placement: crate::constraints::Placement,
    /// Bind mounts, volumes and tmpfs mounts (docker's `Mounts`).
    pub mounts: Vec<crate::mounts::Mount>,
    /// How the task is confined beyond the defaults (docker's
    /// `--hostname`, `--read-only`, `--cap-add`, `--cap-drop`, seccomp);
    /// boxed: rarely set, and a command holding a template stays small.
    pub isolation: Box<Isolation>,
    /// docker's container options beyond the basics (`--entrypoint`,
    /// `--tty`, `--init`, `--group`, `--sysctl`, `--ulimit`, `--dns*`,
    /// `--host`); boxed for the same reason.
    pub options: Box<crate::container::ContainerOptions>,
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
    pub reserve_generic: Vec<crate::constraints::GenericResource>,
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
    pub endpoint: crate::ports::EndpointSpec,
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
    pub virtual_ips: Vec<crate::networks::VirtualIp>,
    /// Raft index of the last change; tasks record the version they were made from.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Service {
    /// A service about to be created with `spec` (its version is set when the entry applies).
    pub fn new(spec: ServiceSpec, now: DateTime<Utc>) -> Self {
        Service {
            id: new_id(),
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
    pub fn new(state: TaskState, message: impl Into<String>) -> Self {
        TaskStatus {
            state,
            timestamp: crate::world::now(),
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
    pub attachments: Vec<crate::networks::Attachment>,
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

    /// A new task of `svc` for `slot`, to run its current spec.
    pub fn for_slot(
        svc: &Service,
        slot: u64,
        history: Vec<DateTime<Utc>>,
        desired_state: TaskState,
        now: DateTime<Utc>,
    ) -> Task {
        Task {
            id: new_id(),
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

/// A task of service `s` in slot 1, for unit tests.
#[cfg(test)]
pub(crate) fn sample_task(state: TaskState, at: DateTime<Utc>) -> Task {
    Task {
        id: "t".into(),
        service_id: "s".into(),
        service_name: "web".into(),
        service_labels: BTreeMap::new(),
        slot: 1,
        node_id: None,
        spec_version: 1,
        spec: TaskTemplate::default(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state,
            timestamp: at,
            ..Default::default()
        },
        restart_history: Vec::new(),
        node_faults: 0,
        started_at: None,
        attachments: Vec::new(),
        created_at: at,
        updated_at: at,
        version: 1,
    }
}
