//! Raft's log, hard state, conf state and snapshot, persisted in sled.
//!
//! An in-memory mirror answers raft-rs's `Storage` reads (the etcd pattern of
//! a memory log in front of a WAL); every write goes to sled first and is made
//! durable with `flush` before anything that depends on it leaves the node.

use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("raft storage holds a corrupt record {0}: {1}")]
    Corrupt(String, protobuf::ProtobufError),
}

const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
const SNAPSHOT: &[u8] = b"snapshot";

#[derive(Default)]
struct Mirror {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMetadata,
    /// The stored snapshot's state, in bytes (what sending it costs).
    snapshot_bytes: usize,
    /// `entries[i].index == snapshot.index + 1 + i`.
    entries: Vec<Entry>,
}

impl Mirror {
    fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }
    fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }
}

pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    mem: RwLock<Mirror>,
    /// A peer needs a snapshot the stored one cannot serve (it predates the
    /// peer's membership): the Raft actor takes a fresh one.
    snapshot_wanted: std::sync::atomic::AtomicBool,
    /// False only for a temporary database (`in_memory`).
    durable: std::sync::atomic::AtomicBool,
    /// Flushes done so far (benches divide writes by it).
    flushes: std::sync::atomic::AtomicU64,
    flushed_bytes: std::sync::atomic::AtomicU64,
    /// Entries appended since the log was opened, and their encoded bytes
    /// (the simulation reports them; compaction does not take them back).
    appended: std::sync::atomic::AtomicU64,
    appended_bytes: std::sync::atomic::AtomicU64,
    /// Milliseconds every flush waits before it starts: a slow disk, set
    /// only by the daemon's chaos seam (`--enable-chaos`), 0 otherwise.
    flush_delay_ms: std::sync::atomic::AtomicU64,
    /// The first write or flush that failed (a full disk, an I/O error):
    /// sled takes no write after one until the database is opened again,
    /// so the manager refuses writes from then on, in these words. A write
    /// counts as much as a flush: sled's own threads write its buffers
    /// too, and when one of them hits the full disk first, the next insert
    /// is what fails, with no flush failing before it.
    failed: parking_lot::Mutex<Option<String>>,
}

fn parse<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, LogError> {
    M::parse_from_bytes(bytes).map_err(|e| LogError::Corrupt(what.to_string(), e))
}

