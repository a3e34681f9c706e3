//! The Store actor: applies committed entries to the state machine, answers
//! proposers waiting for their entry, and publishes change events.
//!
//! It reads committed entries from the Raft log itself, so a restarted Store
//! (or one that missed a notification) catches up from its applied index.

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;

use super::machine::{Outcome, StateMachine, WriteResult};
use crate::raft::storage::LogStore;
use shoal_core::state::{ApplyError, Change};

/// Published after every applied entry that changed something.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub index: u64,
    pub changes: Arc<Vec<Change>>,
    /// The swarm events of those changes (`GET /events`), in commit order.
    pub events: Arc<Vec<super::swarm_events::SwarmEvent>>,
}

/// What a proposer learns about the entry it proposed.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitResult {
    Applied(Result<(), ApplyError>),
    /// Another entry took that index (leadership changed): the proposal was dropped.
    Superseded,
    /// Applied so long ago (or before the daemon restarted) that the outcome
    /// is no longer kept.
    Unknown,
}

/// Committed entries applied (and written to sled) in one batch at most.
const APPLY_CHUNK: usize = 512;

fn borrowed(batch: &[(u64, u64, Vec<u8>)]) -> Vec<(u64, u64, &[u8])> {
    batch
        .iter()
        .map(|(index, term, data)| (*index, *term, data.as_slice()))
        .collect()
}

/// What became of each of these writes, from the results of the entry at
/// their index: `Superseded` for a write that is not among them.
fn answer_from(results: &[WriteResult], proposal_ids: &[u128]) -> Vec<WaitResult> {
    proposal_ids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            // Usually the writes are asked for in the entry's order.
            let found = match results.get(i) {
                Some((id, result)) if id == pid => Some(result),
                _ => results.iter().find(|(id, _)| id == pid).map(|(_, r)| r),
            };
            match found {
                Some(result) => WaitResult::Applied(result.clone()),
                None => WaitResult::Superseded,
            }
        })
        .collect()
}

#[derive(Clone)]
pub struct StoreArgs {
    pub sm: Arc<StateMachine>,
    pub log: Arc<LogStore>,
    pub events: broadcast::Sender<StoreEvent>,
    pub metrics: Arc<crate::metrics::ActorMetrics>,
}

pub enum StoreMsg {
    /// Entries up to this index are committed.
    Committed(u64),
    /// The outcome of each of these writes proposed in the entry at `index`
    /// (the reply is in the order of `proposal_ids`), once it is applied.
    WaitApplied {
        index: u64,
        proposal_ids: Vec<u128>,
        reply: RpcReplyPort<Vec<WaitResult>>,
    },
}

type Waiter = (Vec<u128>, RpcReplyPort<Vec<WaitResult>>);

pub struct StoreState {
    args: StoreArgs,
    waiters: BTreeMap<u64, Vec<Waiter>>,
    /// Started on a log or state that cannot be persisted: applies nothing
    /// until the node stops it and opens its store again.
    parked: bool,
}

impl StoreState {
    async fn catch_up(&mut self, upto: u64) -> Result<(), ActorProcessingErr> {
        let from = self.args.sm.applied().index + 1;
        if upto < from {
            return Ok(());
        }
        let entries = self.args.log.entries_between(from, upto + 1);
        for chunk in entries.chunks(APPLY_CHUNK) {
            let started = tokio::time::Instant::now();
            let batch: Vec<(u64, u64, Vec<u8>)> = chunk
                .iter()
                .map(|entry| {
                    // Configuration changes are the Raft actor's business;
                    // here they only move the applied index.
                    let data = match entry.get_entry_type() {
                        raft::prelude::EntryType::EntryNormal => entry.data.to_vec(),
                        _ => Vec::new(),
                    };
                    (entry.index, entry.term, data)
                })
                .collect();
            let outcomes = if self.args.log.is_durable() {
                // sled's batch may wait for a flush in progress: on a
                // blocking thread, so that the runtime's workers go on.
                let sm = self.args.sm.clone();
                tokio::task::spawn_blocking(move || sm.apply_entries(&borrowed(&batch)))
                    .await
                    .map_err(|e| format!("the Store's apply task failed: {e}"))??
            } else {
                // A temporary database (the harness, on a paused clock):
                // inline, since a blocking thread runs off that clock.
                self.args.sm.apply_entries(&borrowed(&batch))?
            };
            self.args
                .metrics
                .store_apply_latency
                .observe(crate::metrics::secs(started.elapsed()));
            for outcome in outcomes {
                // From the outcome itself: a chunk of packed entries may hold
                // more results than the state machine keeps.
                if let Some(waiters) = self.waiters.remove(&outcome.index) {
                    for (pids, reply) in waiters {
                        let _ = reply.send(answer_from(&outcome.results, &pids));
                    }
                }
                self.publish(outcome);
            }
        }
        self.wake_waiters();
        Ok(())
    }

