//! Task drivers this node offers.

pub mod docker;
mod process;

pub use docker::DockerDriver;
pub use process::ProcessDriver;
