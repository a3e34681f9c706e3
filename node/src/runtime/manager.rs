//! The manager part of one node, owned: the manager context (state machine,
//! Raft log, proposer), the Raft network, the writes waiting to be
//! forwarded to the leader, the journal of swarm events, the `manager`
//! actor subtree, and the loops that follow this manager's store (its
//! autolock files, the journal, and the standing of peers' connections).
//!
//! It sends through the network stack and writes to the node's store, so
//! it stops before both (`Runtime::shutdown`); it knows nothing of the
//! worker part.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use shoal_actors::context::ManagerCtx;
use shoal_actors::leader::manager_spec;
use shoal_core::state::Change;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;
use super::tree::Tree;
use super::writes::Forwards;
use super::NodeError;
use crate::cluster::net::{RaftNet, TransportSlot};
use crate::events::Journal;

/// The root's child this part starts, and the actor whose exit says it is
/// gone.
const SUBTREE: &str = "manager";
const LAST: &str = "raft";

/// How long a stop waits for the Raft actor to be gone.
const STOP_WITHIN: Duration = Duration::from_secs(10);

pub struct ManagerPart {
    ctx: Arc<RwLock<Option<Arc<ManagerCtx>>>>,
    raft_net: RwLock<Option<Arc<RaftNet>>>,
    /// Writes waiting to be forwarded to the leader, per leader.
    pub(super) forwards: Forwards,
    /// The swarm events this node applied as a manager (`GET /events`).
    pub events: Arc<Journal>,
    tree: Tree,
    tasks: Tasks,
}

impl ManagerPart {
    pub(super) fn new(tree: Tree, token: CancellationToken) -> ManagerPart {
        ManagerPart {
            ctx: Arc::default(),
            raft_net: RwLock::new(None),
            forwards: Forwards::default(),
            events: Arc::default(),
            tree,
            tasks: Tasks::new(token),
        }
    }

    /// The context this node manages with, if it does.
    pub fn ctx(&self) -> Option<Arc<ManagerCtx>> {
        self.ctx.read().clone()
    }

    pub fn raft_net(&self) -> Option<Arc<RaftNet>> {
        self.raft_net.read().clone()
    }

    /// Manages with `ctx` from now on: its loops, then its actors.
    /// `transport` is whichever the network stack has when a node's
    /// standing changes; `data_dir` holds the key files autolock seals.
    pub(super) async fn start(
        &self,
        ctx: Arc<ManagerCtx>,
        net: Arc<RaftNet>,
        data_dir: PathBuf,
        transport: TransportSlot,
    ) -> Result<(), NodeError> {
        *self.raft_net.write() = Some(net.clone());
        *self.ctx.write() = Some(ctx.clone());
        self.tasks.spawn(super::lock::lock_follower(data_dir, &ctx));
        self.tasks.spawn(self.events.follow(&ctx));
        self.tasks
            .spawn(follow_standing(ctx.clone(), self.ctx.clone(), transport));
        self.tree.start(manager_spec(&ctx, net)).await
    }

    /// Runs `work` among this part's loops (a burst of forwarded writes).
    pub(super) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Tells the `manager` subtree to stop, without waiting.
    pub(super) fn stop_actors(&self) {
        self.tree.stop(SUBTREE);
    }

    /// Stops the `manager` subtree and waits (bounded) until its Raft actor
    /// is gone, so that nothing writes the Raft state after this returns.
    pub(super) async fn stop_actors_and_wait(&self) -> bool {
        self.tree
            .stop_until_gone(&[SUBTREE], LAST, STOP_WITHIN)
            .await
    }

    /// Forgets the context and the Raft network (the node stopped
    /// managing), and gives them to the caller to drop where it may block.
    pub(super) fn forget(&self) -> (Option<Arc<ManagerCtx>>, Option<Arc<RaftNet>>) {
        (self.ctx.write().take(), self.raft_net.write().take())
    }

    /// The actors (the Raft actor's last flush included), then the loops,
    /// then the Raft log flushed.
    pub async fn shutdown(&self) {
        if !self.stop_actors_and_wait().await {
            tracing::warn!("the Raft actor did not stop in time");
        }
        self.tasks.shutdown().await;
        if let Some(ctx) = self.ctx() {
            if let Err(e) = ctx.log.flush().await {
                tracing::warn!(error = %e, "cannot flush the Raft log");
            }
        }
    }
}

/// Follows `ctx`'s store while it is this node's manager context (`current`):
/// when a node's entry changes (it is removed, or its role and so its
/// certificate generation change), the connections open to it are checked
/// again and closed if it lost its standing.
async fn follow_standing(
    ctx: Arc<ManagerCtx>,
    current: Arc<RwLock<Option<Arc<ManagerCtx>>>>,
    transport: TransportSlot,
) {
    let mut events = ctx.events.subscribe();
    // Held weakly: a context this node let go of (its store is being
    // opened again, `disk.rs`) must not be kept alive by this loop.
    let ctx = Arc::downgrade(&ctx);
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        let t = transport.read().clone();
        match (ev, t) {
            (Ok(Ok(ev)), Some(t)) => {
                for c in ev.changes.iter() {
                    if let Change::Node(id) = c {
                        t.recheck(id);
                    }
                }
            }
            (Ok(Err(RecvError::Lagged(_))), Some(t)) => t.recheck_all(),
            (Ok(Err(RecvError::Closed)), _) => return,
            // Quiet for a second: is this still our manager context?
            (Err(_), _) => {
                let same = current
                    .read()
                    .as_ref()
                    .is_some_and(|now| std::ptr::eq(Arc::as_ptr(now), ctx.as_ptr()));
                if !same {
                    return;
                }
            }
            // No transport (the node left): nothing open to check.
            (Ok(_), None) => {}
        }
    }
}
