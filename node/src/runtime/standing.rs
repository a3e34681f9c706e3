//! Connections follow the cluster state: when a node's entry changes (it is
//! removed, or its role and so its certificate generation change), its open
//! connections are checked again and closed if it lost its standing.

use tokio::sync::broadcast::error::RecvError;

use super::*;
use shoal_core::state::Change;

impl Runtime {
    /// Runs for as long as the transport does; follows whichever manager
    /// context this node has (none on a worker, a new one after a promotion).
    pub(super) fn spawn_standing_watch(self: &Arc<Self>, transport: &Arc<Transport>) {
        let rt = Arc::downgrade(self);
        let transport = Arc::downgrade(transport);
        tokio::spawn(async move {
            loop {
                let (Some(node), Some(_)) = (rt.upgrade(), transport.upgrade()) else {
                    return;
                };
                let Ok(m) = node.manager() else {
                    drop(node);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let mut events = m.events.subscribe();
                drop(node);
                loop {
                    let ev = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
                    let Some(t) = transport.upgrade() else {
                        return;
                    };
                    match ev {
                        Ok(Ok(ev)) => {
                            for c in ev.changes.iter() {
                                if let Change::Node(id) = c {
                                    t.recheck(id);
                                }
                            }
                        }
                        Ok(Err(RecvError::Lagged(_))) => t.recheck_all(),
                        Ok(Err(RecvError::Closed)) => break,
                        // Quiet for a second: is this still our manager context?
                        Err(_) => {
                            let same = rt
                                .upgrade()
                                .and_then(|n| n.manager().ok())
                                .is_some_and(|now| Arc::ptr_eq(&now, &m));
                            if !same {
                                break;
                            }
                        }
                    }
                }
            }
        });
    }
}
