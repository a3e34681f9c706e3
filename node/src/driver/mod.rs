//! Task drivers this node offers.

mod process;

pub use process::ProcessDriver;
