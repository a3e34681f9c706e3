//! The actors of a shoal node, around the IO-free domain of `shoal-core`.
//!
//! Nothing here opens a socket, starts a process or talks to Docker: the
//! transport and task drivers come in through the `RaftTransport` and
//! `Driver` traits, which `shoal-node` implements.

pub mod context;
pub mod dispatcher;
pub mod driver;
pub mod events;
#[cfg(any(test, feature = "harness"))]
pub mod harness;
pub mod leader;
pub mod metrics;
pub mod orchestrator;
pub mod packing;
pub mod proposer;
pub mod raft;
pub mod reconcile;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod supervision;
pub mod updater;
pub mod worker;
pub mod world;
