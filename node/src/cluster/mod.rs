//! How nodes of a swarm work together over the transport: what they send
//! (`wire`), the actor-facing ends (`net`), and what a node does with what
//! it receives (`inbound`), and Raft snapshots cut into chunks (`chunks`).

pub mod chunks;
pub mod inbound;
pub mod members;
pub mod net;
pub mod wire;
