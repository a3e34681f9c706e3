//! What nodes say to each other over the transport, encoded with the codec
//! of `shoal_core::codec`. Raft messages keep raft-rs's protobuf inside.

use serde::{Deserialize, Serialize};
use shoal_core::command::Command;
use shoal_core::model::{Availability, DriverInfo, NodeRole, Task, TaskStatus};
use shoal_core::state::ApplyError;

/// One-way messages.
#[derive(Debug, Serialize, Deserialize)]
pub enum OneWay {
    /// A Raft message; `from_addr` lets a new manager answer a leader it
    /// has not learned about from the log yet.
    Raft {
        from: u64,
        from_addr: String,
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// A leader's dispatcher to an agent, stamped with the Raft term the
    /// sender leads in: an agent takes pushes of the newest term it has seen
    /// and drops older ones (`cluster/members.rs`, `PushTerms`).
    ToAgent { term: u64, msg: ToAgent },
    /// Chunk `index` of `total` of a Raft message too large for one frame
    /// (a snapshot): `cluster/chunks.rs`.
    RaftChunk {
        from: u64,
        from_addr: String,
        snapshot: u64,
        index: u32,
        total: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToDispatcher {
    Register {
        node_id: String,
        hostname: String,
        addr: String,
        drivers: Vec<DriverInfo>,
        sandbox_error: Option<String>,
        /// Boxed: the other messages, far more frequent, stay small.
        machine: Box<shoal_core::model::placement::Machine>,
        /// The newest record format the node supports (docs/upgrades.md).
        #[serde(default, with = "shoal_core::codec::since_2")]
        max_format: u32,
    },
    Heartbeat {
        node_id: String,
        addr: String,
        /// The sender's wall clock (the leader measures clock skew by it).
        at: chrono::DateTime<chrono::Utc>,
    },
    Status {
        node_id: String,
        updates: Vec<(String, TaskStatus)>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToAgent {
    /// A node's tasks and the secret and config values they use (over mTLS).
    Assignments(Vec<Task>, Vec<shoal_core::model::secret::Payload>),
    SessionRejected,
    Endpoints(Vec<shoal_core::rules::port::ServiceEndpoints>),
    Networks(shoal_core::rules::network::NetworkTable),
    /// Who is a member, in which role and generation, and who was removed.
    Members(shoal_actors::session::Members),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// From a node without a certificate: the full join token proves it may join.
    Join {
        token: String,
        hostname: String,
        addr: String,
        drivers: Vec<DriverInfo>,
        /// `swarm join --availability`.
        availability: Availability,
        /// The newest record format the joiner supports: refused unless it
        /// reads the swarm's (docs/upgrades.md). 0 from a node of format 1.
        #[serde(default, with = "shoal_core::codec::since_2")]
        max_format: u32,
    },
    /// A write forwarded by a manager that does not lead.
    Propose(Box<Command>),
    /// Make a joined manager a Raft voter (forwarded to the leader).
    AddVoter(u64),
    /// An agent's message for the leader's dispatcher; a manager that does
    /// not lead relays it.
    Dispatcher(ToDispatcher),
    /// Make a joined manager leave the Raft group (forwarded to the leader).
    RemoveVoter(u64),
    /// From a manager to the node being promoted or demoted: its new role and certificate.
    RoleChange(Box<RoleChange>),
    /// A node whose certificate nears its expiry asks for a new one.
    RenewCert,
    /// Ask the leader to hand leadership to this voter.
    TransferLeader(u64),
    /// A manager reads a task's log from the node that runs it.
    TaskLog { task_id: String, offset: u64 },
    /// Writes forwarded together by a manager that does not lead (those
    /// waiting there at one moment), proposed as one entry; answered with
    /// `Response::Each`. At most `limits::MAX_FORWARDED_COMMANDS` of them in
    /// a request of at most `MAX_FORWARDED_BYTES`, or refused whole.
    ProposeMany(Vec<Command>),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RoleChange {
    pub role: NodeRole,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_key_pem: Option<String>,
    pub managers: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Joined(Box<Joined>),
    Renewed {
        cert_pem: String,
        key_pem: String,
    },
    /// A piece of a task's log.
    Log(#[serde(with = "serde_bytes")] Vec<u8>),
    Done,
    Refused(Refusal),
    /// Each write's result, in the order of a `ProposeMany`.
    Each(Vec<Result<(), Refusal>>),
    /// A forwarded write (`Request::Propose`) committed and applied on the
    /// leader, in the entry of this index: the manager that forwarded it
    /// answers its client once it has applied as far, so a read there
    /// after the write sees it (docs/api.md).
    Applied(u64),
    /// `Each`, with the index of the entry they were committed in (as `Applied`).
    EachApplied(Vec<Result<(), Refusal>>, u64),
}

/// Why a peer refused a request. Callers match variants (a retry on
/// `NoLeader`, say); only the control API turns them into HTTP statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("This node is not the swarm leader{}.", leader.map(|l| format!(" (the leader's raft id is {l:x})")).unwrap_or_default())]
    NotLeader { leader: Option<u64> },
    #[error("{0}")]
    NoLeader(String),
    /// Worth trying again elsewhere or later (not a manager, unreachable).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Rejected(ApplyError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// The peer's certificate is of an older generation than the state's.
    #[error("certificate superseded by a role change")]
    Superseded,
    #[error("{0}")]
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Joined {
    pub node_id: String,
    pub raft_id: u64,
    pub role: NodeRole,
    pub cluster_id: String,
    pub ca_cert_pem: String,
    /// Only for managers, which sign certificates too.
    pub ca_key_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
    pub managers: Vec<String>,
}
