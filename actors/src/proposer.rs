//! How anything on a manager changes cluster state: propose a command through
//! the Raft actor, then wait until the Store has applied that very entry.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::codec;
use crate::command::{Command, Proposal};
use crate::raft::{ProposeRefused, RaftMsg};
use crate::state::ApplyError;
use crate::store::{StoreMsg, WaitResult};
use crate::supervision::Directory;

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

#[derive(Clone)]
pub struct Proposer {
    directory: Arc<Directory>,
    timeout: Duration,
}

impl Proposer {
    pub fn new(directory: Arc<Directory>, timeout: Duration) -> Self {
        Proposer { directory, timeout }
    }

    /// Returns once the command is committed and applied on this node.
    pub async fn propose(&self, command: Command) -> Result<(), ProposeError> {
        let id: u128 = crate::world::with_rng(|r| rand::Rng::random(r));
        let data = codec::encode(&Proposal { id, command })
            .map_err(|e| ProposeError::Codec(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        // The Raft and Store actors may be between two incarnations (a heal
        // takes microseconds to milliseconds) or an election may be running:
        // retry until the deadline instead of failing the user's write.
        loop {
            match self.try_once(id, &data, deadline).await {
                Err(ProposeError::NoLeader | ProposeError::NotLeader { leader: None })
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(ProposeError::NotLeader { leader: None }) => {
                    return Err(ProposeError::NoLeader)
                }
                other => return other,
            }
        }
    }

    async fn try_once(&self, id: u128, data: &[u8], deadline: Instant) -> Result<(), ProposeError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let raft = self
            .directory
            .get::<RaftMsg>("raft")
            .ok_or(ProposeError::NoLeader)?;
        let data = data.to_vec();
        let index = match raft
            .call(|reply| RaftMsg::Propose { data, reply }, Some(left))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(Ok(index))) => index,
            Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::NotLeader { leader }))) => {
                return Err(ProposeError::NotLeader { leader })
            }
            Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::Busy))) => {
                return Err(ProposeError::NoLeader)
            }
            Ok(ractor::rpc::CallResult::Timeout) => return Err(ProposeError::Timeout),
            _ => return Err(ProposeError::NoLeader),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProposeError::Timeout);
            }
            let Some(store) = self.directory.get::<StoreMsg>("store") else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let answer = store
                .call(
                    |reply| StoreMsg::WaitApplied {
                        index,
                        proposal_id: id,
                        reply,
                    },
                    Some(left),
                )
                .await;
            return match answer {
                Ok(ractor::rpc::CallResult::Success(WaitResult::Applied(r))) => Ok(r?),
                // Outcomes are kept for the last 4096 entries; older than that
                // we only know that something committed at our index.
                Ok(ractor::rpc::CallResult::Success(WaitResult::Unknown)) => Ok(()),
                Ok(ractor::rpc::CallResult::Success(WaitResult::Superseded)) => {
                    Err(ProposeError::Superseded)
                }
                Ok(ractor::rpc::CallResult::Timeout) => Err(ProposeError::Timeout),
                // The Store died while we waited: ask its next incarnation.
                _ => continue,
            };
        }
    }
}
