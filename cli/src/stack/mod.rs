//! `stack deploy` from compose files, client-side as docker's: `load`
//! reads and checks the files, `convert` makes Engine API objects of them,
//! `deploy` creates or updates them (`diff` decides what changed),
//! `converge` waits for the result.

pub mod compose;
pub mod converge;
pub mod convert;
pub mod deploy;
pub mod diff;
pub mod interpolate;
pub mod load;
pub mod locate;
