//! The scheduler actor: which tasks want a node, the nodes' loads, and the
//! write of `place`'s decisions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shoal_core::model::port::{Protocol, PublishMode};

use crate::context::ManagerCtx;
use crate::store::StoreEvent;
use shoal_core::command::{Command, TaskUpdate};
use shoal_core::limits::MAX_UPDATES_PER_PROPOSAL;
use shoal_core::model::TaskState;
use shoal_core::plan::schedule::{place, Candidate, Decision, Request};
use shoal_core::rules::placement::{parse_preference, Constraint};
use shoal_core::state::{Change, ClusterState};

pub enum SchedulerMsg {
    Store(Option<StoreEvent>),
    /// Run one placement pass (queued at most once at a time).
    Pass,
}

/// How long a failed placement write waits before the next pass.
const RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// What follows a pass: nothing, another pass at once (it stopped at the
/// batch limit), or one after `RETRY` (its write failed).
enum Next {
    Done,
    More,
    Retry,
}

pub struct SchedulerState {
    ctx: Arc<ManagerCtx>,
    pass_queued: bool,
    /// Tasks that wanted a node when last seen, from the store's events: a
    /// pass builds its requests from these instead of every task, and
    /// there is no pass at all while none waits (a status report of a
    /// running task used to cost a scan of the whole state).
    waiting: BTreeSet<String>,
    /// The next pass looks at every task (at start, after missed events).
    rescan: bool,
    loads: Loads,
}

#[derive(Clone)]
pub struct Scheduler;

