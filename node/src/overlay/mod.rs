//! Overlay networks on this node: the latest network table the leader sent
//! (`NetworkWatch`), which the data plane (bridges, routes between nodes,
//! VIP balancing) and the embedded DNS server follow.

use std::sync::Arc;

use shoal_actors::networks::NetworkTable;
use shoal_actors::session::NetworkSink;
use tokio::sync::watch;

/// Where the agent hands the network table; every part of the node that
/// needs it subscribes.
#[derive(Clone)]
pub struct NetworkWatch(watch::Sender<Arc<NetworkTable>>);

impl Default for NetworkWatch {
    fn default() -> Self {
        NetworkWatch(watch::channel(Arc::default()).0)
    }
}

impl NetworkWatch {
    pub fn subscribe(&self) -> watch::Receiver<Arc<NetworkTable>> {
        self.0.subscribe()
    }

    /// The table as last received.
    pub fn current(&self) -> Arc<NetworkTable> {
        self.0.borrow().clone()
    }
}

impl NetworkSink for NetworkWatch {
    fn update(&self, table: Arc<NetworkTable>) {
        self.0.send_if_modified(|cur| {
            let changed = **cur != *table;
            if changed {
                *cur = table;
            }
            changed
        });
    }
}