fn pb<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory message cannot fail.
    m.write_to_bytes().unwrap_or_default()
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<Arc<Self>, LogError> {
        let store = LogStore {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            mem: RwLock::new(Mirror::default()),
            snapshot_wanted: std::sync::atomic::AtomicBool::new(false),
            durable: std::sync::atomic::AtomicBool::new(true),
            flushes: std::sync::atomic::AtomicU64::new(0),
            flushed_bytes: std::sync::atomic::AtomicU64::new(0),
            appended: std::sync::atomic::AtomicU64::new(0),
            appended_bytes: std::sync::atomic::AtomicU64::new(0),
            flush_delay_ms: std::sync::atomic::AtomicU64::new(0),
            failed: parking_lot::Mutex::new(None),
        };
        store.reload()?;
        Ok(Arc::new(store))
    }

    /// Rebuilds the mirror from disk (a restarted Raft actor starts from here).
    pub fn reload(&self) -> Result<(), LogError> {
        let mut m = Mirror::default();
        if let Some(b) = self.meta.get(HARD_STATE)? {
            m.hard_state = parse("hard state", &b)?;
        }
        if let Some(b) = self.meta.get(CONF_STATE)? {
            m.conf_state = parse("conf state", &b)?;
        }
        if let Some(b) = self.meta.get(SNAPSHOT)? {
            let snap: Snapshot = parse("snapshot", &b)?;
            m.snapshot = snap.get_metadata().clone();
            m.snapshot_bytes = snap.data.len();
        }
        let start = m.snapshot.index + 1;
        for kv in self.log.range(start.to_be_bytes()..) {
            let (_, v) = kv?;
            let e: Entry = parse("log entry", &v)?;
            if e.index != m.last_index() + 1 {
                break; // a torn tail past a gap is not part of the log
            }
            m.entries.push(e);
        }
        *self.mem.write() = m;
        Ok(())
    }

    /// True once the node belongs to a Raft group (bootstrapped or given a snapshot).
    pub fn is_initialized(&self) -> bool {
        let m = self.mem.read();
        !m.conf_state.voters.is_empty() || m.last_index() > 0 || m.hard_state.term > 0
    }

    /// First start of a new cluster: this node alone is the voter set.
    pub fn bootstrap(&self, voters: Vec<u64>) -> Result<(), LogError> {
        let cs = ConfState {
            voters,
            ..Default::default()
        };
        self.meta
            .insert(CONF_STATE, pb(&cs))
            .map_err(|e| self.refused(e))?;
        self.mem.write().conf_state = cs;
        Ok(())
    }

    pub fn append(&self, entries: &[Entry]) -> Result<(), LogError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut m = self.mem.write();
        let mut bytes = 0u64;
        if first.index > m.last_index() {
            // The common case, entries past the end: plain inserts in index
            // order. A crash keeps a prefix of them, which is still a log
            // (sled recovers its writes in order). Not a batch: sled makes
            // a batch wait for every flush in progress, which would stall
            // the Raft actor behind the very group commit it runs.
            for e in entries {
                let encoded = pb(e);
                bytes += encoded.len() as u64;
                self.log
                    .insert(e.index.to_be_bytes(), encoded)
                    .map_err(|err| self.refused(err))?;
            }
        } else {
            // A new leader overwrites an uncommitted suffix: atomically, so
            // that no stale entry can follow a new one after a crash.
            let mut batch = sled::Batch::default();
            for idx in first.index..=m.last_index() {
                batch.remove(&idx.to_be_bytes());
            }
            for e in entries {
                let encoded = pb(e);
                bytes += encoded.len() as u64;
                batch.insert(&e.index.to_be_bytes(), encoded);
            }
            self.log.apply_batch(batch).map_err(|e| self.refused(e))?;
        }
        self.appended
            .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.appended_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        let keep = first.index.saturating_sub(m.first_index()) as usize;
        m.entries.truncate(keep);
        m.entries.extend_from_slice(entries);
        Ok(())
    }

    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), LogError> {
        self.meta
            .insert(HARD_STATE, pb(hs))
            .map_err(|e| self.refused(e))?;
        self.mem.write().hard_state = hs.clone();
        Ok(())
    }

    pub fn set_commit(&self, commit: u64) -> Result<(), LogError> {
        let mut hs = self.mem.read().hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), LogError> {
        self.meta
            .insert(CONF_STATE, pb(cs))
            .map_err(|e| self.refused(e))?;
        self.mem.write().conf_state = cs.clone();
        Ok(())
    }

    /// Installs a snapshot received from the leader: the log restarts after it.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), LogError> {
        let meta = snap.get_metadata();
        self.meta
            .insert(SNAPSHOT, pb(snap))
            .map_err(|e| self.refused(e))?;
        self.meta
            .insert(CONF_STATE, pb(meta.get_conf_state()))
            .map_err(|e| self.refused(e))?;
        self.log.clear().map_err(|e| self.refused(e))?;
        let mut m = self.mem.write();
        m.snapshot = meta.clone();
        m.snapshot_bytes = snap.data.len();
        m.conf_state = meta.get_conf_state().clone();
        m.hard_state.term = m.hard_state.term.max(meta.term);
        m.hard_state.commit = meta.index;
        m.entries.clear();
        self.meta
            .insert(HARD_STATE, pb(&m.hard_state))
            .map_err(|e| self.refused(e))?;
        Ok(())
    }

    /// Records a snapshot of the applied state at `index` and drops the log up to it.
    pub fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), LogError> {
        let mut m = self.mem.write();
        if index <= m.snapshot.index || index > m.last_index() {
            return Ok(());
        }
        let term = m.entries[(index - m.first_index()) as usize].term;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(m.conf_state.clone());
        self.meta
            .insert(SNAPSHOT, pb(&snap))
            .map_err(|e| self.refused(e))?;
        let mut batch = sled::Batch::default();
        for idx in m.first_index()..=index {
            batch.remove(&idx.to_be_bytes());
        }
        self.log.apply_batch(batch).map_err(|e| self.refused(e))?;
        let drop = (index + 1 - m.first_index()) as usize;
        m.entries.drain(..drop);
        m.snapshot_bytes = snap.data.len();
        m.snapshot = snap.take_metadata();
        Ok(())
    }

    /// The state the stored snapshot holds, if there is one (what a
    /// manager whose restore did not finish restores again).
    pub fn snapshot_data(&self) -> Result<Option<Vec<u8>>, LogError> {
        let Some(b) = self.meta.get(SNAPSHOT)? else {
            return Ok(None);
        };
        let snap: Snapshot = parse("snapshot", &b)?;
        Ok(Some(snap.data.to_vec()))
    }

    /// Asks the Raft actor for a snapshot of everything applied at its next
    /// tick, as a peer's need for one does (the harness compacts on demand).
    pub fn want_snapshot(&self) {
        self.snapshot_wanted
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a peer asked for a snapshot that must be taken first (and forget the ask).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// For a temporary sled database (the in-process harness): nothing is
    /// made durable, since there is no disk to survive on, and no write waits
    /// on sled's flusher thread, which runs off the harness's clock.
    pub fn in_memory(&self) {
        self.durable
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// False for a temporary database, whose flush does nothing.
    pub fn is_durable(&self) -> bool {
        self.durable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Makes every flush from now on wait `delay` first, as a slow disk's
    /// fsync would (the chaos harness's `slow-disk` fault); zero undoes it.
    pub fn set_flush_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.flush_delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub async fn flush(&self) -> Result<(), LogError> {
        if self.durable.load(std::sync::atomic::Ordering::Acquire) {
            let delay = self
                .flush_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            self.flushes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let bytes = self.db.flush_async().await.map_err(|e| self.refused(e))?;
            self.flushed_bytes
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Remembers the first error sled answered a write or a flush with
    /// (`failed`), and passes it on.
    fn refused(&self, e: sled::Error) -> LogError {
        let mut failed = self.failed.lock();
        if failed.is_none() {
            tracing::error!(
                error = %e,
                "the Raft log cannot be persisted: this manager takes no writes until its store is opened again"
            );
            *failed = Some(e.to_string());
        }
        e.into()
    }

    /// Why the log cannot be persisted any more, once a write or a flush
    /// failed.
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// How many flushes this log has done since it was opened.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes sled wrote in those flushes (the log, the state machine and
    /// everything else in the database).
    pub fn flushed_bytes(&self) -> u64 {
        self.flushed_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Entries appended since the log was opened, and their encoded size.
    pub fn appended(&self) -> (u64, u64) {
        (
            self.appended.load(std::sync::atomic::Ordering::Relaxed),
            self.appended_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn hard_state(&self) -> HardState {
        self.mem.read().hard_state.clone()
    }
    pub fn conf_state(&self) -> ConfState {
        self.mem.read().conf_state.clone()
    }
    /// The size of the stored snapshot's state (0 when there is none).
    pub fn snapshot_bytes(&self) -> usize {
        self.mem.read().snapshot_bytes
    }
    pub fn snapshot_index(&self) -> u64 {
        self.mem.read().snapshot.index
    }
    pub fn first_index(&self) -> u64 {
        self.mem.read().first_index()
    }
    pub fn last_index(&self) -> u64 {
        self.mem.read().last_index()
    }
    pub fn entry_count(&self) -> usize {
        self.mem.read().entries.len()
    }

    /// Entries in `[low, high)` that are still in the log.
    pub fn entries_between(&self, low: u64, high: u64) -> Vec<Entry> {
        let m = self.mem.read();
        let low = low.max(m.first_index());
        let high = high.min(m.last_index() + 1);
        if low >= high {
            return Vec::new();
        }
        let off = m.first_index();
        m.entries[(low - off) as usize..(high - off) as usize].to_vec()
    }
}

/// The raft-rs `Storage` view of a shared `LogStore`.
#[derive(Clone)]
pub struct SharedLog(pub Arc<LogStore>);

impl raft::Storage for SharedLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let m = self.0.mem.read();
        Ok(RaftState::new(m.hard_state.clone(), m.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let m = self.0.mem.read();
        if low < m.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > m.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let off = m.first_index();
        let mut ents = m.entries[(low - off) as usize..(high - off) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let m = self.0.mem.read();
        if idx == m.snapshot.index {
            return Ok(m.snapshot.term);
        }
        if idx < m.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > m.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(m.entries[(idx - m.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.last_index())
    }

    /// The stored snapshot, if it is recent enough and names `to` as a
    /// member (raft-rs ignores a snapshot whose configuration lacks its
    /// recipient); otherwise the Raft actor is asked for a fresh one and
    /// raft-rs tries again later.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let stored = self
            .0
            .meta
            .get(SNAPSHOT)
            .ok()
            .flatten()
            .and_then(|b| Snapshot::parse_from_bytes(&b).ok());
        match stored {
            Some(s)
                if s.get_metadata().index >= request_index
                    && (s.get_metadata().get_conf_state().voters.contains(&to)
                        || s.get_metadata().get_conf_state().learners.contains(&to)) =>
            {
                Ok(s)
            }
            _ => {
                self.0
                    .snapshot_wanted
                    .store(true, std::sync::atomic::Ordering::Release);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}
