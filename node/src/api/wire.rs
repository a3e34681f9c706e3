//! The Engine API objects on shoal's wire, as Rust types shared by the
//! server (`views` renders the domain into them) and shoal's CLI (which
//! reads the answers into them).
//!
//! They are bollard's models (`bollard::models`, generated from Docker's
//! own swagger), re-exported here, wrapped only where shoal's wire says
//! more than the swagger does. Each wrapper flattens bollard's struct and
//! replaces the one field it must change; the wrapped field of the inner
//! struct stays `None` (it is skipped when serialized, and the outer field
//! takes its key when parsed). The additions:
//!
//! - shoal's extensions (docs/api.md, "Typed wire shapes"):
//!   `TaskTemplate.Driver`, `EndpointSpec.Balance`, a port's
//!   `ProxyProtocol` and `IdleTimeout`, a task's `ServiceName` and
//!   `Status.Health`, a node's `Description.Engine.Drivers`,
//!   `NetworkSandbox` and `Confinement`, the swarm's
//!   `Orchestration.Rebalance`, a secret's or config's `DataVersion`, a
//!   network's `Version`, `/info`'s `DataDir`, `Drivers`, `ChaosEnabled`,
//!   `Pid` and `Swarm.RaftStatus`;
//! - what dockerd sends or takes that the swagger lacks or leaves
//!   untyped: a service's `PreviousSpec` (docker's Go `swarm.Service` has
//!   it; `docker service inspect` shows it), a task's `NetworksAttachments`,
//!   a network's `Services`, `swarm init`'s `AutoLockManagers`, `swarm
//!   join`'s `Availability`;
//! - where the swagger misspells dockerd's key: `ContainerSpec.Healthcheck`
//!   (bollard's `health_check` is `"HealthCheck"`; dockerd writes
//!   `"Healthcheck"`, and case-sensitive clients read that).
//!
//! Timestamps are bollard's `BollardDate`, a `String` with the features
//! shoal enables: RFC 3339 with the nanoseconds docker prints ([`time`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use bollard::models::{ConfigSpec, NodeDescription as DockerNodeDescription};
pub use bollard::models::{
    ContainerStatus, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpecModeEnum, EngineDescription,
    EngineDescriptionPlugins, HealthConfig, JoinTokens, Limit, ManagerStatus,
    NetworkAttachmentConfig, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState,
    NodeStatus, ObjectVersion, PeerNode, Platform, Reachability, ResourceObject, SecretSpec,
    ServiceCreateResponse, ServiceEndpointVirtualIps, ServiceJobStatus, ServiceServiceStatus,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateResponse, ServiceUpdateStatus, ServiceUpdateStatusStateEnum, SwarmSpecCaConfig,
    SwarmSpecDispatcher, SwarmSpecEncryptionConfig, SwarmSpecRaft, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecPrivilegesSeccomp, TaskSpecContainerSpecPrivilegesSeccompModeEnum,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecPlacementPreferences,
    TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState, TlsInfo,
};

/// All of bollard's models, for the wrapped types' inner structs
/// (`wire::docker::Secret` inside [`Secret`]) without a bollard dependency.
pub use bollard::models as docker;

