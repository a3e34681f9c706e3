use std::collections::HashMap;
use std::sync::Arc;

use crate::ports::{Protocol, PublishMode};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::placement::{place, Candidate, Decision, Request};
use crate::command::{Command, TaskUpdate};
use crate::constraints::{parse_preference, Constraint};
use crate::context::ManagerCtx;
use crate::limits::MAX_UPDATES_PER_PROPOSAL;
use crate::model::TaskState;
use crate::state::{Change, ClusterState};
use crate::store::StoreEvent;

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
}

#[derive(Clone)]
pub struct Scheduler;

/// The host-mode ports a task of its service binds on its node.
fn host_ports(state: &ClusterState, t: &crate::model::Task) -> Vec<(Protocol, u16)> {
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

fn parsed<'a>(cache: &mut HashMap<(&'a str, u64), Parsed>, t: &'a crate::model::Task) -> Parsed {
    cache
        .entry((t.service_id.as_str(), t.spec_version))
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

/// Tasks that want a node, and the nodes with their current load.
fn snapshot(state: &ClusterState) -> (Vec<Request>, Vec<Candidate>) {
    let mut nodes: Vec<Candidate> = state.nodes.values().map(Candidate::from_node).collect();
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (state.nodes[&n.id].id.as_str(), i))
        .collect();
    let mut cache = HashMap::new();
    let mut requests = Vec::new();
    for t in state.tasks.values() {
        // A task desired READY waits for its slot's old task to stop
        // (a stop-first update) before it is placed; a global task comes
        // with its node and still has to fit there.
        let wants_node =
            t.desired_state == TaskState::Running && t.status.state <= TaskState::Pending;
        match &t.node_id {
            Some(n) if !t.status.state.is_terminal() && !wants_node => {
                if let Some(&i) = index.get(n.as_str()) {
                    let c = &mut nodes[i];
                    c.total_tasks += 1;
                    *c.service_tasks.entry(t.service_id.clone()).or_default() += 1;
                    c.host_ports.extend(host_ports(state, t));
                    let r = &t.spec.resources;
                    c.reserved_nano_cpus = c.reserved_nano_cpus.saturating_add(r.reserve_nano_cpus);
                    c.reserved_memory_bytes = c
                        .reserved_memory_bytes
                        .saturating_add(r.reserve_memory_bytes);
                }
            }
            node if wants_node => {
                let (constraints, spread) = parsed(&mut cache, t);
                requests.push(Request {
                    task_id: t.id.clone(),
                    service_id: t.service_id.clone(),
                    spec_version: t.spec_version,
                    driver: t.spec.driver.clone(),
                    needs_sandbox: t.spec.driver == "process" && !t.spec.host_network(),
                    host_ports: host_ports(state, t),
                    constraints,
                    spread,
                    max_replicas: t.spec.placement.max_replicas,
                    reserve_nano_cpus: t.spec.resources.reserve_nano_cpus,
                    reserve_memory_bytes: t.spec.resources.reserve_memory_bytes,
                    node: node.clone(),
                });
            }
            _ => {}
        }
    }
    (requests, nodes)
}

impl SchedulerState {
    fn queue_pass(&mut self, myself: &ActorRef<SchedulerMsg>) {
        if !self.pass_queued {
            self.pass_queued = true;
            let _ = myself.send_message(SchedulerMsg::Pass);
        }
    }

    /// One placement pass, and what should follow it.
    async fn pass(&mut self) -> Next {
        let mut updates: Vec<TaskUpdate> = {
            let guard = self.ctx.sm.read();
            let state = &guard.0;
            let (requests, mut nodes) = snapshot(state);
            place(&requests, &mut nodes)
                .into_iter()
                .filter_map(|d| match d {
                    Decision::Assign { task_id, node_id } => {
                        Some(TaskUpdate::Assign { task_id, node_id })
                    }
                    Decision::NoSuitableNode { task_id, reason } => {
                        // Already pending for this reason: nothing to write.
                        let same = state.tasks.get(&task_id).is_some_and(|t| {
                            t.status.state == TaskState::Pending
                                && t.status.err.as_deref() == Some(reason.as_str())
                        });
                        (!same).then_some(TaskUpdate::Pending { task_id, reason })
                    }
                })
                .collect()
        };
        if updates.is_empty() {
            return Next::Done;
        }
        let more = updates.len() > MAX_UPDATES_PER_PROPOSAL;
        updates.truncate(MAX_UPDATES_PER_PROPOSAL);
        let cmd = Command::UpdateTasks {
            updates,
            at: crate::world::now(),
        };
        if let Err(e) = self.ctx.proposer.propose(cmd).await {
            tracing::warn!(error = %e, "scheduler write failed; will retry");
            return Next::Retry;
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
                let relevant = ev
                    .changes
                    .iter()
                    .any(|c| matches!(c, Change::Task { .. } | Change::Node(_)));
                if relevant {
                    st.queue_pass(&myself);
                }
            }
            SchedulerMsg::Store(None) => st.queue_pass(&myself),
            SchedulerMsg::Pass => {
                st.pass_queued = false;
                match st.pass().await {
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
