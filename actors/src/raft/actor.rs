//! The Raft actor: a raft-rs `RawNode` driven by tick, step and propose
//! messages, with the Ready loop persisting to sled before anything that
//! depends on it is sent or acknowledged.
//!
//! Group commit: a `Ready`'s entries and hard state are written to sled at
//! once, but its flush (write + fsync) runs off the actor, in a task. While
//! it runs the actor goes on stepping messages, taking proposals and
//! writing further `Ready`s; when it ends, one flush covers everything
//! written meanwhile. raft-rs's asynchronous-persistence rules keep this
//! safe: the messages a `Ready` holds back until it is persisted (append
//! and vote responses) leave only after its flush, the leader counts its
//! own log towards a quorum only once `on_persist_ready` says it is
//! flushed, and committed entries handed to the Store are never past the
//! local flushed index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};

use super::storage::{LogStore, SharedLog};
use crate::store::{StateMachine, StoreMsg};
use crate::supervision::Directory;

/// Outbound Raft messages; the QUIC transport implements this for peers.
pub trait RaftTransport: Send + Sync + 'static {
    fn send(&self, msgs: Vec<Message>);
}

/// For a cluster of one manager: there is nobody to talk to.
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn send(&self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::debug!(
                count = msgs.len(),
                "raft messages with no peer to carry them"
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RaftTimings {
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_interval: u64,
    /// raft-rs draws each election timeout from `[election_ticks,
    /// 2 × election_ticks)` with its own random numbers. When false, the
    /// timeout is exactly `election_ticks`: the in-process harness gives
    /// each manager its own, drawn from its seed, so elections replay.
    pub randomized_election: bool,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            tick: Duration::from_millis(100),
            // raft-rs draws each election timeout from [6, 12) ticks: 0.6-1.2 s.
            election_ticks: 6,
            heartbeat_ticks: 1,
            snapshot_interval: 10_000,
            randomized_election: true,
        }
    }
}

/// Told to the manager whenever this node gains or loses leadership. Gaining
/// is reported only once an entry of the new term is committed, so leader
/// actors never act on state older than their own term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub term: u64,
}

/// Called with the Raft actor's supervisor (the manager), which starts and
/// stops the leader actors.
pub type LeadershipListener = Arc<dyn Fn(Leadership, ractor::ActorCell) + Send + Sync>;

