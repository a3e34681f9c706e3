//! Published ports: the model (`EndpointSpec`, `PortConfig`), the rules the
//! state machine applies (no two services on one ingress port; a port left
//! at 0 gets one from Swarm's dynamic range), and the endpoint table every
//! node's proxy follows (`endpoints`), built from the state alone.

use serde::{Deserialize, Serialize};

/// Swarm's range for published ports the user leaves to the swarm.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Ports one service may publish.
pub const MAX_PORTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishMode {
    /// Every node listens and forwards to a task anywhere (the routing mesh).
    Ingress,
    /// Only the nodes that run a task listen, straight to it.
    Host,
}

impl PublishMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ingress" => Some(PublishMode::Ingress),
            "host" => Some(PublishMode::Host),
            _ => None,
        }
    }
}

/// How a node's proxy picks a task for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Balance {
    /// Each task in turn, as Swarm's routing mesh.
    #[default]
    RoundRobin,
    /// The task with the fewest connections this node has open to it.
    LeastConn,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "round-robin" | "rr" => Some(Balance::RoundRobin),
            "least-conn" => Some(Balance::LeastConn),
            _ => None,
        }
    }
}

/// A PROXY protocol header the proxy sends a task before a client's bytes,
/// so that the task learns the client's address (moby/moby#25526).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyProtocol {
    V1,
    V2,
}

impl ProxyProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortConfig {
    pub protocol: Protocol,
    pub target_port: u16,
    /// 0 until the swarm picks one (ingress), or "any free port" (host mode).
    pub published_port: u16,
    pub publish_mode: PublishMode,
    /// TCP only: the header sent to the task before the client's bytes.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// TCP: a proxied connection with no byte either way for this long is
    /// closed (nanoseconds; 0: the node's default, 5 minutes).
    pub idle_timeout_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub ports: Vec<PortConfig>,
    pub balance: Balance,
    /// `--endpoint-mode`: what the service's name resolves to.
    pub mode: crate::model::network::EndpointMode,
}