/// A time as docker writes it: RFC 3339, UTC, with as many fractional
/// digits as needed (what chrono's serde gives, and what shoal sent before
/// its wire was typed).
pub fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A time with all nine fractional digits (secrets and configs).
pub fn time_nanos(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A count as the swagger types it (`int64`): shoal's counts are bounded
/// far below `i64::MAX` by `limits`; a larger one would show as the maximum.
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// bollard's enum for one of shoal's words. Every word shoal sends has its
/// variant (the tests below go through each); `None` would leave the field
/// out rather than send a wrong value.
pub fn word<E: FromStr>(s: &str) -> Option<E> {
    E::from_str(s).ok()
}

/// `ObjectVersion`.
pub fn version(index: u64) -> Option<ObjectVersion> {
    Some(ObjectVersion { index: Some(index) })
}

/// docker's `ServiceSpec`, with shoal's `TaskTemplate` and `EndpointSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    #[serde(flatten)]
    pub docker: bollard::models::ServiceSpec,
    #[serde(rename = "TaskTemplate", skip_serializing_if = "Option::is_none")]
    pub task_template: Option<TaskSpec>,
    #[serde(rename = "EndpointSpec", skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
    /// Fields this build does not know, kept as they came: a client that
    /// reads a spec, edits it and posts it back drops nothing (the server
    /// refuses those it cannot honour, `api::unhonoured`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// docker's `TaskSpec` with shoal's `Driver` (`docker` or `process`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    #[serde(flatten)]
    pub docker: bollard::models::TaskSpec,
    #[serde(rename = "Driver", skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(rename = "ContainerSpec", skip_serializing_if = "Option::is_none")]
    pub container_spec: Option<ContainerSpec>,
    /// Fields this build does not know, kept as they came: a client that
    /// reads a spec, edits it and posts it back drops nothing (the server
    /// refuses those it cannot honour, `api::unhonoured`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// docker's `ContainerSpec`, its health check under dockerd's key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    #[serde(flatten)]
    pub docker: bollard::models::TaskSpecContainerSpec,
    /// `null` when the service has none, as shoal always sent it.
    #[serde(rename = "Healthcheck", default)]
    pub healthcheck: Option<HealthConfig>,
    /// Fields this build does not know, kept as they came: a client that
    /// reads a spec, edits it and posts it back drops nothing (the server
    /// refuses those it cannot honour, `api::unhonoured`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// docker's `EndpointSpec` with shoal's `Balance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    #[serde(flatten)]
    pub docker: bollard::models::EndpointSpec,
    #[serde(rename = "Balance", skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(rename = "Ports", skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortConfig>>,
    /// Fields this build does not know, kept as they came: a client that
    /// reads a spec, edits it and posts it back drops nothing (the server
    /// refuses those it cannot honour, `api::unhonoured`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// docker's `EndpointPortConfig` with shoal's `ProxyProtocol` and
/// `IdleTimeout` (left out when not set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortConfig {
    #[serde(flatten)]
    pub docker: EndpointPortConfig,
    #[serde(rename = "ProxyProtocol", skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<String>,
    #[serde(rename = "IdleTimeout", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u64>,
    /// Fields this build does not know, kept as they came: a client that
    /// reads a spec, edits it and posts it back drops nothing (the server
    /// refuses those it cannot honour, `api::unhonoured`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// docker's `Service`, with `PreviousSpec` and shoal's spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    #[serde(flatten)]
    pub docker: bollard::models::Service,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
    /// `null` before the first update, as shoal always sent it.
    #[serde(rename = "PreviousSpec", default)]
    pub previous_spec: Option<ServiceSpec>,
    #[serde(rename = "Endpoint", skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<ServiceEndpoint>,
}

/// docker's `Service.Endpoint`, with shoal's ports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    #[serde(flatten)]
    pub docker: bollard::models::ServiceEndpoint,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<EndpointSpec>,
    #[serde(rename = "Ports", skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortConfig>>,
}

/// docker's `Task`, with shoal's spec and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    #[serde(flatten)]
    pub docker: bollard::models::Task,
    #[serde(rename = "ServiceName", skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<TaskSpec>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(
        rename = "NetworksAttachments",
        skip_serializing_if = "Option::is_none"
    )]
    pub networks_attachments: Option<Vec<NetworkAttachment>>,
}

/// A task's attachment to a network (dockerd's `NetworksAttachments`,
/// absent from the swagger): the network and the task's address on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    #[serde(rename = "Network")]
    pub network: AttachedNetwork,
    #[serde(rename = "Addresses")]
    pub addresses: Vec<String>,
}

/// The network of a [`NetworkAttachment`], as far as shoal fills it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachedNetwork {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Spec")]
    pub spec: AttachedNetworkSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachedNetworkSpec {
    #[serde(rename = "Name")]
    pub name: String,
}

