//! Consensus: the Raft actor and its sled-backed log.

mod actor;
pub mod chunks;
pub mod storage;

pub use actor::{
    Leadership, LeadershipListener, NoPeers, ProposeRefused, RaftActor, RaftArgs, RaftMsg,
    RaftStatus, RaftTimings, RaftTransport,
};
pub use storage::{LogError, LogStore};
