//! The scheduler actor: its mailbox, and the write of what the backlog's
//! pass decides (`shoal_core::plan::backlog`: which tasks wait, the nodes'
//! loads, `place`'s decisions).

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::ManagerCtx;
use crate::store::StoreEvent;
use shoal_core::plan::backlog::Backlog;

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
    /// The waiting tasks and the nodes' loads (`shoal_core::plan::backlog`).
    backlog: Backlog,
}

#[derive(Clone)]
pub struct Scheduler;

impl SchedulerState {
    fn queue_pass(&mut self, myself: &ActorRef<SchedulerMsg>) {
        if !self.pass_queued {
            self.pass_queued = true;
            let _ = myself.send_message(SchedulerMsg::Pass);
        }
    }

    /// One placement pass, and what should follow it.
    async fn pass(&mut self) -> Next {
        let pass = self.backlog.pass(&self.ctx.sm.read().0);
        if pass.updates.is_empty() {
            return Next::Done;
        }
        let placed = pass.placed();
        let more = pass.more;
        if let Err(e) = self
            .ctx
            .proposer
            .propose(pass.command(crate::world::now()))
            .await
        {
            tracing::warn!(error = %e, "scheduler write failed; will retry");
            return Next::Retry;
        }
        // The next pass (at once, if this one stopped at the limit) must
        // see these placements in the loads, even before their event comes.
        self.backlog.written(&self.ctx.sm.read().0, &placed);
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
            backlog: Backlog::default(),
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
                let pass = st.backlog.note(&st.ctx.sm.read().0, &ev.changes);
                if pass {
                    st.queue_pass(&myself);
                }
            }
            SchedulerMsg::Store(None) => {
                st.backlog.rescan();
                st.queue_pass(&myself);
            }
            SchedulerMsg::Pass => {
                st.pass_queued = false;
                let started = tokio::time::Instant::now();
                let next = st.pass().await;
                st.ctx
                    .directory
                    .metrics
                    .scheduler_pass_duration
                    .observe(crate::metrics::secs(started.elapsed()));
                match next {
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
