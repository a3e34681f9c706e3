//! Where a service's tasks may go: its placement (constraints, spread
//! preferences, replicas per node) and what a node says about its machine.
//!
//! Constraints are parsed as swarmkit's `constraint.Parse` does, with its
//! messages, and matched as its `NodeMatches` does: values compare without
//! regard to case, a missing label never equals and always differs.

use serde::{Deserialize, Serialize};

use crate::model::Node;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
}

/// One parsed `key==value` / `key!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub op: Operator,
    pub value: String,
}

/// A constraint or preference the user got wrong, in swarmkit's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("constraint expected one operator from ==, !=")]
    NoOperator,
    #[error("key '{0}' is invalid")]
    BadKey(String),
    #[error("value '{0}' is invalid")]
    BadValue(String),
    #[error("invalid placement preference {0:?}: expected spread=node.labels.KEY or spread=engine.labels.KEY")]
    BadPreference(String),
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_value(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || c.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(c)
        })
}

impl Constraint {
    pub fn parse(expr: &str) -> Result<Constraint, PlacementError> {
        for (token, op) in [("==", Operator::Eq), ("!=", Operator::Ne)] {
            let Some((key, value)) = expr.split_once(token) else {
                continue;
            };
            let key = key.trim();
            if !valid_key(key) {
                return Err(PlacementError::BadKey(key.into()));
            }
            let value = value.trim();
            if !valid_value(value) {
                return Err(PlacementError::BadValue(value.into()));
            }
            return Ok(Constraint {
                key: key.into(),
                op,
                value: value.into(),
            });
        }
        Err(PlacementError::NoOperator)
    }

    pub fn parse_all(exprs: &[String]) -> Result<Vec<Constraint>, PlacementError> {
        exprs.iter().map(|e| Constraint::parse(e)).collect()
    }

    /// Whether `node` satisfies this constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let key = self.key.to_ascii_lowercase();
        let what: Option<&str> = match key.as_str() {
            "node.id" => Some(&node.id),
            "node.hostname" => Some(&node.hostname),
            "node.role" => Some(node.role.as_str()),
            "node.platform.os" => Some(&node.machine.os),
            "node.platform.arch" => Some(&node.machine.arch),
            _ => {
                if let Some(label) = self
                    .key
                    .get("node.labels.".len()..)
                    .filter(|_| key.starts_with("node.labels."))
                {
                    node.labels.get(label).map(String::as_str)
                } else if let Some(label) = self
                    .key
                    .get("engine.labels.".len()..)
                    .filter(|_| key.starts_with("engine.labels."))
                {
                    node.machine.engine_labels.get(label).map(String::as_str)
                } else {
                    // A key swarmkit does not know matches nothing.
                    return false;
                }
            }
        };
        let equal = what.is_some_and(|w| w.eq_ignore_ascii_case(&self.value));
        match self.op {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

/// Whether `node` satisfies every constraint.
pub fn node_matches(constraints: &[Constraint], node: &Node) -> bool {
    constraints.iter().all(|c| c.matches(node))
}

/// A spread preference's label: `spread=node.labels.zone` → `node.labels.zone`.
pub fn parse_preference(pref: &str) -> Result<String, PlacementError> {
    let bad = || PlacementError::BadPreference(pref.into());
    let (strategy, descriptor) = pref.split_once('=').ok_or_else(bad)?;
    let descriptor = descriptor.trim();
    if !strategy.trim().eq_ignore_ascii_case("spread")
        || !(descriptor.starts_with("node.labels.") || descriptor.starts_with("engine.labels."))
        || !valid_key(descriptor)
    {
        return Err(bad());
    }
    Ok(descriptor.into())
}

/// The value a spread descriptor takes on `node` (`None`: the label is
/// missing; such nodes form one group of their own).
pub fn spread_value<'a>(descriptor: &str, node: &'a Node) -> Option<&'a str> {
    if let Some(label) = descriptor.strip_prefix("node.labels.") {
        node.labels.get(label).map(String::as_str)
    } else if let Some(label) = descriptor.strip_prefix("engine.labels.") {
        node.machine.engine_labels.get(label).map(String::as_str)
    } else {
        None
    }
}

/// Checks a placement as the control API and `ClusterState::check` do.
pub fn check(placement: &Placement) -> Result<(), PlacementError> {
    Constraint::parse_all(&placement.constraints)?;
    for p in &placement.preferences {
        parse_preference(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::constraints::{parse_preference, Constraint, Operator, PlacementError};

    #[test]
    fn parses_as_swarmkit_does() {
        assert_eq!(
            Constraint::parse("node.labels.zone == a").ok(),
            Some(Constraint {
                key: "node.labels.zone".into(),
                op: Operator::Eq,
                value: "a".into()
            })
        );
        assert_eq!(
            Constraint::parse("node.role!=manager").map(|c| c.op),
            Ok(Operator::Ne)
        );
        assert_eq!(
            Constraint::parse("node.role=manager"),
            Err(PlacementError::NoOperator)
        );
        assert_eq!(
            Constraint::parse("n@de==x"),
            Err(PlacementError::BadKey("n@de".into()))
        );
        assert_eq!(
            Constraint::parse("node.role==<x>"),
            Err(PlacementError::BadValue("<x>".into()))
        );
        assert!(parse_preference("spread=node.labels.zone").is_ok());
        assert!(parse_preference("pack=node.labels.zone").is_err());
    }
}