/// docker's `TaskStatus`, with shoal's `Health` and ports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    #[serde(flatten)]
    pub docker: bollard::models::TaskStatus,
    /// The task's health check verdict (`starting`, `healthy`,
    /// `unhealthy`), `null` without a health check.
    #[serde(rename = "Health", default)]
    pub health: Option<String>,
    #[serde(rename = "PortStatus", skip_serializing_if = "Option::is_none")]
    pub port_status: Option<PortStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortStatus {
    #[serde(rename = "Ports", skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortConfig>>,
}

/// docker's `Node`, with shoal's description.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub docker: bollard::models::Node,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    pub description: Option<NodeDescription>,
    /// shoal's own: how far the node's clock is from the cluster's (`+10m0s`),
    /// when beyond the bound (docs/security.md, clocks); absent otherwise.
    #[serde(rename = "ClockSkew", skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
}

/// docker's `NodeDescription` with shoal's `NetworkSandbox` and `Confinement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeDescription {
    #[serde(flatten)]
    pub docker: DockerNodeDescription,
    #[serde(rename = "Engine", skip_serializing_if = "Option::is_none")]
    pub engine: Option<NodeEngine>,
    #[serde(rename = "NetworkSandbox", skip_serializing_if = "Option::is_none")]
    pub network_sandbox: Option<NetworkSandbox>,
    #[serde(rename = "Confinement", skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
    /// shoal's own: the newest record format the node supports
    /// (docs/upgrades.md).
    #[serde(rename = "Format", skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
}

/// docker's `EngineDescription` with shoal's task drivers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeEngine {
    #[serde(flatten)]
    pub docker: EngineDescription,
    #[serde(rename = "Drivers", skip_serializing_if = "Option::is_none")]
    pub drivers: Option<Vec<DriverInfo>>,
}

/// A task driver a node runs (`docker`, `process`) and its version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriverInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
}

/// Whether process tasks can get a network of their own on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSandbox {
    #[serde(rename = "Available")]
    pub available: bool,
    #[serde(rename = "Reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many tasks with a sandbox the node holds at once
    /// (`shoal daemon --max-sandboxes`, or its addresses).
    #[serde(rename = "MaxSandboxes", skip_serializing_if = "Option::is_none")]
    pub max_sandboxes: Option<u64>,
}

/// How process tasks are confined on a node (docs/confinement.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    #[serde(rename = "Available")]
    pub available: bool,
    #[serde(rename = "Can")]
    pub can: Vec<String>,
    #[serde(rename = "Cannot")]
    pub cannot: Vec<String>,
    #[serde(rename = "MissingLimits")]
    pub missing_limits: Vec<String>,
}

/// docker's `Swarm`, with shoal's spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Swarm {
    #[serde(flatten)]
    pub docker: bollard::models::Swarm,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<SwarmSpec>,
    /// shoal's own: the cluster version, the newest record format every
    /// node supports (docs/upgrades.md).
    #[serde(rename = "Format", skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
}

/// docker's `SwarmSpec`, with shoal's `Orchestration.Rebalance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmSpec {
    #[serde(flatten)]
    pub docker: bollard::models::SwarmSpec,
    #[serde(rename = "Orchestration", skip_serializing_if = "Option::is_none")]
    pub orchestration: Option<Orchestration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orchestration {
    #[serde(flatten)]
    pub docker: bollard::models::SwarmSpecOrchestration,
    /// Whether the swarm moves tasks onto nodes that join or come back.
    #[serde(rename = "Rebalance", skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<bool>,
}

/// docker's `Secret`, with shoal's `DataVersion`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(flatten)]
    pub docker: bollard::models::Secret,
    /// Which value this is (`secret update` bumps it).
    #[serde(rename = "DataVersion", skip_serializing_if = "Option::is_none")]
    pub data_version: Option<u64>,
}

