//! Overlay networks: the replicated objects (`Network`), what a task and a
//! service hold of them (`Attachment`, `VirtualIp`), the address management
//! the state machine does when entries apply (`ipam`), and the table every
//! node's data plane and DNS server follow (`table`), built from the state
//! alone.
//!
//! Addresses are handed out by the state machine itself, as an entry
//! applies: every manager computes the same answer, an address is never
//! given twice, and nothing but the Raft log decides who holds one.

pub mod subnet;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use subnet::Subnet;

/// docker's limit on a network's name is the object name rule; this is ours.
pub const MAX_NAME: usize = 64;
/// Networks one swarm holds.
pub const MAX_NETWORKS: usize = 1_000;
/// Networks one service joins.
pub const MAX_ATTACHMENTS: usize = 16;
/// Aliases of one service on one network.
pub const MAX_ALIASES: usize = 16;
/// The smallest and largest overlay a user may ask for (a /30 holds one
/// task beside its gateway and broadcast; a /16 is 65k addresses).
pub const MIN_PREFIX: u8 = 16;
pub const MAX_PREFIX: u8 = 29;
/// Addresses a node may hand to containers that join an attachable network
/// outside shoal (`docker run --network NAME`): one block per node with the
/// docker driver per attachable network, taken by the state machine as the
/// network is made or the node registers.
pub const BLOCK_PREFIX: u8 = 28;

/// The swarm's default address pool: clear of what a local Docker engine in
/// swarm mode holds (10.0.0.0/24 and 10.0.1.0/24, its ingress and first
/// overlay) and of the task bridges (10.201.0.0/16).
pub const DEFAULT_POOL: &str = "10.200.0.0/16";
pub const DEFAULT_MASK: u8 = 24;

/// The network the routing mesh's tasks join (it exists once a swarm does).
pub const INGRESS: &str = "ingress";

/// `--endpoint-mode`: how a service's name resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EndpointMode {
    /// The name resolves to one virtual IP, balanced over the tasks.
    #[default]
    Vip,
    /// The name resolves to the tasks' own addresses (DNS round robin).
    Dnsrr,
}

impl EndpointMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vip" => Some(EndpointMode::Vip),
            "dnsrr" => Some(EndpointMode::Dnsrr),
            _ => None,
        }
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `overlay` (the only driver a swarm-scoped network has here).
    pub driver: String,
    /// Left empty, the leader picks one from the default address pool.
    pub subnet: Option<Subnet>,
    /// Left empty, the subnet's first address.
    pub gateway: Option<Ipv4Addr>,
    pub attachable: bool,
    /// No route out of the swarm for tasks only on internal networks.
    pub internal: bool,
    /// `-o encrypted=false` chooses the kernel VXLAN fast path (plaintext
    /// between nodes); otherwise traffic between nodes rides QUIC.
    pub encrypted: bool,
    pub options: BTreeMap<String, String>,
}

/// Who holds an address of a network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Holder {
    Gateway,
    Task(String),
    /// A service's virtual IP.
    Service(String),
    /// The first address of a node's block for outside containers.
    Block(String),
}

/// The addresses of one network in use, and where the next search starts:
/// a freed address goes back to the end of the line, so that a name or
/// route some node still caches does not point at a new task at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    /// Offset into the subnet -> holder (a node's block holds each of its
    /// offsets).
    pub used: BTreeMap<u32, Holder>,
    pub next: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub spec: NetworkSpec,
    /// The subnet and gateway in use (the spec's, or the pool's choice).
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// The routing mesh's network: made by `swarm init`, never removed.
    pub ingress: bool,
    pub ipam: Ipam,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Network {
    /// A network about to be proposed: its subnet, gateway and addresses
    /// are the state machine's to set as the entry applies.
    pub fn proposed(id: String, spec: NetworkSpec, now: DateTime<Utc>) -> Network {
        Network {
            id,
            spec,
            subnet: Subnet {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 32,
            },
            gateway: Ipv4Addr::UNSPECIFIED,
            ingress: false,
            ipam: Ipam::default(),
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }
}

/// `--network name=N,alias=A`: a network a service joins, by id once the
/// API has resolved the name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkRef {
    pub target: String,
    pub aliases: Vec<String>,
}

impl NetworkRef {
    pub fn named(target: &str) -> NetworkRef {
        NetworkRef {
            target: target.to_string(),
            aliases: Vec::new(),
        }
    }
}

/// A task's address on one network, given when the task is assigned to a
/// node and given back when it ends or is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network_id: String,
    pub addr: Ipv4Addr,
}

/// A service's address on one network (endpoint mode `vip`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    pub network_id: String,
    pub addr: Ipv4Addr,
}

/// The changes to networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NetworkCommand {
    Create(Box<Network>),
    /// By id, name or unique id prefix, resolved when the entry applies.
    Remove {
        key: String,
    },
}
