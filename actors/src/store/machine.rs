//! The state machine's persistence: `ClusterState` mirrored in one sled tree.
//!
//! Each applied entry's changes and the new applied index go to sled in one
//! atomic batch, so a crash never applies an entry twice or skips one.

use shoal_core::model::secret::Kind;
use std::sync::Arc;

use std::collections::{HashMap, VecDeque};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

use shoal_core::codec;

use crate::store::swarm_events::{Digests, SwarmEvent};
use shoal_core::codec::CodecError;
use shoal_core::command::Proposal;
use shoal_core::state::{ApplyError, Change, ClusterState};

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

/// Whether a write was accepted, for the proposer waiting for it by its id.
pub type WriteResult = (u128, Result<(), ApplyError>);

/// What applying one entry produced: each write's proposer id and result, in
/// the entry's order (none for a no-op or a configuration change; one for a
/// plain proposal; many for a packed entry), and the changes of all of them.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub index: u64,
    pub results: Vec<WriteResult>,
    pub changes: Vec<Change>,
    /// The swarm events of those changes, in commit order.
    pub events: Vec<SwarmEvent>,
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
    by_index: HashMap<u64, Arc<[WriteResult]>>,
    order: VecDeque<u64>,
    /// Writes' results in `by_index`.
    results: usize,
}

/// Entries whose outcomes are kept, and writes' results (a packed entry has
/// up to `MAX_COMMANDS_PER_ENTRY`): the oldest go first past either.
const OUTCOMES_KEPT: usize = 4096;
const RESULTS_KEPT: usize = 64 * 1024;

pub struct StateMachine {
    tree: sled::Tree,
    inner: RwLock<(ClusterState, AppliedIndex)>,
    outcomes: Mutex<Outcomes>,
    /// Held while applied entries are written to sled, after the state
    /// lock is let go (readers need not wait for the disk): whoever takes
    /// it sees in memory only what is also written (`snapshot_data`).
    persisting: Mutex<()>,
    /// What the last events said of each object (taken with `inner`'s
    /// write lock held, so in apply order).
    digests: Mutex<Digests>,
    /// The first write of applied entries that failed (a full disk): sled
    /// takes no write after one until the database is opened again.
    failed: Mutex<Option<String>>,
    /// Why this build applies no more entries: one was of a newer format
    /// than it reads (docs/upgrades.md). Never skipped, so the state is not
    /// built without it; a newer build started on this data dir goes on.
    stuck: Mutex<Option<String>>,
}

