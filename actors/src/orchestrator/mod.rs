//! The orchestrator (leader only): one ServiceSupervisor per service, and the
//! task reaper that keeps history within its limit.

pub mod global;
pub mod job;
mod reaper;
pub mod rebalance;
pub mod restart;
mod service;

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub use reaper::reap;
pub use service::{plan, Plan, ServiceArgs, ServiceMsg, ServiceSupervisor};

use crate::command::Command;
use crate::context::ManagerCtx;
use crate::state::Change;
use crate::store::StoreEvent;
use crate::supervision::{ChildSpec, Children, Intensity, Restart};

pub enum OrchestratorMsg {
    Store(Option<StoreEvent>),
    Reap,
}

pub struct OrchestratorState {
    ctx: Arc<ManagerCtx>,
    children: Children,
    /// service id -> name of its supervisor in the directory.
    names: BTreeMap<String, String>,
    reap_queued: bool,
}

#[derive(Clone)]
pub struct Orchestrator;

pub fn service_actor_name(service_name: &str) -> String {
    format!("service/{service_name}")
}

/// Whether a change of task `task_id` can change what its service's plan
/// or the reaper decides. A replicated service (not rebalanced) only cares
/// about a task that stopped being runnable or is gone: its steps from NEW
/// to RUNNING change no plan, and re-planning a 100k-task service on each of
/// them made a service's start quadratic. Other modes follow their tasks'
/// progress (a global rollout counts tasks not yet up, a rebalance move
/// waits for its new task to run), so every change matters to them.
fn matters(state: &crate::state::ClusterState, task_id: &str, service_id: &str) -> bool {
    let Some(svc) = state.services.get(service_id) else {
        return true;
    };
    if !matches!(svc.spec.mode, crate::model::ServiceMode::Replicated { .. })
        || rebalance::enabled(state, svc)
    {
        return true;
    }
    state.tasks.get(task_id).is_none_or(|t| !t.is_runnable())
}

impl OrchestratorState {
    async fn ensure_supervisor(&mut self, myself: &ActorRef<OrchestratorMsg>, service_id: &str) {
        let name = {
            let guard = self.ctx.sm.read();
            match guard.0.services.get(service_id) {
                Some(s) => service_actor_name(&s.spec.name),
                None => return,
            }
        };
        match self.names.get(service_id) {
            Some(current) if *current == name && self.children.contains(&name) => {
                self.poke(service_id);
                return;
            }
            // Renamed: its supervisor is re-registered under the new name.
            Some(old) => {
                let old = old.clone();
                self.children.stop(&old);
            }
            None => {}
        }
        let spec = ChildSpec::new(
            name.clone(),
            Restart::Permanent,
            ServiceSupervisor,
            ServiceArgs {
                ctx: self.ctx.clone(),
                service_id: service_id.to_string(),
            },
        );
        match self.children.start(&myself.get_cell(), spec).await {
            Ok(()) => {
                self.names.insert(service_id.to_string(), name);
            }
            Err(e) => {
                tracing::error!(service = %name, error = %e, "cannot start service supervisor")
            }
        }
    }

    fn poke(&self, service_id: &str) {
        if let Some(a) = self
            .names
            .get(service_id)
            .and_then(|n| self.ctx.directory.get::<ServiceMsg>(n))
        {
            let _ = a.send_message(ServiceMsg::Poke);
        }
    }

    async fn resync(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let ids: Vec<String> = self.ctx.sm.read().0.services.keys().cloned().collect();
        let gone: Vec<String> = self
            .names
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(n) = self.names.remove(&id) {
                self.children.stop(&n);
            }
        }
        for id in ids {
            self.ensure_supervisor(myself, &id).await;
        }
        self.queue_reap(myself);
    }

    fn queue_reap(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        if !self.reap_queued {
            self.reap_queued = true;
            let _ = myself.send_message(OrchestratorMsg::Reap);
        }
    }
}

impl Actor for Orchestrator {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = Arc<ManagerCtx>;

    async fn pre_start(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        ctx: Arc<ManagerCtx>,
    ) -> Result<OrchestratorState, ActorProcessingErr> {
        crate::events::forward(&ctx.events, myself.clone(), OrchestratorMsg::Store);
        let mut st = OrchestratorState {
            children: Children::new(ctx.directory.clone(), Intensity::default()),
            ctx,
            names: BTreeMap::new(),
            reap_queued: false,
        };
        st.resync(&myself).await;
        Ok(st)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<OrchestratorMsg>,
        st: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        st.children.stop_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        msg: OrchestratorMsg,
        st: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            OrchestratorMsg::Store(Some(ev)) => {
                let mut poked = std::collections::HashSet::new();
                // Read once per event: which of its task changes matter.
                let relevant: std::collections::HashSet<&str> = {
                    let guard = st.ctx.sm.read();
                    ev.changes
                        .iter()
                        .filter_map(|c| match c {
                            Change::Task { id, service_id }
                                if matters(&guard.0, id, service_id) =>
                            {
                                Some(service_id.as_str())
                            }
                            Change::TaskRemoved { service_id, .. } => Some(service_id.as_str()),
                            _ => None,
                        })
                        .collect()
                };
                for c in ev.changes.iter() {
                    match c {
                        Change::Service(id) => st.ensure_supervisor(&myself, id).await,
                        // A node went down or came back (or rebalancing was
                        // turned on): every service may have tasks to move.
                        Change::Node(_) | Change::Cluster => {
                            let ids: Vec<String> = st.names.keys().cloned().collect();
                            for id in ids {
                                if poked.insert(id.clone()) {
                                    st.poke(&id);
                                }
                            }
                        }
                        Change::ServiceRemoved(id) => {
                            if let Some(n) = st.names.remove(id) {
                                st.children.stop(&n);
                            }
                        }
                        Change::Task { service_id, .. }
                        | Change::TaskRemoved { service_id, .. }
                            if relevant.contains(service_id.as_str())
                                && poked.insert(service_id.clone()) =>
                        {
                            st.poke(service_id);
                        }
                        _ => {}
                    }
                }
                if !poked.is_empty() {
                    st.queue_reap(&myself);
                }
            }
            OrchestratorMsg::Store(None) => st.resync(&myself).await,
            OrchestratorMsg::Reap => {
                st.reap_queued = false;
                let doomed = {
                    let guard = st.ctx.sm.read();
                    let limit = guard
                        .0
                        .cluster
                        .as_ref()
                        .map_or(5, |c| c.spec.task_history_limit);
                    reap(&guard.0, limit)
                };
                if !doomed.is_empty() {
                    let more = doomed.len() > crate::limits::MAX_TASKS_PER_PASS;
                    let batch = doomed
                        .into_iter()
                        .take(crate::limits::MAX_TASKS_PER_PASS)
                        .collect();
                    match st.ctx.proposer.propose(Command::DeleteTasks(batch)).await {
                        Err(e) => tracing::warn!(error = %e, "task reaper write failed"),
                        Ok(()) if more => st.queue_reap(&myself),
                        Ok(()) => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        event: SupervisionEvent,
        st: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        st.children.handle_event(&myself.get_cell(), event).await?;
        Ok(())
    }
}
