//! The Dispatcher (leader only): worker sessions, heartbeats, assignments,
//! and the status reports that agents send back into the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::ManagerCtx;
use crate::session::{AgentLink, AgentMsg, DispatcherMsg, Members};
use shoal_core::command::{Command, TaskUpdate};
use shoal_core::limits::MAX_UPDATES_PER_PROPOSAL;
use shoal_core::model::{NodeState, TaskState, TaskStatus};
use shoal_core::rules::network::NetworkTable;
use shoal_core::rules::port::ServiceEndpoints;
use shoal_core::state::{Change, ClusterState};

struct Session {
    /// `None` until the node registers with this dispatcher.
    agent: Option<Arc<dyn AgentLink>>,
    last_seen: Instant,
    /// What the node was last sent (task id and desired state, sorted): an
    /// update that changes neither, such as the node's own status report,
    /// is not sent again. `None` sends the next list whatever it is.
    sent: Option<Vec<(String, TaskState)>>,
    /// A probe of the node (its heartbeat is late) is under way.
    probing: bool,
    /// The node's clock against this manager's, from its heartbeats.
    clock: shoal_core::clock::Offsets,
}

/// How long a failed status write waits before it is tried again.
const STATUS_RETRY: Duration = Duration::from_millis(200);

/// How long store changes gather before the nodes they touch hear of them.
const PUSH_DELAY: Duration = Duration::from_millis(50);

pub struct DispatcherState {
    ctx: Arc<ManagerCtx>,
    sessions: BTreeMap<String, Session>,
    /// Status reports waiting for a write, newest per task. Only reports for
    /// tasks of the reporting node get in, so this is bounded by the tasks.
    statuses: BTreeMap<String, (String, TaskStatus)>,
    /// One status write at a time; reports arriving meanwhile coalesce.
    writing: bool,
    /// Nodes whose assignments may have changed, and whether a push is queued.
    dirty: BTreeSet<String>,
    push_queued: bool,
    /// The endpoint table every node was last sent, and whether a change in
    /// the store may have changed it.
    endpoints: Vec<ServiceEndpoints>,
    /// The same for the network table (routes, VIPs and names).
    networks: Arc<NetworkTable>,
    /// The same for the members (roles, generations, removed nodes).
    members: Arc<Members>,
    endpoints_dirty: bool,
    ticks: u64,
    /// Whose clocks are off, as the last look judged them (`shoal_core::clock`).
    clocks: shoal_core::clock::Judge,
    /// Which tasks each node was given, so a push reads that node's tasks
    /// and not the whole state (with 100k tasks on 1,000 nodes, a scan per
    /// pushed node made one round of pushes cost 10^8 steps).
    placed: TaskIndex,
}

/// The tasks given to each node, kept from store events. A task's node is
/// set once (when it is assigned, or when a global task is made) and never
/// changes, so the index only grows with new tasks and shrinks as they are
/// deleted.
#[derive(Default)]
struct TaskIndex {
    by_node: HashMap<String, BTreeSet<String>>,
    node_of: HashMap<String, String>,
}

impl TaskIndex {
    fn build(state: &ClusterState) -> TaskIndex {
        let mut index = TaskIndex::default();
        for t in state.tasks.values() {
            if let Some(node) = &t.node_id {
                index.insert(&t.id, node);
            }
        }
        index
    }

    fn insert(&mut self, task_id: &str, node_id: &str) {
        if self.node_of.contains_key(task_id) {
            return;
        }
        self.node_of
            .insert(task_id.to_string(), node_id.to_string());
        self.by_node
            .entry(node_id.to_string())
            .or_default()
            .insert(task_id.to_string());
    }

