//! The leader's control loops, in one shape: a `Pool` of children keyed by
//! service id, each child a `Loop` that plans a pass over the state with a
//! pure planner of `shoal_core::plan`, proposes the pass as one batch, and
//! waits until it is poked (the state changed) or the wake-up its plan asked
//! for comes. The orchestrator and the updater are pools of such loops; what
//! they differ in is their `Planner` and which changes poke which key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use rand::RngCore;
// tokio's clock, which a harness pauses and moves: the plans' waits are
// counted on the world's clock, which follows it there.
use tokio::time::Instant;

use crate::context::LoopCtx;
use crate::supervision::{ChildSpec, Children, Directory, Escalation, Intensity, Restart};
use shoal_core::command::Command;
use shoal_core::plan::Plan;
use shoal_core::state::ClusterState;

/// How long a pass whose write failed waits before it plans again.
const RETRY: Duration = Duration::from_millis(200);

/// What one kind of control loop decides, per key.
pub trait Planner: Clone + Send + Sync + 'static {
    /// The loop's name in the directory (`None`: the key is gone).
    fn name(&self, state: &ClusterState, key: &str) -> Option<String>;
    /// One pass over the state.
    fn plan(
        &self,
        state: &ClusterState,
        key: &str,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Plan;
    /// Whether a loop whose pass found nothing to do is still needed; one
    /// that is not stops (its pool starts it again when its key changes).
    fn needed(&self, state: &ClusterState, key: &str) -> bool;
    /// Told of a pass's writes once they are committed.
    fn committed(&self, _commands: &[Command]) {}
}

pub struct LoopArgs<P> {
    pub planner: P,
    pub ctx: LoopCtx,
    pub key: Arc<str>,
}

impl<P: Clone> Clone for LoopArgs<P> {
    fn clone(&self) -> Self {
        LoopArgs {
            planner: self.planner.clone(),
            ctx: self.ctx.clone(),
            key: self.key.clone(),
        }
    }
}

pub enum LoopMsg {
    /// Something about the key changed (or a wake-up came): plan soon.
    Poke,
    Pass,
}

/// One key's loop.
pub struct Loop<P>(std::marker::PhantomData<fn() -> P>);

impl<P> Clone for Loop<P> {
    fn clone(&self) -> Self {
        Loop(std::marker::PhantomData)
    }
}

impl<P> Default for Loop<P> {
    fn default() -> Self {
        Loop(std::marker::PhantomData)
    }
}

pub struct LoopState<P> {
    args: LoopArgs<P>,
    queued: bool,
    /// The earliest wake-up already set.
    timer: Option<Instant>,
}

impl<P> LoopState<P> {
    fn poke(&mut self, myself: &ActorRef<LoopMsg>) {
        if !self.queued {
            self.queued = true;
            let _ = myself.send_message(LoopMsg::Pass);
        }
    }

    fn wake_in(&mut self, myself: &ActorRef<LoopMsg>, wait: Duration) {
        if wait.is_zero() {
            return self.poke(myself);
        }
        let now = Instant::now();
        let at = now + wait;
        if self.timer.is_none_or(|t| t <= now || at < t) {
            self.timer = Some(at);
            myself.send_after(wait, || LoopMsg::Poke);
        }
    }
}

impl<P: Planner> Actor for Loop<P> {
    type Msg = LoopMsg;
    type State = LoopState<P>;
    type Arguments = LoopArgs<P>;

    async fn pre_start(
        &self,
        myself: ActorRef<LoopMsg>,
        args: LoopArgs<P>,
    ) -> Result<LoopState<P>, ActorProcessingErr> {
        let mut st = LoopState {
            args,
            queued: false,
            timer: None,
        };
        st.poke(&myself);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<LoopMsg>,
        msg: LoopMsg,
        st: &mut LoopState<P>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LoopMsg::Poke => st.poke(&myself),
            LoopMsg::Pass => {
                st.queued = false;
                let key = st.args.key.clone();
                // The pass is planned under the read lock, which is let go
                // before the write: a pass is bounded, the write is not.
                let (plan, needed) = {
                    let guard = st.args.ctx.sm.read();
                    let now = crate::world::now();
                    let plan = crate::world::with_rng(|rng| {
                        st.args.planner.plan(&guard.0, &key, now, rng)
                    });
                    (plan, st.args.planner.needed(&guard.0, &key))
                };
                if !plan.commands.is_empty() {
                    let cmd = Command::Batch(plan.commands);
                    match st.args.ctx.proposer.propose(cmd.clone()).await {
                        Ok(()) => {
                            if let Command::Batch(commands) = &cmd {
                                st.args.planner.committed(commands);
                            }
                        }
                        Err(e) => {
                            // Refused (the state changed meanwhile) or not
                            // committed: plan again from the state as it is then.
                            tracing::debug!(key = %key, error = %e, "pass not written");
                            st.wake_in(&myself, RETRY);
                            return Ok(());
                        }
                    }
                    // Its own write comes back as a store event (a poke).
                } else if plan.wake_in.is_none() && !plan.more && !needed {
                    myself.stop(Some("nothing left to do".into()));
                    return Ok(());
                }
                if plan.more {
                    st.poke(&myself);
                }
                if let Some(wait) = plan.wake_in {
                    st.wake_in(&myself, wait);
                }
            }
        }
        Ok(())
    }
}