impl StateMachine {
    pub fn open(db: &sled::Db) -> Result<Arc<Self>, StoreError> {
        let tree = db.open_tree("state")?;
        let (state, applied) = Self::load(&tree)?;
        let digests = Mutex::new(Digests::of(&state));
        Ok(Arc::new(StateMachine {
            digests,
            tree,
            inner: RwLock::new((state, applied)),
            outcomes: Mutex::new(Outcomes::default()),
            persisting: Mutex::new(()),
            failed: Mutex::new(None),
            stuck: Mutex::new(None),
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
                let n: shoal_core::model::Node = dec(&k, &v)?;
                state.nodes.insert(n.id.clone(), n);
            } else if k.starts_with(b"svc/") {
                let s: shoal_core::model::Service = dec(&k, &v)?;
                state.services.insert(s.id.clone(), s);
            } else if k.starts_with(b"task/") {
                let t: shoal_core::model::Task = dec(&k, &v)?;
                state.tasks.insert(t.id.clone(), t);
            } else if k.starts_with(b"net/") {
                let n: shoal_core::model::network::Network = dec(&k, &v)?;
                state.networks.insert(n.id.clone(), n);
            } else if k.starts_with(b"secret/") || k.starts_with(b"config/") {
                let o: shoal_core::model::secret::Object = dec(&k, &v)?;
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

    /// Remembers the first error sled answered a write with (`failed`),
    /// and passes it on.
    fn refused(&self, e: sled::Error) -> StoreError {
        self.failed.lock().get_or_insert_with(|| {
            tracing::error!(
                error = %e,
                "applied entries cannot be persisted: this manager takes no writes until its store is opened again"
            );
            e.to_string()
        });
        e.into()
    }

    /// Why applied entries cannot be persisted any more, once a write failed.
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// Why this manager applies no more entries (one of a newer format).
    pub fn stuck(&self) -> Option<String> {
        self.stuck.lock().clone()
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
    ///
    /// An entry of a newer format than this build reads is never skipped:
    /// nothing from it on is applied (`stuck`), until a newer build runs.
    pub fn apply_entries(&self, entries: &[(u64, u64, &[u8])]) -> Result<Vec<Outcome>, StoreError> {
        if self.stuck.lock().is_some() {
            return Ok(Vec::new());
        }
        let _persisting = self.persisting.lock();
        let mut guard = self.inner.write();
        let (state, applied) = &mut *guard;
        let mut digests = self.digests.lock();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut batch = sled::Batch::default();
        let mut new_applied = *applied;
        'entries: for &(index, term, data) in entries {
            if index <= new_applied.index {
                continue;
            }
            let mut outcome = Outcome {
                index,
                results: Vec::new(),
                changes: Vec::new(),
                events: Vec::new(),
            };
            // Empty entries (a new leader's no-op) and configuration changes only
            // move the applied index.
            if !data.is_empty() {
                match codec::decode::<Proposal>(data) {
                    // Each write alone, in order: one refused leaves the
                    // state as it was for the next (`apply` checks first).
                    Ok(p) => {
                        for (id, command) in p.writes() {
                            let result = match state.apply(command, index) {
                                Ok(changes) => {
                                    outcome.events.extend(digests.events(state, &changes));
                                    outcome.changes.extend(changes);
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            };
                            outcome.results.push((id, result));
                        }
                    }
                    Err(e @ CodecError::TooNew { .. }) => {
                        tracing::error!(
                            index,
                            error = %e,
                            "a Raft entry of a newer format: this manager applies nothing from it on until shoal is upgraded"
                        );
                        *self.stuck.lock() = Some(format!("entry {index}: {e}"));
                        break 'entries;
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
        drop(digests);
        drop(guard);
        if let Err(e) = self.tree.apply_batch(batch) {
            // Memory already holds the entries' changes: go back to what is
            // on disk, so that applying them again does not apply them twice.
            let mut guard = self.inner.write();
            if let Ok(on_disk) = Self::load(&self.tree) {
                *self.digests.lock() = Digests::of(&on_disk.0);
                *guard = on_disk;
            }
            return Err(self.refused(e));
        }
        let mut kept = self.outcomes.lock();
        for outcome in &outcomes {
            kept.results += outcome.results.len();
            kept.by_index
                .insert(outcome.index, outcome.results.as_slice().into());
            kept.order.push_back(outcome.index);
            while kept.order.len() > OUTCOMES_KEPT || kept.results > RESULTS_KEPT {
                let Some(old) = kept.order.pop_front() else {
                    break;
                };
                if let Some(gone) = kept.by_index.remove(&old) {
                    kept.results -= gone.len();
                }
            }
        }
        Ok(outcomes)
    }

    /// What became of the writes of the entry at `index` (their ids and
    /// results, in the entry's order), if it was applied recently.
    pub fn outcome(&self, index: u64) -> Option<Arc<[WriteResult]>> {
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
    ///
    /// Written in batches of `RESTORE_BATCH` records, not as one: sled
    /// keeps in memory what one batch writes, and a whole state of 100k
    /// tasks held a manager at 700 MiB. Not being one batch, it is made
    /// safe another way: the applied index is removed first and written
    /// back last, so a crash in between leaves a state whose applied index
    /// is below the Raft log's snapshot, and `ManagerCtx::new` restores it
    /// again from the log's copy before anything reads it.
    pub fn restore(&self, data: &[u8]) -> Result<(), StoreError> {
        let snap: SnapshotData =
            codec::decode(data).map_err(|e| StoreError::Corrupt("snapshot".into(), e))?;
        let _persisting = self.persisting.lock();
        let mut guard = self.inner.write();
        let refused = |e| self.refused(e);
        self.tree.remove(APPLIED).map_err(refused)?;
        let mut old = Vec::new();
        for kv in self.tree.iter() {
            old.push(kv?.0);
        }
        for keys in old.chunks(RESTORE_BATCH) {
            let mut batch = sled::Batch::default();
            for k in keys {
                batch.remove(k.clone());
            }
            self.tree.apply_batch(batch).map_err(refused)?;
        }
        for changes in all_changes(&snap.state).chunks(RESTORE_BATCH) {
            let mut batch = sled::Batch::default();
            for change in changes {
                Self::persist_change(&snap.state, change, &mut batch);
            }
            self.tree.apply_batch(batch).map_err(refused)?;
        }
        self.tree
            .insert(APPLIED, encode(&snap.applied))
            .map_err(refused)?;
        *self.digests.lock() = Digests::of(&snap.state);
        *guard = (snap.state, snap.applied);
        Ok(())
    }
}

/// Records per sled batch when a snapshot is restored (`restore`): at 1,000
/// a restore of 10k tasks held 48 MiB instead of 84 MiB as one batch.
const RESTORE_BATCH: usize = 1000;

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

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::command::Command;
    use shoal_core::model::{Node, NodeRole};

    fn node(id: &str) -> Node {
        crate::harness::node_record(id, id, NodeRole::Worker)
    }

    fn packed(writes: Vec<(u128, Command)>) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = writes
            .into_iter()
            .map(|(id, command)| codec::encode(&Proposal { id, command }).expect("encode"))
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        crate::packing::pack_proposals(&refs).expect("pack")
    }

    #[test]
    fn a_packed_entry_applies_each_write_alone_with_its_own_result() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let sm = StateMachine::open(&db).expect("open");
        let data = packed(vec![
            (1, Command::UpsertNode(node("n1"))),
            // Refused: the writes before and after it still apply.
            (2, Command::RemoveNode { id: "ghost".into() }),
            (3, Command::UpsertNode(node("n2"))),
            // Sees the write before it in the same entry.
            (4, Command::RemoveNode { id: "n2".into() }),
            // All or nothing, as always: a packed write inside is refused,
            // and so is the whole batch.
            (
                5,
                Command::Batch(vec![
                    Command::UpsertNode(node("n3")),
                    Command::Packed(Vec::new()),
                ]),
            ),
            (6, Command::UpsertNode(node("n4"))),
        ]);
        let outcome = sm
            .apply_entry(7, 1, &data)
            .expect("apply")
            .expect("applied");
        let ids: Vec<u128> = outcome.results.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6], "one result per write, in order");
        let ok: Vec<bool> = outcome.results.iter().map(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok, [true, false, true, true, false, true]);
        assert_eq!(
            outcome.results[1].1,
            Err(ApplyError::NodeNotFound("ghost".into()))
        );
        assert!(matches!(outcome.results[4].1, Err(ApplyError::Invalid(_))));
        let nodes = |sm: &StateMachine| -> Vec<String> {
            let mut v: Vec<String> = sm.read().0.nodes.keys().cloned().collect();
            v.sort();
            v
        };
        assert_eq!(nodes(&sm), ["n1", "n4"]);
        let kept = sm.outcome(7).expect("kept");
        assert_eq!(&kept[..], &outcome.results[..]);

        // What is on disk is what is in memory: one batch for the entry.
        drop(sm);
        let again = StateMachine::open(&db).expect("reopen");
        assert_eq!(nodes(&again), ["n1", "n4"]);
        assert_eq!(again.applied(), AppliedIndex { index: 7, term: 1 });
        // Replayed after a crash: skipped.
        assert!(again.apply_entry(7, 1, &data).expect("replay").is_none());
    }

    #[test]
    fn an_entry_of_a_newer_format_is_never_skipped() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let sm = StateMachine::open(&db).expect("open");
        let entry = |id: &str| {
            codec::encode(&Proposal {
                id: 1,
                command: Command::UpsertNode(node(id)),
            })
            .expect("encode")
        };
        let (one, three) = (entry("n1"), entry("n3"));
        let (_, start) = codec::format_of(&three).expect("format");
        let future = [
            &[codec::MAGIC, codec::FORMAT as u8 + 1][..],
            &three[start..],
        ]
        .concat();
        let applied = sm
            .apply_entries(&[(1, 1, &one), (2, 1, &future), (3, 1, &three)])
            .expect("apply");
        assert_eq!(applied.len(), 1, "only the entry before it");
        assert_eq!(sm.applied().index, 1);
        let why = sm.stuck().expect("stuck");
        let expected = format!("entry 2: record written by format {}", codec::FORMAT + 1);
        assert!(why.contains(&expected), "{why}");
        // Nothing after it either, in a later call.
        assert!(sm.apply_entry(4, 1, &entry("n4")).expect("apply").is_none());
        let nodes: Vec<String> = sm.read().0.nodes.keys().cloned().collect();
        assert_eq!(nodes, ["n1"]);
    }

    #[test]
    fn a_plain_proposal_has_one_result_and_a_no_op_none() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let sm = StateMachine::open(&db).expect("open");
        let one = codec::encode(&Proposal {
            id: 9,
            command: Command::RemoveNode { id: "ghost".into() },
        })
        .expect("encode");
        let o = sm.apply_entry(1, 1, &one).expect("apply").expect("applied");
        assert_eq!(
            o.results,
            [(9, Err(ApplyError::NodeNotFound("ghost".into())))]
        );
        let o = sm.apply_entry(2, 1, &[]).expect("apply").expect("applied");
        assert!(o.results.is_empty());
    }
}
