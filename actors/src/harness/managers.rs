//! The harness's managers as its networks see them: which are up, which
//! are cut off from everyone, and where each one's actors are found.

use std::sync::Arc;

use parking_lot::RwLock;
use ractor::ActorRef;

use crate::context::ManagerCtx;
use crate::raft::RaftMsg;
use crate::session::DispatcherMsg;

struct Slot {
    ctx: Arc<ManagerCtx>,
    /// False between a crash and a restart.
    up: bool,
    /// Cut off from the other managers and from every agent.
    isolated: bool,
}

/// Every manager the harness has started, in the order it started them
/// (manager `i` has raft id `i + 1`).
#[derive(Default)]
pub struct Managers(RwLock<Vec<Slot>>);

impl Managers {
    pub fn push(&self, ctx: Arc<ManagerCtx>) {
        self.0.write().push(Slot {
            ctx,
            up: true,
            isolated: false,
        });
    }

    pub fn ctx(&self, i: usize) -> Option<Arc<ManagerCtx>> {
        self.0.read().get(i).map(|s| s.ctx.clone())
    }

    /// A restarted manager's new context (its state and log reread from its store).
    pub fn replace(&self, i: usize, ctx: Arc<ManagerCtx>) {
        if let Some(s) = self.0.write().get_mut(i) {
            s.ctx = ctx;
        }
    }

    pub fn set_up(&self, i: usize, up: bool) {
        if let Some(s) = self.0.write().get_mut(i) {
            s.up = up;
        }
    }

    pub fn set_isolated(&self, i: usize, isolated: bool) {
        if let Some(s) = self.0.write().get_mut(i) {
            s.isolated = isolated;
        }
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.0.read().get(i).is_some_and(|s| s.up)
    }

    /// Up and not cut off: what the others can reach.
    pub fn reachable(&self, i: usize) -> bool {
        self.0.read().get(i).is_some_and(|s| s.up && !s.isolated)
    }

    fn index_of(raft_id: u64) -> Option<usize> {
        usize::try_from(raft_id).ok()?.checked_sub(1)
    }

    /// The Raft actor of the manager with this raft id, if it can be reached.
    pub fn raft(&self, raft_id: u64) -> Option<ActorRef<RaftMsg>> {
        let i = Self::index_of(raft_id)?;
        let slots = self.0.read();
        let s = slots.get(i)?;
        (s.up && !s.isolated).then(|| s.ctx.directory.get("raft"))?
    }

    pub fn reachable_raft_id(&self, raft_id: u64) -> bool {
        Self::index_of(raft_id).is_some_and(|i| self.reachable(i))
    }

    /// The dispatcher an agent finds: that of a reachable manager whose
    /// leader actors run, and which manager it is.
    pub fn dispatcher(&self) -> Option<(usize, ActorRef<DispatcherMsg>)> {
        let slots = self.0.read();
        slots.iter().enumerate().find_map(|(i, s)| {
            if !s.up || s.isolated {
                return None;
            }
            s.ctx.directory.get("dispatcher").map(|d| (i, d))
        })
    }

    /// The manager whose state a test reads: the one a reachable
    /// dispatcher runs on (the leader), else the first reachable one, else
    /// the first one up.
    pub fn view(&self) -> Option<Arc<ManagerCtx>> {
        if let Some((i, _)) = self.dispatcher() {
            return self.ctx(i);
        }
        let slots = self.0.read();
        slots
            .iter()
            .find(|s| s.up && !s.isolated)
            .or_else(|| slots.iter().find(|s| s.up))
            .map(|s| s.ctx.clone())
    }
}
