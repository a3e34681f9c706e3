//! Task drivers this node offers.

pub mod docker;
mod docker_files;
mod process;
pub mod support;
pub mod user;

pub use docker::DockerDriver;
pub use process::ProcessDriver;
