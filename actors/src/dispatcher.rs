//! The Dispatcher (leader only): the shell around the sessions of
//! `shoal_core::plan::sessions` (heartbeats, deadlines, nodes down, what
//! each node is sent) and the status queue of `shoal_core::plan::statuses`.
//! It keeps the timers and the messaging: it feeds the table its messages
//! and ticks on tokio's clock, sends what the table says to send, and
//! proposes what it says to write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::ManagerCtx;
use crate::session::{AgentLink, AgentMsg, DispatcherMsg, Members};
use shoal_core::command::Command;
use shoal_core::model::NodeState;
use shoal_core::plan::assignments::TaskIndex;
use shoal_core::plan::sessions::{self, Sessions};
use shoal_core::plan::statuses::StatusQueue;
use shoal_core::rules::network::NetworkTable;
use shoal_core::rules::port::ServiceEndpoints;

/// How long a failed status write waits before it is tried again.
const STATUS_RETRY: Duration = Duration::from_millis(200);

/// How long store changes gather before the nodes they touch hear of them.
const PUSH_DELAY: Duration = Duration::from_millis(50);

pub struct DispatcherState {
    ctx: Arc<ManagerCtx>,
    sessions: Sessions<Arc<dyn AgentLink>, Instant>,
    statuses: StatusQueue,
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
    /// Which tasks each node was given, from store events.
    placed: TaskIndex,
    /// When the last tick was handled (how long a stall lasted).
    last_tick: Instant,
}

#[derive(Clone)]
pub struct Dispatcher;

