//! Task placement as a pure function: filter nodes, then spread over the
//! service's placement preferences (swarmkit's decision tree), then rank by
//! fewest tasks of the same service, then fewest tasks overall.
//!
//! Filters are a list: each says whether a node cannot take a task and how
//! docker words that. The dynamic ones (replicas per node, resources) are
//! asked again each time a node is taken, as its counts grow.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::model::port::Protocol;
use crate::model::{Availability, Node, NodeState};
use crate::rules::placement::{node_matches, spread_value, Constraint};

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
    /// The node itself, for constraints and spread labels.
    pub node: Arc<Node>,
    /// What its assigned tasks reserve.
    pub reserved_nano_cpus: u64,
    pub reserved_memory_bytes: u64,
    /// Units of each generic resource kind its tasks reserve.
    pub reserved_generic: std::collections::BTreeMap<String, u64>,
    /// Its tasks that hold a network sandbox (`Request::needs_sandbox`).
    pub sandboxes: usize,
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
            node: Arc::new(node.clone()),
            reserved_nano_cpus: 0,
            reserved_memory_bytes: 0,
            reserved_generic: Default::default(),
            sandboxes: 0,
        }
    }

    fn service_count(&self, service_id: &str) -> usize {
        self.service_tasks.get(service_id).copied().unwrap_or(0)
    }
}

/// A task waiting for a node.
#[derive(Debug, Clone)]
pub struct Request {
    pub task_id: String,
    pub service_id: String,
    /// Tasks of one service and version share a placement and are placed together.
    pub spec_version: u64,
    pub driver: String,
    /// A process task off the node's network needs a node that sandboxes.
    pub needs_sandbox: bool,
    /// The limit flags a process task uses (`--limit-memory`, ...): it
    /// needs a node that confines tasks and enforces them.
    pub process_limits: Option<Vec<String>>,
    /// Host-mode ports the task binds on its node.
    pub host_ports: Vec<(Protocol, u16)>,
    /// Parsed constraints (a bad one never reaches the log).
    pub constraints: Arc<Vec<Constraint>>,
    /// Spread descriptors, outermost first.
    pub spread: Arc<Vec<String>>,
    /// 0 = unlimited.
    pub max_replicas: u64,
    pub reserve_nano_cpus: u64,
    pub reserve_memory_bytes: u64,
    /// Units of generic resources by kind (`--generic-resource gpu=1`).
    pub reserve_generic: Vec<(String, u64)>,
    /// A global task's node: the only one it may go to.
    pub node: Option<String>,
    /// The node its slot's volumes are on (`--mount
    /// source=data-{{.Task.Slot}}`): taken whenever it can take the task.
    pub prefer: Option<String>,
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
    /// Asked again whenever the node takes a task.
    dynamic: bool,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "node"
    } else {
        "nodes"
    }
}

fn over_capacity(c: &Candidate, r: &Request) -> bool {
    let machine = &c.node.machine;
    (r.reserve_nano_cpus > 0
        && c.reserved_nano_cpus.saturating_add(r.reserve_nano_cpus) > machine.nano_cpus)
        || (r.reserve_memory_bytes > 0
            && c.reserved_memory_bytes
                .saturating_add(r.reserve_memory_bytes)
                > machine.memory_bytes)
        || r.reserve_generic.iter().any(|(kind, n)| {
            c.reserved_generic
                .get(kind)
                .copied()
                .unwrap_or(0)
                .saturating_add(*n)
                > machine.generic_units(kind)
        })
}

/// Whether the task needs a sandbox and the node holds as many as it can.
fn sandboxes_full(c: &Candidate, r: &Request) -> bool {
    r.needs_sandbox
        && c.node
            .machine
            .max_sandboxes
            .is_some_and(|max| c.sandboxes as u64 >= max)
}

