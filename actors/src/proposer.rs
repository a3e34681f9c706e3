//! How anything on a manager changes cluster state: propose a command through
//! the Raft actor, then wait until the Store has applied that very entry.
//!
//! Writes proposed at the same moment share one entry: a write that finds
//! nobody proposing is proposed at once, alone; those that come while that
//! proposal waits for the Raft actor's answer (its entry's index) queue up
//! and go together as the next entry (`Command::Packed`, bounded by
//! `limits::MAX_COMMANDS_PER_ENTRY` and `MAX_ENTRY_BYTES`). The Store applies
//! each alone and answers each proposer with its own result. Only once the
//! cluster version says every node reads packed entries
//! (`ClusterState::packs_writes`): below it each write is an entry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::packing::{pack_proposals, PackQueue};
use crate::raft::{ProposeRefused, RaftMsg};
use crate::store::{StateMachine, StoreMsg, WaitResult};
use crate::supervision::Directory;
use shoal_core::codec;
use shoal_core::command::{Command, Proposal};
use shoal_core::limits::{MAX_COMMANDS_PER_ENTRY, MAX_ENTRY_BYTES};
use shoal_core::state::ApplyError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposeError {
    #[error("{0}")]
    Rejected(#[from] ApplyError),
    #[error("This node is not the swarm leader{}.", leader.map(|l| format!(" (the leader's raft id is {l:x})")).unwrap_or_default())]
    NotLeader { leader: Option<u64> },
    #[error("The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.")]
    NoLeader,
    #[error("the write was dropped by a change of leader; try again")]
    Superseded,
    #[error("The write was not committed in time. It's possible that too few managers are online. Make sure more than half of the managers are online.")]
    Timeout,
    #[error("cannot encode the command: {0}")]
    Codec(String),
}

/// A write's answer: the index of the entry it was committed in, once applied here.
type Reply = oneshot::Sender<Result<u64, ProposeError>>;

/// A write waiting for its entry.
struct Pending {
    id: u128,
    /// The encoded `Proposal`.
    data: Vec<u8>,
    deadline: Instant,
    reply: Reply,
}

#[derive(Clone)]
pub struct Proposer {
    directory: Arc<Directory>,
    timeout: Duration,
    queue: Arc<PackQueue<Pending>>,
    /// Read for the cluster version, which decides whether writes pack.
    sm: Arc<StateMachine>,
}

impl Proposer {
    pub fn new(directory: Arc<Directory>, timeout: Duration, sm: Arc<StateMachine>) -> Self {
        Proposer {
            directory,
            timeout,
            sm,
            // One proposal at a time on its way to the Raft actor: it answers
            // at its next `Ready`, and what queued meanwhile is the next entry.
            queue: Arc::new(PackQueue::new(MAX_COMMANDS_PER_ENTRY, MAX_ENTRY_BYTES, 1)),
        }
    }

    /// Returns once the command is committed and applied on this node.
    pub async fn propose(&self, command: Command) -> Result<(), ProposeError> {
        self.propose_at(command).await.map(|_| ())
    }

    /// `propose`, and the index of the entry the command was committed in.
    pub async fn propose_at(&self, command: Command) -> Result<u64, ProposeError> {
        self.propose_by(command, Instant::now() + self.timeout)
            .await
    }

    /// `propose_at` within the caller's `deadline` (a write that came in
    /// through the API keeps the one deadline it got there, whatever
    /// retries and forwards it goes through).
    pub async fn propose_by(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<u64, ProposeError> {
        let mut all = self.propose_all_by(vec![command], deadline).await;
        all.pop().unwrap_or(Err(ProposeError::NoLeader))
    }

    /// Proposes these writes in one entry (with whatever else is queued at
    /// this moment, never split: a follower's forwarded batch) and returns
    /// each one's result, in order, once committed and applied here.
    pub async fn propose_all(&self, commands: Vec<Command>) -> Vec<Result<(), ProposeError>> {
        self.propose_all_at(commands)
            .await
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect()
    }

    /// `propose_all`, each result with the index of the entry it was
    /// committed in (a follower that forwarded them waits to apply as far).
    pub async fn propose_all_at(&self, commands: Vec<Command>) -> Vec<Result<u64, ProposeError>> {
        self.propose_all_by(commands, Instant::now() + self.timeout)
            .await
    }

    async fn propose_all_by(
        &self,
        commands: Vec<Command>,
        deadline: Instant,
    ) -> Vec<Result<u64, ProposeError>> {
        let started = Instant::now();
        let results = self.propose_all_inner(commands, deadline).await;
        let metrics = &self.directory.metrics;
        let took = crate::metrics::secs(started.elapsed());
        for result in &results {
            metrics.raft_proposals.inc();
            metrics.raft_proposal_latency.observe(took);
            if result.is_err() {
                metrics.raft_proposals_failed.inc();
            }
        }
        results
    }

    async fn propose_all_inner(
        &self,
        commands: Vec<Command>,
        deadline: Instant,
    ) -> Vec<Result<u64, ProposeError>> {
        let mut results: Vec<Result<u64, ProposeError>> = Vec::with_capacity(commands.len());
        // (position in `results`, id, encoded proposal)
        let mut todo = Vec::with_capacity(commands.len());
        for command in commands {
            if matches!(command, Command::Packed(_)) {
                // Only the Proposer packs: a caller's (or a peer's) packed
                // command would have the Store apply writes under ids it chose.
                results.push(Err(ProposeError::Rejected(ApplyError::Invalid(
                    "a packed write cannot be proposed".into(),
                ))));
                continue;
            }
            let id: u128 = crate::world::with_rng(|r| rand::Rng::random(r));
            match codec::encode(&Proposal { id, command }) {
                Ok(data) => {
                    todo.push((results.len(), id, data));
                    results.push(Err(ProposeError::NoLeader));
                }
                Err(e) => results.push(Err(ProposeError::Codec(e.to_string()))),
            }
        }
        // The Raft and Store actors may be between two incarnations (a heal
        // takes microseconds to milliseconds) or an election may be running:
        // retry until the deadline instead of failing the user's write.
        while !todo.is_empty() {
            let answers = self.try_once(&todo, deadline).await;
            let mut again = Vec::new();
            for (item, answer) in todo.into_iter().zip(answers) {
                match answer {
                    Err(ProposeError::NoLeader | ProposeError::NotLeader { leader: None })
                        if Instant::now() < deadline =>
                    {
                        again.push(item);
                    }
                    Err(ProposeError::NotLeader { leader: None }) => {
                        results[item.0] = Err(ProposeError::NoLeader)
                    }
                    other => results[item.0] = other,
                }
            }
            todo = again;
            if !todo.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        results
    }

    /// Queues the writes as one unit and waits for each one's answer.
    async fn try_once(
        &self,
        todo: &[(usize, u128, Vec<u8>)],
        deadline: Instant,
    ) -> Vec<Result<u64, ProposeError>> {
        let mut unit = Vec::with_capacity(todo.len());
        let mut waits = Vec::with_capacity(todo.len());
        let mut bytes = 0usize;
        for (_, id, data) in todo {
            let (reply, wait) = oneshot::channel();
            bytes += data.len();
            unit.push(Pending {
                id: *id,
                data: data.clone(),
                deadline,
                reply,
            });
            waits.push(wait);
        }
        if self.queue.push(unit, bytes) {
            tokio::spawn(send_packs(
                self.directory.clone(),
                self.queue.clone(),
                self.sm.clone(),
            ));
        }
        let mut answers = Vec::with_capacity(waits.len());
        for wait in waits {
            answers.push(match tokio::time::timeout_at(deadline, wait).await {
                Ok(Ok(answer)) => answer,
                // The sender ended without an answer (the runtime is going
                // down): as if no leader took it, so it is tried again.
                Ok(Err(_)) => Err(ProposeError::NoLeader),
                Err(_) => Err(ProposeError::Timeout),
            });
        }
        answers
    }
}

/// Proposes the queued writes, one pack (one entry) at a time, until none
/// waits; each entry's outcome is awaited beside it. Below the cluster
/// version that reads packed entries, a pack goes as one entry per write.
async fn send_packs(
    directory: Arc<Directory>,
    queue: Arc<PackQueue<Pending>>,
    sm: Arc<StateMachine>,
) {
    while let Some(pack) = queue.take() {
        // A proposer that gave up (its deadline passed) is not proposed for.
        let pack: Vec<Pending> = pack.into_iter().filter(|p| !p.reply.is_closed()).collect();
        if sm.read().0.packs_writes() {
            send_pack(&directory, pack).await;
        } else {
            for one in pack {
                send_pack(&directory, vec![one]).await;
            }
        }
    }
}

/// Proposes one pack as one entry.
async fn send_pack(directory: &Arc<Directory>, pack: Vec<Pending>) {
    let Some(deadline) = pack.iter().map(|p| p.deadline).max() else {
        return;
    };
    directory
        .metrics
        .raft_packed_writes
        .observe(pack.len() as f64);
    let parts: Vec<&[u8]> = pack.iter().map(|p| p.data.as_slice()).collect();
    let data = match pack_proposals(&parts) {
        Ok(data) => data,
        Err(e) => {
            let e = ProposeError::Codec(e.to_string());
            for p in pack {
                let _ = p.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    match propose_entry(directory, data, deadline).await {
        Ok(index) => {
            tokio::spawn(answer_when_applied(
                directory.clone(),
                index,
                pack,
                deadline,
            ));
        }
        Err(e) => {
            for p in pack {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Hands one entry's data to the Raft actor: its index, or why not.
async fn propose_entry(
    directory: &Directory,
    data: Vec<u8>,
    deadline: Instant,
) -> Result<u64, ProposeError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let raft = directory
        .get::<RaftMsg>("raft")
        .ok_or(ProposeError::NoLeader)?;
    match raft
        .call(|reply| RaftMsg::Propose { data, reply }, Some(left))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(index))) => Ok(index),
        Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::NotLeader { leader }))) => {
            Err(ProposeError::NotLeader { leader })
        }
        Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::Busy))) => {
            Err(ProposeError::NoLeader)
        }
        Ok(ractor::rpc::CallResult::Timeout) => Err(ProposeError::Timeout),
        _ => Err(ProposeError::NoLeader),
    }
}

