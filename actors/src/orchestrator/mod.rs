//! The orchestrator (leader only): a control loop per service
//! (`service/<name>`, `reconcile::Loop`) that keeps its tasks to its spec
//! with `shoal_core::plan::service::plan`, and the task reaper that keeps history
//! within its limit (`shoal_core::plan::reaper`).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use rand::RngCore;

use crate::context::ManagerCtx;
use crate::metrics::ActorMetrics;
use crate::reconcile::{Planner, Pool};
use crate::store::StoreEvent;
use crate::supervision::Restart;
use shoal_core::command::Command;
use shoal_core::model::ServiceMode;
use shoal_core::plan::{self, reaper::reap, rebalance, Plan};
use shoal_core::state::{Change, ClusterState};

pub enum OrchestratorMsg {
    Store(Option<StoreEvent>),
    Reap,
}

pub struct OrchestratorState {
    ctx: Arc<ManagerCtx>,
    services: Pool<ServicePlanner>,
    reap_queued: bool,
}

#[derive(Clone)]
pub struct Orchestrator;

pub fn service_actor_name(service_name: &str) -> String {
    format!("service/{service_name}")
}

/// A service's loop: named after the service (renamed with it), lives as
/// long as the service does.
#[derive(Clone)]
pub struct ServicePlanner {
    metrics: Arc<ActorMetrics>,
}

impl Planner for ServicePlanner {
    fn name(&self, state: &ClusterState, key: &str) -> Option<String> {
        state
            .services
            .get(key)
            .map(|s| service_actor_name(&s.spec.name))
    }

    fn plan(
        &self,
        state: &ClusterState,
        key: &str,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Plan {
        plan::service::plan(state, key, now, rng)
    }

    fn needed(&self, _state: &ClusterState, _key: &str) -> bool {
        true
    }

    fn committed(&self, commands: &[Command]) {
        let created: usize = commands
            .iter()
            .map(|c| match c {
                Command::CreateTasks(tasks) => tasks.len(),
                _ => 0,
            })
            .sum();
        self.metrics
            .orchestrator_tasks_created
            .inc_by(created as u64);
    }
}

/// Whether a change of task `task_id` can change what its service's plan
/// or the reaper decides. A replicated service (not rebalanced) only cares
/// about a task that stopped being runnable or is gone: its steps from NEW
/// to RUNNING change no plan, and re-planning a 100k-task service on each of
/// them made a service's start quadratic. Other modes follow their tasks'
/// progress (a global rollout counts tasks not yet up, a rebalance move
/// waits for its new task to run), so every change matters to them.
fn matters(state: &ClusterState, task_id: &str, service_id: &str) -> bool {
    let Some(svc) = state.services.get(service_id) else {
        return true;
    };
    if !matches!(svc.spec.mode, ServiceMode::Replicated { .. }) || rebalance::enabled(state, svc) {
        return true;
    }
    state.tasks.get(task_id).is_none_or(|t| !t.is_runnable())
}

impl OrchestratorState {
    async fn resync(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let ids: Vec<String> = self.ctx.sm.read().0.services.keys().cloned().collect();
        self.services
            .resync(&myself.get_cell(), &ids, |_, _| true)
            .await;
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
        let planner = ServicePlanner {
            metrics: ctx.directory.metrics.clone(),
        };
        let services = Pool::new(
            planner,
            ctx.loop_ctx(),
            ctx.directory.clone(),
            Restart::Permanent,
        );
        let mut st = OrchestratorState {
            services,
            ctx,
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
        st.services.stop_all();
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
                let mut poked = HashSet::new();
                // Read once per event: which of its task changes matter.
                let relevant: HashSet<&str> = {
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
                        Change::Service(id) => st.services.ensure(&myself.get_cell(), id).await,
                        // A node went down or came back (or rebalancing was
                        // turned on): every service may have tasks to move.
                        Change::Node(_) | Change::Cluster => {
                            for id in st.services.keys() {
                                if poked.insert(id.clone()) {
                                    st.services.poke(&id);
                                }
                            }
                        }
                        Change::ServiceRemoved(id) => st.services.stop(id),
                        Change::Task { service_id, .. }
                        | Change::TaskRemoved { service_id, .. }
                            if relevant.contains(service_id.as_str())
                                && poked.insert(service_id.clone()) =>
                        {
                            st.services.poke(service_id);
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
                    let more = doomed.len() > shoal_core::limits::MAX_TASKS_PER_PASS;
                    let batch = doomed
                        .into_iter()
                        .take(shoal_core::limits::MAX_TASKS_PER_PASS)
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
        st.services.handle_event(&myself.get_cell(), event).await?;
        Ok(())
    }
}
