//! The replicated store: state machine persistence and the Store actor.

mod actor;
mod machine;
pub mod swarm_events;

pub use actor::{StoreActor, StoreArgs, StoreEvent, StoreMsg, WaitResult};
pub use machine::{AppliedIndex, Outcome, StateMachine, StoreError, WriteResult};
