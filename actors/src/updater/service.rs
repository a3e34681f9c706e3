//! `update/<service id>`: the rollout of one service. Steps `plan::step`,
//! proposes what it says, and sleeps until it asks to look again; stops by
//! itself once the service has nothing left to roll out.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::plan::{step, wants_updater};
use crate::command::Command;
use crate::context::LoopCtx;
// tokio's clock, which a harness pauses and moves: the plan's waits are
// counted on the world's clock, which follows it there.
use tokio::time::Instant;

/// How long a failed write waits before the service is stepped again.
const RETRY: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct ServiceUpdater;

#[derive(Clone)]
pub struct ServiceUpdaterArgs {
    pub ctx: LoopCtx,
    pub service_id: Arc<str>,
}

pub enum ServiceUpdaterMsg {
    /// Something about the service changed (or a timer it asked for fired).
    Poke,
    Step,
}

pub struct ServiceUpdaterState {
    args: ServiceUpdaterArgs,
    queued: bool,
    /// The earliest timer already set.
    timer: Option<Instant>,
}

impl ServiceUpdaterState {
    fn poke(&mut self, myself: &ActorRef<ServiceUpdaterMsg>) {
        if !self.queued {
            self.queued = true;
            let _ = myself.send_message(ServiceUpdaterMsg::Step);
        }
    }

    fn wake_in(&mut self, myself: &ActorRef<ServiceUpdaterMsg>, wait: Duration) {
        let now = Instant::now();
        let at = now + wait;
        if self.timer.is_none_or(|t| t <= now || at < t) {
            self.timer = Some(at);
            myself.send_after(wait, || ServiceUpdaterMsg::Poke);
        }
    }
}

impl Actor for ServiceUpdater {
    type Msg = ServiceUpdaterMsg;
    type State = ServiceUpdaterState;
    type Arguments = ServiceUpdaterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ServiceUpdaterMsg>,
        args: ServiceUpdaterArgs,
    ) -> Result<ServiceUpdaterState, ActorProcessingErr> {
        let mut st = ServiceUpdaterState {
            args,
            queued: false,
            timer: None,
        };
        st.poke(&myself);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<ServiceUpdaterMsg>,
        msg: ServiceUpdaterMsg,
        st: &mut ServiceUpdaterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ServiceUpdaterMsg::Poke => st.poke(&myself),
            ServiceUpdaterMsg::Step => {
                st.queued = false;
                let id = st.args.service_id.clone();
                // The step is made under the read lock, which is let go
                // before the write.
                let (plan, wanted) = {
                    let guard = st.args.ctx.sm.read();
                    (
                        step(&guard.0, &id, crate::world::now()),
                        wants_updater(&guard.0, &id),
                    )
                };
                if !plan.commands.is_empty() {
                    let cmd = Command::Batch(plan.commands);
                    if let Err(e) = st.args.ctx.proposer.propose(cmd).await {
                        // Refused (the spec changed meanwhile) or not
                        // committed: step again from the state as it is then.
                        tracing::debug!(service = %id, error = %e, "update step not written");
                        st.wake_in(&myself, RETRY);
                        return Ok(());
                    }
                    // Its own write comes back as a store event (a poke).
                } else if plan.wake_in.is_none() && !wanted {
                    // Nothing to roll out: the parent starts a new one when
                    // the service changes again.
                    myself.stop(Some("nothing to roll out".into()));
                    return Ok(());
                }
                match plan.wake_in {
                    Some(wait) if wait.is_zero() => st.poke(&myself),
                    Some(wait) => st.wake_in(&myself, wait),
                    None => {}
                }
            }
        }
        Ok(())
    }
}
