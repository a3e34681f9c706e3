//! The state machine's persistence: `ClusterState` mirrored in one sled tree.
//!
//! Each applied entry's changes and the new applied index go to sled in one
//! atomic batch, so a crash never applies an entry twice or skips one.

use crate::secrets::Kind;
use std::sync::Arc;

use std::collections::{HashMap, VecDeque};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::command::Proposal;
use crate::state::{ApplyError, Change, ClusterState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store holds a corrupt record {0}: {1}")]
    Corrupt(String, CodecError),
}

const APPLIED: &[u8] = b"applied";
const CLUSTER: &[u8] = b"cluster";

fn key(prefix: &str, id: &str) -> Vec<u8> {
    format!("{prefix}/{id}").into_bytes()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedIndex {
    pub index: u64,
    pub term: u64,
}

/// What applying one entry produced: the proposer's id (if the entry was a
/// proposal) and whether the command was accepted.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub index: u64,
    pub proposal_id: Option<u128>,
    pub result: Result<(), ApplyError>,
    pub changes: Vec<Change>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: AppliedIndex,
    state: ClusterState,
}

/// Outcomes of recently applied entries, kept here rather than in the Store
/// actor so that a restarted Store still knows what became of a proposal.
#[derive(Default)]
struct Outcomes {
    by_index: HashMap<u64, (Option<u128>, Result<(), ApplyError>)>,
    order: VecDeque<u64>,
}

const OUTCOMES_KEPT: usize = 4096;

pub struct StateMachine {
    tree: sled::Tree,
    inner: RwLock<(ClusterState, AppliedIndex)>,
    outcomes: Mutex<Outcomes>,
    /// Held while applied entries are written to sled, after the state
    /// lock is let go (readers need not wait for the disk): whoever takes
    /// it sees in memory only what is also written (`snapshot_data`).
    persisting: Mutex<()>,
}

impl StateMachine {
    pub fn open(db: &sled::Db) -> Result<Arc<Self>, StoreError> {
        let tree = db.open_tree("state")?;
        let (state, applied) = Self::load(&tree)?;
        Ok(Arc::new(StateMachine {
            tree,
            inner: RwLock::new((state, applied)),
            outcomes: Mutex::new(Outcomes::default()),
            persisting: Mutex::new(()),
        }))
    }