    fn publish(&mut self, o: Outcome) {
        if !o.changes.is_empty() {
            // No subscriber is fine: leader actors may not run yet.
            let _ = self.args.events.send(StoreEvent {
                index: o.index,
                changes: Arc::new(o.changes),
                events: Arc::new(o.events),
            });
        }
    }

    fn answer(&self, index: u64, proposal_ids: &[u128]) -> Vec<WaitResult> {
        match self.args.sm.outcome(index) {
            Some(results) => answer_from(&results, proposal_ids),
            None => vec![WaitResult::Unknown; proposal_ids.len()],
        }
    }

    fn wake_waiters(&mut self) {
        let applied = self.args.sm.applied().index;
        let later = self.waiters.split_off(&(applied + 1));
        let ready = std::mem::replace(&mut self.waiters, later);
        for (index, waiters) in ready {
            for (pids, reply) in waiters {
                let _ = reply.send(self.answer(index, &pids));
            }
        }
    }
}

#[derive(Clone)]
pub struct StoreActor;

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = StoreState;
    type Arguments = StoreArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<StoreMsg>,
        args: StoreArgs,
    ) -> Result<StoreState, ActorProcessingErr> {
        // A state or log that cannot be persisted (sled takes no write
        // after an I/O error): catching up would fail again at once, and
        // the supervisor would restart this actor in a tight loop until it
        // escalates through the manager subtree to the root, leaving the
        // node no actor tree to start its manager in once space returns.
        // Like the Raft actor, it starts parked and waits to be stopped by
        // the node, which opens its store again (`runtime/disk.rs`).
        let parked = args.sm.failed().or_else(|| args.log.failed());
        if let Some(why) = &parked {
            tracing::warn!(
                error = %why,
                "the Raft log or state cannot be persisted: the Store actor idles until it is stopped"
            );
        }
        let mut st = StoreState {
            args,
            waiters: BTreeMap::new(),
            parked: parked.is_some(),
        };
        if !st.parked {
            let commit = st.args.log.hard_state().commit;
            st.catch_up(commit).await?;
        }
        Ok(st)
    }

    async fn handle(
        &self,
        _myself: ActorRef<StoreMsg>,
        msg: StoreMsg,
        st: &mut StoreState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StoreMsg::Committed(_) if st.parked => {}
            StoreMsg::Committed(upto) => st.catch_up(upto).await?,
            StoreMsg::WaitApplied {
                index,
                proposal_ids,
                reply,
            } => {
                if index <= st.args.sm.applied().index {
                    let _ = reply.send(st.answer(index, &proposal_ids));
                } else {
                    st.waiters
                        .entry(index)
                        .or_default()
                        .push((proposal_ids, reply));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_is_answered_from_its_own_result() {
        let refused = ApplyError::NodeNotFound("ghost".into());
        let results = vec![(1, Ok(())), (2, Err(refused.clone())), (3, Ok(()))];
        assert_eq!(
            answer_from(&results, &[1, 2, 3]),
            [
                WaitResult::Applied(Ok(())),
                WaitResult::Applied(Err(refused.clone())),
                WaitResult::Applied(Ok(()))
            ]
        );
        // In another order, and one the entry does not hold: its index went
        // to another entry.
        assert_eq!(
            answer_from(&results, &[2, 9]),
            [WaitResult::Applied(Err(refused)), WaitResult::Superseded]
        );
        assert_eq!(answer_from(&[], &[5]), [WaitResult::Superseded]);
    }
}
