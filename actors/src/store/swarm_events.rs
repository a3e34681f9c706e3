//! Swarm events, as dockerd reports them on `GET /events` since API 1.30:
//! one per committed create, update or removal of a service, node, secret,
//! config or network, made where the entry is applied, in commit order.
//!
//! An update says what changed in the few attributes docker names
//! (`replicas.old`/`replicas.new`, `updatestate.*`, `image.*` for a
//! service; `role.*`, `availability.*`, `state.*` for a node). To know the
//! old values without keeping old objects, the state machine keeps a
//! [`Digests`]: per object, its name and those attributes as they were.
//! Tasks have no events (docker has none either).

use std::collections::BTreeMap;

use shoal_core::model::secret::Kind;
use shoal_core::state::{Change, ClusterState};

/// What kind of object an event is about: docker's event `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventType {
    Service,
    Node,
    Secret,
    Config,
    Network,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Service => "service",
            EventType::Node => "node",
            EventType::Secret => "secret",
            EventType::Config => "config",
            EventType::Network => "network",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Create,
    Update,
    Remove,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Create => "create",
            EventAction::Update => "update",
            EventAction::Remove => "remove",
        }
    }
}

/// One committed change of a swarm object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmEvent {
    pub kind: EventType,
    pub action: EventAction,
    pub id: String,
    /// `name`, and for an update the `KEY.old`/`KEY.new` pairs that changed.
    pub attributes: BTreeMap<String, String>,
}

/// An object's name and the attributes its update events compare.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Digest {
    name: String,
    tracked: BTreeMap<&'static str, String>,
}

/// The last digest of every object that has events.
#[derive(Debug, Default)]
pub struct Digests(BTreeMap<(EventType, String), Digest>);

fn digest_of(state: &ClusterState, kind: EventType, id: &str) -> Option<Digest> {
    match kind {
        EventType::Service => state.services.get(id).map(|s| {
            let mut tracked = BTreeMap::new();
            tracked.insert("image", s.spec.task_template.image.clone());
            if let shoal_core::model::ServiceMode::Replicated { replicas } = s.spec.mode {
                tracked.insert("replicas", replicas.to_string());
            }
            if let Some(u) = &s.update_status {
                tracked.insert("updatestate", u.state.as_str().to_string());
            }
            Digest {
                name: s.spec.name.clone(),
                tracked,
            }
        }),
        EventType::Node => state.nodes.get(id).map(|n| Digest {
            name: n.hostname.clone(),
            tracked: BTreeMap::from([
                ("role", n.role.as_str().to_string()),
                ("availability", n.availability.as_str().to_string()),
                ("state", n.state.as_str().to_string()),
            ]),
        }),
        EventType::Secret => state.secrets.get(id).map(|o| Digest {
            name: o.name.clone(),
            tracked: BTreeMap::new(),
        }),
        EventType::Config => state.configs.get(id).map(|o| Digest {
            name: o.name.clone(),
            tracked: BTreeMap::new(),
        }),
        EventType::Network => state.networks.get(id).map(|n| Digest {
            name: n.spec.name.clone(),
            tracked: BTreeMap::new(),
        }),
    }
}

/// The object a change is about, if it is one with events.
fn subject(change: &Change) -> Option<(EventType, &str)> {
    match change {
        Change::Service(id) | Change::ServiceRemoved(id) => Some((EventType::Service, id)),
        Change::Node(id) => Some((EventType::Node, id)),
        Change::Object(Kind::Secret, id) => Some((EventType::Secret, id)),
        Change::Object(Kind::Config, id) => Some((EventType::Config, id)),
        Change::Network(id) => Some((EventType::Network, id)),
        Change::Cluster | Change::Task { .. } | Change::TaskRemoved { .. } => None,
    }
}

impl Digests {
    /// The digests of everything in `state`, with no events (a store opened
    /// or restored from a snapshot).
    pub fn of(state: &ClusterState) -> Digests {
        let mut all = BTreeMap::new();
        let ids = state
            .services
            .keys()
            .map(|id| (EventType::Service, id))
            .chain(state.nodes.keys().map(|id| (EventType::Node, id)))
            .chain(state.secrets.keys().map(|id| (EventType::Secret, id)))
            .chain(state.configs.keys().map(|id| (EventType::Config, id)))
            .chain(state.networks.keys().map(|id| (EventType::Network, id)));
        for (kind, id) in ids {
            if let Some(d) = digest_of(state, kind, id) {
                all.insert((kind, id.clone()), d);
            }
        }
        Digests(all)
    }

    /// The events of one applied command's `changes`, `state` being the
    /// state just after it. An object changed twice by one command gets
    /// one event.
    pub fn events(&mut self, state: &ClusterState, changes: &[Change]) -> Vec<SwarmEvent> {
        let mut out = Vec::new();
        let mut seen: std::collections::BTreeSet<(EventType, &str)> = Default::default();
        for (kind, id) in changes.iter().filter_map(subject) {
            if !seen.insert((kind, id)) {
                continue;
            }
            let key = (kind, id.to_string());
            let before = self.0.get(&key);
            let after = digest_of(state, kind, id);
            let event = match (before, &after) {
                (None, None) => None,
                (None, Some(new)) => Some(SwarmEvent {
                    kind,
                    action: EventAction::Create,
                    id: id.to_string(),
                    attributes: BTreeMap::from([("name".to_string(), new.name.clone())]),
                }),
                (Some(old), None) => Some(SwarmEvent {
                    kind,
                    action: EventAction::Remove,
                    id: id.to_string(),
                    attributes: BTreeMap::from([("name".to_string(), old.name.clone())]),
                }),
                (Some(old), Some(new)) => {
                    let mut attributes = BTreeMap::from([("name".to_string(), new.name.clone())]);
                    for (attr, value) in &new.tracked {
                        let was = old.tracked.get(attr);
                        if was != Some(value) {
                            if let Some(was) = was {
                                attributes.insert(format!("{attr}.old"), was.clone());
                            }
                            attributes.insert(format!("{attr}.new"), value.clone());
                        }
                    }
                    Some(SwarmEvent {
                        kind,
                        action: EventAction::Update,
                        id: id.to_string(),
                        attributes,
                    })
                }
            };
            match after {
                Some(d) => {
                    self.0.insert(key, d);
                }
                None => {
                    self.0.remove(&key);
                }
            }
            out.extend(event);
        }
        out
    }
}
