//! This manager's journal of swarm events: what `GET /events` serves.
//!
//! The store publishes each applied entry's events; a follower task stamps
//! them with this node's clock as they arrive (as dockerd does) and keeps
//! the last [`KEPT`] for `since`, while live readers get them as they come.
//! Each event has a sequence number, so a reader that takes the kept ones
//! and then the live ones sees each once, in commit order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_actors::context::ManagerCtx;
use shoal_actors::store::swarm_events::SwarmEvent;
use tokio::sync::broadcast;

/// Events kept for readers that ask for the past (dockerd keeps 256).
pub const KEPT: usize = 1024;

/// A swarm event as this node recorded it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: u64,
    /// Nanoseconds since the Unix epoch, when this node applied it.
    pub time_nano: i64,
    pub event: Arc<SwarmEvent>,
}

#[derive(Default)]
struct Kept {
    next_seq: u64,
    events: VecDeque<Recorded>,
}

pub struct Journal {
    kept: Mutex<Kept>,
    live: broadcast::Sender<Recorded>,
    /// Bumped by each `follow`: a follower of an older manager context
    /// (demoted, then promoted again) stops rather than record twice.
    following: AtomicU64,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            kept: Mutex::default(),
            live: broadcast::channel(KEPT).0,
            following: AtomicU64::new(0),
        }
    }
}

impl Journal {
    /// A loop that records `ctx`'s events until its store stops publishing
    /// (or the journal follows a newer context); the caller runs it.
    pub fn follow(
        self: &Arc<Self>,
        ctx: &ManagerCtx,
    ) -> impl std::future::Future<Output = ()> + Send {
        let mut rx = ctx.events.subscribe();
        let journal = self.clone();
        let mine = self.following.fetch_add(1, Ordering::AcqRel) + 1;
        async move {
            loop {
                let applied = rx.recv().await;
                if journal.following.load(Ordering::Acquire) != mine {
                    return;
                }
                match applied {
                    Ok(applied) => {
                        for event in applied.events.iter() {
                            journal.record(event.clone());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the event journal fell behind the store");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    fn record(&self, event: SwarmEvent) {
        let now = shoal_actors::world::now();
        let time_nano = now
            .timestamp_nanos_opt()
            .unwrap_or(now.timestamp().saturating_mul(1_000_000_000));
        let mut kept = self.kept.lock();
        let recorded = Recorded {
            seq: kept.next_seq,
            time_nano,
            event: Arc::new(event),
        };
        kept.next_seq += 1;
        kept.events.push_back(recorded.clone());
        while kept.events.len() > KEPT {
            kept.events.pop_front();
        }
        // Sent under the lock, so a reader's subscribe-then-copy sees no gap.
        let _ = self.live.send(recorded);
    }

    /// The kept events and a receiver for the ones after them.
    pub fn read(&self) -> (Vec<Recorded>, broadcast::Receiver<Recorded>) {
        let kept = self.kept.lock();
        (kept.events.iter().cloned().collect(), self.live.subscribe())
    }
}
