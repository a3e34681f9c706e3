//! The replicated state machine's data and its deterministic `apply`.
//!
//! Pure: no IO. `store::StateMachine` persists what `apply` reports as changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, Node, Service, Task};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster: Option<Cluster>,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub tasks: BTreeMap<String, Task>,
    /// Secrets (values sealed) and configs, by id.
    pub secrets: BTreeMap<String, crate::model::secret::Object>,
    pub configs: BTreeMap<String, crate::model::secret::Object>,
    /// Overlay networks (the ingress network among them), by id.
    pub networks: BTreeMap<String, crate::model::network::Network>,
    /// Networks whose addresses changed in the entry being applied: each is
    /// reported (and written) once per entry, however many tasks took or
    /// gave back an address.
    #[serde(skip)]
    pub(crate) touched_networks: std::collections::BTreeSet<String>,
}

/// What one applied entry changed; subscribers read the new values from the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cluster,
    Node(String),
    Service(String),
    ServiceRemoved(String),
    Task {
        id: String,
        service_id: String,
    },
    TaskRemoved {
        id: String,
        service_id: String,
    },
    /// A secret or config was created, changed or removed.
    Object(crate::model::secret::Kind, String),
    /// A network was created, changed or removed.
    Network(String),
}

/// Why a command was refused. Refusals are deterministic, so every replica
/// refuses the same entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.")]
    AlreadyInitialized,
    #[error("service with name {0} already exists")]
    ServiceNameConflict(String),
    #[error("service {0} not found")]
    ServiceNotFound(String),
    #[error("node {0} not found")]
    NodeNotFound(String),
    #[error("task {0} already exists")]
    TaskExists(String),
    #[error(
        "update out of sequence: service {0} changed since it was read; inspect it and try again"
    )]
    OutOfSequence(String),
    #[error("service {0} does not have a previous spec")]
    NoPreviousSpec(String),
    #[error("the swarm is not initialised yet")]
    NotInitialized,
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// A network request refused in docker's own words.
    #[error("{0}")]
    Network(String),
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    #[error("network {0} not found")]
    NetworkNotFound(String),
    #[error("network {network} is in use by service {service}")]
    NetworkInUse { network: String, service: String },
    /// Tasks still hold addresses on the network (they are being removed).
    #[error("network {0} has active endpoints")]
    NetworkHasEndpoints(String),
    #[error("{kind} {name} already exists", kind = .0.as_str(), name = .1)]
    ObjectExists(crate::model::secret::Kind, String),
    #[error("{kind} not found: {name}", kind = .0.as_str(), name = .1)]
    ObjectNotFound(crate::model::secret::Kind, String),
    #[error("{} '{name}' is in use by the following service{}: {}", kind.as_str(), if services.len() > 1 { "s" } else { "" }, services.join(", "))]
    InUse {
        kind: crate::model::secret::Kind,
        name: String,
        services: Vec<String>,
    },
}

impl ClusterState {
    /// The cluster version (`Cluster::format`); this build's format before
    /// the swarm exists (no other node to wait for).
    pub fn format(&self) -> u32 {
        self.cluster
            .as_ref()
            .map_or(crate::codec::FORMAT, crate::model::Cluster::cluster_format)
    }

    /// Whether writes may share a Raft entry (`Command::Packed`) and a
    /// follower may forward them together (`ProposeMany`): only once every
    /// node reads them.
    pub fn packs_writes(&self) -> bool {
        self.format() >= crate::command::PACKED_SINCE
    }

    pub fn service_by_name(&self, name: &str) -> Option<&Service> {
        self.services.values().find(|s| s.spec.name == name)
    }

    /// Finds a service by full id, name, or unique id prefix (docker's lookup order).
    pub fn find_service(&self, key: &str) -> Option<&Service> {
        if let Some(s) = self.services.get(key) {
            return Some(s);
        }
        if let Some(s) = self.service_by_name(key) {
            return Some(s);
        }
        let mut matches = self.services.values().filter(|s| s.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(s), None) if !key.is_empty() => Some(s),
            _ => None,
        }
    }

    /// Finds a node by full id, hostname, or unique id prefix.
    pub fn find_node(&self, key: &str) -> Option<&Node> {
        if let Some(n) = self.nodes.get(key) {
            return Some(n);
        }
        let mut by_name = self.nodes.values().filter(|n| n.hostname == key);
        if let (Some(n), None) = (by_name.next(), by_name.next()) {
            return Some(n);
        }
        let mut matches = self.nodes.values().filter(|n| n.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(n), None) if !key.is_empty() => Some(n),
            _ => None,
        }
    }

    pub fn tasks_of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a Task> {
        self.tasks
            .values()
            .filter(move |t| t.service_id == service_id)
    }
}
