//! The Agent: this node's session with the leader's dispatcher. It registers,
//! heartbeats, runs one TaskActor per assigned task and reports their states.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};

use super::task_actor::{TaskActor, TaskArgs, TaskMsg};
use crate::driver::Drivers;
use crate::session::{
    AgentMsg, DispatcherLink, DispatcherMsg, EndpointSink, NetworkSink, NodeDescription,
};
use crate::supervision::{ChildSpec, Children, Directory, Intensity, Restart};
use shoal_core::limits::MAX_UPDATES_PER_PROPOSAL;
use shoal_core::model::secret::Kind;
use shoal_core::model::{Task, TaskState, TaskStatus};
use shoal_core::plan::agent::{self as agent_plan, Action};

#[derive(Clone)]
pub struct AgentArgs {
    pub node: NodeDescription,
    pub drivers: Arc<Drivers>,
    pub directory: Arc<Directory>,
    pub dispatcher: Arc<dyn DispatcherLink>,
    pub heartbeat: Duration,
    pub endpoints: Arc<dyn EndpointSink>,
    pub networks: Arc<dyn NetworkSink>,
}

pub struct AgentState {
    args: AgentArgs,
    tasks: Children,
    /// Latest status of every task this node runs or ran, resent after a reconnect.
    statuses: BTreeMap<String, TaskStatus>,
    /// Reports not yet sent, newest per task: a burst of changes costs one
    /// message per batch, not one per change.
    unsent: BTreeMap<String, TaskStatus>,
    flush_queued: bool,
    session: Option<ActorId>,
    /// The session's dispatcher, as the heartbeat lane sees it.
    beat_session: Arc<Mutex<Option<ActorId>>>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Assignments arrived since the last reconcile: one reconcile follows,
    /// with the newest, however many arrived.
    reconcile_queued: bool,
    /// The newest `Recheck` sent; an older one still in the mailbox is
    /// skipped.
    recheck: u64,
    /// The latest assignments, for `Recheck`.
    assigned: Vec<Task>,
    /// Tasks the last two endpoint tables named as backends of a published
    /// port: told to stop, they first wait `DRAIN` so that every node's
    /// proxy has taken them out before their process goes.
    backends: [BTreeSet<String>; 2],
    /// The same for the network tables: tasks behind a VIP or in DNS answers.
    serving: [BTreeSet<String>; 2],
    /// Tasks whose stop is waiting out `DRAIN`.
    draining: BTreeSet<String>,
    /// The secret and config values this node's tasks use, in memory only;
    /// replaced by each assignment, so one no task here uses is dropped.
    payloads: BTreeMap<(Kind, String), Arc<Vec<u8>>>,
}

#[derive(Clone)]
pub struct Agent;

/// Heartbeats travel on their own lane, not through the agent's mailbox: a
/// node busy starting 2,000 tasks is alive, and must not look dead.
fn spawn_heartbeat(
    args: &AgentArgs,
    myself: &ActorRef<AgentMsg>,
    session: Arc<Mutex<Option<ActorId>>>,
) -> tokio::task::JoinHandle<()> {
    let (link, node_id, every) = (
        args.dispatcher.clone(),
        args.node.node_id.clone(),
        args.heartbeat,
    );
    let me = myself.clone();
    let agent = args.dispatcher.agent_link(myself);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            // The lane lives and dies with its agent: a killed agent (no
            // post_stop) must not leave a heartbeat behind for its successor.
            match me.get_status() {
                ActorStatus::Running => {}
                ActorStatus::Stopping | ActorStatus::Stopped => return,
                _ => continue,
            }
            let Some(d) = link.current() else { continue };
            if *session.lock() != Some(d.get_id()) {
                continue;
            }
            let _ = d.send_message(DispatcherMsg::Heartbeat {
                node_id: node_id.clone(),
                agent: agent.clone(),
                at: crate::world::now(),
            });
        }
    })
}

/// How long a task behind a published port keeps running after it is told
/// to stop: the endpoint table without it reaches every node well within
/// this, so no proxy sends a connection to a task that is going away.
const DRAIN: Duration = Duration::from_secs(1);

/// How long status changes gather before they are sent.
const FLUSH_DELAY: Duration = Duration::from_millis(20);

/// What a task actor's name starts with; the rest is its task's id.
const TASK_ACTOR_PREFIX: &str = "task/";

fn task_actor_name(id: &str) -> String {
    format!("{TASK_ACTOR_PREFIX}{id}")
}

impl AgentState {
    fn dispatcher(&self) -> Option<ActorRef<DispatcherMsg>> {
        self.args.dispatcher.current()
    }

    fn set_session(&mut self, session: Option<ActorId>) {
        self.session = session;
        *self.beat_session.lock() = session;
    }

    fn queue_reconcile(&mut self, myself: &ActorRef<AgentMsg>) {
        if !self.reconcile_queued {
            self.requeue_reconcile(myself);
        }
    }

