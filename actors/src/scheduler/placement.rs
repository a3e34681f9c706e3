//! Task placement as a pure function: filter nodes, then rank them by fewest
//! tasks of the same service, then fewest tasks overall (swarmkit's order).
//!
//! Filters are a list so that constraints, resources and platforms can join
//! later without touching the ranking.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::model::{Availability, Node, NodeState};
use crate::ports::Protocol;

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub state: NodeState,
    pub availability: Availability,
    pub drivers: Vec<String>,
    /// Whether its tasks can get a network of their own.
    pub sandbox: bool,
    /// Host-mode ports its tasks hold.
    pub host_ports: Vec<(Protocol, u16)>,
    pub total_tasks: usize,
    pub service_tasks: HashMap<String, usize>,
}

impl Candidate {
    pub fn from_node(node: &Node) -> Self {
        Candidate {
            id: node.id.clone(),
            state: node.state,
            availability: node.availability,
            drivers: node.drivers.iter().map(|d| d.name.clone()).collect(),
            sandbox: node.sandbox_error.is_none(),
            host_ports: Vec::new(),
            total_tasks: 0,
            service_tasks: HashMap::new(),
        }
    }
}

/// A task waiting for a node.
#[derive(Debug, Clone)]
pub struct Request {
    pub task_id: String,
    pub service_id: String,
    pub driver: String,
    /// A process task off the node's network needs a node that sandboxes.
    pub needs_sandbox: bool,
    /// Host-mode ports the task binds on its node.
    pub host_ports: Vec<(Protocol, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Assign { task_id: String, node_id: String },
    NoSuitableNode { task_id: String, reason: String },
}

/// One reason a node cannot take a task; `explain` words the count like docker.
struct Filter {
    rejects: fn(&Candidate, &Request) -> bool,
    explain: fn(usize, &Request) -> String,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "node"
    } else {
        "nodes"
    }
}

const FILTERS: &[Filter] = &[
    Filter {
        rejects: |c, _| c.state != NodeState::Ready,
        explain: |n, _| format!("{n} {} not available for new tasks", plural(n)),
    },
    Filter {
        rejects: |c, _| c.availability != Availability::Active,
        explain: |n, _| format!("{n} {} not available for new tasks", plural(n)),
    },
    Filter {
        rejects: |c, r| !c.drivers.contains(&r.driver),
        explain: |n, r| format!("driver {} not available on {n} {}", r.driver, plural(n)),
    },
    Filter {
        rejects: |c, r| r.needs_sandbox && !c.sandbox,
        explain: |n, _| format!("network sandbox unavailable on {n} {}", plural(n)),
    },
    Filter {
        rejects: |c, r| r.host_ports.iter().any(|p| c.host_ports.contains(p)),
        explain: |n, _| format!("host-mode port already in use on {n} {}", plural(n)),
    },
];

/// Places `requests` on `nodes`, updating the nodes' task counts as it goes.
pub fn place(requests: &[Request], nodes: &mut [Candidate]) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(requests.len());
    // Group by (service, driver): one eligibility pass and one heap per group.
    let mut groups: HashMap<(&str, &str), Vec<&Request>> = HashMap::new();
    for r in requests {
        groups
            .entry((r.service_id.as_str(), r.driver.as_str()))
            .or_default()
            .push(r);
    }
    let mut keys: Vec<_> = groups.keys().copied().collect();
    keys.sort();
    for key in keys {
        let group = &groups[&key];
        let first = group[0];
        let mut rejected = vec![0usize; FILTERS.len()];
        let mut heap = BinaryHeap::new();
        for (i, c) in nodes.iter().enumerate() {
            match FILTERS.iter().position(|f| (f.rejects)(c, first)) {
                Some(f) => rejected[f] += 1,
                None => {
                    let svc = c
                        .service_tasks
                        .get(first.service_id.as_str())
                        .copied()
                        .unwrap_or(0);
                    heap.push(Reverse((svc, c.total_tasks, i)));
                }
            }
        }
        if heap.is_empty() {
            let reason = no_suitable_node(&rejected, first);
            for r in group {
                decisions.push(Decision::NoSuitableNode {
                    task_id: r.task_id.clone(),
                    reason: reason.clone(),
                });
            }
            continue;
        }
        for r in group {
            let Some(Reverse((svc, total, i))) = heap.pop() else {
                break;
            };
            let node = &mut nodes[i];
            node.total_tasks += 1;
            *node.service_tasks.entry(r.service_id.clone()).or_default() += 1;
            // A node holds one task of a host-mode port: it is used up.
            if r.host_ports.is_empty() {
                heap.push(Reverse((svc + 1, total + 1, i)));
            } else {
                node.host_ports.extend(r.host_ports.iter().copied());
            }
            decisions.push(Decision::Assign {
                task_id: r.task_id.clone(),
                node_id: node.id.clone(),
            });
        }
    }
    decisions
}

