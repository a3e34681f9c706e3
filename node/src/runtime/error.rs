//! What can go wrong on a node, and how it reads to a peer (`Refusal`) and
//! in an answer (`Response`).

use shoal_actors::proposer::ProposeError;

use super::addrs;
use crate::cluster::wire::{Refusal, Response};
use crate::identity;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.")]
    AlreadyInSwarm,
    #[error("This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to swarm and try again.")]
    NotManager,
    #[error("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.")]
    WorkerNode,
    #[error("{0}")]
    Propose(#[from] ProposeError),
    #[error("invalid join token: {0}")]
    BadToken(String),
    #[error("{0}")]
    Remote(Refusal),
    #[error("This node is not part of a swarm")]
    NotInSwarm,
    #[error("{0}")]
    Addr(#[from] addrs::AddrError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("cannot open the data directory: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Log(#[from] shoal_actors::raft::LogError),
    #[error(transparent)]
    Open(#[from] shoal_actors::context::ManagerOpenError),
    #[error("cluster transport: {0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("the node's actor tree is not running: {0}")]
    Actors(String),
    #[error("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"shoal swarm unlock\" to unlock it.")]
    Locked,
    #[error("This manager cannot persist its Raft log or state ({0}): it takes no writes until its data directory has space again, then opens its store again and catches up. Send writes to another manager.")]
    CannotPersist(String),
    #[error("This manager cannot read the swarm's newest records ({0}): it takes no writes until shoal is upgraded on it. Send writes to another manager.")]
    Outdated(String),
    #[error("this node supports record formats {oldest} to {newest}; the swarm runs format {swarm}: {}", if *newest < *swarm { "upgrade shoal on this node first" } else { "upgrade the swarm's nodes first" })]
    FormatMismatch {
        oldest: u32,
        newest: u32,
        swarm: u32,
    },
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

impl From<NodeError> for Refusal {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Propose(p) => match p {
                ProposeError::Rejected(a) => Refusal::Rejected(a),
                ProposeError::NotLeader { leader } => Refusal::NotLeader { leader },
                ProposeError::NoLeader => Refusal::NoLeader(p.to_string()),
                ProposeError::Superseded => Refusal::Unavailable(p.to_string()),
                ProposeError::Timeout => Refusal::Timeout(p.to_string()),
                ProposeError::Codec(_) => Refusal::BadRequest(p.to_string()),
            },
            NodeError::Remote(r) => r,
            NodeError::NotFound(m) => Refusal::NotFound(m),
            NodeError::Precondition(m) => Refusal::Precondition(m),
            NodeError::FormatMismatch { .. } => Refusal::Precondition(e.to_string()),
            NodeError::BadToken(_) => Refusal::BadRequest(e.to_string()),
            NodeError::AlreadyInSwarm
            | NodeError::NotManager
            | NodeError::WorkerNode
            | NodeError::NotInSwarm
            | NodeError::Unreachable(..)
            | NodeError::CannotPersist(_)
            | NodeError::Outdated(_) => Refusal::Unavailable(e.to_string()),
            NodeError::Addr(_) => Refusal::BadRequest(e.to_string()),
            other => Refusal::Failed(other.to_string()),
        }
    }
}

impl From<Result<(), NodeError>> for Response {
    fn from(r: Result<(), NodeError>) -> Self {
        match r {
            Ok(()) => Response::Done,
            Err(e) => Response::Refused(e.into()),
        }
    }
}
