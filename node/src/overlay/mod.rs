//! Overlay networks on this node: the latest network table the leader sent
//! (`NetworkWatch`), which the data plane (bridges, routes between nodes,
//! VIP balancing) and the embedded DNS server follow.

pub mod dataplane;
mod gro;
mod vip;
mod vxlan;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use shoal_actors::session::NetworkSink;
use shoal_core::rules::network::NetworkTable;
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

/// How long a task with attachments waits for the table to know its
/// networks and for their routes to be in place before its start fails
/// (the task is then retried like any failed start).
const WAIT_FOR_NETWORKS: Duration = Duration::from_secs(10);

/// This node's overlay: the table and, once the node is in a swarm, the
/// data plane.
#[derive(Default)]
pub struct Overlay {
    pub watch: NetworkWatch,
    dataplane: RwLock<Option<Arc<dataplane::Dataplane>>>,
}

impl Overlay {
    pub fn new(watch: NetworkWatch) -> Arc<Overlay> {
        Arc::new(Overlay {
            watch,
            dataplane: RwLock::new(None),
        })
    }

    pub fn dataplane(&self) -> Option<Arc<dataplane::Dataplane>> {
        self.dataplane.read().clone()
    }

    /// Starts the data plane (joining a swarm); a node without a sandbox
    /// has none, and its tasks cannot join overlays.
    pub async fn start(
        &self,
        node_id: &str,
        underlay: std::net::Ipv4Addr,
        sandbox: Option<Arc<crate::sandbox::Sandbox>>,
        transport: Option<Arc<crate::transport::Transport>>,
    ) {
        let (Some(sb), Some(t)) = (sandbox, transport) else {
            return;
        };
        self.stop();
        match dataplane::Dataplane::start(node_id, underlay, sb, t, &self.watch).await {
            Ok(dp) => *self.dataplane.write() = Some(dp),
            Err(e) => {
                tracing::warn!(error = %e, "no overlay data plane: tasks on overlay networks cannot start here")
            }
        }
    }

    pub fn stop(&self) {
        if let Some(dp) = self.dataplane.write().take() {
            dp.stop();
        }
    }

    /// What the sandbox needs to give `task` its interfaces on overlay
    /// networks (the ingress network excepted: the routing mesh reaches
    /// tasks by their node-local address), once the table knows them and
    /// their routes are in place.
    pub async fn attachments(
        &self,
        task: &shoal_core::model::Task,
    ) -> Result<Vec<crate::sandbox::overlay::NetAttach>, String> {
        if task.attachments.is_empty() {
            return Ok(Vec::new());
        }
        let mut rx = self.watch.subscribe();
        let known = |t: &NetworkTable| {
            task.attachments
                .iter()
                .all(|a| t.network(&a.network_id).is_some())
        };
        let waited = tokio::time::timeout(WAIT_FOR_NETWORKS, rx.wait_for(|t| known(t)))
            .await
            .is_ok_and(|r| r.is_ok());
        if !waited {
            return Err("the task's networks are not known on this node yet".into());
        }
        let table = self.watch.current();
        let nets: Vec<_> = task
            .attachments
            .iter()
            .filter_map(|a| Some((a, table.network(&a.network_id)?)))
            .filter(|(_, n)| !n.ingress)
            .collect();
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        let Some(dp) = self.dataplane() else {
            return Err("this node has no overlay data plane (see its log)".into());
        };
        let ids: Vec<String> = nets.iter().map(|(a, _)| a.network_id.clone()).collect();
        if !dp.wait_routed(&ids, WAIT_FOR_NETWORKS).await {
            return Err("the routes of the task's networks are not in place yet".into());
        }
        Ok(nets
            .into_iter()
            .map(|(a, n)| crate::sandbox::overlay::NetAttach {
                network_id: a.network_id.clone(),
                addr: a.addr,
                subnet: n.subnet,
                gateway: n.gateway,
                internal: n.internal,
                mtu: if n.encrypted { dp.mtu } else { dp.vxlan_mtu },
            })
            .collect())
    }
}

impl crate::transport::OverlayConns for Overlay {
    fn overlay(
        &self,
        peer: &crate::transport::PeerId,
        conn: quinn::Connection,
    ) -> shoal_actors::driver::BoxFuture<()> {
        match self.dataplane() {
            Some(dp) => Box::pin(dp.serve(peer.node_id.clone(), conn)),
            None => {
                conn.close(crate::transport::close::REFUSED.into(), b"no overlay here");
                Box::pin(async {})
            }
        }
    }
}
