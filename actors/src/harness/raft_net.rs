//! The harness's network between managers: Raft messages go from one
//! manager's Raft actor to another's in memory, after an optional delay,
//! with seeded random loss, and never to or from a manager that is down or
//! cut off. A snapshot crosses as the QUIC transport sends it: encoded, cut
//! into `chunks::CHUNK`-byte pieces, delivered in a seeded random order and
//! put back together by the receiver. The network also notes who sent
//! leader-only messages in which term, so a test can check that no term
//! had two leaders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rand::seq::SliceRandom;
use rand::Rng;

use super::managers::Managers;
use crate::raft::chunks::{self, Reassembly};
use crate::raft::{RaftMsg, RaftTransport};

/// How the managers' network behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetConfig {
    /// Every message arrives this long after it is sent (on the harness's clock).
    pub delay: Duration,
    /// Of every million messages (snapshot chunks included), this many are lost.
    pub loss_per_million: u32,
}

/// A snapshot that crossed the network whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotCrossing {
    pub from: u64,
    pub to: u64,
    pub bytes: usize,
    pub chunks: usize,
}

#[derive(Default)]
struct Record {
    /// Senders of appends, heartbeats and snapshots, by term.
    leaders: BTreeMap<u64, BTreeSet<u64>>,
    delivered: u64,
    lost: u64,
    snapshots: Vec<SnapshotCrossing>,
}

pub struct RaftNet {
    managers: Arc<Managers>,
    config: NetConfig,
    /// Each receiver's snapshots in reassembly.
    reassembly: Mutex<HashMap<u64, Arc<Reassembly>>>,
    next_snapshot: AtomicU64,
    /// The next snapshot sent is lost whole (a test's request).
    lose_snapshot: AtomicBool,
    record: Mutex<Record>,
}

/// What the network carries to a receiver.
enum Parcel {
    Whole(Message),
    Chunk {
        from: u64,
        snapshot: u64,
        index: u32,
        total: u32,
        data: Vec<u8>,
    },
}

impl RaftNet {
    pub fn new(managers: Arc<Managers>, config: NetConfig) -> Arc<Self> {
        Arc::new(RaftNet {
            managers,
            config,
            reassembly: Mutex::new(HashMap::new()),
            next_snapshot: AtomicU64::new(1),
            lose_snapshot: AtomicBool::new(false),
            record: Mutex::new(Record::default()),
        })
    }

    /// The way manager `raft_id`'s Raft actor sends.
    pub fn endpoint(self: &Arc<Self>, raft_id: u64) -> Arc<dyn RaftTransport> {
        Arc::new(Endpoint {
            from: raft_id,
            net: self.clone(),
        })
    }

    /// Every term in which some manager acted as leader, with who did.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        self.record.lock().leaders.clone()
    }

    /// Messages delivered and lost so far (a chunk counts as one).
    pub fn counts(&self) -> (u64, u64) {
        let r = self.record.lock();
        (r.delivered, r.lost)
    }

    /// Loses every chunk of the next snapshot sent, as a connection that
    /// drops in the middle of one would.
    pub fn lose_next_snapshot(&self) {
        self.lose_snapshot.store(true, Ordering::SeqCst);
    }

    pub fn snapshots(&self) -> Vec<SnapshotCrossing> {
        self.record.lock().snapshots.clone()
    }

    fn lose(&self) -> bool {
        let p = self.config.loss_per_million;
        let lost = p > 0 && crate::world::with_rng(|r| r.random_range(0..1_000_000u32) < p);
        if lost {
            self.record.lock().lost += 1;
        }
        lost
    }

    fn send(self: &Arc<Self>, from: u64, msgs: Vec<Message>) {
        if !self.managers.reachable_raft_id(from) {
            return;
        }
        for m in msgs {
            if matches!(
                m.get_msg_type(),
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
            ) {
                self.record
                    .lock()
                    .leaders
                    .entry(m.term)
                    .or_default()
                    .insert(from);
            }
            let to = m.to;
            if m.get_msg_type() != MessageType::MsgSnapshot {
                self.post(to, Parcel::Whole(m));
                continue;
            }
            let Ok(bytes) = m.write_to_bytes() else {
                continue;
            };
            let Some(pieces) = chunks::split(&bytes) else {
                tracing::error!(
                    to,
                    bytes = bytes.len(),
                    "a snapshot too large even for chunks"
                );
                continue;
            };
            let snapshot = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
            if self.lose_snapshot.swap(false, Ordering::SeqCst) {
                self.record.lock().lost += pieces.len() as u64;
                continue;
            }
            let mut parcels: Vec<Parcel> = pieces
                .into_iter()
                .map(|p| Parcel::Chunk {
                    from,
                    snapshot,
                    index: p.index,
                    total: p.total,
                    data: p.data.to_vec(),
                })
                .collect();
            crate::world::with_rng(|r| parcels.shuffle(r));
            for p in parcels {
                self.post(to, p);
            }
        }
    }

    /// Delivers now, or after the delay from a task of its own; lost on
    /// the way, or at arrival if the receiver is down or cut off then.
    fn post(self: &Arc<Self>, to: u64, parcel: Parcel) {
        if self.lose() {
            return;
        }
        if self.config.delay.is_zero() {
            self.deliver(to, parcel);
            return;
        }
        let (net, delay) = (self.clone(), self.config.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            net.deliver(to, parcel);
        });
    }

    fn deliver(&self, to: u64, parcel: Parcel) {
        let Some(raft) = self.managers.raft(to) else {
            return;
        };
        self.record.lock().delivered += 1;
        let m = match parcel {
            Parcel::Whole(m) => m,
            Parcel::Chunk {
                from,
                snapshot,
                index,
                total,
                data,
            } => {
                let reassembly = self.reassembly.lock().entry(to).or_default().clone();
                let whole = match reassembly.add(from, snapshot, index, total, data) {
                    Ok(Some(whole)) => whole,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(from, to, error = %e, "snapshot chunk dropped");
                        return;
                    }
                };
                let Ok(m) = Message::parse_from_bytes(&whole) else {
                    return;
                };
                self.record.lock().snapshots.push(SnapshotCrossing {
                    from,
                    to,
                    bytes: whole.len(),
                    chunks: whole.len().div_ceil(chunks::CHUNK),
                });
                m
            }
        };
        let _ = raft.send_message(RaftMsg::Step(Box::new(m)));
    }
}

struct Endpoint {
    from: u64,
    net: Arc<RaftNet>,
}

impl RaftTransport for Endpoint {
    fn send(&self, msgs: Vec<Message>) {
        self.net.send(self.from, msgs);
    }
}