/// The host-mode ports a task of its service binds on its node.
fn host_ports(state: &ClusterState, t: &shoal_core::model::Task) -> Vec<(Protocol, u16)> {
    state
        .services
        .get(&t.service_id)
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

/// A task's parsed placement, shared by the requests of its service version.
type Parsed = (Arc<Vec<Constraint>>, Arc<Vec<String>>);

fn parsed(cache: &mut HashMap<(String, u64), Parsed>, t: &shoal_core::model::Task) -> Parsed {
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

/// Whether the scheduler has to find `t` a node (or check that a global
/// task's node can take it). A task desired READY waits for its slot's old
/// task to stop (a stop-first update) before it is placed.
fn wants_node(t: &shoal_core::model::Task) -> bool {
    t.desired_state == TaskState::Running && t.status.state <= TaskState::Pending
}

/// The limit flags a task's resources use.
fn limit_flags(r: &shoal_core::model::Resources) -> Vec<String> {
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
fn slot_volumes(t: &shoal_core::model::Task) -> bool {
    t.slot != 0
        && t.spec.mounts.iter().any(|m| {
            m.kind == Some(shoal_core::model::mount::MountKind::Volume)
                && m.source.contains(".Task.Slot")
        })
}

/// The node each slot of a service last had a task on (its newest task
/// that was given one).
fn slot_nodes(state: &ClusterState, service_id: &str) -> HashMap<u64, String> {
    let mut newest: HashMap<u64, (chrono::DateTime<chrono::Utc>, &str)> = HashMap::new();
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
    t: &shoal_core::model::Task,
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
        host_ports: host_ports(state, t),
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

/// Whether the task holds a network sandbox on its node: a process task
/// off the node's network.
fn needs_sandbox(t: &shoal_core::model::Task) -> bool {
    t.spec.driver == "process" && !t.spec.host_network()
}

/// The units of each kind of generic resource a task reserves.
fn generic_units(r: &shoal_core::model::Resources) -> Vec<(String, u64)> {
    r.reserve_generic
        .iter()
        .map(|g| (g.kind().to_string(), g.units()))
        .collect()
}

/// A task placed on a node and not ended: it counts towards the node's load.
fn counts(t: &shoal_core::model::Task) -> bool {
    t.node_id.is_some() && !t.status.state.is_terminal() && !wants_node(t)
}

struct Counted {
    node: String,
    service: String,
    nano_cpus: u64,
    memory_bytes: u64,
    generic: Vec<(String, u64)>,
    sandboxed: bool,
}

#[derive(Default, Clone)]
struct NodeLoad {
    total: usize,
    sandboxes: usize,
    services: HashMap<String, usize>,
    nano_cpus: u64,
    memory_bytes: u64,
    generic: BTreeMap<String, u64>,
}

/// Every node's load, kept up to date task by task from the store's events
/// (swarmkit's scheduler keeps its node set the same way). A pass used to
/// count it again from every task in the state, which made placing 100k
/// tasks a thousand at a time quadratic.
#[derive(Default)]
struct Loads {
    counted: HashMap<String, Counted>,
    nodes: HashMap<String, NodeLoad>,
}

impl Loads {
    fn build(state: &ClusterState) -> Loads {
        let mut loads = Loads::default();
        for (id, t) in &state.tasks {
            loads.update(id, Some(t));
        }
        loads
    }

    /// Counts or uncounts task `id` by what it is now (`None`: deleted).
    fn update(&mut self, id: &str, task: Option<&shoal_core::model::Task>) {
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
    fn candidates(&self, state: &ClusterState) -> Vec<Candidate> {
        let mut ports: HashMap<&str, Vec<(Protocol, u16)>> = HashMap::new();
        for svc in state.services.values() {
            let held: Vec<_> = svc
                .spec
                .endpoint
                .ports
                .iter()
                .filter(|p| p.publish_mode == PublishMode::Host && p.published_port != 0)
                .map(|p| (p.protocol, p.published_port))
                .collect();
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

/// What one pass writes: placements, and pending reasons that changed.
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

impl SchedulerState {
    fn queue_pass(&mut self, myself: &ActorRef<SchedulerMsg>) {
        if !self.pass_queued {
            self.pass_queued = true;
            let _ = myself.send_message(SchedulerMsg::Pass);
        }
    }

    /// Notes the tasks of an event that want a node, and the loads its
    /// changes move; true if a task wants a node.
    fn note(&mut self, ev: &StoreEvent) -> bool {
        let guard = self.ctx.sm.read();
        let mut any = false;
        for c in ev.changes.iter() {
            match c {
                Change::Task { id, .. } => {
                    let task = guard.0.tasks.get(id);
                    if task.is_some_and(wants_node) {
                        self.waiting.insert(id.clone());
                        any = true;
                    }
                    self.loads.update(id, task);
                }
                Change::TaskRemoved { id, .. } => self.loads.update(id, None),
                _ => {}
            }
        }
        any
    }

    /// One placement pass, and what should follow it.
    async fn pass(&mut self) -> Next {
        let (updates, more) = {
            let guard = self.ctx.sm.read();
            let state = &guard.0;
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
                return Next::Done;
            }
            let mut nodes = self.loads.candidates(state);
            let mut cache = HashMap::new();
            let mut slots = SlotNodes::new();
            let mut updates = Vec::new();
            let mut done = Vec::new();
            let mut chunk = Vec::with_capacity(MAX_UPDATES_PER_PROPOSAL);
            let mut more = false;
            // In task id order, a proposal's worth of requests at a time,
            // until a proposal's worth of writes is found: building and
            // placing every waiting task to write the first thousand, pass
            // after pass, was quadratic.
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
            (updates, more)
        };
        if updates.is_empty() {
            return Next::Done;
        }
        let placed: Vec<String> = updates
            .iter()
            .filter_map(|u| match u {
                TaskUpdate::Assign { task_id, .. } => Some(task_id.clone()),
                _ => None,
            })
            .collect();
        let cmd = Command::UpdateTasks {
            updates,
            at: crate::world::now(),
        };
        if let Err(e) = self.ctx.proposer.propose(cmd).await {
            tracing::warn!(error = %e, "scheduler write failed; will retry");
            return Next::Retry;
        }
        // The next pass (at once, if this one stopped at the limit) must
        // see these placements in the loads, even before their event comes.
        {
            let guard = self.ctx.sm.read();
            for id in &placed {
                self.loads.update(id, guard.0.tasks.get(id));
            }
        }
        if more {
            Next::More
        } else {
            Next::Done
        }
    }
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = Arc<ManagerCtx>;

    async fn pre_start(
        &self,
        myself: ActorRef<SchedulerMsg>,
        ctx: Arc<ManagerCtx>,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        crate::events::forward(&ctx.events, myself.clone(), SchedulerMsg::Store);
        let mut st = SchedulerState {
            ctx,
            pass_queued: false,
            waiting: BTreeSet::new(),
            rescan: true,
            loads: Loads::default(),
        };
        st.queue_pass(&myself);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        st: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Store(Some(ev)) => {
                let added = st.note(&ev);
                // Tasks still waiting may fit now: a node came or changed,
                // or a task ended and gave back its resources and ports.
                let freed = !st.waiting.is_empty()
                    && ev.changes.iter().any(|c| {
                        matches!(
                            c,
                            Change::Task { .. } | Change::TaskRemoved { .. } | Change::Node(_)
                        )
                    });
                if added || freed {
                    st.queue_pass(&myself);
                }
            }
            SchedulerMsg::Store(None) => {
                st.rescan = true;
                st.queue_pass(&myself);
            }
            SchedulerMsg::Pass => {
                st.pass_queued = false;
                let started = tokio::time::Instant::now();
                let next = st.pass().await;
                st.ctx
                    .directory
                    .metrics
                    .scheduler_pass_duration
                    .observe(crate::metrics::secs(started.elapsed()));
                match next {
                    Next::Done => {}
                    Next::More => st.queue_pass(&myself),
                    // Nothing else may come to trigger a pass: look again soon.
                    Next::Retry if !st.pass_queued => {
                        st.pass_queued = true;
                        myself.send_after(RETRY, || SchedulerMsg::Pass);
                    }
                    Next::Retry => {}
                }
            }
        }
        Ok(())
    }
}
