//! Task drivers this node offers.

pub mod docker;
pub mod docker_connect;
mod docker_files;
pub mod docker_sandbox;
mod process;
mod process_mounts;
pub mod support;
pub mod user;

pub use docker::DockerDriver;
pub use process::ProcessDriver;
