//! The network stack of one node, as one owned part: the cluster transport
//! (QUIC), the routing mesh, the overlay data plane with the network table
//! it follows, and the embedded DNS server; and the loop that applies the
//! endpoint tables the agent hands the mesh.
//!
//! It depends on no other part: the manager and worker parts send through
//! it, so it stops after them (`Runtime::shutdown`), and it uses the host's
//! sandbox, which is closed after it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use shoal_actors::driver::Drivers;
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;
use super::NodeError;
use crate::cluster::net::TransportSlot;
use crate::dns::DnsServer;
use crate::mesh::{Mesh, MeshSink};
use crate::overlay::{NetworkWatch, Overlay};
use crate::sandbox::Sandbox;
use crate::transport::tls::TlsIdentity;
use crate::transport::{Inbound, Transport, TransportConfig};

pub struct NetworkStack {
    /// The QUIC endpoint, once this node is in a swarm (shared with what
    /// sends through it: the Raft network, the dispatcher proxy, the mesh).
    transport: TransportSlot,
    pub mesh: Arc<Mesh>,
    /// The network table the leader sent last, for the data plane and DNS.
    pub networks: NetworkWatch,
    /// The overlay data plane, once this node is in a swarm.
    pub overlay: Arc<Overlay>,
    /// The embedded DNS server, while this node is in a swarm.
    dns: Mutex<Option<DnsServer>>,
    tasks: Tasks,
}

impl NetworkStack {
    /// `drivers` are where the mesh finds this node's tasks' addresses.
    pub fn new(
        networks: NetworkWatch,
        overlay: Arc<Overlay>,
        drivers: Arc<Drivers>,
        token: CancellationToken,
    ) -> NetworkStack {
        let transport: TransportSlot = Arc::new(RwLock::new(None));
        NetworkStack {
            mesh: Mesh::new(drivers, transport.clone()),
            transport,
            networks,
            overlay,
            dns: Mutex::new(None),
            tasks: Tasks::new(token),
        }
    }

    /// The cluster transport, once this node is in a swarm.
    pub fn transport(&self) -> Option<Arc<Transport>> {
        self.transport.read().clone()
    }

    /// The slot the transport is in (empty outside a swarm), for those that
    /// send through whichever transport the node has at the time.
    pub fn slot(&self) -> TransportSlot {
        self.transport.clone()
    }

    /// Binds the QUIC endpoint on `listen`: the cluster protocol goes to
    /// `inbound`, tunnels to the mesh, packets to the overlay.
    pub(super) fn bind(
        &self,
        listen: SocketAddr,
        tls: &TlsIdentity,
        inbound: Arc<dyn Inbound>,
    ) -> Result<Arc<Transport>, NodeError> {
        let t = Transport::bind(listen, tls, TransportConfig::default(), inbound)?;
        t.serve_mesh(self.mesh.clone());
        t.serve_overlay(self.overlay.clone());
        tracing::info!(addr = %listen, "cluster transport listening");
        *self.transport.write() = Some(t.clone());
        Ok(t)
    }

    /// The mesh, data plane and DNS of node `node_id`, which its peers
    /// reach at `bind_ip`.
    pub(super) async fn start(
        &self,
        node_id: &str,
        bind_ip: IpAddr,
        sandbox: Option<Arc<Sandbox>>,
        dns_counts: crate::dns::DnsCounts,
    ) {
        self.mesh.set_node(node_id, bind_ip);
        let underlay = match bind_ip {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        self.overlay
            .start(node_id, underlay, sandbox, self.transport())
            .await;
        self.start_dns(node_id, dns_counts).await;
    }

    /// What the agent hands the endpoint tables to; they are applied by a
    /// loop of this part.
    pub fn mesh_sink(&self) -> MeshSink {
        let (sink, applier) = MeshSink::new(self.mesh.clone());
        self.tasks.spawn(applier);
        sink
    }

    /// Starts the embedded DNS server on the gateways of the network table
    /// (replacing one already running). One that cannot bind (not root)
    /// says so in the log and the node goes on without it.
    async fn start_dns(&self, node_id: &str, counts: crate::dns::DnsCounts) {
        self.stop_dns();
        let mut config = crate::dns::DnsConfig::new(Some(node_id.to_string()));
        config.counts = counts;
        let server = crate::dns::DnsServer::start(config, self.networks.subscribe()).await;
        *self.dns.lock() = Some(server);
    }

    /// Stops the embedded DNS server, closing its sockets.
    pub fn stop_dns(&self) {
        if let Some(server) = self.dns.lock().take() {
            server.stop();
        }
    }

    /// Closes the QUIC endpoint (its peers are told) and empties the slot.
    pub(super) fn close_transport(&self) {
        if let Some(t) = self.transport.write().take() {
            t.close();
        }
    }

    /// Its loop first (so no table reopens a port), then the mesh's
    /// listeners, the DNS server's sockets, the data plane's connections
    /// and the transport.
    pub async fn shutdown(&self) {
        self.tasks.shutdown().await;
        self.mesh.clear();
        self.stop_dns();
        self.overlay.stop();
        self.close_transport();
    }
}
