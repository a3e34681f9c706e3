//! Every node's load as the scheduler counts it: the tasks placed on it and
//! not ended, what they reserve, their host-mode ports and sandboxes. Kept
//! up to date task by task from the store's changes (swarmkit's scheduler
//! keeps its node set the same way): counting it again from every task in
//! the state made placing 100k tasks a thousand at a time quadratic.

use std::collections::{BTreeMap, HashMap};

use crate::model::port::{Protocol, PublishMode};
use crate::model::{Resources, Task, TaskState};
use crate::plan::schedule::Candidate;
use crate::state::ClusterState;

/// Whether the scheduler has to find `t` a node (or check that a global
/// task's node can take it). A task desired READY waits for its slot's old
/// task to stop (a stop-first update) before it is placed.
pub fn wants_node(t: &Task) -> bool {
    t.desired_state == TaskState::Running && t.status.state <= TaskState::Pending
}

/// A task placed on a node and not ended: it counts towards the node's load.
pub fn counts(t: &Task) -> bool {
    t.node_id.is_some() && !t.status.state.is_terminal() && !wants_node(t)
}

/// Whether the task holds a network sandbox on its node: a process task
/// off the node's network.
pub fn needs_sandbox(t: &Task) -> bool {
    t.spec.driver == "process" && !t.spec.host_network()
}

/// The units of each kind of generic resource a task reserves.
pub fn generic_units(r: &Resources) -> Vec<(String, u64)> {
    r.reserve_generic
        .iter()
        .map(|g| (g.kind().to_string(), g.units()))
        .collect()
}

/// The host-mode ports a task of service `service_id` binds on its node.
pub fn host_ports(state: &ClusterState, service_id: &str) -> Vec<(Protocol, u16)> {
    state
        .services
        .get(service_id)
        .map(|s| {
            s.spec
                .endpoint
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
                .map(|p| (p.protocol, p.published_port))
                .collect()
        })
        .unwrap_or_default()
}

/// What a counted task adds to its node's load, kept to take it off again.
#[derive(Debug, Clone, PartialEq)]
struct Counted {
    node: String,
    service: String,
    nano_cpus: u64,
    memory_bytes: u64,
    generic: Vec<(String, u64)>,
    sandboxed: bool,
}

/// One node's load.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NodeLoad {
    pub total: usize,
    pub sandboxes: usize,
    pub services: HashMap<String, usize>,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    pub generic: BTreeMap<String, u64>,
}

/// Every node's load, by the tasks counted so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loads {
    counted: HashMap<String, Counted>,
    nodes: HashMap<String, NodeLoad>,
}

impl Loads {
    /// The loads of every task in `state`.
    pub fn build(state: &ClusterState) -> Loads {
        let mut loads = Loads::default();
        for (id, t) in &state.tasks {
            loads.update(id, Some(t));
        }
        loads
    }

    /// The load of `node_id` (`None`: no task counts there).
    pub fn of(&self, node_id: &str) -> Option<&NodeLoad> {
        self.nodes.get(node_id)
    }

