//! The Dispatcher (leader only): worker sessions, heartbeats, assignments,
//! and the status reports that agents send back into the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::command::{Command, TaskUpdate};
use crate::leader::ManagerCtx;
use crate::model::{DriverInfo, NodeState, TaskStatus};
use crate::state::Change;
use crate::store::StoreEvent;
use crate::worker::AgentMsg;

/// What a node tells the dispatcher about itself when it registers.
#[derive(Debug, Clone)]
pub struct NodeDescription {
    pub node_id: String,
    pub hostname: String,
    pub addr: String,
    pub drivers: Vec<DriverInfo>,
}

/// How the dispatcher reaches an agent: a local actor, or a proxy to a remote node.
pub trait AgentLink: Send + Sync + 'static {
    fn send(&self, msg: AgentMsg);
}

impl AgentLink for ActorRef<AgentMsg> {
    fn send(&self, msg: AgentMsg) {
        let _ = self.send_message(msg);
    }
}

/// How an agent reaches the current dispatcher.
pub trait DispatcherLink: Send + Sync + 'static {
    fn current(&self) -> Option<ActorRef<DispatcherMsg>>;
}

pub enum DispatcherMsg {
    Register {
        node: NodeDescription,
        agent: Arc<dyn AgentLink>,
    },
    Heartbeat {
        node_id: String,
        agent: Arc<dyn AgentLink>,
    },
    Status {
        node_id: String,
        updates: Vec<(String, TaskStatus)>,
    },
    Store(Option<StoreEvent>),
    Tick,
}

struct Session {
    /// `None` until the node registers with this dispatcher.
    agent: Option<Arc<dyn AgentLink>>,
    last_seen: Instant,
}

pub struct DispatcherState {
    ctx: Arc<ManagerCtx>,
    sessions: HashMap<String, Session>,
}

#[derive(Clone)]
pub struct Dispatcher;

impl DispatcherState {
    fn push_assignments(&self, node_id: &str) {
        let Some(session) = self.sessions.get(node_id) else {
            return;
        };
        let tasks = {
            let guard = self.ctx.sm.read();
            guard
                .0
                .tasks
                .values()
                .filter(|t| t.node_id.as_deref() == Some(node_id) && !t.status.state.is_terminal())
                .cloned()
                .collect()
        };
        if let Some(agent) = &session.agent {
            agent.send(AgentMsg::Assignments(tasks));
        }
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
                    },
                )
            })
            .collect();
        Ok(DispatcherState { ctx, sessions })
    }

    async fn handle(
        &self,
        _myself: ActorRef<DispatcherMsg>,
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
                let now = Utc::now();
                if n.state != NodeState::Ready
                    || n.drivers != node.drivers
                    || n.hostname != node.hostname
                    || n.addr != node.addr
                {
                    n.state = NodeState::Ready;
                    n.status_message = String::new();
                    n.drivers = node.drivers.clone();
                    n.hostname = node.hostname.clone();
                    n.addr = node.addr.clone();
                    n.updated_at = now;
                    st.propose(Command::UpsertNode(n)).await;
                }
                tracing::info!(node = %node.node_id, "agent registered");
                st.sessions.insert(
                    node.node_id.clone(),
                    Session {
                        agent: Some(agent),
                        last_seen: Instant::now(),
                    },
                );
                st.push_assignments(&node.node_id);
            }
            DispatcherMsg::Heartbeat { node_id, agent } => match st.sessions.get_mut(&node_id) {
                Some(s) if s.agent.is_some() => s.last_seen = Instant::now(),
                _ => agent.send(AgentMsg::SessionRejected),
            },
            DispatcherMsg::Status { updates, .. } => {
                let updates = updates
                    .into_iter()
                    .map(|(task_id, status)| TaskUpdate::Status { task_id, status })
                    .collect();
                // Not awaited here: a commit can take a while (a slow link,
                // an election), and heartbeats queued behind it would make
                // live nodes look dead. Task states only move forward, so
                // two reports committing out of order change nothing.
                let proposer = st.ctx.proposer.clone();
                let cmd = Command::UpdateTasks {
                    updates,
                    at: Utc::now(),
                };
                tokio::spawn(async move {
                    if let Err(e) = proposer.propose(cmd).await {
                        tracing::warn!(error = %e, "task status write failed");
                    }
                });
            }
            DispatcherMsg::Store(Some(ev)) => {
                let mut nodes = HashSet::new();
                {
                    let guard = st.ctx.sm.read();
                    for c in ev.changes.iter() {
                        if let Change::Task { id, .. } = c {
                            if let Some(n) = guard.0.tasks.get(id).and_then(|t| t.node_id.clone()) {
                                nodes.insert(n);
                            }
                        }
                    }
                }
                // Removed tasks: we no longer know their node, so tell everyone.
                if ev
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::TaskRemoved { .. }))
                {
                    nodes.extend(st.sessions.keys().cloned());
                }
                for n in nodes {
                    st.push_assignments(&n);
                }
            }
            DispatcherMsg::Store(None) => {
                let all: Vec<String> = st.sessions.keys().cloned().collect();
                for n in all {
                    st.push_assignments(&n);
                }
            }
            DispatcherMsg::Tick => {
                let limit = st.ctx.timings.dispatcher_heartbeat * 3;
                let down: Vec<String> = st
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.last_seen.elapsed() > limit)
                    .map(|(n, _)| n.clone())
                    .collect();
                for node_id in down {
                    st.sessions.remove(&node_id);
                    tracing::warn!(node = %node_id, "heartbeat missed; node is down");
                    st.propose(Command::SetNodeState {
                        node_id,
                        state: NodeState::Down,
                        message: "heartbeat failure".into(),
                        at: Utc::now(),
                    })
                    .await;
                }
            }
        }
        Ok(())
    }
}

/// Default heartbeat period; a node is down after three are missed.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
