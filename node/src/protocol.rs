//! The types the cluster protocol carries (commands, the domain model, the
//! codec), for tools and tests that speak it: they depend on shoal-node
//! alone, never on the actors or core crates.

pub use shoal_actors::driver::BoxFuture;
pub use shoal_core::{codec, command, limits, model, rules};
