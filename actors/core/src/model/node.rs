//! A node of the swarm as the managers record it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    pub machine: crate::model::placement::Machine,
    /// Bumped at every role change: certificates issued for an older
    /// generation are refused, so a demoted manager's old certificate no
    /// longer opens anything.
    pub cert_generation: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// The newest record format the node supports, as it reported it when it
    /// joined or last registered (0 from a node of format 1, which reports
    /// none: `format` reads it as 1). docs/upgrades.md.
    #[serde(default, with = "crate::codec::since_2")]
    pub max_format: u32,
}

impl Node {
    /// The newest record format the node supports.
    pub fn format(&self) -> u32 {
        self.max_format.max(crate::codec::OLDEST)
    }

    pub fn has_driver(&self, name: &str) -> bool {
        self.drivers.iter().any(|d| d.name == name)
    }
}

/// What a node tells the dispatcher about itself when it registers.
#[derive(Debug, Clone)]
pub struct NodeDescription {
    pub node_id: String,
    pub hostname: String,
    pub addr: String,
    pub drivers: Vec<DriverInfo>,
    /// Why tasks cannot get a network of their own there, if they cannot.
    pub sandbox_error: Option<String>,
    /// Platform, CPUs, memory and engine labels.
    pub machine: crate::model::placement::Machine,
    /// The newest record format the node claims (docs/upgrades.md).
    pub max_format: u32,
}
