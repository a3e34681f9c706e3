//! The worker half of a node: the agent and its task actors.

mod agent;
mod task_actor;

pub use agent::{Agent, AgentArgs};
pub use task_actor::{TaskActor, TaskArgs, TaskMsg};