    /// Counts or uncounts task `id` by what it is now (`None`: deleted).
    /// A task counted once stays on the node it was counted on until it
    /// ends or is deleted (a task's node never changes).
    pub fn update(&mut self, id: &str, task: Option<&Task>) {
        let now = task.filter(|t| counts(t));
        match (self.counted.contains_key(id), now) {
            (false, Some(t)) => {
                let Some(node) = t.node_id.clone() else {
                    return;
                };
                let c = Counted {
                    node,
                    service: t.service_id.clone(),
                    nano_cpus: t.spec.resources.reserve_nano_cpus,
                    memory_bytes: t.spec.resources.reserve_memory_bytes,
                    generic: generic_units(&t.spec.resources),
                    sandboxed: needs_sandbox(t),
                };
                let load = self.nodes.entry(c.node.clone()).or_default();
                load.total += 1;
                load.sandboxes += usize::from(c.sandboxed);
                match load.services.get_mut(&c.service) {
                    Some(n) => *n += 1,
                    None => {
                        load.services.insert(c.service.clone(), 1);
                    }
                }
                load.nano_cpus = load.nano_cpus.saturating_add(c.nano_cpus);
                load.memory_bytes = load.memory_bytes.saturating_add(c.memory_bytes);
                for (kind, n) in &c.generic {
                    let held = load.generic.entry(kind.clone()).or_default();
                    *held = held.saturating_add(*n);
                }
                self.counted.insert(id.to_string(), c);
            }
            (true, None) => {
                let Some(c) = self.counted.remove(id) else {
                    return;
                };
                let Some(load) = self.nodes.get_mut(&c.node) else {
                    return;
                };
                load.total = load.total.saturating_sub(1);
                load.sandboxes = load.sandboxes.saturating_sub(usize::from(c.sandboxed));
                if let Some(n) = load.services.get_mut(&c.service) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        load.services.remove(&c.service);
                    }
                }
                load.nano_cpus = load.nano_cpus.saturating_sub(c.nano_cpus);
                load.memory_bytes = load.memory_bytes.saturating_sub(c.memory_bytes);
                for (kind, n) in &c.generic {
                    if let Some(held) = load.generic.get_mut(kind) {
                        *held = held.saturating_sub(*n);
                    }
                }
                if load.total == 0 {
                    self.nodes.remove(&c.node);
                }
            }
            _ => {}
        }
    }

    /// The nodes as placement sees them, with their loads. A node's
    /// host-mode ports are its services' published ports, once per task.
    pub fn candidates(&self, state: &ClusterState) -> Vec<Candidate> {
        let mut ports: HashMap<&str, Vec<(Protocol, u16)>> = HashMap::new();
        for svc in state.services.values() {
            let held = host_ports(state, &svc.id);
            if !held.is_empty() {
                ports.insert(svc.id.as_str(), held);
            }
        }
        state
            .nodes
            .values()
            .map(|node| {
                let mut c = Candidate::from_node(node);
                if let Some(load) = self.nodes.get(&node.id) {
                    c.total_tasks = load.total;
                    c.service_tasks = load.services.clone();
                    c.reserved_nano_cpus = load.nano_cpus;
                    c.reserved_memory_bytes = load.memory_bytes;
                    c.reserved_generic = load.generic.clone();
                    c.sandboxes = load.sandboxes;
                    for (service, n) in &load.services {
                        if let Some(held) = ports.get(service.as_str()) {
                            for _ in 0..*n {
                                c.host_ports.extend(held.iter().copied());
                            }
                        }
                    }
                }
                c
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{sample_node, sample_task, NodeRole};
    use chrono::{DateTime, Utc};

    fn task(id: &str, node: Option<&str>, state: TaskState) -> Task {
        let mut t = sample_task(state, DateTime::<Utc>::UNIX_EPOCH);
        t.id = id.into();
        t.node_id = node.map(String::from);
        t.spec.resources.reserve_memory_bytes = 100;
        t
    }

    fn total(loads: &Loads, node: &str) -> usize {
        loads.of(node).map_or(0, |l| l.total)
    }

    #[test]
    fn loads_follow_a_task_that_moves_to_another_node() {
        let mut loads = Loads::default();
        let old = task("t1", Some("a"), TaskState::Running);
        loads.update("t1", Some(&old));
        assert_eq!(total(&loads, "a"), 1);
        assert_eq!(loads.of("a").map(|l| l.memory_bytes), Some(100));
        assert_eq!(loads.of("a").map(|l| l.services["s"]), Some(1));
        // Counted once, however often it is seen.
        loads.update("t1", Some(&old));
        assert_eq!(total(&loads, "a"), 1);
        // Its node went down: the task ends and its successor waits, then
        // is placed on b.
        let ended = task("t1", Some("a"), TaskState::Orphaned);
        loads.update("t1", Some(&ended));
        let waiting = task("t2", None, TaskState::Pending);
        loads.update("t2", Some(&waiting));
        assert_eq!(loads.of("a"), None, "a node with nothing left is forgotten");
        assert_eq!(total(&loads, "b"), 0);
        let placed = task("t2", Some("b"), TaskState::Assigned);
        loads.update("t2", Some(&placed));
        assert_eq!(total(&loads, "b"), 1);
        assert_eq!(loads.of("b").map(|l| l.memory_bytes), Some(100));
        // Deleted: uncounted.
        loads.update("t2", None);
        assert_eq!(loads, Loads::default());
    }

    #[test]
    fn a_global_task_made_for_its_node_counts_only_once_placed() {
        let mut loads = Loads::default();
        // Made with its node, still pending: not counted (it wants a node check).
        let made = task("g", Some("a"), TaskState::Pending);
        assert!(wants_node(&made) && !counts(&made));
        loads.update("g", Some(&made));
        assert_eq!(total(&loads, "a"), 0);
        loads.update("g", Some(&task("g", Some("a"), TaskState::Assigned)));
        assert_eq!(total(&loads, "a"), 1);
    }

    #[test]
    fn counted_task_by_task_is_the_same_as_counted_at_once() {
        let mut state = ClusterState::default();
        for n in ["a", "b"] {
            state
                .nodes
                .insert(n.into(), sample_node(n, n, NodeRole::Worker));
        }
        let mut loads = Loads::default();
        for (i, (node, s)) in [
            ("a", TaskState::Running),
            ("b", TaskState::Running),
            ("a", TaskState::Failed),
            ("b", TaskState::Starting),
        ]
        .into_iter()
        .enumerate()
        {
            let t = task(&format!("t{i}"), Some(node), s);
            loads.update(&t.id, Some(&t));
            state.tasks.insert(t.id.clone(), t);
        }
        assert_eq!(loads, Loads::build(&state));
        let candidates = loads.candidates(&state);
        let by_id = |id: &str| {
            candidates
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.total_tasks)
        };
        assert_eq!((by_id("a"), by_id("b")), (Some(1), Some(2)));
    }
}