/// docker's `Config`, with shoal's `DataVersion`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub docker: bollard::models::Config,
    #[serde(rename = "DataVersion", skip_serializing_if = "Option::is_none")]
    pub data_version: Option<u64>,
}

/// `GET /networks/{id}`: docker's `NetworkInspect`, with dockerd's
/// `Services` typed (the swagger leaves it free-form) and shoal's `Version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    #[serde(flatten)]
    pub docker: bollard::models::NetworkInspect,
    #[serde(rename = "Services", skip_serializing_if = "Option::is_none")]
    pub services: Option<BTreeMap<String, NetworkService>>,
    #[serde(rename = "Version", skip_serializing_if = "Option::is_none")]
    pub version: Option<ObjectVersion>,
}

/// A service on a network, as dockerd shows it under `Services`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkService {
    #[serde(rename = "VIP")]
    pub vip: String,
    #[serde(rename = "Ports")]
    pub ports: Vec<String>,
    #[serde(rename = "LocalLBIndex")]
    pub local_lb_index: u64,
    #[serde(rename = "Tasks")]
    pub tasks: Vec<NetworkTask>,
}

/// A task's endpoint on a network (`Services.<name>.Tasks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkTask {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "EndpointIP")]
    pub endpoint_ip: String,
    #[serde(rename = "Info")]
    pub info: BTreeMap<String, String>,
}

/// `GET /info`: docker's `SystemInfo`, with shoal's own fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Info {
    #[serde(flatten)]
    pub docker: bollard::models::SystemInfo,
    #[serde(rename = "Swarm", skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmInfo>,
    /// The daemon's data directory.
    #[serde(rename = "DataDir", skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// The task drivers this node runs.
    #[serde(rename = "Drivers", skip_serializing_if = "Option::is_none")]
    pub drivers: Option<Vec<DriverInfo>>,
    /// Whether `/debug/chaos` answers (`shoal daemon --enable-chaos`).
    #[serde(rename = "ChaosEnabled", skip_serializing_if = "Option::is_none")]
    pub chaos_enabled: Option<bool>,
    /// The daemon's process id (the chaos harness signals daemons it did
    /// not start by it).
    #[serde(rename = "Pid", skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// docker's `SwarmInfo`, with shoal's cluster spec and this manager's Raft
/// status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmInfo {
    #[serde(flatten)]
    pub docker: bollard::models::SwarmInfo,
    #[serde(rename = "Cluster", skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    /// `null` on a worker.
    #[serde(rename = "RaftStatus", default)]
    pub raft_status: Option<RaftStatus>,
}

/// docker's `ClusterInfo`, with shoal's spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    #[serde(flatten)]
    pub docker: bollard::models::ClusterInfo,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<SwarmSpec>,
}

/// A manager's Raft status (shoal's own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RaftStatus {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "Term")]
    pub term: u64,
    #[serde(rename = "LeaderID")]
    pub leader_id: u64,
    #[serde(rename = "IsLeader")]
    pub is_leader: bool,
    #[serde(rename = "Commit")]
    pub commit: u64,
    #[serde(rename = "Applied")]
    pub applied: u64,
    #[serde(rename = "FirstIndex")]
    pub first_index: u64,
    #[serde(rename = "LastIndex")]
    pub last_index: u64,
    #[serde(rename = "SnapshotIndex")]
    pub snapshot_index: u64,
    #[serde(rename = "Voters")]
    pub voters: Vec<u64>,
}

/// The `{}` of a request or an answer that says nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `POST /swarm/init`'s body: docker's, with its spec as shoal's and
/// dockerd's `AutoLockManagers` (`swarm init --autolock`; Go's
/// `InitRequest` has it, the swagger does not).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmInitRequest {
    #[serde(flatten)]
    pub docker: bollard::models::SwarmInitRequest,
    #[serde(rename = "Spec", skip_serializing_if = "Option::is_none")]
    pub spec: Option<SwarmSpec>,
    #[serde(rename = "AutoLockManagers", skip_serializing_if = "Option::is_none")]
    pub auto_lock_managers: Option<bool>,
}

