//! shoal's domain, with no IO: what the cluster state is (`model`, `state`),
//! how a replicated command changes it (`command`, `rules`, within `limits`),
//! what the leader decides to write next (`plan`), and how it is encoded
//! (`codec`). Nothing here reads the clock or the OS's
//! randomness: a time is an argument, and so is the generator an id is drawn
//! from (`model::id_from`). The actors (`shoal-actors`) and the node
//! (`shoal-node`) are the shell around it.

pub mod clock;
pub mod codec;
pub mod command;
pub mod limits;
pub mod model;
pub mod plan;
pub mod rules;
pub mod state;