const FILTERS: &[Filter] = &[
    Filter {
        rejects: |c, _| c.state != NodeState::Ready,
        explain: |n, _| format!("{n} {} not available for new tasks", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, _| c.availability != Availability::Active,
        explain: |n, _| format!("{n} {} not available for new tasks", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, r| !c.drivers.contains(&r.driver),
        explain: |n, r| format!("driver {} not available on {n} {}", r.driver, plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, r| !node_matches(&r.constraints, &c.node),
        explain: |n, _| format!("scheduling constraints not satisfied on {n} {}", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, r| r.process_limits.is_some() && !c.node.machine.confinement.cannot.is_empty(),
        explain: |n, _| format!("process task confinement unavailable on {n} {}", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, r| {
            r.process_limits.as_ref().is_some_and(|limits| {
                limits
                    .iter()
                    .any(|l| c.node.machine.confinement.missing_limits.contains(l))
            })
        },
        explain: |n, _| format!("resource limits not enforceable on {n} {}", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: |c, r| r.needs_sandbox && !c.sandbox,
        explain: |n, _| format!("network sandbox unavailable on {n} {}", plural(n)),
        dynamic: false,
    },
    Filter {
        rejects: sandboxes_full,
        explain: |n, _| format!("no network sandbox left on {n} {}", plural(n)),
        dynamic: true,
    },
    Filter {
        rejects: |c, r| r.host_ports.iter().any(|p| c.host_ports.contains(p)),
        explain: |n, _| format!("host-mode port already in use on {n} {}", plural(n)),
        dynamic: true,
    },
    Filter {
        rejects: over_capacity,
        explain: |n, _| format!("insufficient resources on {n} {}", plural(n)),
        dynamic: true,
    },
    Filter {
        rejects: |c, r| {
            r.max_replicas > 0 && c.service_count(&r.service_id) as u64 >= r.max_replicas
        },
        // swarmkit's words, count-less.
        explain: |_, _| "max replicas per node limit exceed".into(),
        dynamic: true,
    },
];

/// The nodes of one branch of the spread tree, best first.
struct Leaf {
    /// The branch's value at each spread level (`None`: label missing).
    key: Vec<Option<String>>,
    /// Tasks of the service on the branch's eligible nodes.
    tasks: usize,
    heap: BinaryHeap<Reverse<(usize, usize, usize)>>,
}

/// The leaf to take the next task from: at each level, the value whose
/// branches (that still have nodes) hold the fewest tasks of the service.
fn pick_leaf(leaves: &[Leaf]) -> Option<usize> {
    let mut chosen: Vec<usize> = (0..leaves.len())
        .filter(|&l| !leaves[l].heap.is_empty())
        .collect();
    let depth = leaves.first().map_or(0, |l| l.key.len());
    for level in 0..depth {
        let mut sums: Vec<(&Option<String>, usize)> = Vec::new();
        for &l in &chosen {
            let value = &leaves[l].key[level];
            match sums.iter_mut().find(|(v, _)| *v == value) {
                Some((_, n)) => *n += leaves[l].tasks,
                None => sums.push((value, leaves[l].tasks)),
            }
        }
        let best = sums
            .iter()
            .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))?
            .0
            .clone();
        chosen.retain(|&l| leaves[l].key[level] == best);
    }
    chosen.first().copied()
}

type GroupKey<'a> = (&'a str, u64, &'a str, Option<&'a str>);

/// Places `requests` on `nodes`, updating the nodes' task counts as it goes.
pub fn place(requests: &[Request], nodes: &mut [Candidate]) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(requests.len());
    // One eligibility pass and one tree per (service, version, driver, node).
    let mut groups: HashMap<GroupKey<'_>, Vec<&Request>> = HashMap::new();
    for r in requests {
        groups
            .entry((
                r.service_id.as_str(),
                r.spec_version,
                r.driver.as_str(),
                r.node.as_deref(),
            ))
            .or_default()
            .push(r);
    }
    let mut keys: Vec<_> = groups.keys().copied().collect();
    keys.sort();
    for key in keys {
        let group = &groups[&key];
        let first = group[0];
        let mut rejected = vec![0usize; FILTERS.len()];
        let mut leaves: Vec<Leaf> = Vec::new();
        let mut leaf_of: HashMap<Vec<Option<String>>, usize> = HashMap::new();
        // Eligible nodes: their index and leaf, for a slot's preferred node.
        let mut eligible: HashMap<&str, (usize, usize)> = HashMap::new();
        for (i, c) in nodes.iter().enumerate() {
            if first.node.as_ref().is_some_and(|n| *n != c.id) {
                continue;
            }
            if let Some(f) = FILTERS.iter().position(|f| (f.rejects)(c, first)) {
                rejected[f] += 1;
                continue;
            }
            let branch: Vec<Option<String>> = first
                .spread
                .iter()
                .map(|d| spread_value(d, &c.node).map(str::to_string))
                .collect();
            let l = *leaf_of.entry(branch.clone()).or_insert_with(|| {
                leaves.push(Leaf {
                    key: branch,
                    tasks: 0,
                    heap: BinaryHeap::new(),
                });
                leaves.len() - 1
            });
            let svc = c.service_count(&first.service_id);
            leaves[l].tasks += svc;
            leaves[l].heap.push(Reverse((svc, c.total_tasks, i)));
            eligible.insert(c.id.as_str(), (i, l));
        }
        let eligible: HashMap<String, (usize, usize)> = eligible
            .into_iter()
            .map(|(id, at)| (id.to_string(), at))
            .collect();
        let mut pending = group.iter();
        'requests: for r in pending.by_ref() {
            if let Some(&(i, l)) = r.prefer.as_ref().and_then(|p| eligible.get(p)) {
                let node = &mut nodes[i];
                if !FILTERS.iter().any(|f| f.dynamic && (f.rejects)(node, r)) {
                    // Its heap entry is stale now and re-ranked when popped.
                    take(node, r);
                    leaves[l].tasks += 1;
                    decisions.push(Decision::Assign {
                        task_id: r.task_id.clone(),
                        node_id: node.id.clone(),
                    });
                    continue 'requests;
                }
            }
            loop {
                let Some(l) = pick_leaf(&leaves) else {
                    let reason = no_suitable_node(&rejected, first);
                    decisions.push(Decision::NoSuitableNode {
                        task_id: r.task_id.clone(),
                        reason,
                    });
                    continue 'requests;
                };
                let Some(Reverse((svc, total, i))) = leaves[l].heap.pop() else {
                    continue;
                };
                let node = &mut nodes[i];
                // Another group of the service took this node since: re-rank it.
                let now_svc = node.service_count(&r.service_id);
                if (now_svc, node.total_tasks) != (svc, total) {
                    leaves[l].heap.push(Reverse((now_svc, node.total_tasks, i)));
                    continue;
                }
                if let Some(f) = FILTERS
                    .iter()
                    .position(|f| f.dynamic && (f.rejects)(node, r))
                {
                    rejected[f] += 1;
                    continue;
                }
                take(node, r);
                leaves[l].tasks += 1;
                leaves[l].heap.push(Reverse((svc + 1, total + 1, i)));
                decisions.push(Decision::Assign {
                    task_id: r.task_id.clone(),
                    node_id: node.id.clone(),
                });
                break;
            }
        }
    }
    decisions
}

/// `node` takes the task `r` asks a node for.
fn take(node: &mut Candidate, r: &Request) {
    node.total_tasks += 1;
    *node.service_tasks.entry(r.service_id.clone()).or_default() += 1;
    node.reserved_nano_cpus = node.reserved_nano_cpus.saturating_add(r.reserve_nano_cpus);
    node.reserved_memory_bytes = node
        .reserved_memory_bytes
        .saturating_add(r.reserve_memory_bytes);
    for (kind, n) in &r.reserve_generic {
        let held = node.reserved_generic.entry(kind.clone()).or_default();
        *held = held.saturating_add(*n);
    }
    node.host_ports.extend(r.host_ports.iter().copied());
    if r.needs_sandbox {
        node.sandboxes += 1;
    }
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
            node: Arc::new(crate::model::sample_node(
                id,
                id,
                crate::model::NodeRole::Worker,
            )),
            reserved_nano_cpus: 0,
            reserved_memory_bytes: 0,
            reserved_generic: Default::default(),
            sandboxes: 0,
        }
    }

    fn req(i: usize, svc: &str, driver: &str) -> Request {
        Request {
            task_id: format!("t{i}"),
            service_id: svc.into(),
            driver: driver.into(),
            spec_version: 1,
            needs_sandbox: false,
            process_limits: (driver == "process").then(Vec::new),
            host_ports: Vec::new(),
            constraints: Default::default(),
            spread: Default::default(),
            max_replicas: 0,
            reserve_nano_cpus: 0,
            reserve_memory_bytes: 0,
            reserve_generic: Vec::new(),
            node: None,
            prefer: None,
        }
    }

    #[test]
    fn generic_resources_are_counted_like_reservations() {
        use crate::model::placement::GenericResource;
        let mut nodes = vec![node("a", &["docker"]), node("b", &["docker"])];
        // Node b declares two named GPUs; node a none.
        nodes[1].node = Arc::new(crate::model::Node {
            machine: crate::model::placement::Machine {
                generic_resources: vec![
                    GenericResource::parse("gpu=GPU-1").unwrap(),
                    GenericResource::parse("gpu=GPU-2").unwrap(),
                ],
                ..nodes[1].node.machine.clone()
            },
            ..(*nodes[1].node).clone()
        });
        let gpu = |i: usize| Request {
            reserve_generic: vec![("gpu".into(), 1)],
            ..req(i, "s", "docker")
        };
        let decisions = place(&[gpu(0), gpu(1), gpu(2)], &mut nodes);
        assert_eq!(
            decisions[..2],
            [
                Decision::Assign {
                    task_id: "t0".into(),
                    node_id: "b".into()
                },
                Decision::Assign {
                    task_id: "t1".into(),
                    node_id: "b".into()
                }
            ]
        );
        assert_eq!(
            decisions[2],
            Decision::NoSuitableNode {
                task_id: "t2".into(),
                reason: "no suitable node (insufficient resources on 2 nodes)".into()
            }
        );
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

    #[test]
    fn process_tasks_wait_for_a_node_that_confines_them_and_enforces_their_limits() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        let mut a = (*nodes[0].node).clone();
        a.machine.confinement.cannot = vec!["overlay root: no overlay filesystem".into()];
        nodes[0].node = Arc::new(a);
        let mut b = (*nodes[1].node).clone();
        b.machine.confinement.missing_limits = vec!["--limit-pids".into()];
        nodes[1].node = Arc::new(b);
        let mut limited = req(0, "s", "process");
        limited.process_limits = Some(vec!["--limit-pids".into()]);
        let d = place(&[limited], &mut nodes);
        assert_eq!(
            d[0],
            Decision::NoSuitableNode {
                task_id: "t0".into(),
                reason: "no suitable node (process task confinement unavailable on 1 node; resource limits not enforceable on 1 node)".into()
            }
        );
        // Without the limit, the node that confines takes it.
        let d = place(&[req(1, "s", "process")], &mut nodes);
        assert_eq!(
            d[0],
            Decision::Assign {
                task_id: "t1".into(),
                node_id: "b".into()
            }
        );
    }

    #[test]
    fn spreads_over_a_label_s_values_with_unlabelled_nodes_as_one_group() {
        let mut nodes = vec![
            node("a1", &["process"]),
            node("a2", &["process"]),
            node("b1", &["process"]),
            node("none", &["process"]),
        ];
        for (n, zone) in nodes.iter_mut().zip(["a", "a", "b"]) {
            Arc::make_mut(&mut n.node)
                .labels
                .insert("zone".into(), zone.into());
        }
        let spread = Arc::new(vec!["node.labels.zone".to_string()]);
        let reqs: Vec<_> = (0..9)
            .map(|i| Request {
                spread: spread.clone(),
                ..req(i, "s", "process")
            })
            .collect();
        place(&reqs, &mut nodes);
        let count = |id: &str| {
            nodes
                .iter()
                .find(|n| n.id == id)
                .map_or(0, |n| n.service_count("s"))
        };
        // Three groups (a, b, no label): 3 tasks each; a's split over its two nodes.
        assert_eq!(count("a1") + count("a2"), 3);
        assert_eq!(count("b1"), 3);
        assert_eq!(count("none"), 3);
    }

    #[test]
    fn a_global_task_goes_only_to_its_node_and_says_why_not() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        nodes[1].node = Arc::new(crate::model::Node {
            machine: crate::model::placement::Machine {
                memory_bytes: 1 << 20,
                ..nodes[1].node.machine.clone()
            },
            ..(*nodes[1].node).clone()
        });
        let on = |node: &str, memory: u64| Request {
            node: Some(node.into()),
            reserve_memory_bytes: memory,
            ..req(0, "g", "process")
        };
        assert_eq!(
            place(&[on("b", 0)], &mut nodes.clone()),
            [Decision::Assign {
                task_id: "t0".into(),
                node_id: "b".into()
            }]
        );
        assert_eq!(
            place(&[on("b", 2 << 20)], &mut nodes),
            [Decision::NoSuitableNode {
                task_id: "t0".into(),
                reason: "no suitable node (insufficient resources on 1 node)".into()
            }]
        );
    }

    #[test]
    fn a_node_takes_no_more_sandboxed_tasks_than_it_says_it_can_hold() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        for (n, max) in nodes.iter_mut().zip([2, 1]) {
            n.node = Arc::new(crate::model::Node {
                machine: crate::model::placement::Machine {
                    max_sandboxes: Some(max),
                    ..n.node.machine.clone()
                },
                ..(*n.node).clone()
            });
        }
        nodes[0].sandboxes = 1;
        let sandboxed = |i: usize| Request {
            needs_sandbox: true,
            ..req(i, "s", "process")
        };
        let placed = place(&[sandboxed(0), sandboxed(1), sandboxed(2)], &mut nodes);
        let on: Vec<&str> = placed
            .iter()
            .filter_map(|d| match d {
                Decision::Assign { node_id, .. } => Some(node_id.as_str()),
                Decision::NoSuitableNode { .. } => None,
            })
            .collect();
        assert_eq!(on.len(), 2, "{placed:?}");
        assert!(on.contains(&"a") && on.contains(&"b"), "{placed:?}");
        assert_eq!(
            placed[2],
            Decision::NoSuitableNode {
                task_id: "t2".into(),
                reason: "no suitable node (no network sandbox left on 2 nodes)".into()
            }
        );
        // A task on the node's own network takes no sandbox: it still fits.
        assert!(matches!(
            place(&[req(3, "s", "process")], &mut nodes)[..],
            [Decision::Assign { .. }]
        ));
    }

    #[test]
    fn constraints_are_counted_in_docker_s_words() {
        let mut nodes = vec![node("a", &["process"]), node("b", &["process"])];
        let r = Request {
            constraints: Arc::new(vec![
                Constraint::parse("node.labels.zone==c").expect("constraint")
            ]),
            ..req(0, "s", "process")
        };
        assert_eq!(
            place(&[r], &mut nodes),
            [Decision::NoSuitableNode {
                task_id: "t0".into(),
                reason: "no suitable node (scheduling constraints not satisfied on 2 nodes)".into()
            }]
        );
    }

    #[test]
    fn a_slot_goes_back_to_the_node_of_its_volumes_while_that_node_can_take_it() {
        let mut nodes = vec![
            node("a", &["docker"]),
            node("b", &["docker"]),
            node("c", &["docker"]),
        ];
        // Without a preference the spread would pick "a" first (all empty).
        let sticky = |i: usize, to: &str| Request {
            prefer: Some(to.into()),
            ..req(i, "db", "docker")
        };
        let placed = place(&[sticky(0, "c"), sticky(1, "c")], &mut nodes);
        assert_eq!(
            placed,
            vec![
                Decision::Assign {
                    task_id: "t0".into(),
                    node_id: "c".into()
                },
                Decision::Assign {
                    task_id: "t1".into(),
                    node_id: "c".into()
                },
            ]
        );
        // A preferred node that cannot take it (gone, or drained) is no
        // constraint: the slot moves.
        nodes[2].availability = Availability::Drain;
        let moved = place(&[sticky(2, "c")], &mut nodes);
        assert!(
            matches!(&moved[..], [Decision::Assign { node_id, .. }] if node_id != "c"),
            "{moved:?}"
        );
    }
}
