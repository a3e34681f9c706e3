//! Task drivers this node offers.

pub mod docker;
pub mod docker_connect;
mod docker_files;
mod docker_options;
pub mod docker_sandbox;
mod process;
mod process_mounts;
mod process_options;
pub mod support;
pub mod user;

pub use docker::DockerDriver;
pub use process::ProcessDriver;