impl DispatcherState {
    /// Sends `node_id` its assignments, unless they are what it was last sent
    /// (`force` sends anyway: a node that registers knows nothing yet).
    fn push_assignments(&mut self, node_id: &str, force: bool) {
        let keyring = self.ctx.keyring();
        let push = {
            let guard = self.ctx.sm.read();
            self.sessions
                .push(node_id, &guard.0, &self.placed, keyring.as_deref(), force)
        };
        if let Some(push) = push {
            push.link
                .send(AgentMsg::Assignments(push.tasks, push.payloads));
        }
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
        for agent in self.sessions.links() {
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

    fn send_endpoints_to(&self, agent: &Arc<dyn AgentLink>) {
        agent.send(AgentMsg::Members(self.members.clone()));
        agent.send(AgentMsg::Endpoints(self.endpoints.clone()));
        agent.send(AgentMsg::Networks(self.networks.clone()));
    }

    fn send_endpoints_to_all(&self) {
        for agent in self.sessions.links() {
            self.send_endpoints_to(agent);
        }
    }

    /// Proposes the next batch of queued reports, unless a write is in flight.
    /// Not awaited here: a commit can take a while (a slow link, an election),
    /// and heartbeats queued behind it would make live nodes look dead.
    fn write_statuses(&mut self, myself: &ActorRef<DispatcherMsg>) {
        let Some(updates) = self.statuses.next_write() else {
            return;
        };
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
        let writes = self.sessions.clock_writes(&self.ctx.sm.read().0);
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

    /// Writes down a node whose session the table ended (its tasks go
    /// elsewhere).
    async fn node_down(&mut self, node_id: String) {
        let metrics = &self.ctx.directory.metrics;
        metrics.dispatcher_node_down.inc();
        metrics.dispatcher_sessions.set(self.sessions.len() as i64);
        self.propose(sessions::down(node_id, crate::world::now()))
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
        let period = ctx.timings.dispatcher_heartbeat;
        myself.send_interval(period / sessions::TICKS_PER_PERIOD, || DispatcherMsg::Tick);
        let (sessions, placed, endpoints, networks, members) = {
            let guard = ctx.sm.read();
            let state = &guard.0;
            // Every node that was ready is expected to register with this
            // new leader (`sessions::GRACE_PERIODS`).
            let ready = state
                .nodes
                .values()
                .filter(|n| n.state == NodeState::Ready)
                .map(|n| n.id.clone());
            (
                Sessions::new(period, ready, Instant::now()),
                TaskIndex::build(state),
                shoal_core::rules::port::endpoints(state),
                Arc::new(shoal_core::rules::network::table(state)),
                Arc::new(crate::session::members(state)),
            )
        };
        Ok(DispatcherState {
            ctx,
            sessions,
            statuses: StatusQueue::default(),
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
            placed,
            last_tick: Instant::now(),
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
                // The stored record brought in line with the node's word
                // (`None`: it is not in the swarm).
                let write =
                    {
                        let guard = st.ctx.sm.read();
                        guard.0.nodes.get(&node.node_id).map(|stored| {
                            sessions::registration(stored, &node, crate::world::now())
                        })
                    };
                let Some(write) = write else {
                    tracing::warn!(node = %node.node_id, "registration from a node not in the swarm");
                    agent.send(AgentMsg::SessionRejected);
                    return Ok(());
                };
                if let Some(cmd) = write {
                    // Not awaited, like status writes: heartbeats must not
                    // queue behind a commit.
                    let proposer = st.ctx.proposer.clone();
                    tokio::spawn(async move {
                        if let Err(e) = proposer.propose(cmd).await {
                            tracing::warn!(error = %e, "node registration write failed");
                        }
                    });
                }
                let session = st
                    .sessions
                    .register(&node.node_id, agent.clone(), Instant::now());
                tracing::info!(node = %node.node_id, session, "agent registered");
                st.push_assignments(&node.node_id, true);
                st.send_endpoints_to(&agent);
            }
            DispatcherMsg::Heartbeat { node_id, agent, at } => {
                let known =
                    st.sessions
                        .heartbeat(&node_id, at, crate::world::now(), Instant::now());
                if !known {
                    agent.send(AgentMsg::SessionRejected);
                }
            }
            DispatcherMsg::Status { node_id, updates } => {
                {
                    let guard = st.ctx.sm.read();
                    let clock = st.sessions.clock(&node_id);
                    st.statuses.queue(&guard.0, &node_id, clock, updates);
                }
                st.write_statuses(&myself);
            }
            DispatcherMsg::StatusWritten(failed) => {
                st.statuses.written(failed);
                st.write_statuses(&myself);
            }
            DispatcherMsg::Store(Some(ev)) => {
                // Any change of tasks, services or nodes may change where
                // published ports lead; of the cluster entry, who is removed.
                st.endpoints_dirty = true;
                st.queue_push(&myself);
                let nodes = st.placed.note(&st.ctx.sm.read().0, &ev.changes);
                st.mark_dirty(&myself, nodes.into_iter());
            }
            DispatcherMsg::Store(None) => {
                // Events were missed: the index is built again from the state.
                st.placed = TaskIndex::build(&st.ctx.sm.read().0);
                st.endpoints_dirty = true;
                let all: Vec<String> = st.sessions.nodes().cloned().collect();
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
                if st.sessions.probed(&node_id, gone, asked) {
                    tracing::warn!(node = %node_id, "heartbeat late and the node's port is closed; node is down");
                    st.node_down(node_id).await;
                }
            }
            DispatcherMsg::Tick => {
                let sessions = st.sessions.len() as i64;
                st.ctx.directory.metrics.dispatcher_sessions.set(sessions);
                let now = Instant::now();
                let due = st.sessions.tick(now);
                let deaf = now.duration_since(std::mem::replace(&mut st.last_tick, now));
                if due.stalled {
                    st.ctx.directory.metrics.dispatcher_stalls.inc();
                    tracing::warn!(
                        deaf_ms = deaf.as_millis() as u64,
                        "the dispatcher heard nothing for more than a heartbeat period (this manager was starved); no node is held to the deadlines of that time"
                    );
                }
                if due.resend {
                    // Assignments travel one way and may be lost with a
                    // connection: now and then every node is sent its list again.
                    st.sessions.forget_sent();
                    let all: Vec<String> = st.sessions.nodes().cloned().collect();
                    st.mark_dirty(&myself, all.into_iter());
                    st.send_endpoints_to_all();
                }
                if due.clocks {
                    st.check_clocks();
                }
                // A heartbeat late: ask whether the node is certainly gone
                // (a killed process's port answers that at once), so a dead
                // node need not wait out three heartbeats.
                let now = Instant::now();
                for (node_id, agent) in st.sessions.late(now) {
                    st.ctx.directory.metrics.dispatcher_heartbeats_missed.inc();
                    let (me, asked) = (myself.clone(), Instant::now());
                    tokio::spawn(async move {
                        let gone = agent.gone().await;
                        let _ = me.send_message(DispatcherMsg::Probed {
                            node_id,
                            gone,
                            asked,
                        });
                    });
                }
                for node_id in st.sessions.expire(Instant::now()) {
                    tracing::warn!(node = %node_id, "heartbeat missed; node is down");
                    st.node_down(node_id).await;
                }
            }
        }
        Ok(())
    }
}
