//! The scheduler's pass as a pure function of its bookkeeping and the
//! state: which tasks wait for a node (from the store's changes), every
//! node's load (`loads`), and the writes one pass makes with `place`'s
//! decisions. The scheduler actor keeps one `Backlog`, feeds it the store's
//! changes, proposes what `pass` returns and tells it what was written.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::command::TaskUpdate;
use crate::limits::MAX_UPDATES_PER_PROPOSAL;
use crate::model::{Resources, Task, TaskState};
use crate::plan::loads::{generic_units, host_ports, needs_sandbox, wants_node, Loads};
use crate::plan::schedule::{place, Decision, Request};
use crate::rules::placement::{parse_preference, Constraint};
use crate::state::{Change, ClusterState};

/// What the scheduler keeps between passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// Tasks that wanted a node when last seen, from the store's changes: a
    /// pass builds its requests from these instead of every task, and
    /// there is no pass at all while none waits (a status report of a
    /// running task used to cost a scan of the whole state).
    waiting: BTreeSet<String>,
    /// The next pass looks at every task (at start, after missed events).
    rescan: bool,
    loads: Loads,
}

impl Default for Backlog {
    /// A backlog whose first pass looks at every task.
    fn default() -> Self {
        Backlog {
            waiting: BTreeSet::new(),
            rescan: true,
            loads: Loads::default(),
        }
    }
}

/// The writes of one pass: placements, and pending reasons that changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    pub updates: Vec<TaskUpdate>,
    /// The pass stopped at a proposal's worth of writes: pass again once
    /// these are in.
    pub more: bool,
}

