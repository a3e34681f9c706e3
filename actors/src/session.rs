//! The agent/dispatcher protocol: what each side sends the other, how each
//! reaches the other, and what a node says about itself. Both sides import
//! this module; neither imports the other.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use serde::{Deserialize, Serialize};

use crate::store::StoreEvent;
use shoal_core::command::TaskUpdate;
use shoal_core::model::{NodeRole, Task, TaskStatus};
use shoal_core::rules::port::ServiceEndpoints;

/// What a node tells the dispatcher about itself when it registers (a type
/// of the core, whose `plan::sessions::registration` reads it).
pub use shoal_core::model::NodeDescription;

/// How the dispatcher reaches an agent: a local actor, or a proxy to a remote node.
pub trait AgentLink: Send + Sync + 'static {
    fn send(&self, msg: AgentMsg);
    /// Whether the node is certainly gone (nothing listens on its cluster
    /// port any more: a killed process), asked when a heartbeat is late.
    /// `false` when it cannot tell, which is also the default: a silent but
    /// living node, or a lost packet, must wait for the missed-heartbeat rule.
    fn gone(&self) -> crate::driver::BoxFuture<bool> {
        Box::pin(async { false })
    }
}

impl AgentLink for ActorRef<AgentMsg> {
    fn send(&self, msg: AgentMsg) {
        let _ = self.send_message(msg);
    }
}

/// How an agent reaches the current dispatcher.
pub trait DispatcherLink: Send + Sync + 'static {
    fn current(&self) -> Option<ActorRef<DispatcherMsg>>;
    /// How the dispatcher is to reach this node's agent: the agent itself,
    /// unless something stands between them (the harness's network cut).
    fn agent_link(&self, agent: &ActorRef<AgentMsg>) -> Arc<dyn AgentLink> {
        Arc::new(agent.clone())
    }
}

pub enum DispatcherMsg {
    Register {
        node: Box<NodeDescription>,
        agent: Arc<dyn AgentLink>,
    },
    Heartbeat {
        node_id: String,
        agent: Arc<dyn AgentLink>,
        /// The node's wall clock when it sent this (`shoal_core::clock`).
        at: chrono::DateTime<chrono::Utc>,
    },
    Status {
        node_id: String,
        updates: Vec<(String, TaskStatus)>,
    },
    Store(Option<StoreEvent>),
    Tick,
    /// The status write in flight is in: send the next batch. A write that
    /// failed hands its updates back, to be queued again.
    StatusWritten(Vec<TaskUpdate>),
    /// Send the assignments of the nodes whose tasks changed.
    PushAssignments,
    /// What a probe of a node whose heartbeat was late found, asked at `asked`.
    Probed {
        node_id: String,
        gone: bool,
        asked: tokio::time::Instant,
    },
}

pub enum AgentMsg {
    Tick,
    /// Every task the dispatcher wants this node to know about, and the
    /// secrets and configs those tasks use (and no others).
    Assignments(Vec<Task>, Vec<shoal_core::model::secret::Payload>),
    Status(String, TaskStatus),
    /// Send the statuses gathered since the last flush.
    Flush,
    /// The dispatcher does not know this node's session: register again.
    SessionRejected,
    /// Bring the task actors in line with the latest assignments (start a
    /// task actor again if its task is still assigned and not finished).
    /// Only the newest one counts: one queued when a task actor ended comes
    /// behind the statuses it sent before it ended, and an older one, queued
    /// before them, is skipped.
    Recheck(u64),
    /// Where every published port of the swarm leads now.
    Endpoints(Vec<ServiceEndpoints>),
    /// The overlay networks, the addresses on them and the names.
    Networks(Arc<shoal_core::rules::network::NetworkTable>),
    /// Who is in the swarm, in which role and certificate generation, and
    /// who was removed: how a node without the state judges its peers.
    Members(Arc<Members>),
}

/// One node as its peers must judge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub role: NodeRole,
    /// Certificates of an older generation are superseded.
    pub cert_generation: u64,
}

/// What a node without the cluster state (a worker) must know to refuse a
/// removed node, a demoted manager's old certificate, and anything a node
/// that is not a manager now sends as one. Built by the leader's dispatcher
/// from the state alone (`members`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Members {
    pub nodes: Vec<Member>,
    pub removed: Vec<String>,
}

/// The members of the swarm by `state`.
pub fn members(state: &shoal_core::state::ClusterState) -> Members {
    Members {
        nodes: state
            .nodes
            .values()
            .map(|n| Member {
                id: n.id.clone(),
                role: n.role,
                cert_generation: n.cert_generation,
            })
            .collect(),
        removed: state
            .cluster
            .as_ref()
            .map(|c| c.removed_nodes.clone())
            .unwrap_or_default(),
    }
}

/// Where an agent hands the endpoint table: the node's proxy.
pub trait EndpointSink: Send + Sync + 'static {
    fn update(&self, table: Vec<ServiceEndpoints>);
}

/// Where an agent hands the network table: the node's data plane and DNS.
pub trait NetworkSink: Send + Sync + 'static {
    fn update(&self, table: Arc<shoal_core::rules::network::NetworkTable>);
}

/// For nodes (and harnesses) that proxy nothing.
pub struct NoProxy;

impl EndpointSink for NoProxy {
    fn update(&self, _: Vec<ServiceEndpoints>) {}
}

impl NetworkSink for NoProxy {
    fn update(&self, _: Arc<shoal_core::rules::network::NetworkTable>) {}
}

/// Default heartbeat period; a node is down after three are missed, or as
/// soon as one is late and the node is certainly gone (`AgentLink::gone`).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(500);
