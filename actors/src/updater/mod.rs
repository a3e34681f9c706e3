//! The updater (leader only): rolls a service's tasks over to its current
//! spec slot by slot, watches the new ones, and pauses or rolls back when
//! too many fail. The decisions are `plan::step`'s; this actor only follows
//! the store, proposes what a step says and sleeps until it asks to look
//! again. It remembers nothing a new leader would need: the rollout's
//! progress is in the service's `UpdateStatus` and in its tasks.

mod plan;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};

pub use plan::{step, UpdatePlan};

use crate::command::Command;
use crate::context::LoopCtx;
use crate::state::Change;
use crate::store::StoreEvent;

/// Services one pass steps; the rest wait for the next pass.
const SERVICES_PER_PASS: usize = 64;
/// How long a failed write waits before the service is stepped again.
const RETRY: Duration = Duration::from_millis(200);

pub enum UpdaterMsg {
    Store(Option<StoreEvent>),
    /// Step this service (a timer it asked for, or a retry).
    Wake(String),
    Pass,
}

#[derive(Clone)]
pub struct Updater;

pub struct UpdaterState {
    ctx: LoopCtx,
    /// Services to step in the next pass.
    pending: BTreeSet<String>,
    pass_queued: bool,
    /// The earliest timer already set per service.
    timers: HashMap<String, Instant>,
}

impl UpdaterState {
    fn queue(&mut self, myself: &ActorRef<UpdaterMsg>, service_id: String) {
        self.pending.insert(service_id);
        if !self.pass_queued {
            self.pass_queued = true;
            let _ = myself.send_message(UpdaterMsg::Pass);
        }
    }

    fn resync(&mut self, myself: &ActorRef<UpdaterMsg>) {
        let ids: Vec<String> = self.ctx.sm.read().0.services.keys().cloned().collect();
        for id in ids {
            self.queue(myself, id);
        }
    }

    fn wake_in(&mut self, myself: &ActorRef<UpdaterMsg>, service_id: &str, wait: Duration) {
        let at = Instant::now() + wait;
        let now = Instant::now();
        match self.timers.get(service_id) {
            Some(t) if *t > now && *t <= at => {}
            _ => {
                self.timers.insert(service_id.to_string(), at);
                let id = service_id.to_string();
                myself.send_after(wait, move || UpdaterMsg::Wake(id));
            }
        }
    }

    async fn pass(&mut self, myself: &ActorRef<UpdaterMsg>) {
        let batch: Vec<String> = self
            .pending
            .iter()
            .take(SERVICES_PER_PASS)
            .cloned()
            .collect();
        for id in &batch {
            self.pending.remove(id);
        }
        for id in batch {
            // The step is made under the read lock, which is let go before
            // the write.
            let plan = {
                let guard = self.ctx.sm.read();
                step(&guard.0, &id, Utc::now())
            };
            if !plan.commands.is_empty() {
                let cmd = Command::Batch(plan.commands);
                if let Err(e) = self.ctx.proposer.propose(cmd).await {
                    // Refused (the spec changed meanwhile) or not committed:
                    // step again from the state as it is then.
                    tracing::debug!(service = %id, error = %e, "update step not written");
                    self.wake_in(myself, &id, RETRY);
                    continue;
                }
            }
            if let Some(wait) = plan.wake_in {
                if wait.is_zero() {
                    self.queue(myself, id);
                } else {
                    self.wake_in(myself, &id, wait);
                }
            }
        }
        if !self.pending.is_empty() && !self.pass_queued {
            self.pass_queued = true;
            let _ = myself.send_message(UpdaterMsg::Pass);
        }
    }
}

impl Actor for Updater {
    type Msg = UpdaterMsg;
    type State = UpdaterState;
    type Arguments = LoopCtx;

    async fn pre_start(
        &self,
        myself: ActorRef<UpdaterMsg>,
        ctx: LoopCtx,
    ) -> Result<UpdaterState, ActorProcessingErr> {
        crate::events::forward(&ctx.events, myself.clone(), UpdaterMsg::Store);
        let mut st = UpdaterState {
            ctx,
            pending: BTreeSet::new(),
            pass_queued: false,
            timers: HashMap::new(),
        };
        // A new leader (or a restarted updater) starts from the state alone.
        st.resync(&myself);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<UpdaterMsg>,
        msg: UpdaterMsg,
        st: &mut UpdaterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UpdaterMsg::Store(Some(ev)) => {
                for c in ev.changes.iter() {
                    match c {
                        Change::Service(id) => st.queue(&myself, id.clone()),
                        Change::Task { service_id, .. }
                        | Change::TaskRemoved { service_id, .. } => {
                            st.queue(&myself, service_id.clone())
                        }
                        // A node that went down no longer holds up the slots
                        // whose old task ran there.
                        Change::Node(_) => st.resync(&myself),
                        Change::ServiceRemoved(id) => {
                            st.pending.remove(id);
                            st.timers.remove(id);
                        }
                        Change::Cluster => {}
                    }
                }
            }
            UpdaterMsg::Store(None) => st.resync(&myself),
            UpdaterMsg::Wake(id) => {
                if st.timers.get(&id).is_some_and(|t| *t <= Instant::now()) {
                    st.timers.remove(&id);
                }
                st.queue(&myself, id);
            }
            UpdaterMsg::Pass => {
                st.pass_queued = false;
                st.pass(&myself).await;
            }
        }
        Ok(())
    }
}
