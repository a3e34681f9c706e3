//! Where a service's tasks may go: its placement (constraints, spread
//! preferences, replicas per node) and what a node says about its machine.
//!
//! Constraints are parsed as swarmkit's `constraint.Parse` does, with its
//! messages, and matched as its `NodeMatches` does: values compare without
//! regard to case, a missing label never equals and always differs.

use serde::{Deserialize, Serialize};

/// docker's `Placement`. Constraints stay as the user wrote them (they are
/// shown back as such); they are parsed when checked and when placed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub constraints: Vec<String>,
    /// `spread=node.labels.KEY` descriptors, outermost first.
    pub preferences: Vec<String>,
    /// At most this many tasks of the service on one node; 0 = unlimited.
    pub max_replicas: u64,
}

/// A node's platform and capacity (docker's `Description.Platform` and
/// `Description.Resources`), as it reports them when it registers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub os: String,
    pub arch: String,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    /// The node's Docker engine labels (`engine.labels.KEY`), when it has one.
    pub engine_labels: std::collections::BTreeMap<String, String>,
    /// How it confines process tasks (boxed: messages carrying a machine stay small).
    pub confinement: Box<Confinement>,
    /// Named resources it declares (`shoal daemon --node-generic-resource`).
    pub generic_resources: Vec<GenericResource>,
    /// How many tasks with a network sandbox of their own it holds at once
    /// (its task addresses, or `shoal daemon --max-sandboxes`); `None`: it
    /// does not say, and only its failures tell.
    pub max_sandboxes: Option<u64>,
}

/// docker's `GenericResource`: a node declares `gpu=2` (two of a kind,
/// `Discrete`) or `gpu=GPU-1a2b` (one named unit, `Named`, once a unit);
/// a task reserves a count of a kind (`Discrete` only, as swarmkit says).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenericResource {
    Discrete { kind: String, value: u64 },
    Named { kind: String, value: String },
}

impl GenericResource {
    pub fn kind(&self) -> &str {
        match self {
            GenericResource::Discrete { kind, .. } | GenericResource::Named { kind, .. } => kind,
        }
    }

    /// How many units of its kind this entry is.
    pub fn units(&self) -> u64 {
        match self {
            GenericResource::Discrete { value, .. } => *value,
            GenericResource::Named { .. } => 1,
        }
    }

    /// `KIND=VALUE` as docker's `--generic-resource` and dockerd's
    /// `node-generic-resources` write it: a number is a count, anything
    /// else one named unit.
    pub fn parse(text: &str) -> Result<GenericResource, String> {
        let bad = || format!("invalid generic resource specification: {text}");
        let (kind, value) = text.split_once('=').ok_or_else(bad)?;
        let kind_ok = !kind.is_empty()
            && kind.len() <= 64
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !kind_ok || value.is_empty() || value.len() > 256 {
            return Err(bad());
        }
        Ok(match value.parse::<u64>() {
            Ok(n) => GenericResource::Discrete {
                kind: kind.into(),
                value: n,
            },
            Err(_) => GenericResource::Named {
                kind: kind.into(),
                value: value.into(),
            },
        })
    }
}

impl Machine {
    /// The units of `kind` the node declares.
    pub fn generic_units(&self, kind: &str) -> u64 {
        self.generic_resources
            .iter()
            .filter(|g| g.kind() == kind)
            .fold(0u64, |n, g| n.saturating_add(g.units()))
    }
}

/// What a node can and cannot do to confine a process task (shoal's own;
/// `node inspect` shows it). The default is a node that can do it all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// What works, in words.
    pub can: Vec<String>,
    /// What does not, and why: no process task starts there.
    pub cannot: Vec<String>,
    /// Limit flags it cannot enforce (`--limit-memory`, `--limit-cpu`,
    /// `--limit-pids`): a process task asking for one does not go there.
    pub missing_limits: Vec<String>,
}
