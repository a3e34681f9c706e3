//! The domain and the actors of a shoal node.
//!
//! Nothing here opens a socket, starts a process or talks to Docker: the
//! transport and task drivers come in through the `RaftTransport` and
//! `Driver` traits, which `shoal-node` implements.

pub mod clock;
pub mod codec;
pub mod command;
pub mod constraints;
pub mod container;
pub mod context;
pub mod dispatcher;
pub mod driver;
pub mod events;
#[cfg(any(test, feature = "harness"))]
pub mod harness;
pub mod leader;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod mounts;
pub mod networks;
pub mod orchestrator;
pub mod packing;
pub mod ports;
pub mod proposer;
pub mod raft;
pub mod scheduler;
pub mod secrets;
pub mod session;
pub mod state;
pub mod store;
pub mod supervision;
pub mod updater;
pub mod worker;
pub mod world;
