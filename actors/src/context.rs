//! What the leader actors share (`ManagerCtx`) and the timings a node runs
//! with. A leaf: it names no actor, so the leader actors can depend on it
//! while only `leader.rs`, the wiring, names them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::proposer::Proposer;
use crate::raft::{LogStore, RaftTimings};
use crate::store::{StateMachine, StoreEvent};
use crate::supervision::Directory;

#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub raft: RaftTimings,
    pub dispatcher_heartbeat: Duration,
    /// How long a write may wait for its commit before the user hears an error.
    pub propose_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            raft: RaftTimings::default(),
            dispatcher_heartbeat: crate::session::DEFAULT_HEARTBEAT,
            propose_timeout: Duration::from_secs(5),
        }
    }
}

/// What the leader actors share: the state, the way to change it, and its events.
pub struct ManagerCtx {
    pub node_id: String,
    pub raft_id: u64,
    pub sm: Arc<StateMachine>,
    pub log: Arc<LogStore>,
    pub events: broadcast::Sender<StoreEvent>,
    pub proposer: Proposer,
    pub directory: Arc<Directory>,
    pub timings: Timings,
    /// Seals and opens secret values; `None` while the node is locked (or
    /// has no keys yet). Set by the node, which holds the key hierarchy.
    pub keyring: parking_lot::RwLock<Option<Arc<dyn shoal_core::model::secret::Keyring>>>,
    /// The Raft term this node leads in, 0 while it does not lead: set
    /// before the leader subtree starts and cleared when it is told to stop.
    /// What the dispatcher pushes to agents is stamped with it, so an agent
    /// can tell a deposed leader's late push from the current leader's.
    pub leading_term: std::sync::atomic::AtomicU64,
}

impl ManagerCtx {
    pub fn keyring(&self) -> Option<Arc<dyn shoal_core::model::secret::Keyring>> {
        self.keyring.read().clone()
    }

    /// The term this node leads in, if it leads.
    pub fn leading_term(&self) -> Option<u64> {
        match self.leading_term.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            term => Some(term),
        }
    }

    pub fn new(
        node_id: String,
        raft_id: u64,
        db: &sled::Db,
        directory: Arc<Directory>,
        timings: Timings,
    ) -> Result<Arc<Self>, ManagerOpenError> {
        let sm = StateMachine::open(db)?;
        let log = LogStore::open(db)?;
        // A snapshot installed in the log whose restore into the state did
        // not finish (the node died in between): restore it again, before
        // anything reads the state.
        if sm.applied().index < log.snapshot_index() {
            if let Some(data) = log.snapshot_data()? {
                tracing::warn!(
                    applied = sm.applied().index,
                    snapshot = log.snapshot_index(),
                    "the last snapshot was not wholly restored; restoring it again"
                );
                sm.restore(&data)?;
            }
        }
        Ok(Arc::new(ManagerCtx {
            node_id,
            raft_id,
            proposer: Proposer::new(directory.clone(), timings.propose_timeout, sm.clone()),
            sm,
            log,
            events: broadcast::channel(4096).0,
            directory,
            timings,
            keyring: parking_lot::RwLock::new(None),
            leading_term: std::sync::atomic::AtomicU64::new(0),
        }))
    }
}

impl ManagerCtx {
    /// The narrow context of a control loop that only reads the state,
    /// follows its events and proposes (the updater).
    pub fn loop_ctx(&self) -> LoopCtx {
        LoopCtx {
            sm: self.sm.clone(),
            events: self.events.clone(),
            proposer: self.proposer.clone(),
        }
    }
}

/// What a control loop needs, and nothing else: no directory, no log.
#[derive(Clone)]
pub struct LoopCtx {
    pub sm: Arc<StateMachine>,
    pub events: broadcast::Sender<StoreEvent>,
    pub proposer: Proposer,
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerOpenError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Log(#[from] crate::raft::LogError),
}
