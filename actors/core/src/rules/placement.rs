//! Constraints and spread preferences: parsed as swarmkit parses them,
//! matched against a node as its `NodeMatches` does.

use crate::model::placement::Placement;
use crate::model::Node;

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
    use crate::rules::placement::{parse_preference, Constraint, Operator, PlacementError};

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