#[derive(Clone)]
pub struct RaftArgs {
    pub id: u64,
    pub log: Arc<LogStore>,
    pub sm: Arc<StateMachine>,
    pub timings: RaftTimings,
    pub directory: Arc<Directory>,
    pub transport: Arc<dyn RaftTransport>,
    pub on_leadership: LeadershipListener,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeRefused {
    #[error("this manager is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("another membership change is in progress")]
    Busy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RaftStatus {
    pub id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub is_leader: bool,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub voters: Vec<u64>,
}

pub enum RaftMsg {
    Tick,
    Step(Box<Message>),
    Propose {
        data: Vec<u8>,
        reply: RpcReplyPort<Result<u64, ProposeRefused>>,
    },
    /// Add or remove a voter; the reply is the entry's index.
    ProposeConfChange {
        change: ConfChange,
        reply: RpcReplyPort<Result<u64, ProposeRefused>>,
    },
    /// Hand leadership to another voter (before this one leaves the group).
    TransferLeader(u64),
    /// Process the pending Ready; queued once behind a burst of proposals so
    /// that they share one flush.
    Ready,
    /// The flush that covered every `Ready` up to this number is done.
    Flushed(u64),
    /// A flush failed: the actor fails and its next incarnation reloads the log.
    FlushFailed(String),
    Status(RpcReplyPort<RaftStatus>),
}

/// Where a proposer hears its entry's index, or why it was refused.
type ProposeReply = RpcReplyPort<Result<u64, ProposeRefused>>;

pub struct RaftState {
    /// Started on a log or state that cannot be persisted: it handles
    /// nothing until it is stopped (`pre_start`).
    parked: bool,
    args: RaftArgs,
    node: RawNode<SharedLog>,
    ready_queued: bool,
    announced: bool,
    /// Whether leader actors a previous incarnation may have left running were stopped.
    stale_cleared: bool,
    /// A flush task is running.
    flushing: bool,
    /// The last `Ready` written to sled but not yet covered by a flush that
    /// has started, and the messages that must wait for that flush.
    unflushed: Option<u64>,
    held_back: Vec<Message>,
    /// Whether one of those `Ready`s wrote entries, a vote or a term (as
    /// opposed to only waiting behind the flush in flight).
    needs_flush: bool,
    /// Proposals taken since the last `Ready`: they are appended together,
    /// as one raft-rs proposal of many entries, so followers get one append
    /// for all of them instead of one each.
    proposals: Vec<(Vec<u8>, ProposeReply)>,
    /// Ticks since this incarnation started, and the tick at which each
    /// peer was last seen waiting for a snapshot (`watch_snapshots`).
    ticks: u64,
    snapshot_waits: BTreeMap<u64, u64>,
    /// The leader this node knew last (0: none), for the leader-change count.
    seen_leader: u64,
}

/// How long a peer may wait for a snapshot before it is sent again:
/// `SNAPSHOT_STALL`, and `SNAPSHOT_STALL_PER_CHUNK` more for each chunk of
/// it (a large state takes longer to cross and to install). raft-rs sends
/// nothing more to a peer it has sent a snapshot to until the peer answers
/// or the transport reports the snapshot lost; a chunk lost on the way (a
/// dropped connection, a receiver restarted mid-reassembly) is reported by
/// nothing, so the leader reports it here.
const SNAPSHOT_STALL: Duration = Duration::from_secs(20);
const SNAPSHOT_STALL_PER_CHUNK: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RaftActor;

/// raft-rs logs through slog; its records go to `tracing` at debug level
/// (`RUST_LOG=shoal_actors::raft=debug` shows them).
struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if record.level().is_at_least(slog::Level::Warning) {
            tracing::warn!(target: "shoal_actors::raft::rawnode", "{}", record.msg());
        } else {
            tracing::debug!(target: "shoal_actors::raft::rawnode", "{}", record.msg());
        }
        Ok(())
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}

impl Actor for RaftActor {
    type Msg = RaftMsg;
    type State = RaftState;
    type Arguments = RaftArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RaftMsg>,
        args: RaftArgs,
    ) -> Result<RaftState, ActorProcessingErr> {
        // A log or state that cannot be persisted (sled takes no write, and
        // may take no read, after an I/O error): failing here would have the
        // supervisor restart this actor in a tight loop until it escalates.
        // It starts parked instead — no tick, no message handled — and waits
        // to be stopped by the node, which opens its store again.
        let parked = args.log.failed().or_else(|| args.sm.failed());
        match &parked {
            Some(why) => tracing::warn!(
                error = %why,
                "the Raft log or state cannot be persisted: the Raft actor idles until it is stopped"
            ),
            None => args.log.reload()?,
        }
        let parked = parked.is_some();
        let hs = args.log.hard_state();
        let applied = args
            .sm
            .applied()
            .index
            .min(hs.commit)
            .max(args.log.snapshot_index());
        let fixed = (!args.timings.randomized_election).then_some(args.timings.election_ticks);
        let cfg = raft::Config {
            id: args.id,
            election_tick: args.timings.election_ticks,
            // 0 is raft-rs's default: [election_tick, 2 × election_tick).
            min_election_tick: fixed.unwrap_or(0),
            max_election_tick: fixed.map_or(0, |t| t + 1),
            heartbeat_tick: args.timings.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let mut node = RawNode::new(&cfg, SharedLog(args.log.clone()), &logger())?;
        if !parked {
            // Alone in the voter set: no reason to wait for an election timeout.
            if args.log.conf_state().voters == [args.id] {
                node.campaign()?;
            }
            myself.send_interval(args.timings.tick, || RaftMsg::Tick);
            let _ = myself.send_message(RaftMsg::Ready);
        }
        Ok(RaftState {
            parked,
            args,
            node,
            ready_queued: true,
            announced: false,
            stale_cleared: false,
            seen_leader: 0,
            flushing: false,
            unflushed: None,
            held_back: Vec::new(),
            needs_flush: false,
            proposals: Vec::new(),
            ticks: 0,
            snapshot_waits: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RaftMsg>,
        msg: RaftMsg,
        st: &mut RaftState,
    ) -> Result<(), ActorProcessingErr> {
        if st.parked {
            // Dropped, reply ports with them: callers hear at once.
            return Ok(());
        }
        match msg {
            RaftMsg::Tick => {
                st.propose_pending();
                st.node.tick();
                st.watch_snapshots();
                st.nudge_store();
                st.maybe_compact().await?;
                st.on_ready(&myself).await?;
            }
            RaftMsg::Step(m) => {
                if let Err(e) = st.node.step(*m) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
                st.queue_ready(&myself);
            }
            RaftMsg::Propose { data, reply } => {
                if st.node.raft.state != StateRole::Leader {
                    let leader = Some(st.node.raft.leader_id).filter(|l| *l != 0);
                    let _ = reply.send(Err(ProposeRefused::NotLeader { leader }));
                    return Ok(());
                }
                st.proposals.push((data, reply));
                st.queue_ready(&myself);
            }
            RaftMsg::ProposeConfChange { change, reply } => {
                st.propose_pending();
                let leader = Some(st.node.raft.leader_id).filter(|l| *l != 0);
                if st.node.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(ProposeRefused::NotLeader { leader }));
                    return Ok(());
                }
                match st.node.propose_conf_change(Vec::new(), change) {
                    Ok(()) => {
                        let index = st.node.raft.raft_log.last_index();
                        let _ = reply.send(Ok(index));
                        st.queue_ready(&myself);
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "configuration change refused");
                        let _ = reply.send(Err(ProposeRefused::Busy));
                    }
                }
            }
            RaftMsg::TransferLeader(to) => {
                st.propose_pending();
                if st.node.raft.state == StateRole::Leader {
                    st.node.transfer_leader(to);
                    st.queue_ready(&myself);
                }
            }
            RaftMsg::Ready => {
                st.ready_queued = false;
                st.propose_pending();
                st.on_ready(&myself).await?;
            }
            RaftMsg::Flushed(number) => {
                st.flushing = false;
                st.propose_pending();
                st.node.on_persist_ready(number);
                st.on_ready(&myself).await?;
            }
            RaftMsg::FlushFailed(e) => {
                return Err(format!("raft log flush failed: {e}").into());
            }
            RaftMsg::Status(reply) => {
                let _ = reply.send(st.status());
            }
        }
        Ok(())
    }
}