    fn load(tree: &sled::Tree) -> Result<(ClusterState, AppliedIndex), StoreError> {
        fn dec<T: serde::de::DeserializeOwned>(what: &[u8], b: &[u8]) -> Result<T, StoreError> {
            codec::decode(b)
                .map_err(|e| StoreError::Corrupt(String::from_utf8_lossy(what).into_owned(), e))
        }
        let mut state = ClusterState::default();
        let mut applied = AppliedIndex::default();
        for kv in tree.iter() {
            let (k, v) = kv?;
            if &*k == APPLIED {
                applied = dec(&k, &v)?;
            } else if &*k == CLUSTER {
                state.cluster = Some(dec(&k, &v)?);
            } else if k.starts_with(b"node/") {
                let n: crate::model::Node = dec(&k, &v)?;
                state.nodes.insert(n.id.clone(), n);
            } else if k.starts_with(b"svc/") {
                let s: crate::model::Service = dec(&k, &v)?;
                state.services.insert(s.id.clone(), s);
            } else if k.starts_with(b"task/") {
                let t: crate::model::Task = dec(&k, &v)?;
                state.tasks.insert(t.id.clone(), t);
            } else if k.starts_with(b"net/") {
                let n: crate::networks::Network = dec(&k, &v)?;
                state.networks.insert(n.id.clone(), n);
            } else if k.starts_with(b"secret/") || k.starts_with(b"config/") {
                let o: crate::secrets::Object = dec(&k, &v)?;
                match o.kind {
                    Kind::Secret => state.secrets.insert(o.id.clone(), o),
                    Kind::Config => state.configs.insert(o.id.clone(), o),
                };
            }
        }
        Ok((state, applied))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, (ClusterState, AppliedIndex)> {
        self.inner.read()
    }

    pub fn applied(&self) -> AppliedIndex {
        self.inner.read().1
    }

    /// Applies one committed Raft entry. Entries at or below the applied index
    /// are skipped, which makes replay after a crash safe.
    pub fn apply_entry(
        &self,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<Option<Outcome>, StoreError> {
        Ok(self.apply_entries(&[(index, term, data)])?.pop())
    }

    /// Applies consecutive committed Raft entries (index, term, data) and
    /// writes their changes and the new applied index to sled in one batch:
    /// a crash keeps all of them or none. Entries at or below the applied
    /// index are skipped, which makes replay after a crash safe. One batch
    /// for many entries matters: sled makes every batch wait for the
    /// flushes in progress, so a batch per entry stalls a busy Store.
    pub fn apply_entries(&self, entries: &[(u64, u64, &[u8])]) -> Result<Vec<Outcome>, StoreError> {
        let _persisting = self.persisting.lock();
        let mut guard = self.inner.write();
        let (state, applied) = &mut *guard;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut batch = sled::Batch::default();
        let mut new_applied = *applied;
        for &(index, term, data) in entries {
            if index <= new_applied.index {
                continue;
            }
            let mut outcome = Outcome {
                index,
                proposal_id: None,
                result: Ok(()),
                changes: Vec::new(),
            };
            // Empty entries (a new leader's no-op) and configuration changes only
            // move the applied index.
            if !data.is_empty() {
                match codec::decode::<Proposal>(data) {
                    Ok(p) => {
                        outcome.proposal_id = Some(p.id);
                        match state.apply(&p.command, index) {
                            Ok(changes) => outcome.changes = changes,
                            Err(e) => outcome.result = Err(e),
                        }
                    }
                    Err(e) => tracing::error!(index, error = %e, "skipping undecodable log entry"),
                }
            }
            // Later entries' writes of the same key replace earlier ones in
            // the batch, so it ends with each object's last value.
            for change in &outcome.changes {
                Self::persist_change(state, change, &mut batch);
            }
            new_applied = AppliedIndex { index, term };
            outcomes.push(outcome);
        }
        if outcomes.is_empty() {
            return Ok(outcomes);
        }
        batch.insert(APPLIED, encode(&new_applied));
        *applied = new_applied;
        // Readers see the new state while it is written; sled's batch may
        // wait for a flush in progress, and they need not.
        drop(guard);
        if let Err(e) = self.tree.apply_batch(batch) {
            // Memory already holds the entries' changes: go back to what is
            // on disk, so that applying them again does not apply them twice.
            let mut guard = self.inner.write();
            if let Ok(on_disk) = Self::load(&self.tree) {
                *guard = on_disk;
            }
            return Err(e.into());
        }
        let mut kept = self.outcomes.lock();
        for outcome in &outcomes {
            kept.by_index
                .insert(outcome.index, (outcome.proposal_id, outcome.result.clone()));
            kept.order.push_back(outcome.index);
            if kept.order.len() > OUTCOMES_KEPT {
                if let Some(old) = kept.order.pop_front() {
                    kept.by_index.remove(&old);
                }
            }
        }
        Ok(outcomes)
    }

    /// What became of the entry at `index`, if it was applied recently.
    pub fn outcome(&self, index: u64) -> Option<(Option<u128>, Result<(), ApplyError>)> {
        self.outcomes.lock().by_index.get(&index).cloned()
    }

    fn persist_change(state: &ClusterState, change: &Change, batch: &mut sled::Batch) {
        match change {
            Change::Cluster => {
                if let Some(c) = &state.cluster {
                    batch.insert(CLUSTER, encode(c));
                }
            }
            Change::Node(id) => match state.nodes.get(id) {
                Some(n) => batch.insert(key("node", id), encode(n)),
                None => batch.remove(key("node", id)),
            },
            Change::Service(id) | Change::ServiceRemoved(id) => match state.services.get(id) {
                Some(s) => batch.insert(key("svc", id), encode(s)),
                None => batch.remove(key("svc", id)),
            },
            Change::Task { id, .. } | Change::TaskRemoved { id, .. } => match state.tasks.get(id) {
                Some(t) => batch.insert(key("task", id), encode(t)),
                None => batch.remove(key("task", id)),
            },
            Change::Network(id) => match state.networks.get(id) {
                Some(n) => batch.insert(key("net", id), encode(n)),
                None => batch.remove(key("net", id)),
            },
            Change::Object(kind, id) => {
                let all = match kind {
                    Kind::Secret => &state.secrets,
                    Kind::Config => &state.configs,
                };
                match all.get(id) {
                    Some(o) => batch.insert(key(kind.as_str(), id), encode(o)),
                    None => batch.remove(key(kind.as_str(), id)),
                }
            }
        }
    }

    /// The whole state at the applied index, for a Raft snapshot.
    pub fn snapshot_data(&self) -> (AppliedIndex, Vec<u8>) {
        // Only what is written to sled too: the log behind it is dropped
        // once a flush has made the state durable.
        let _persisting = self.persisting.lock();
        let guard = self.inner.read();
        let data = SnapshotData {
            applied: guard.1,
            state: guard.0.clone(),
        };
        (guard.1, encode(&data))
    }

    /// The state a snapshot holds, decoded on its own (the simulation
    /// weighs it apart from the store).
    pub fn decode_snapshot(data: &[u8]) -> Result<ClusterState, StoreError> {
        let snap: SnapshotData =
            codec::decode(data).map_err(|e| StoreError::Corrupt("snapshot".into(), e))?;
        Ok(snap.state)
    }

    /// Replaces the whole state with a snapshot's (a follower far behind).
    pub fn restore(&self, data: &[u8]) -> Result<(), StoreError> {
        let snap: SnapshotData =
            codec::decode(data).map_err(|e| StoreError::Corrupt("snapshot".into(), e))?;
        let _persisting = self.persisting.lock();
        let mut guard = self.inner.write();
        // One batch: every old record removed, every new one written, so a
        // crash leaves the old state or the new one, never an empty tree.
        let mut batch = sled::Batch::default();
        for kv in self.tree.iter() {
            let (k, _) = kv?;
            batch.remove(k);
        }
        for change in all_changes(&snap.state) {
            Self::persist_change(&snap.state, &change, &mut batch);
        }
        batch.insert(APPLIED, encode(&snap.applied));
        self.tree.apply_batch(batch)?;
        *guard = (snap.state, snap.applied);
        Ok(())
    }
}

fn all_changes(state: &ClusterState) -> Vec<Change> {
    let mut v = vec![Change::Cluster];
    v.extend(state.nodes.keys().map(|id| Change::Node(id.clone())));
    v.extend(state.services.keys().map(|id| Change::Service(id.clone())));
    v.extend(state.networks.keys().map(|id| Change::Network(id.clone())));
    v.extend(
        state
            .secrets
            .keys()
            .map(|id| Change::Object(Kind::Secret, id.clone())),
    );
    v.extend(
        state
            .configs
            .keys()
            .map(|id| Change::Object(Kind::Config, id.clone())),
    );
    v.extend(state.tasks.values().map(|t| Change::Task {
        id: t.id.clone(),
        service_id: t.service_id.clone(),
    }));
    v
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own model types always encode; an empty record would fail loudly on load.
    codec::encode(v).unwrap_or_default()
}