/// The loops of one planner, one per key, supervised by the actor that owns
/// the pool.
pub struct Pool<P: Planner> {
    planner: P,
    ctx: LoopCtx,
    restart: Restart,
    directory: Arc<Directory>,
    children: Children,
    /// Key -> its loop's name, while it runs.
    names: BTreeMap<String, String>,
}

impl<P: Planner> Pool<P> {
    /// `restart`: `Permanent` for loops that live as long as their key,
    /// `Transient` for loops that stop when they have nothing left to do.
    pub fn new(planner: P, ctx: LoopCtx, directory: Arc<Directory>, restart: Restart) -> Self {
        Pool {
            planner,
            ctx,
            restart,
            children: Children::new(directory.clone(), Intensity::default()),
            directory,
            names: BTreeMap::new(),
        }
    }

    /// The keys whose loops run.
    pub fn keys(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// Whether `key`'s loop runs (under the name the state gives it now).
    pub fn running(&self, key: &str) -> bool {
        let name = self.planner.name(&self.ctx.sm.read().0, key);
        match (self.names.get(key), name) {
            (Some(current), Some(name)) => *current == name && self.children.contains(current),
            _ => false,
        }
    }

    /// Pokes `key`'s loop, if it runs.
    pub fn poke(&self, key: &str) {
        if let Some(a) = self
            .names
            .get(key)
            .and_then(|n| self.directory.get::<LoopMsg>(n))
        {
            let _ = a.send_message(LoopMsg::Poke);
        }
    }

    /// Pokes `key`'s loop, or starts it (a loop whose key was renamed is
    /// replaced by one under the new name).
    pub async fn ensure(&mut self, owner: &ActorCell, key: &str) {
        if self.running(key) {
            return self.poke(key);
        }
        let Some(name) = self.planner.name(&self.ctx.sm.read().0, key) else {
            return;
        };
        self.stop(key);
        let spec = ChildSpec::new(
            name.clone(),
            self.restart,
            Loop::<P>::default(),
            LoopArgs {
                planner: self.planner.clone(),
                ctx: self.ctx.clone(),
                key: key.into(),
            },
        );
        match self.children.start(owner, spec).await {
            Ok(()) => {
                self.names.insert(key.to_string(), name);
            }
            Err(e) => tracing::error!(loop_name = %name, error = %e, "cannot start a control loop"),
        }
    }

    /// Stops `key`'s loop, if it runs.
    pub fn stop(&mut self, key: &str) {
        if let Some(n) = self.names.remove(key) {
            self.children.stop(&n);
        }
    }

    pub fn stop_all(&mut self) {
        self.names.clear();
        self.children.stop_all();
    }

    /// Stops the loops of keys not in `keys`, and ensures those `wanted`
    /// says should run.
    pub async fn resync(
        &mut self,
        owner: &ActorCell,
        keys: &[String],
        wanted: impl Fn(&ClusterState, &str) -> bool,
    ) {
        for gone in self.keys().into_iter().filter(|k| !keys.contains(k)) {
            self.stop(&gone);
        }
        for key in keys {
            let want = self.running(key) || wanted(&self.ctx.sm.read().0, key);
            if want {
                self.ensure(owner, key).await;
            }
        }
    }

    /// Restarts a failed loop; returns the keys whose loops ended by
    /// themselves (their owner may want to look at them again).
    pub async fn handle_event(
        &mut self,
        owner: &ActorCell,
        event: SupervisionEvent,
    ) -> Result<Vec<String>, Escalation> {
        self.children.handle_event(owner, event).await?;
        let ended: Vec<String> = self
            .names
            .iter()
            .filter(|(_, n)| !self.children.contains(n))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &ended {
            self.names.remove(k);
        }
        Ok(ended)
    }
}