impl Pass {
    /// The tasks this pass gives a node.
    pub fn placed(&self) -> Vec<String> {
        self.updates
            .iter()
            .filter_map(|u| match u {
                TaskUpdate::Assign { task_id, .. } => Some(task_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The pass's writes as one command stamped `at`.
    pub fn command(self, at: DateTime<Utc>) -> crate::command::Command {
        crate::command::Command::UpdateTasks {
            updates: self.updates,
            at,
        }
    }
}

impl Backlog {
    /// Whether any task is known to wait for a node.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The loads as counted so far.
    pub fn loads(&self) -> &Loads {
        &self.loads
    }

    /// Events were missed: the next pass looks at every task again.
    pub fn rescan(&mut self) {
        self.rescan = true;
    }

    /// Notes the tasks of `changes` (applied to `state`) that want a node,
    /// and the loads the changes move; whether the scheduler should pass:
    /// a task wants a node, or tasks still waiting may fit now (a node came
    /// or changed, or a task ended and gave back its resources and ports).
    pub fn note(&mut self, state: &ClusterState, changes: &[Change]) -> bool {
        let mut added = false;
        for c in changes {
            match c {
                Change::Task { id, .. } => {
                    let task = state.tasks.get(id);
                    if task.is_some_and(wants_node) {
                        self.waiting.insert(id.clone());
                        added = true;
                    }
                    self.loads.update(id, task);
                }
                Change::TaskRemoved { id, .. } => self.loads.update(id, None),
                _ => {}
            }
        }
        let freed = self.is_waiting()
            && changes.iter().any(|c| {
                matches!(
                    c,
                    Change::Task { .. } | Change::TaskRemoved { .. } | Change::Node(_)
                )
            });
        added || freed
    }

    /// The tasks of `placed` were written to their nodes: the next pass
    /// counts them in the loads even before their change comes.
    pub fn written(&mut self, state: &ClusterState, placed: &[String]) {
        for id in placed {
            self.loads.update(id, state.tasks.get(id));
        }
    }

    /// One placement pass over the waiting tasks, in task id order, at most
    /// a proposal's worth of writes (`more` then says so). Tasks that no
    /// longer want a node leave the backlog.
    pub fn pass(&mut self, state: &ClusterState) -> Pass {
        if std::mem::take(&mut self.rescan) {
            self.waiting = state
                .tasks
                .values()
                .filter(|t| wants_node(t))
                .map(|t| t.id.clone())
                .collect();
            self.loads = Loads::build(state);
        }
        if self.waiting.is_empty() {
            return Pass::default();
        }
        let mut nodes = self.loads.candidates(state);
        let mut cache = HashMap::new();
        let mut slots = SlotNodes::new();
        let mut updates = Vec::new();
        let mut done = Vec::new();
        let mut chunk = Vec::with_capacity(MAX_UPDATES_PER_PROPOSAL);
        let mut more = false;
        // A proposal's worth of requests at a time, until a proposal's
        // worth of writes is found: building and placing every waiting task
        // to write the first thousand, pass after pass, was quadratic.
        let mut ids = self.waiting.iter();
        loop {
            let next = ids.next();
            match next.map(|id| (id, state.tasks.get(id))) {
                Some((_, Some(t))) if wants_node(t) => {
                    chunk.push(request(state, &mut cache, &mut slots, t));
                    if chunk.len() < MAX_UPDATES_PER_PROPOSAL {
                        continue;
                    }
                }
                Some((id, _)) => {
                    done.push(id.clone());
                    continue;
                }
                None => {}
            }
            let decisions = place(&chunk, &mut nodes);
            chunk.clear();
            updates.extend(
                decisions
                    .into_iter()
                    .filter_map(|d| decision_update(state, d)),
            );
            if next.is_none() {
                break;
            }
            if updates.len() >= MAX_UPDATES_PER_PROPOSAL {
                more = true;
                break;
            }
        }
        for id in done {
            self.waiting.remove(&id);
        }
        if updates.len() > MAX_UPDATES_PER_PROPOSAL {
            // The rest are placed again by the next pass.
            updates.truncate(MAX_UPDATES_PER_PROPOSAL);
            more = true;
        }
        Pass { updates, more }
    }
}

/// A decision as a write: an assignment, or a pending reason that changed.
fn decision_update(state: &ClusterState, d: Decision) -> Option<TaskUpdate> {
    match d {
        Decision::Assign { task_id, node_id } => Some(TaskUpdate::Assign { task_id, node_id }),
        Decision::NoSuitableNode { task_id, reason } => {
            // Already pending for this reason: nothing to write.
            let same = state.tasks.get(&task_id).is_some_and(|t| {
                t.status.state == TaskState::Pending
                    && t.status.err.as_deref() == Some(reason.as_str())
            });
            (!same).then_some(TaskUpdate::Pending { task_id, reason })
        }
    }
}

/// A task's parsed placement, shared by the requests of its service version.
type Parsed = (Arc<Vec<Constraint>>, Arc<Vec<String>>);

fn parsed(cache: &mut HashMap<(String, u64), Parsed>, t: &Task) -> Parsed {
    cache
        .entry((t.service_id.clone(), t.spec_version))
        .or_insert_with(|| {
            let p = &t.spec.placement;
            // `check` refused bad ones before they reached the log.
            let constraints = Constraint::parse_all(&p.constraints).unwrap_or_default();
            let spread = p
                .preferences
                .iter()
                .filter_map(|p| parse_preference(p).ok())
                .collect();
            (Arc::new(constraints), Arc::new(spread))
        })
        .clone()
}

/// The limit flags a task's resources use.
fn limit_flags(r: &Resources) -> Vec<String> {
    [
        (r.limit_memory_bytes > 0, "--limit-memory"),
        (r.limit_nano_cpus > 0, "--limit-cpu"),
        (r.limit_pids > 0, "--limit-pids"),
    ]
    .into_iter()
    .filter(|(used, _)| *used)
    .map(|(_, flag)| flag.to_string())
    .collect()
}

/// Whether a task's volumes are its slot's own (a volume mount whose source
/// names `{{.Task.Slot}}`): the slot then stays with the node that holds
/// them while that node can take it.
fn slot_volumes(t: &Task) -> bool {
    t.slot != 0
        && t.spec.mounts.iter().any(|m| {
            m.kind == Some(crate::model::mount::MountKind::Volume)
                && m.source.contains(".Task.Slot")
        })
}

/// The node each slot of a service last had a task on (its newest task
/// that was given one).
fn slot_nodes(state: &ClusterState, service_id: &str) -> HashMap<u64, String> {
    let mut newest: HashMap<u64, (DateTime<Utc>, &str)> = HashMap::new();
    for t in state.tasks_of_service(service_id) {
        let Some(node) = t.node_id.as_deref() else {
            continue;
        };
        let e = newest.entry(t.slot).or_insert((t.created_at, node));
        if t.created_at >= e.0 {
            *e = (t.created_at, node);
        }
    }
    newest
        .into_iter()
        .map(|(slot, (_, node))| (slot, node.to_string()))
        .collect()
}

/// Per pass: each service's slots' nodes, looked up once.
type SlotNodes = HashMap<String, HashMap<u64, String>>;

fn request(
    state: &ClusterState,
    cache: &mut HashMap<(String, u64), Parsed>,
    slots: &mut SlotNodes,
    t: &Task,
) -> Request {
    let (constraints, spread) = parsed(cache, t);
    let prefer = slot_volumes(t)
        .then(|| {
            slots
                .entry(t.service_id.clone())
                .or_insert_with(|| slot_nodes(state, &t.service_id))
                .get(&t.slot)
                .cloned()
        })
        .flatten();
    Request {
        task_id: t.id.clone(),
        service_id: t.service_id.clone(),
        spec_version: t.spec_version,
        driver: t.spec.driver.clone(),
        needs_sandbox: needs_sandbox(t),
        process_limits: (t.spec.driver == "process").then(|| limit_flags(&t.spec.resources)),
        host_ports: host_ports(state, &t.service_id),
        constraints,
        spread,
        max_replicas: t.spec.placement.max_replicas,
        reserve_nano_cpus: t.spec.resources.reserve_nano_cpus,
        reserve_memory_bytes: t.spec.resources.reserve_memory_bytes,
        reserve_generic: generic_units(&t.spec.resources),
        node: t.node_id.clone(),
        prefer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{sample_node, sample_task, NodeRole};

    fn state_with(nodes: &[&str]) -> ClusterState {
        let mut state = ClusterState::default();
        for n in nodes {
            let mut node = sample_node(n, n, NodeRole::Worker);
            node.state = crate::model::NodeState::Ready;
            node.drivers = vec![crate::model::DriverInfo {
                name: "process".into(),
                version: "1".into(),
            }];
            state.nodes.insert(n.to_string(), node);
        }
        state
    }

    fn pending(state: &mut ClusterState, id: &str) -> Change {
        let mut t = sample_task(TaskState::Pending, DateTime::<Utc>::UNIX_EPOCH);
        t.id = id.into();
        t.spec.driver = "process".into();
        t.spec.networks.clear();
        state.tasks.insert(id.into(), t);
        Change::Task {
            id: id.into(),
            service_id: "s".into(),
        }
    }

    #[test]
    fn a_pass_places_the_waiting_tasks_and_counts_them_once_written() {
        let mut state = state_with(&["a", "b"]);
        let mut backlog = Backlog::default();
        // The first pass looks at every task: none yet.
        assert_eq!(backlog.pass(&state), Pass::default());
        let changes = [pending(&mut state, "t1"), pending(&mut state, "t2")];
        assert!(backlog.note(&state, &changes), "tasks want a node");
        let pass = backlog.pass(&state);
        assert!(!pass.more);
        let placed = pass.placed();
        assert_eq!(placed, ["t1", "t2"]);
        // Spread: one each.
        let nodes: BTreeSet<String> = pass
            .updates
            .iter()
            .filter_map(|u| match u {
                TaskUpdate::Assign { node_id, .. } => Some(node_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(nodes.len(), 2);
        // Written: the state has them assigned; the loads count them even
        // before their change comes.
        for u in &pass.updates {
            if let TaskUpdate::Assign { task_id, node_id } = u {
                let t = state.tasks.get_mut(task_id).expect("task");
                t.node_id = Some(node_id.clone());
                t.status.state = TaskState::Assigned;
            }
        }
        backlog.written(&state, &placed);
        let total: usize = ["a", "b"]
            .iter()
            .filter_map(|n| backlog.loads().of(n))
            .map(|l| l.total)
            .sum();
        assert_eq!(total, 2);
        // The next pass finds them placed: nothing waits any more, and
        // their change is no news to the loads.
        assert_eq!(backlog.pass(&state), Pass::default());
        assert!(!backlog.is_waiting());
        assert!(!backlog.note(&state, &changes));
        assert_eq!(backlog.loads(), &Loads::build(&state));
    }

    #[test]
    fn a_task_with_no_node_is_written_pending_once() {
        let mut state = state_with(&[]);
        let mut backlog = Backlog::default();
        let change = [pending(&mut state, "t")];
        backlog.note(&state, &change);
        let pass = backlog.pass(&state);
        let reason = match &pass.updates[..] {
            [TaskUpdate::Pending { reason, .. }] => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason, "no suitable node (no nodes in the swarm)");
        // Written: the next pass has nothing new to say, but the task waits.
        let t = state.tasks.get_mut("t").expect("task");
        t.status.err = Some(reason);
        assert_eq!(backlog.pass(&state), Pass::default());
        assert!(backlog.is_waiting());
        // A node joins: the waiting task may fit now.
        assert!(backlog.note(&state_with(&["a"]), &[Change::Node("a".into())]));
    }
}