    /// Forgets a deleted task; returns the node it was on.
    fn remove(&mut self, task_id: &str) -> Option<String> {
        let node = self.node_of.remove(task_id)?;
        if let Some(tasks) = self.by_node.get_mut(&node) {
            tasks.remove(task_id);
            if tasks.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    fn on_node(&self, node_id: &str) -> impl Iterator<Item = &String> {
        self.by_node.get(node_id).into_iter().flatten()
    }
}

/// Ticks (four a heartbeat) between two unconditional assignment pushes.
const RESEND_EVERY_TICKS: u64 = 40;

/// Ticks between two looks at the nodes' clocks (one a heartbeat).
const CLOCK_CHECK_EVERY_TICKS: u64 = 4;

#[derive(Clone)]
pub struct Dispatcher;

impl DispatcherState {
    /// Sends `node_id` its assignments, unless they are what it was last sent
    /// (`force` sends anyway: a node that registers knows nothing yet).
    fn push_assignments(&mut self, node_id: &str, force: bool) {
        let Some(session) = self.sessions.get_mut(node_id) else {
            return;
        };
        let Some(agent) = &session.agent else {
            return;
        };
        let keyring = self.ctx.keyring();
        let guard = self.ctx.sm.read();
        let tasks: Vec<&shoal_core::model::Task> = self
            .placed
            .on_node(node_id)
            .filter_map(|id| guard.0.tasks.get(id))
            .filter(|t| {
                // A global task is made for its node but goes to it only
                // once the scheduler has checked that it fits.
                t.node_id.as_deref() == Some(node_id)
                    && t.status.state >= TaskState::Assigned
                    && !t.status.state.is_terminal()
            })
            .collect();
        // Only what this node's tasks use, by the replicated state.
        let payloads = shoal_core::rules::secret::payloads_for(
            &guard.0,
            tasks.iter().copied(),
            keyring.as_deref(),
        );
        let mut sent: Vec<(String, TaskState)> = tasks
            .iter()
            .map(|t| (t.id.clone(), t.desired_state))
            .collect();
        // A secret the node could not be given yet (a locked manager) is
        // sent once it can be: its arrival changes what was sent.
        sent.extend(payloads.iter().map(|p| {
            (
                format!("{}/{}/{}", p.kind.as_str(), p.id, p.data_version),
                TaskState::Running,
            )
        }));
        if !force && session.sent.as_ref() == Some(&sent) {
            return;
        }
        // Copied only when they go out: most pushes (a task's status moved
        // on) change nothing the node is told.
        let tasks: Vec<shoal_core::model::Task> = tasks.into_iter().cloned().collect();
        drop(guard);
        session.sent = Some(sent);
        agent.send(AgentMsg::Assignments(tasks, payloads));
    }

    fn mark_dirty(
        &mut self,
        myself: &ActorRef<DispatcherMsg>,
        nodes: impl Iterator<Item = String>,
    ) {
        self.dirty.extend(nodes);
        if !self.dirty.is_empty() {
            self.queue_push(myself);
        }
    }

    fn queue_push(&mut self, myself: &ActorRef<DispatcherMsg>) {
        if !self.push_queued {
            self.push_queued = true;
            myself.send_after(PUSH_DELAY, || DispatcherMsg::PushAssignments);
        }
    }

    /// Sends every node the endpoint and network tables if they changed
    /// since they were sent them.
    fn push_endpoints(&mut self) {
        self.endpoints_dirty = false;
        let (table, networks, members) = {
            let guard = self.ctx.sm.read();
            (
                shoal_core::rules::port::endpoints(&guard.0),
                shoal_core::rules::network::table(&guard.0),
                crate::session::members(&guard.0),
            )
        };
        let endpoints_changed = table != self.endpoints;
        let networks_changed = networks != *self.networks;
        let members_changed = members != *self.members;
        self.endpoints = table;
        self.networks = Arc::new(networks);
        self.members = Arc::new(members);
        for s in self.sessions.values() {
            if let Some(agent) = &s.agent {
                if members_changed {
                    agent.send(AgentMsg::Members(self.members.clone()));
                }
                if endpoints_changed {
                    agent.send(AgentMsg::Endpoints(self.endpoints.clone()));
                }
                if networks_changed {
                    agent.send(AgentMsg::Networks(self.networks.clone()));
                }
            }
        }
    }

    fn send_endpoints_to(&self, agent: &Arc<dyn AgentLink>) {
        agent.send(AgentMsg::Members(self.members.clone()));
        agent.send(AgentMsg::Endpoints(self.endpoints.clone()));
        agent.send(AgentMsg::Networks(self.networks.clone()));
    }

    fn send_endpoints_to_all(&self) {
        for s in self.sessions.values() {
            if let Some(agent) = &s.agent {
                self.send_endpoints_to(agent);
            }
        }
    }

    /// Queues the reports of `node_id` for tasks that are its own; a report
    /// about another node's task is dropped (the state machine would refuse
    /// it too).
    fn queue_statuses(&mut self, node_id: String, updates: Vec<(String, TaskStatus)>) {
        let guard = self.ctx.sm.read();
        let clock = self.sessions.get(&node_id).map(|s| &s.clock);
        for (task_id, mut status) in updates {
            let Some(task) = guard.0.tasks.get(&task_id) else {
                continue;
            };
            if task.node_id.as_deref() != Some(node_id.as_str()) {
                tracing::debug!(node = %node_id, task = %task_id, "status for a task of another node refused");
                continue;
            }
            // Times on this manager's clock, whatever the node's says.
            let reported = status.timestamp;
            if let Some(clock) = clock {
                status.timestamp = clock.to_leader(reported);
            }
            let same = match status.timestamp == reported {
                true => task.status == status,
                // A report sent again under a moved clock is not news.
                false => {
                    TaskStatus {
                        timestamp: task.status.timestamp,
                        ..status.clone()
                    } == task.status
                }
            };
            if same {
                continue;
            }
            match self.statuses.get(&task_id) {
                Some((_, queued)) if queued.state > status.state => {}
                _ => {
                    self.statuses.insert(task_id, (node_id.clone(), status));
                }
            }
        }
    }

    /// Proposes the next batch of queued reports, unless a write is in flight.
    /// Not awaited here: a commit can take a while (a slow link, an election),
    /// and heartbeats queued behind it would make live nodes look dead.
    fn write_statuses(&mut self, myself: &ActorRef<DispatcherMsg>) {
        if self.writing || self.statuses.is_empty() {
            return;
        }
        let ids: Vec<String> = self
            .statuses
            .keys()
            .take(MAX_UPDATES_PER_PROPOSAL)
            .cloned()
            .collect();
        let updates = ids
            .into_iter()
            .filter_map(|task_id| {
                let (node_id, status) = self.statuses.remove(&task_id)?;
                Some(TaskUpdate::Status {
                    task_id,
                    node_id,
                    status,
                })
            })
            .collect();
        self.writing = true;
        let proposer = self.ctx.proposer.clone();
        let me = myself.clone();
        let cmd = Command::UpdateTasks {
            updates,
            at: crate::world::now(),
        };
        tokio::spawn(async move {
            let mut failed = Vec::new();
            if let Err(e) = proposer.propose(cmd.clone()).await {
                tracing::warn!(error = %e, "task status write failed; will retry");
                if let Command::UpdateTasks { updates, .. } = cmd {
                    failed = updates;
                }
                tokio::time::sleep(STATUS_RETRY).await;
            }
            let _ = me.send_message(DispatcherMsg::StatusWritten(failed));
        });
    }

    /// Flags the nodes whose clocks are beyond the bound, and unflags those
    /// back within it (`shoal_core::clock`). Not awaited, like status writes.
    fn check_clocks(&mut self) {
        let offsets: BTreeMap<String, chrono::TimeDelta> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.agent.is_some())
            .filter_map(|(n, s)| Some((n.clone(), s.clock.offset()?)))
            .collect();
        let writes: Vec<Command> = {
            let guard = self.ctx.sm.read();
            self.clocks
                .look(&offsets, |n| Some(guard.0.nodes.get(n)?.clock_skew_ms))
                .into_iter()
                .map(|(node_id, skew_ms)| Command::SetNodeClockSkew { node_id, skew_ms })
                .collect()
        };
        for cmd in writes {
            if let Command::SetNodeClockSkew {
                node_id,
                skew_ms: Some(ms),
            } = &cmd
            {
                tracing::warn!(node = %node_id, skew = %shoal_core::clock::describe(*ms), "a node's clock is off the cluster's");
            }
            let proposer = self.ctx.proposer.clone();
            tokio::spawn(async move {
                if let Err(e) = proposer.propose(cmd).await {
                    tracing::warn!(error = %e, "clock skew write failed");
                }
            });
        }
    }

    /// Ends the node's session and writes it down (its tasks go elsewhere).
    async fn node_down(&mut self, node_id: String) {
        self.sessions.remove(&node_id);
        let metrics = &self.ctx.directory.metrics;
        metrics.dispatcher_node_down.inc();
        metrics.dispatcher_sessions.set(self.sessions.len() as i64);
        self.propose(Command::SetNodeState {
            node_id,
            state: NodeState::Down,
            message: "heartbeat failure".into(),
            at: crate::world::now(),
        })
        .await;
    }

    async fn propose(&self, cmd: Command) {
        if let Err(e) = self.ctx.proposer.propose(cmd).await {
            tracing::warn!(error = %e, "dispatcher write failed");
        }
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMsg;
    type State = DispatcherState;
    type Arguments = Arc<ManagerCtx>;

    async fn pre_start(
        &self,
        myself: ActorRef<DispatcherMsg>,
        ctx: Arc<ManagerCtx>,
    ) -> Result<DispatcherState, ActorProcessingErr> {
        crate::events::forward(&ctx.events, myself.clone(), DispatcherMsg::Store);
        // Checking four times a period notices a silent node at most a
        // quarter period after its third missed heartbeat.
        myself.send_interval(ctx.timings.dispatcher_heartbeat / 4, || DispatcherMsg::Tick);
        // A new leader gives every node that was ready twice the usual time
        // to register with it (agents may first try a manager that died with
        // the old leader); those that do not are declared down.
        let now = Instant::now() + ctx.timings.dispatcher_heartbeat * 3;
        let placed = TaskIndex::build(&ctx.sm.read().0);
        let (endpoints, networks, members) = {
            let guard = ctx.sm.read();
            (
                shoal_core::rules::port::endpoints(&guard.0),
                Arc::new(shoal_core::rules::network::table(&guard.0)),
                Arc::new(crate::session::members(&guard.0)),
            )
        };
        let sessions = ctx
            .sm
            .read()
            .0
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Ready)
            .map(|n| {
                (
                    n.id.clone(),
                    Session {
                        agent: None,
                        last_seen: now,
                        sent: None,
                        probing: false,
                        clock: Default::default(),
                    },
                )
            })
            .collect();
        Ok(DispatcherState {
            ctx,
            sessions,
            statuses: BTreeMap::new(),
            writing: false,
            dirty: BTreeSet::new(),
            push_queued: false,
            // The tables as the state has them now, not empty: a node that
            // registers before the first push is sent these, and an empty
            // endpoint table would close its published ports (a new
            // leader's first moments; found by the clock-skew scenario).
            endpoints,
            networks,
            members,
            endpoints_dirty: true,
            ticks: 0,
            placed,
            clocks: Default::default(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DispatcherMsg>,
        st: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        // Sessions are the leader's: a deposed dispatcher holds none.
        st.ctx.directory.metrics.dispatcher_sessions.set(0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DispatcherMsg>,
        msg: DispatcherMsg,
        st: &mut DispatcherState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatcherMsg::Register { node, agent } => {
                let existing = st.ctx.sm.read().0.nodes.get(&node.node_id).cloned();
                let Some(mut n) = existing else {
                    tracing::warn!(node = %node.node_id, "registration from a node not in the swarm");
                    agent.send(AgentMsg::SessionRejected);
                    return Ok(());
                };
                let now = crate::world::now();
                if n.state != NodeState::Ready
                    || n.drivers != node.drivers
                    || n.hostname != node.hostname
                    || n.addr != node.addr
                    || n.sandbox_error != node.sandbox_error
                    || n.machine != node.machine
                    || n.max_format != node.max_format
                {
                    n.state = NodeState::Ready;
                    n.status_message = String::new();
                    n.drivers = node.drivers.clone();
                    n.hostname = node.hostname.clone();
                    n.addr = node.addr.clone();
                    n.sandbox_error = node.sandbox_error.clone();
                    n.machine = node.machine.clone();
                    n.max_format = node.max_format;
                    n.updated_at = now;
                    // Not awaited, like status writes: heartbeats must not
                    // queue behind a commit.
                    let proposer = st.ctx.proposer.clone();
                    tokio::spawn(async move {
                        if let Err(e) = proposer.propose(Command::UpsertNode(n)).await {
                            tracing::warn!(error = %e, "node registration write failed");
                        }
                    });
                }
                tracing::info!(node = %node.node_id, "agent registered");
                st.sessions.insert(
                    node.node_id.clone(),
                    Session {
                        agent: Some(agent),
                        last_seen: Instant::now(),
                        sent: None,
                        probing: false,
                        clock: Default::default(),
                    },
                );
                st.push_assignments(&node.node_id, true);
                if let Some(agent) = st
                    .sessions
                    .get(&node.node_id)
                    .and_then(|s| s.agent.as_ref())
                {
                    st.send_endpoints_to(agent);
                }
            }
            DispatcherMsg::Heartbeat { node_id, agent, at } => {
                match st.sessions.get_mut(&node_id) {
                    Some(s) if s.agent.is_some() => {
                        s.last_seen = Instant::now();
                        s.clock.record(at, crate::world::now());
                    }
                    _ => agent.send(AgentMsg::SessionRejected),
                }
            }
            DispatcherMsg::Status { node_id, updates } => {
                st.queue_statuses(node_id, updates);
                st.write_statuses(&myself);
            }
            DispatcherMsg::StatusWritten(failed) => {
                st.writing = false;
                // Again, unless a newer report came meanwhile (applying a
                // report twice changes nothing: states only move forward).
                for u in failed {
                    if let TaskUpdate::Status {
                        task_id,
                        node_id,
                        status,
                    } = u
                    {
                        st.statuses.entry(task_id).or_insert((node_id, status));
                    }
                }
                st.write_statuses(&myself);
            }
            DispatcherMsg::Store(Some(ev)) => {
                // Any change of tasks, services or nodes may change where
                // published ports lead; of the cluster entry, who is removed.
                st.endpoints_dirty = true;
                st.queue_push(&myself);
                let mut nodes = BTreeSet::new();
                {
                    let guard = st.ctx.sm.read();
                    for c in ev.changes.iter() {
                        match c {
                            Change::Task { id, .. } => {
                                let node = guard.0.tasks.get(id).and_then(|t| t.node_id.as_ref());
                                if let Some(n) = node {
                                    st.placed.insert(id, n);
                                    nodes.insert(n.clone());
                                }
                            }
                            // The index remembers the node of a deleted task.
                            Change::TaskRemoved { id, .. } => {
                                nodes.extend(st.placed.remove(id));
                            }
                            _ => {}
                        }
                    }
                }
                st.mark_dirty(&myself, nodes.into_iter());
            }
            DispatcherMsg::Store(None) => {
                // Events were missed: the index is built again from the state.
                st.placed = TaskIndex::build(&st.ctx.sm.read().0);
                st.endpoints_dirty = true;
                let all: Vec<String> = st.sessions.keys().cloned().collect();
                st.mark_dirty(&myself, all.into_iter());
            }
            DispatcherMsg::PushAssignments => {
                st.push_queued = false;
                let dirty: Vec<String> = std::mem::take(&mut st.dirty).into_iter().collect();
                for n in dirty {
                    st.push_assignments(&n, false);
                }
                if st.endpoints_dirty {
                    st.push_endpoints();
                }
            }
            DispatcherMsg::Probed {
                node_id,
                gone,
                asked,
            } => {
                let Some(s) = st.sessions.get_mut(&node_id) else {
                    return Ok(());
                };
                s.probing = false;
                // A heartbeat since the probe left beats what it found.
                if gone && s.last_seen < asked {
                    tracing::warn!(node = %node_id, "heartbeat late and the node's port is closed; node is down");
                    st.node_down(node_id).await;
                }
            }
            DispatcherMsg::Tick => {
                let sessions = st.sessions.len() as i64;
                st.ctx.directory.metrics.dispatcher_sessions.set(sessions);
                // Assignments travel one way and may be lost with a
                // connection: now and then every node is sent its list again.
                st.ticks += 1;
                if st.ticks.is_multiple_of(RESEND_EVERY_TICKS) {
                    for s in st.sessions.values_mut() {
                        s.sent = None;
                    }
                    let all: Vec<String> = st.sessions.keys().cloned().collect();
                    st.mark_dirty(&myself, all.into_iter());
                    st.send_endpoints_to_all();
                }
                if st.ticks.is_multiple_of(CLOCK_CHECK_EVERY_TICKS) {
                    st.check_clocks();
                }
                let period = st.ctx.timings.dispatcher_heartbeat;
                // A heartbeat a quarter period late: ask whether the node is
                // certainly gone (a killed process's port answers that at
                // once), so a dead node need not wait out three heartbeats.
                // A node that is only slow, or a lost packet, gives no
                // such answer and waits for the rule below.
                for (node_id, s) in st.sessions.iter_mut() {
                    if s.probing || s.last_seen.elapsed() <= period + period / 4 {
                        continue;
                    }
                    let Some(agent) = s.agent.clone() else {
                        continue;
                    };
                    s.probing = true;
                    st.ctx.directory.metrics.dispatcher_heartbeats_missed.inc();
                    let (me, node_id, asked) = (myself.clone(), node_id.clone(), Instant::now());
                    tokio::spawn(async move {
                        let gone = agent.gone().await;
                        let _ = me.send_message(DispatcherMsg::Probed {
                            node_id,
                            gone,
                            asked,
                        });
                    });
                }
                let limit = period * 3;
                let down: Vec<String> = st
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.last_seen.elapsed() > limit)
                    .map(|(n, _)| n.clone())
                    .collect();
                for node_id in down {
                    tracing::warn!(node = %node_id, "heartbeat missed; node is down");
                    st.node_down(node_id).await;
                }
            }
        }
        Ok(())
    }
}