fn no_suitable_node(rejected: &[usize], req: &Request) -> String {
    // Merge filters that word their reason the same way (not ready / not active).
    let mut parts: Vec<(String, usize)> = Vec::new();
    for (f, &n) in FILTERS.iter().zip(rejected) {
        if n == 0 {
            continue;
        }
        let key = (f.explain)(0, req);
        match parts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count += n,
            None => parts.push((key, n)),
        }
    }
    let words: Vec<String> = FILTERS
        .iter()
        .filter_map(|f| {
            let key = (f.explain)(0, req);
            let idx = parts.iter().position(|(k, _)| *k == key)?;
            let (_, n) = parts.remove(idx);
            Some((f.explain)(n, req))
        })
        .collect();
    if words.is_empty() {
        "no suitable node (no nodes in the swarm)".into()
    } else {
        format!("no suitable node ({})", words.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, drivers: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            state: NodeState::Ready,
            availability: Availability::Active,
            drivers: drivers.iter().map(|d| d.to_string()).collect(),
            sandbox: true,
            host_ports: Vec::new(),
            total_tasks: 0,
            service_tasks: HashMap::new(),
        }
    }

    fn req(i: usize, svc: &str, driver: &str) -> Request {
        Request {
            task_id: format!("t{i}"),
            service_id: svc.into(),
            driver: driver.into(),
            needs_sandbox: false,
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn spreads_a_service_evenly() {
        let mut nodes = vec![
            node("a", &["process"]),
            node("b", &["process"]),
            node("c", &["process"]),
        ];
        let reqs: Vec<_> = (0..6).map(|i| req(i, "s", "process")).collect();
        let d = place(&reqs, &mut nodes);
        assert_eq!(d.len(), 6);
        for n in &nodes {
            assert_eq!(n.service_tasks["s"], 2, "node {}", n.id);
        }
    }

    #[test]
    fn prefers_nodes_with_fewer_tasks_of_the_service_then_overall() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        nodes[0].total_tasks = 10;
        nodes[1].total_tasks = 1;
        nodes[1].service_tasks.insert("s".into(), 1);
        let d = place(&[req(0, "s", "process")], &mut nodes);
        assert_eq!(
            d[0],
            Decision::Assign {
                task_id: "t0".into(),
                node_id: "a".into()
            }
        );
        let d = place(&[req(1, "other", "process")], &mut nodes);
        assert_eq!(
            d[0],
            Decision::Assign {
                task_id: "t1".into(),
                node_id: "b".into()
            }
        );
    }

    #[test]
    fn explains_why_no_node_fits() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        nodes[1].availability = Availability::Drain;
        let d = place(&[req(0, "s", "docker")], &mut nodes);
        assert_eq!(
            d[0],
            Decision::NoSuitableNode {
                task_id: "t0".into(),
                reason: "no suitable node (1 node not available for new tasks; driver docker not available on 1 node)".into()
            }
        );
    }
}
