//! The updater (leader only): rolls a service's tasks over to its current
//! spec slot by slot, watches the new ones, and pauses or rolls back when
//! too many fail. One `update/<service id>` child per service with a
//! rollout under way (`service.rs`), supervised here like the orchestrator's
//! service supervisors; the decisions are `plan::step`'s. Nothing here or in
//! a child is needed by a new leader: the rollout's progress is in the
//! service's `UpdateStatus` and in its tasks.

mod plan;
mod service;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub use plan::{step, task_wants_updater, wants_updater, UpdatePlan};
pub use service::{ServiceUpdater, ServiceUpdaterArgs, ServiceUpdaterMsg};

use crate::context::LoopCtx;
use crate::state::Change;
use crate::store::StoreEvent;
use crate::supervision::{ChildSpec, Children, Directory, Intensity, Restart};

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
    directory: Arc<Directory>,
    children: Children,
    /// Service id -> its child's name, while it runs.
    names: HashMap<String, String>,
}

pub fn updater_name(service_id: &str) -> String {
    format!("update/{service_id}")
}

impl UpdaterState {
    /// Pokes the service's child, or starts one if the service has a
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
        let name = updater_name(service_id);
        if self.children.contains(&name) {
            if let Some(child) = self.directory.get::<ServiceUpdaterMsg>(&name) {
                let _ = child.send_message(ServiceUpdaterMsg::Poke);
            }
            return;
        }
        self.names.remove(service_id);
        let wanted = {
            let guard = self.ctx.sm.read();
            match tasks {
                None => wants_updater(&guard.0, service_id),
                Some(ids) => ids
                    .iter()
                    .any(|id| task_wants_updater(&guard.0, service_id, id)),
            }
        };
        if !wanted {
            return;
        }
        let spec = ChildSpec::new(
            name.clone(),
            Restart::Transient,
            ServiceUpdater,
            ServiceUpdaterArgs {
                ctx: self.ctx.clone(),
                service_id: service_id.into(),
            },
        );
        match self.children.start(&myself.get_cell(), spec).await {
            Ok(()) => {
                self.names.insert(service_id.to_string(), name);
            }
            Err(e) => tracing::error!(service = %service_id, error = %e, "cannot start updater"),
        }
    }

    async fn resync(&mut self, myself: &ActorRef<UpdaterMsg>) {
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
            self.ensure(myself, &id, None).await;
        }
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
        let mut st = UpdaterState {
            children: Children::new(args.directory.clone(), Intensity::default()),
            ctx: args.ctx,
            directory: args.directory,
            names: HashMap::new(),
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
        st.children.stop_all();
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
                            let ids: Vec<String> = st.names.keys().cloned().collect();
                            for id in ids {
                                if seen.insert(id.clone()) {
                                    st.ensure(&myself, &id, None).await;
                                }
                            }
                        }
                        // A rotated secret changes the services that use it,
                        // which come as `Change::Service` in the same entry.
                        Change::Object(..) | Change::Network(_) => {}
                        Change::ServiceRemoved(id) => {
                            if let Some(n) = st.names.remove(id) {
                                st.children.stop(&n);
                            }
                        }
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
        st.children.handle_event(&myself.get_cell(), event).await?;
        // A child that stopped because it had nothing left to do: look
        // again, in case the service changed while it was stopping.
        let ended: Vec<String> = st
            .names
            .iter()
            .filter(|(_, n)| !st.children.contains(n))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            st.ensure(&myself, &id, None).await;
        }
        Ok(())
    }
}
