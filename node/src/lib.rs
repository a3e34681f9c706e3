//! The adapters and the daemon of a shoal node: sled storage, the process
//! driver, the cluster CA, the control API, and the wiring of one node's
//! actor tree (`Runtime`).

pub mod api;
pub mod backup;
pub mod ca;
pub mod certs;
pub mod cluster;
pub mod confine;
pub mod daemon;
pub mod dns;
pub mod driver;
pub mod events;
pub mod fuzzing;
pub mod identity;
pub mod keys;
pub mod logs;
pub mod machine;
pub mod mesh;
pub mod metrics;
pub mod options;
pub mod overlay;
pub mod pem;
pub mod private;
pub mod protocol;
pub mod runtime;
pub mod sandbox;
pub mod templates;
pub mod transport;
pub mod ustar;
pub mod volumes;