    /// A reconcile behind everything in the mailbox now, in place of one
    /// queued earlier. A task actor's end reaches the agent ahead of its
    /// mailbox (ractor delivers supervision events first): a reconcile
    /// queued before the statuses the actor sent on its way out would find
    /// it gone and its task not finished, and start it again.
    fn requeue_reconcile(&mut self, myself: &ActorRef<AgentMsg>) {
        self.reconcile_queued = true;
        self.recheck += 1;
        let _ = myself.send_message(AgentMsg::Recheck(self.recheck));
    }

    /// This node's assigned tasks by their latest state, for the
    /// `swarm_node_tasks` gauge (every state set, zeros included).
    fn count_tasks(&self) {
        let mut counts = [0i64; TaskState::ALL.len()];
        for task in &self.assigned {
            let state = self
                .statuses
                .get(&task.id)
                .map_or(task.status.state, |s| s.state);
            if let Some(i) = TaskState::ALL.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
        }
        let metrics = &self.args.directory.metrics;
        for (state, count) in TaskState::ALL.iter().zip(counts) {
            metrics.node_task_state(state.as_str(), count);
        }
    }

    fn flush(&mut self, myself: &ActorRef<AgentMsg>) {
        self.count_tasks();
        let Some(d) = self.dispatcher() else {
            return;
        };
        if self.session != Some(d.get_id()) {
            // A new dispatcher (new leader, or a restarted one): start a session
            // and tell it everything we know, since it may have missed reports.
            let registered = d.send_message(DispatcherMsg::Register {
                node: Box::new(self.args.node.clone()),
                agent: self.args.dispatcher.agent_link(myself),
            });
            if registered.is_err() {
                return;
            }
            self.set_session(Some(d.get_id()));
            self.unsent.clear();
            let all: Vec<_> = self
                .statuses
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.send_statuses(&d, all);
            return;
        }
        let unsent: Vec<_> = std::mem::take(&mut self.unsent).into_iter().collect();
        self.send_statuses(&d, unsent);
    }