impl RaftState {
    fn queue_ready(&mut self, myself: &ActorRef<RaftMsg>) {
        if !self.ready_queued {
            self.ready_queued = true;
            let _ = myself.send_message(RaftMsg::Ready);
        }
    }

    /// Appends the proposals taken since the last `Ready`, in the order they
    /// came, as consecutive entries (all or none: raft-rs takes or drops a
    /// proposal whole), and tells each proposer its entry's index.
    fn propose_pending(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals);
        let r = &mut self.node.raft;
        if r.state != StateRole::Leader {
            let leader = Some(r.leader_id).filter(|l| *l != 0);
            for (_, reply) in batch {
                let _ = reply.send(Err(ProposeRefused::NotLeader { leader }));
            }
            return;
        }
        let mut m = Message::default();
        m.set_msg_type(raft::prelude::MessageType::MsgPropose);
        m.from = r.id;
        let mut replies = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (data, reply) in batch {
            entries.push(Entry {
                data: data.into(),
                ..Default::default()
            });
            replies.push(reply);
        }
        m.set_entries(entries.into());
        match r.step(m) {
            Ok(()) => {
                let n = replies.len() as u64;
                let first = r.raft_log.last_index() + 1 - n;
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(first + i as u64));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(ProposeRefused::NotLeader { leader: None }));
                }
            }
        }
    }

    /// Reports a snapshot lost when its peer has waited long enough for it
    /// (`SNAPSHOT_STALL`), so that raft-rs probes the peer and sends a new one.
    fn watch_snapshots(&mut self) {
        self.ticks += 1;
        if self.node.raft.state != StateRole::Leader {
            self.snapshot_waits.clear();
            return;
        }
        let chunks = self
            .args
            .log
            .snapshot_bytes()
            .div_ceil(super::chunks::CHUNK) as u32;
        let wait = SNAPSHOT_STALL + SNAPSHOT_STALL_PER_CHUNK * chunks;
        let limit = (wait.as_millis() / self.args.timings.tick.as_millis().max(1)) as u64;
        let now = self.ticks;
        let waiting: Vec<u64> = self
            .node
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == raft::ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshot_waits.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.snapshot_waits.entry(id).or_insert(now);
            if now - since >= limit {
                tracing::info!(peer = id, "a snapshot went unanswered; sending a new one");
                self.snapshot_waits.remove(&id);
                self.node.report_snapshot(id, raft::SnapshotStatus::Failure);
            }
        }
    }

    fn status(&self) -> RaftStatus {
        let r = &self.node.raft;
        RaftStatus {
            id: r.id,
            term: r.term,
            leader_id: r.leader_id,
            is_leader: r.state == StateRole::Leader,
            commit: r.raft_log.committed,
            applied: self.args.sm.applied().index,
            first_index: self.args.log.first_index(),
            last_index: self.args.log.last_index(),
            snapshot_index: self.args.log.snapshot_index(),
            voters: self.args.log.conf_state().voters,
        }
    }

    async fn on_ready(&mut self, myself: &ActorRef<RaftMsg>) -> Result<(), ActorProcessingErr> {
        if !self.node.has_ready() {
            // A flush that just ended (a snapshot's, say) may be all that
            // held applied back: raft-rs campaigns from applied + 1.
            self.advance_applied();
            self.start_flush(myself);
            self.check_leadership(myself, &[]);
            return Ok(());
        }
        let log = self.args.log.clone();
        let mut ready = self.node.ready();
        // A leader's appends go out before its own flush: they depend on nothing.
        let messages = ready.take_messages();
        let metrics = &self.args.directory.metrics;
        let snapshots = messages
            .iter()
            .filter(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot)
            .count();
        metrics.raft_snapshot_sends.inc_by(snapshots as u64);
        self.args.transport.send(messages);
        let has_snapshot = !ready.snapshot().is_empty();
        if has_snapshot {
            let snap = ready.snapshot().clone();
            log.apply_snapshot(&snap)?;
            self.args.sm.restore(&snap.data)?;
            metrics.raft_snapshot_installs.inc();
            tracing::info!(
                index = snap.get_metadata().index,
                bytes = snap.data.len(),
                "installed a snapshot from the leader"
            );
        }
        let mut committed = ready.take_committed_entries();
        log.append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            log.set_hard_state(hs)?;
        }
        // Entries, votes and terms are durable before any append response,
        // vote or commit depends on them. A change of commit index alone need
        // not be (etcd's MustSync): it is recovered from the log and peers.
        // Once one `Ready` waits for a flush, those after it wait too, so
        // that they are persisted (and their messages sent) in order.
        // A temporary log (the in-process harness) has nothing to flush.
        let must_sync = ready.must_sync() && log.is_durable();
        // A snapshot is flushed here, before raft-rs hears of it as stable:
        // raft-rs drops its unstable copy when the `Ready` is advanced, and
        // a campaign in the meantime would read its log from applied + 1,
        // which the compacted log no longer has. The flush covers every
        // `Ready` written before this one too.
        let snapshot_now = has_snapshot && log.is_durable();
        if snapshot_now {
            log.flush().await?;
            self.args
                .transport
                .send(std::mem::take(&mut self.held_back));
            self.unflushed = None;
            self.needs_flush = false;
        }
        if !snapshot_now && (must_sync || self.flushing || self.unflushed.is_some()) {
            self.held_back.extend(ready.take_persisted_messages());
            self.unflushed = Some(ready.number());
            self.needs_flush |= must_sync;
            self.node.advance_append_async(ready);
        } else {
            self.args.transport.send(ready.take_persisted_messages());
            let mut light = self.node.advance_append(ready);
            if let Some(commit) = light.commit_index() {
                log.set_commit(commit)?;
            }
            self.args.transport.send(light.take_messages());
            committed.extend(light.take_committed_entries());
        }
        self.handle_committed(&committed)?;
        self.advance_applied();
        self.start_flush(myself);
        self.check_leadership(myself, &committed);
        Ok(())
    }

    /// Applied may not pass what this node has persisted: a snapshot (or
    /// entries) still waiting for its flush is applied once it is done.
    fn advance_applied(&mut self) {
        let raft_log = &self.node.raft.raft_log;
        let applied = raft_log.committed.min(raft_log.persisted);
        if applied > raft_log.applied {
            self.node.advance_apply_to(applied);
        }
    }

    /// Starts a flush of everything written since the last one started,
    /// unless one is running (it is started again when that one ends). The
    /// held-back messages leave from the task, as soon as the flush is done.
    /// `Ready`s that wrote nothing needing a flush (a new commit index
    /// only) waited only for the flush before them: once it is done they
    /// are let through without one.
    fn start_flush(&mut self, myself: &ActorRef<RaftMsg>) {
        if self.flushing {
            return;
        }
        let Some(number) = self.unflushed.take() else {
            return;
        };
        let msgs = std::mem::take(&mut self.held_back);
        if !std::mem::take(&mut self.needs_flush) {
            self.args.transport.send(msgs);
            self.node.on_persist_ready(number);
            self.queue_ready(myself);
            return;
        }
        self.flushing = true;
        let (log, transport, me) = (
            self.args.log.clone(),
            self.args.transport.clone(),
            myself.clone(),
        );
        tokio::spawn(async move {
            match log.flush().await {
                Ok(()) => {
                    transport.send(msgs);
                    let _ = me.send_message(RaftMsg::Flushed(number));
                }
                Err(e) => {
                    let _ = me.send_message(RaftMsg::FlushFailed(e.to_string()));
                }
            }
        });
    }

    fn handle_committed(&mut self, entries: &[Entry]) -> Result<(), ActorProcessingErr> {
        for e in entries {
            let cs = match e.get_entry_type() {
                EntryType::EntryNormal => continue,
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data)?;
                    self.node.apply_conf_change(&cc)?
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&e.data)?;
                    self.node.apply_conf_change(&cc)?
                }
            };
            self.args.log.set_conf_state(&cs)?;
        }
        if let Some(last) = entries.last() {
            if let Some(store) = self.args.directory.get::<StoreMsg>("store") {
                let _ = store.send_message(StoreMsg::Committed(last.index));
            }
        }
        Ok(())
    }

    /// Tells the supervisor about leadership changes. Runs from message
    /// handlers only: the link to the supervisor exists from then on, and a
    /// notice that cannot be delivered is retried on the next tick.
    /// A Store restarted at the wrong moment may have missed a commit notice.
    fn nudge_store(&self) {
        let log = &self.node.raft.raft_log;
        // Never past what this node has flushed: raft-rs hands out committed
        // entries on the same terms.
        let commit = log.committed.min(log.persisted);
        if self.args.sm.applied().index < commit {
            if let Some(store) = self.args.directory.get::<StoreMsg>("store") {
                let _ = store.send_message(StoreMsg::Committed(commit));
            }
        }
    }

    fn check_leadership(&mut self, myself: &ActorRef<RaftMsg>, committed: &[Entry]) {
        let Some(supervisor) = myself.try_get_supervisor() else {
            return;
        };
        let r = &self.node.raft;
        let term = r.term;
        let is_leader = r.state == StateRole::Leader;
        if r.leader_id != self.seen_leader {
            if r.leader_id != 0 {
                self.args.directory.metrics.raft_leader_changes.inc();
            }
            self.seen_leader = r.leader_id;
        }
        if !self.stale_cleared {
            // A previous incarnation may have left leader actors running.
            self.stale_cleared = true;
            (self.args.on_leadership)(
                Leadership {
                    is_leader: false,
                    term,
                },
                supervisor.clone(),
            );
        }
        let term_committed = committed.iter().any(|e| e.term == term)
            || self
                .node
                .raft
                .raft_log
                .term(self.node.raft.raft_log.committed)
                == Ok(term);
        if is_leader && !self.announced && term_committed {
            self.announced = true;
            tracing::info!(term, "became leader");
            (self.args.on_leadership)(
                Leadership {
                    is_leader: true,
                    term,
                },
                supervisor,
            );
        } else if !is_leader && self.announced {
            self.announced = false;
            tracing::info!(term, "lost leadership");
            (self.args.on_leadership)(
                Leadership {
                    is_leader: false,
                    term,
                },
                supervisor,
            );
        }
    }

    /// Snapshot the applied state and drop the log behind it, every
    /// `snapshot_interval` entries.
    async fn maybe_compact(&mut self) -> Result<(), ActorProcessingErr> {
        let (applied, interval) = {
            let guard = self.args.sm.read();
            let interval = guard
                .0
                .cluster
                .as_ref()
                .map_or(self.args.timings.snapshot_interval, |c| {
                    c.spec.snapshot_interval
                });
            (guard.1.index, interval.max(1))
        };
        let wanted = self.args.log.take_snapshot_wanted();
        let due = applied >= self.args.log.snapshot_index() + interval;
        if !(due || wanted && applied > self.args.log.snapshot_index()) {
            return Ok(());
        }
        let (at, data) = self.args.sm.snapshot_data();
        // The state machine's writes must be durable before the log behind them goes.
        self.args.log.flush().await?;
        self.args.log.compact(at.index, data)?;
        tracing::info!(index = at.index, "raft log compacted");
        Ok(())
    }
}