/// Waits until the Store has applied the entry at `index` and tells each
/// write of the pack what became of it.
async fn answer_when_applied(
    directory: Arc<Directory>,
    index: u64,
    pack: Vec<Pending>,
    deadline: Instant,
) {
    let ids: Vec<u128> = pack.iter().map(|p| p.id).collect();
    let answers: Vec<Result<u64, ProposeError>> = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break vec![Err(ProposeError::Timeout); ids.len()];
        }
        let Some(store) = directory.get::<StoreMsg>("store") else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let answer = store
            .call(
                |reply| StoreMsg::WaitApplied {
                    index,
                    proposal_ids: ids.clone(),
                    reply,
                },
                Some(left),
            )
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(results)) => {
                break results
                    .into_iter()
                    .map(|r| match r {
                        WaitResult::Applied(r) => r.map(|()| index).map_err(ProposeError::Rejected),
                        // Outcomes are kept for the last few thousand entries;
                        // older than that we only know that something
                        // committed at our index.
                        WaitResult::Unknown => Ok(index),
                        WaitResult::Superseded => Err(ProposeError::Superseded),
                    })
                    .collect();
            }
            Ok(ractor::rpc::CallResult::Timeout) => {
                break vec![Err(ProposeError::Timeout); ids.len()]
            }
            // The Store died while we waited: ask its next incarnation.
            _ => continue,
        }
    };
    let mut answers = answers.into_iter();
    for p in pack {
        let _ = p
            .reply
            .send(answers.next().unwrap_or(Err(ProposeError::Superseded)));
    }
}