    /// Sends reports in batches of at most `MAX_UPDATES_PER_PROPOSAL`; what
    /// cannot be sent waits for the next session.
    fn send_statuses(&mut self, d: &ActorRef<DispatcherMsg>, mut all: Vec<(String, TaskStatus)>) {
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(MAX_UPDATES_PER_PROPOSAL));
            let sent = d.send_message(DispatcherMsg::Status {
                node_id: self.args.node.node_id.clone(),
                updates: std::mem::replace(&mut all, rest),
            });
            if let Err(ractor::MessagingErr::SendErr(DispatcherMsg::Status { updates, .. })) = sent
            {
                self.unsent.extend(updates);
                self.unsent.extend(all);
                self.set_session(None);
                return;
            }
        }
    }

    /// Brings the task actors in line with `assigned` (the decisions are
    /// `plan::agent::reconcile`'s); true if it stopped at
    /// `plan::agent::STARTS_PER_RECONCILE` and another pass should follow.
    async fn reconcile(&mut self, myself: &ActorRef<AgentMsg>, assigned: Vec<Task>) -> bool {
        let keep: std::collections::HashSet<String> =
            assigned.iter().map(|t| t.id.clone()).collect();
        for d in self.args.drivers.values() {
            d.retain(&keep);
        }
        let (actions, more) = {
            let running: BTreeSet<&str> = self
                .tasks
                .names()
                .filter_map(|n| n.strip_prefix(TASK_ACTOR_PREFIX))
                .collect();
            let backends = [
                &self.backends[0],
                &self.backends[1],
                &self.serving[0],
                &self.serving[1],
            ];
            let here = agent_plan::Here {
                running: &running,
                statuses: &self.statuses,
                backends: &backends,
                draining: &self.draining,
            };
            agent_plan::reconcile(assigned, &here)
        };
        for action in actions {
            match action {
                Action::Start(task) => {
                    let name = task_actor_name(&task.id);
                    let driver = self.args.drivers.get(&task.spec.driver).cloned();
                    let files = shoal_core::rules::secret::task_files(&task.spec, &self.payloads);
                    let spec = ChildSpec::new(
                        name.clone(),
                        Restart::Transient,
                        TaskActor,
                        TaskArgs {
                            task: *task,
                            node_id: self.args.node.node_id.clone(),
                            driver,
                            agent: myself.clone(),
                            files,
                            metrics: self.args.directory.metrics.clone(),
                        },
                    );
                    if let Err(e) = self.tasks.start(&myself.get_cell(), spec).await {
                        tracing::error!(task = %name, error = %e, "cannot start task actor");
                    }
                }
                Action::Stop(id) => {
                    if let Some(a) = self.args.directory.get::<TaskMsg>(&task_actor_name(&id)) {
                        let _ = a.send_message(TaskMsg::Stop);
                    }
                }
                Action::Drain(id) => {
                    if let Some(a) = self.args.directory.get::<TaskMsg>(&task_actor_name(&id)) {
                        self.draining.insert(id);
                        a.send_after(DRAIN, || TaskMsg::Stop);
                    }
                }
                Action::ReportShutdown(id) => {
                    let _ = myself.send_message(AgentMsg::Status(
                        id,
                        TaskStatus::new(TaskState::Shutdown, "shutdown", crate::world::now()),
                    ));
                }
            }
        }
        // Forget tasks the managers no longer mention once nothing runs them
        // here: finished, or never started on this node.
        let tasks = &self.tasks;
        self.statuses.retain(|id, s| {
            keep.contains(id) || (!s.state.is_terminal() && tasks.contains(&task_actor_name(id)))
        });
        // A drain ends with its task actor.
        self.draining
            .retain(|id| tasks.contains(&task_actor_name(id)));
        let statuses = &self.statuses;
        self.unsent.retain(|id, _| statuses.contains_key(id));
        more
    }
}

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        myself.send_interval(args.heartbeat, || AgentMsg::Tick);
        let _ = myself.send_message(AgentMsg::Tick);
        let beat_session = Arc::new(Mutex::new(None));
        let heartbeat = spawn_heartbeat(&args, &myself, beat_session.clone());
        Ok(AgentState {
            tasks: Children::new(args.directory.clone(), Intensity::default()),
            args,
            statuses: BTreeMap::new(),
            unsent: BTreeMap::new(),
            flush_queued: false,
            session: None,
            beat_session,
            heartbeat,
            reconcile_queued: false,
            recheck: 0,
            assigned: Vec::new(),
            backends: Default::default(),
            serving: Default::default(),
            draining: BTreeSet::new(),
            payloads: BTreeMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        st: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        st.heartbeat.abort();
        st.tasks.stop_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        st: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Tick => {
                // A driver came or went (a Docker engine stopped): register again
                // so that the managers schedule by what this node can run now.
                let drivers: Vec<_> = st
                    .args
                    .drivers
                    .values()
                    .filter(|d| d.available())
                    .map(|d| d.info())
                    .collect();
                if drivers != st.args.node.drivers {
                    st.args.node.drivers = drivers;
                    st.set_session(None);
                }
                st.flush(&myself);
            }
            AgentMsg::Assignments(tasks, payloads) => {
                st.assigned = tasks;
                st.count_tasks();
                st.payloads = payloads
                    .into_iter()
                    .map(|p| ((p.kind, p.id), Arc::new(p.data)))
                    .collect();
                st.queue_reconcile(&myself);
            }
            AgentMsg::Recheck(n) if n != st.recheck => {}
            AgentMsg::Recheck(_) => {
                st.reconcile_queued = false;
                let tasks = st.assigned.clone();
                if st.reconcile(&myself, tasks).await {
                    st.queue_reconcile(&myself);
                }
            }
            AgentMsg::SessionRejected => st.set_session(None),
            // The node judges its peers by them (node/), not the agent.
            AgentMsg::Members(_) => {}
            AgentMsg::Endpoints(table) => {
                let ids = table
                    .iter()
                    .flat_map(|s| s.backends.iter().map(|b| b.task_id.clone()))
                    .collect();
                st.backends.swap(0, 1);
                st.backends[0] = ids;
                st.args.endpoints.update(table);
            }
            AgentMsg::Networks(table) => {
                let ids = table
                    .tasks
                    .iter()
                    .filter(|t| t.serving)
                    .map(|t| t.task_id.clone())
                    .collect();
                st.serving.swap(0, 1);
                st.serving[0] = ids;
                st.args.networks.update(table);
            }
            AgentMsg::Status(id, status) => {
                tracing::debug!(task = %id, state = status.state.as_str(), "task status");
                st.statuses.insert(id.clone(), status.clone());
                st.unsent.insert(id, status);
                if !st.flush_queued {
                    st.flush_queued = true;
                    myself.send_after(FLUSH_DELAY, || AgentMsg::Flush);
                }
            }
            AgentMsg::Flush => {
                st.flush_queued = false;
                st.flush(&myself);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<AgentMsg>,
        event: SupervisionEvent,
        st: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        let ended = matches!(
            event,
            SupervisionEvent::ActorTerminated(..) | SupervisionEvent::ActorFailed(..)
        );
        st.tasks.handle_event(&myself.get_cell(), event).await?;
        // A task actor that stopped without its task finishing (a bug, or a
        // chaos hook's stop) would leave the task running unwatched: look
        // again once the statuses it sent on its way out are in. Only on an
        // end: a recheck per start would make starting n tasks cost n².
        if ended {
            st.requeue_reconcile(&myself);
        }
        Ok(())
    }
}
