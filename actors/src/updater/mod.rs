//! The updater (leader only): rolls a service's tasks over to its current
//! spec slot by slot, watches the new ones, and pauses or rolls back when
//! too many fail. One `update/<service id>` control loop
//! (`reconcile::Loop`) per service with a rollout under way, in a pool like
//! the orchestrator's; the decisions are `shoal_core::plan::update::step`'s. Nothing here or in
//! a child is needed by a new leader: the rollout's progress is in the
//! service's `UpdateStatus` and in its tasks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use rand::RngCore;

use crate::context::LoopCtx;
use crate::reconcile::{Planner, Pool};
use crate::store::StoreEvent;
use crate::supervision::{Directory, Restart};
use shoal_core::plan::update::{step, task_wants_updater, wants_updater};
use shoal_core::plan::Plan;
use shoal_core::state::{Change, ClusterState};

pub enum UpdaterMsg {
    Store(Option<StoreEvent>),
}

#[derive(Clone)]
pub struct UpdaterArgs {
    pub ctx: LoopCtx,
    pub directory: Arc<Directory>,
}

#[derive(Clone)]
pub struct Updater;

pub struct UpdaterState {
    ctx: LoopCtx,
    rollouts: Pool<RolloutPlanner>,
}

pub fn updater_name(service_id: &str) -> String {
    format!("update/{service_id}")
}

/// A rollout's loop: named after the service's id, stops once the service
/// has nothing left to roll out.
#[derive(Clone)]
pub struct RolloutPlanner;

impl Planner for RolloutPlanner {
    fn name(&self, state: &ClusterState, key: &str) -> Option<String> {
        state.services.contains_key(key).then(|| updater_name(key))
    }

    fn plan(
        &self,
        state: &ClusterState,
        key: &str,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Plan {
        step(state, key, now, rng)
    }

    fn needed(&self, state: &ClusterState, key: &str) -> bool {
        wants_updater(state, key)
    }
}

impl UpdaterState {
    /// Pokes the service's loop, or starts one if the service has a
    /// rollout to run. `tasks`: only these tasks changed (not the service),
    /// so only they can have made a rollout due: a task changed by a step
    /// towards RUNNING cannot, and looking at every task of the service on
    /// each such change cost a scan of the state per status report.
    async fn ensure(
        &mut self,
        myself: &ActorRef<UpdaterMsg>,
        service_id: &str,
        tasks: Option<&[&str]>,
    ) {
        if self.rollouts.running(service_id) {
            return self.rollouts.poke(service_id);
        }
        let wanted = {
            let guard = self.ctx.sm.read();
            match tasks {
                None => wants_updater(&guard.0, service_id),
                Some(ids) => ids
                    .iter()
                    .any(|id| task_wants_updater(&guard.0, service_id, id)),
            }
        };
        if wanted {
            self.rollouts.ensure(&myself.get_cell(), service_id).await;
        }
    }

    async fn resync(&mut self, myself: &ActorRef<UpdaterMsg>) {
        let ids: Vec<String> = self.ctx.sm.read().0.services.keys().cloned().collect();
        self.rollouts
            .resync(&myself.get_cell(), &ids, wants_updater)
            .await;
    }
}

impl Actor for Updater {
    type Msg = UpdaterMsg;
    type State = UpdaterState;
    type Arguments = UpdaterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<UpdaterMsg>,
        args: UpdaterArgs,
    ) -> Result<UpdaterState, ActorProcessingErr> {
        crate::events::forward(&args.ctx.events, myself.clone(), UpdaterMsg::Store);
        let rollouts = Pool::new(
            RolloutPlanner,
            args.ctx.clone(),
            args.directory,
            Restart::Transient,
        );
        let mut st = UpdaterState {
            ctx: args.ctx,
            rollouts,
        };
        // A new leader (or a restarted updater) starts from the state alone.
        st.resync(&myself).await;
        Ok(st)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<UpdaterMsg>,
        st: &mut UpdaterState,
    ) -> Result<(), ActorProcessingErr> {
        st.rollouts.stop_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<UpdaterMsg>,
        msg: UpdaterMsg,
        st: &mut UpdaterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UpdaterMsg::Store(Some(ev)) => {
                let mut seen = HashSet::new();
                // The tasks each service had changed in this entry, for
                // services whose own record did not change.
                let mut changed: HashMap<&str, Vec<&str>> = HashMap::new();
                for c in ev.changes.iter() {
                    match c {
                        Change::Task { id, service_id } => {
                            changed.entry(service_id).or_default().push(id)
                        }
                        Change::TaskRemoved { service_id, .. } => {
                            changed.entry(service_id).or_default();
                        }
                        _ => {}
                    }
                }
                for c in ev.changes.iter() {
                    match c {
                        Change::Service(id) => {
                            if seen.insert(id.clone()) {
                                st.ensure(&myself, id, None).await;
                            }
                        }
                        Change::Task { service_id: id, .. }
                        | Change::TaskRemoved { service_id: id, .. } => {
                            let has_service_change = ev
                                .changes
                                .iter()
                                .any(|c| matches!(c, Change::Service(s) if s == id));
                            if !has_service_change && seen.insert(id.clone()) {
                                let tasks = changed.get(id.as_str()).map(Vec::as_slice);
                                st.ensure(&myself, id, Some(tasks.unwrap_or(&[]))).await;
                            }
                        }
                        // A node that went down no longer holds up the slots
                        // whose old task ran there.
                        Change::Node(_) => {
                            for id in st.rollouts.keys() {
                                if seen.insert(id.clone()) {
                                    st.ensure(&myself, &id, None).await;
                                }
                            }
                        }
                        // A rotated secret changes the services that use it,
                        // which come as `Change::Service` in the same entry.
                        Change::Object(..) | Change::Network(_) => {}
                        Change::ServiceRemoved(id) => st.rollouts.stop(id),
                        Change::Cluster => {}
                    }
                }
            }
            UpdaterMsg::Store(None) => st.resync(&myself).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<UpdaterMsg>,
        event: SupervisionEvent,
        st: &mut UpdaterState,
    ) -> Result<(), ActorProcessingErr> {
        // A loop that stopped because it had nothing left to do: look
        // again, in case the service changed while it was stopping.
        let ended = st.rollouts.handle_event(&myself.get_cell(), event).await?;
        for id in ended {
            st.ensure(&myself, &id, None).await;
        }
        Ok(())
    }
}
