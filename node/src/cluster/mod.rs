//! How nodes of a swarm work together over the transport: what they send
//! (`wire`), the actor-facing ends (`net`), and what a node does with what
//! it receives (`inbound`, over the narrow view of the node in `node`), and
//! Raft snapshots cut into chunks (`chunks`).

pub mod chunks;
pub mod inbound;
pub mod members;
pub mod net;
pub mod node;
pub mod wire;