/// `POST /swarm/join`'s body, with the `Availability` dockerd takes (the
/// swagger leaves it out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmJoinRequest {
    #[serde(flatten)]
    pub docker: bollard::models::SwarmJoinRequest,
    #[serde(rename = "Availability", skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
}

pub use bollard::models::{
    Ipam, IpamConfig, LocalNodeState, SwarmUnlockRequest, UnlockKeyResponse,
};

/// `POST /secrets/create`, `/configs/create`: the new object's id, under
/// dockerd's key `ID`. (bollard's `IdResponse` reads `ID` or `Id` but
/// writes `id`, so the server cannot answer with it.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Created {
    #[serde(rename = "ID")]
    pub id: String,
}

/// `POST /networks/create`: `{Id, Warning}`.
pub use bollard::models::{NetworkCreateResponse, NetworkPruneResponse};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_what_chrono_serde_wrote() {
        for at in [
            "2026-12-07T09:43:08Z",
            "2026-12-07T09:43:08.120Z",
            "2026-12-07T09:43:08.123456Z",
            "2026-12-07T09:43:08.123456789Z",
        ] {
            let t: DateTime<Utc> = at.parse().expect("a time");
            assert_eq!(serde_json::json!(t), serde_json::json!(time(&t)));
        }
    }

    #[test]
    fn every_word_shoal_sends_has_its_bollard_variant() {
        use shoal_core::model as m;
        let tasks = [
            m::TaskState::New,
            m::TaskState::Pending,
            m::TaskState::Assigned,
            m::TaskState::Accepted,
            m::TaskState::Preparing,
            m::TaskState::Ready,
            m::TaskState::Starting,
            m::TaskState::Running,
            m::TaskState::Complete,
            m::TaskState::Shutdown,
            m::TaskState::Failed,
            m::TaskState::Rejected,
            m::TaskState::Remove,
        ];
        for t in tasks {
            let w: Option<TaskState> = word(t.as_str());
            assert!(w.is_some(), "{}", t.as_str());
            assert_eq!(serde_json::json!(w), serde_json::json!(t.as_str()));
        }
        for s in [
            m::NodeState::Unknown,
            m::NodeState::Down,
            m::NodeState::Ready,
            m::NodeState::Disconnected,
        ] {
            assert!(word::<NodeState>(s.as_str()).is_some(), "{}", s.as_str());
        }
        for r in [m::NodeRole::Worker, m::NodeRole::Manager] {
            assert!(word::<NodeSpecRoleEnum>(r.as_str()).is_some());
        }
        for a in [
            m::Availability::Active,
            m::Availability::Pause,
            m::Availability::Drain,
        ] {
            assert!(word::<NodeSpecAvailabilityEnum>(a.as_str()).is_some());
        }
        for c in [
            m::RestartCondition::None,
            m::RestartCondition::OnFailure,
            m::RestartCondition::Any,
        ] {
            assert!(word::<TaskSpecRestartPolicyConditionEnum>(c.as_str()).is_some());
        }
        for f in [
            m::FailureAction::Pause,
            m::FailureAction::Continue,
            m::FailureAction::Rollback,
        ] {
            assert!(word::<ServiceSpecUpdateConfigFailureActionEnum>(f.as_str()).is_some());
        }
        for f in [m::FailureAction::Pause, m::FailureAction::Continue] {
            assert!(word::<ServiceSpecRollbackConfigFailureActionEnum>(f.as_str()).is_some());
        }
        for o in [m::UpdateOrder::StopFirst, m::UpdateOrder::StartFirst] {
            assert!(word::<ServiceSpecUpdateConfigOrderEnum>(o.as_str()).is_some());
            assert!(word::<ServiceSpecRollbackConfigOrderEnum>(o.as_str()).is_some());
        }
        for u in [
            m::UpdateState::Updating,
            m::UpdateState::Paused,
            m::UpdateState::Completed,
            m::UpdateState::RollbackStarted,
            m::UpdateState::RollbackPaused,
            m::UpdateState::RollbackCompleted,
        ] {
            assert!(word::<ServiceUpdateStatusStateEnum>(u.as_str()).is_some());
        }
        use shoal_core::model::port as p;
        for x in [p::Protocol::Tcp, p::Protocol::Udp] {
            assert!(word::<EndpointPortConfigProtocolEnum>(x.as_str()).is_some());
        }
        for x in [p::PublishMode::Ingress, p::PublishMode::Host] {
            assert!(word::<EndpointPortConfigPublishModeEnum>(x.as_str()).is_some());
        }
        for x in [
            shoal_core::model::network::EndpointMode::Vip,
            shoal_core::model::network::EndpointMode::Dnsrr,
        ] {
            assert!(word::<EndpointSpecModeEnum>(x.as_str()).is_some());
        }
        for x in ["default", "unconfined"] {
            assert!(word::<TaskSpecContainerSpecPrivilegesSeccompModeEnum>(x).is_some());
        }
        for x in ["reachable", "unreachable"] {
            assert!(word::<Reachability>(x).is_some());
        }
    }

    #[test]
    fn a_wrapper_takes_its_field_and_keeps_the_rest() {
        let v = serde_json::json!({
            "Name": "web",
            "Labels": {"a": "b"},
            "TaskTemplate": {"Driver": "process", "ForceUpdate": 2,
                             "ContainerSpec": {"Image": "x", "Healthcheck": {"Retries": 2}}},
            "EndpointSpec": {"Balance": "least-conn",
                             "Ports": [{"TargetPort": 80, "ProxyProtocol": "v2"}]},
        });
        let spec: ServiceSpec = serde_json::from_value(v.clone()).expect("a spec");
        let tt = spec.task_template.as_ref().expect("a template");
        assert_eq!(tt.driver.as_deref(), Some("process"));
        assert_eq!(tt.docker.force_update, Some(2));
        assert!(tt.docker.container_spec.is_none());
        let cs = tt.container_spec.as_ref().expect("a container spec");
        assert_eq!(cs.healthcheck.as_ref().and_then(|h| h.retries), Some(2));
        assert_eq!(spec.docker.name.as_deref(), Some("web"));
        assert!(spec.extra.is_empty() && tt.extra.is_empty() && cs.extra.is_empty());
        assert_eq!(serde_json::json!(spec), v);
    }

    #[test]
    fn fields_a_wrapper_does_not_know_come_back_as_they_came() {
        let v = serde_json::json!({
            "Name": "web",
            "Later": {"a": 1},
            "TaskTemplate": {"Driver": "process", "Shiny": true,
                             "ContainerSpec": {"Image": "x", "Healthcheck": null, "Newer": [1, 2]}},
            "EndpointSpec": {"Mode": "vip", "Fancy": "y",
                             "Ports": [{"TargetPort": 80, "Spare": 3}]},
        });
        let spec: ServiceSpec = serde_json::from_value(v.clone()).expect("a spec");
        assert_eq!(spec.extra.get("Later"), Some(&serde_json::json!({"a": 1})));
        let tt = spec.task_template.as_ref().expect("a template");
        assert_eq!(tt.extra.keys().collect::<Vec<_>>(), ["Shiny"]);
        let cs = tt.container_spec.as_ref().expect("a container spec");
        assert_eq!(cs.extra.keys().collect::<Vec<_>>(), ["Newer"]);
        assert_eq!(cs.docker.image.as_deref(), Some("x"));
        let es = spec.endpoint_spec.as_ref().expect("an endpoint spec");
        assert_eq!(es.extra.keys().collect::<Vec<_>>(), ["Fancy"]);
        let port = &es.ports.as_ref().expect("ports")[0];
        assert_eq!(port.extra.keys().collect::<Vec<_>>(), ["Spare"]);
        assert_eq!(port.docker.target_port, Some(80));
        assert_eq!(serde_json::json!(spec), v);
    }
}
