//! The swarm itself: its settings and join tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    pub default_addr_pool: Vec<crate::model::network::Subnet>,
    pub subnet_size: u8,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            task_history_limit: 5,
            snapshot_interval: 10_000,
            rebalance: false,
            default_addr_pool: vec![crate::model::network::Subnet::parse(
                crate::model::network::DEFAULT_POOL,
            )
            .unwrap_or(crate::model::network::Subnet {
                addr: std::net::Ipv4Addr::new(10, 200, 0, 0),
                prefix: 16,
            })],
            subnet_size: crate::model::network::DEFAULT_MASK,
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
    /// The cluster version: the newest record format every node supports
    /// (the lowest `Node::format`), kept by the state machine as nodes come,
    /// change and go; 0 in a record of format 1, read as 1 by
    /// `cluster_format`. docs/upgrades.md.
    #[serde(default, with = "crate::codec::since_2")]
    pub format: u32,
}

impl Cluster {
    /// The cluster version (see `format`).
    pub fn cluster_format(&self) -> u32 {
        self.format.max(crate::codec::OLDEST)
    }
}
