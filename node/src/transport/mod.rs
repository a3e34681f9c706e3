//! The QUIC transport between nodes: one quinn endpoint per node, mutual TLS
//! against the cluster CA, one length-prefixed frame per stream.
//!
//! One-way messages ride unidirectional streams; requests (join,
//! forwarded writes) ride bidirectional ones. Raft's messages to a peer go
//! down one long-lived unidirectional stream (`send_ordered`), so they
//! arrive in the order Raft sent them and cost no stream set-up each; a
//! receiver reads frames off any unidirectional stream until it ends. A peer that sends an oversized
//! or undecodable frame has its connection closed and logged; nothing it
//! sends can panic the node.

mod counted;
pub mod faults;
pub mod frame;
pub mod quiet;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use shoal_actors::driver::BoxFuture;

use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
use tls::{TlsError, TlsIdentity};

pub use crate::certs::PeerId;

/// Why what a peer sent cannot be served; the connection it came on is closed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("bad frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("undecodable message: {0}")]
    Decode(#[source] shoal_core::codec::CodecError),
    #[error("undecodable raft message: {0}")]
    Raft(#[source] protobuf::ProtobufError),
    #[error("cannot encode the answer: {0}")]
    Encode(#[source] shoal_core::codec::CodecError),
    /// Well-formed, but not something this peer may send at all.
    #[error("{0}")]
    Refused(&'static str),
}

/// What the node does with what arrives on the cluster protocol (one-way
/// messages and requests), and who may talk to it at all. The mesh's and the
/// overlay's connections have a handler each (`Tunnels`, `OverlayConns`),
/// set with `Transport::serve_mesh`/`serve_overlay`.
pub trait Inbound: Send + Sync + 'static {
    /// A one-way message. `Err` means the bytes were malformed: the
    /// connection is closed.
    fn message(&self, peer: &PeerId, bytes: Vec<u8>) -> Result<(), InboundError>;
    /// Whether a peer with a valid certificate may still talk to this node
    /// (a removed node may not), and if not, why. Asked at accept and again
    /// for every message and request.
    fn admits(&self, _peer: &PeerId) -> Result<(), &'static str> {
        Ok(())
    }
    /// A request; the answer goes back on the same stream. `peer` is `None`
    /// for a client without a certificate (a node joining with a token).
    fn request(
        &self,
        peer: Option<&PeerId>,
        bytes: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, InboundError>>;
}

/// The mesh protocol's handler: a tunnel a peer opened on a mesh
/// connection; the stream is the handler's from here on.
pub trait Tunnels: Send + Sync + 'static {
    fn tunnel(
        self: Arc<Self>,
        peer: &PeerId,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> BoxFuture<()>;
}

/// The overlay protocol's handler: a data-plane connection a peer opened;
/// the handler reads its datagrams until it closes.
pub trait OverlayConns: Send + Sync + 'static {
    fn overlay(&self, peer: &PeerId, conn: quinn::Connection) -> BoxFuture<()>;
}

#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    pub max_frame: usize,
    pub keep_alive: Duration,
    /// A silent peer is noticed after this long.
    pub idle_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame: MAX_FRAME,
            keep_alive: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("peer {0}: {1}")]
    Stream(SocketAddr, String),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Streams (proxied connections) one peer may have open at once.
pub const MAX_TUNNELS: u32 = 4096;

/// QUIC close codes we use.
pub mod close {
    pub const MALFORMED: u32 = 2;
    pub const REFUSED: u32 = 3;
}

pub struct Transport {
    endpoint: quinn::Endpoint,
    config: TransportConfig,
    client: RwLock<quinn::ClientConfig>,
    mesh_client: RwLock<quinn::ClientConfig>,
    overlay_client: RwLock<quinn::ClientConfig>,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// Mesh connections, apart from `conns` so that bulk traffic never
    /// queues control messages behind it.
    tunnels: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// The overlay data plane's connections, apart again: their own idle
    /// timeout, MTU and datagram buffers.
    overlays: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// Connections peers opened to us, by the node their certificate names,
    /// so that they can be closed when that node loses its standing.
    accepted: Mutex<HashMap<String, Vec<(PeerId, quinn::Connection)>>>,
    inbound: Arc<dyn Inbound>,
    /// The mesh's and the overlay's handlers, once set: until then their
    /// connections are refused (a peer dials again).
    mesh: RwLock<Option<Arc<dyn Tunnels>>>,
    overlay: RwLock<Option<Arc<dyn OverlayConns>>>,
    /// One ordered pipe per peer for `send_ordered`: a task that owns a
    /// long-lived unidirectional stream and writes what the channel brings.
    pipes: Mutex<HashMap<SocketAddr, tokio::sync::mpsc::Sender<Vec<u8>>>>,
    /// Injected network faults (empty unless a chaos engineer adds some).
    pub faults: faults::Faults,
    refusals: quiet::Quiet,
    /// Incoming connections refused: at the TLS handshake (no certificate
    /// of this swarm, a bad join), and after it (a node the state does not
    /// admit). Read by `--metrics-addr`.
    refused_handshake: std::sync::atomic::AtomicU64,
    refused_admission: std::sync::atomic::AtomicU64,
    /// Bytes the endpoint's socket sent and received (`--metrics-addr`).
    bytes: Arc<counted::ByteCounts>,
}

fn transport_config(c: &TransportConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(c.keep_alive));
    if let Ok(idle) = quinn::IdleTimeout::try_from(c.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    // Every proxied connection is a stream: quinn's default of 100 would
    // cap a node's connections to one peer.
    t.max_concurrent_bidi_streams(MAX_TUNNELS.into());
    Arc::new(t)
}

/// The overlay data plane's connections live through blips of a few
/// seconds (a connection's idle timeout is the smaller of the two sides':
/// the server offers this much, control clients still ask for 1 s).
pub const OVERLAY_IDLE: Duration = Duration::from_secs(10);
/// Datagrams queued per overlay connection, each way.
pub const OVERLAY_DATAGRAM_BUFFER: usize = 4 << 20;

/// The server side: like `transport_config`, but an idle timeout the
/// overlay's clients may use, and room for their datagrams.
fn server_transport_config(c: &TransportConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(c.keep_alive));
    if let Ok(idle) = quinn::IdleTimeout::try_from(c.idle_timeout.max(OVERLAY_IDLE)) {
        t.max_idle_timeout(Some(idle));
    }
    t.max_concurrent_bidi_streams(MAX_TUNNELS.into());
    t.datagram_receive_buffer_size(Some(OVERLAY_DATAGRAM_BUFFER));
    Arc::new(t)
}

/// The overlay client's connections: the idle timeout above, the
/// underlay's UDP payload size from the first packet on (`udp_payload`,
/// the same as the minimum: the inner MTU is chosen from it, and a path
/// that shrinks below it would make inner packets too big), no datagrams
/// dropped for want of buffer.
pub fn overlay_transport_config(udp_payload: u16) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(OVERLAY_IDLE) {
        t.max_idle_timeout(Some(idle));
    }
    let mtu = udp_payload.max(1200);
    t.initial_mtu(mtu);
    t.min_mtu(mtu);
    t.mtu_discovery_config(None);
    t.datagram_receive_buffer_size(Some(OVERLAY_DATAGRAM_BUFFER));
    t.datagram_send_buffer_size(OVERLAY_DATAGRAM_BUFFER);
    t.max_concurrent_bidi_streams(0u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    // The overlay is a link: the TCP flows inside do their own congestion
    // control (a datagram QUIC counts as lost is never resent, so the inner
    // flow sees the loss and backs off). A second controller underneath only
    // halves the link on every UDP drop; WireGuard and IPsec have none.
    t.congestion_controller_factory(Arc::new(LinkWindow));
    // The peer acknowledges every 32nd datagram (or after 2 ms) rather than
    // every 2nd: with nothing to resend and a fixed window, acknowledgements
    // only free the window, and each one is a packet both nodes handle.
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(quinn::VarInt::from_u32(31))
        .max_ack_delay(Some(Duration::from_millis(2)));
    t.ack_frequency_config(Some(ack));
    Arc::new(t)
}

/// The in-flight bytes an overlay connection allows: enough for 10 Gbit/s
/// over 10 ms, and constant (see `overlay_transport_config`).
const LINK_WINDOW: u64 = 16 << 20;

/// A congestion "controller" that does not react: a fixed window.
#[derive(Debug, Clone, Copy)]
struct LinkWindow;

impl quinn::congestion::ControllerFactory for LinkWindow {
    fn build(
        self: Arc<Self>,
        _now: std::time::Instant,
        _mtu: u16,
    ) -> Box<dyn quinn::congestion::Controller> {
        Box::new(LinkWindow)
    }
}

impl quinn::congestion::Controller for LinkWindow {
    fn on_congestion_event(
        &mut self,
        _now: std::time::Instant,
        _sent: std::time::Instant,
        _persistent: bool,
        _lost: u64,
    ) {
    }
    fn on_mtu_update(&mut self, _mtu: u16) {}
    fn window(&self) -> u64 {
        LINK_WINDOW
    }
    fn clone_box(&self) -> Box<dyn quinn::congestion::Controller> {
        Box::new(*self)
    }
    fn initial_window(&self) -> u64 {
        LINK_WINDOW
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// UDP socket buffers of the node's endpoint: the overlay's bursts at
/// line rate overflow the kernel's default (about 200 KiB) while the
/// daemon is busy, and every overflow is a lost inner packet.
const SOCKET_BUFFER: usize = 8 << 20;

/// The node's endpoint on `addr`, with socket buffers of `SOCKET_BUFFER`
/// (forced past `net.core.[rw]mem_max` when the daemon may, else as large
/// as the system allows).
fn bind_endpoint(
    server: quinn::ServerConfig,
    addr: SocketAddr,
    bytes: Arc<counted::ByteCounts>,
) -> std::io::Result<quinn::Endpoint> {
    use std::os::fd::AsRawFd;
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let size = SOCKET_BUFFER as libc::c_int;
        // SAFETY: setsockopt(2) with an int option on a socket we own.
        let set = |opt| unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set(force) != 0 {
            let _ = set(plain);
        }
    }
    socket.bind(&addr.into())?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    let socket = counted::Counted::new(runtime.wrap_udp_socket(socket.into())?, bytes);
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
}

/// Reads the node identity out of the peer's verified certificate chain.
fn peer_id(conn: &quinn::Connection) -> Option<PeerId> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::certs::identity_of(chain.first()?.as_ref())
}

impl Transport {
    pub fn bind(
        addr: SocketAddr,
        identity: &TlsIdentity,
        config: TransportConfig,
        inbound: Arc<dyn Inbound>,
    ) -> Result<Arc<Self>, TransportError> {
        let mut server = tls::server_config(identity)?;
        server.transport_config(server_transport_config(&config));
        let mut client = tls::client_config(identity)?;
        client.transport_config(transport_config(&config));
        let mut mesh_client = tls::mesh_client_config(identity)?;
        mesh_client.transport_config(transport_config(&config));
        let overlay_client = tls::overlay_client_config(identity)?;
        let bytes = Arc::new(counted::ByteCounts::default());
        let endpoint = bind_endpoint(server, addr, bytes.clone())
            .map_err(|e| TransportError::Bind(addr, e))?;
        let t = Arc::new(Transport {
            endpoint,
            config,
            client: RwLock::new(client),
            mesh_client: RwLock::new(mesh_client),
            overlay_client: RwLock::new(overlay_client),
            conns: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            overlays: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
            inbound: inbound.clone(),
            mesh: RwLock::new(None),
            overlay: RwLock::new(None),
            pipes: Mutex::new(HashMap::new()),
            faults: faults::Faults::default(),
            refusals: quiet::Quiet::new(Duration::from_secs(10)),
            refused_handshake: std::sync::atomic::AtomicU64::new(0),
            refused_admission: std::sync::atomic::AtomicU64::new(0),
            bytes,
        });
        tokio::spawn(accept_loop(t.clone(), inbound));
        Ok(t)
    }

    /// Serves the mesh protocol's tunnels with `handler` from now on.
    pub fn serve_mesh(&self, handler: Arc<dyn Tunnels>) {
        *self.mesh.write() = Some(handler);
    }

    /// Serves the overlay protocol's connections with `handler` from now on.
    pub fn serve_overlay(&self, handler: Arc<dyn OverlayConns>) {
        *self.overlay.write() = Some(handler);
    }

    /// Asks `Inbound::admits` again about every connection `node_id` opened
    /// to us (and ours to it) and closes those it refuses: called when the
    /// node's entry in the cluster state changes (removal, role change).
    pub fn recheck(&self, node_id: &str) {
        let mut refused = Vec::new();
        if let Some(list) = self.accepted.lock().get_mut(node_id) {
            list.retain(|(peer, conn)| match self.inbound.admits(peer) {
                Ok(()) => conn.close_reason().is_none(),
                Err(why) => {
                    conn.close(close::REFUSED.into(), why.as_bytes());
                    refused.push(why);
                    false
                }
            });
        }
        if let Some(why) = refused.first() {
            tracing::warn!(node = %node_id, reason = why, "closed the node's connections");
        }
    }

    /// `recheck` for every node with a connection open to us.
    pub fn recheck_all(&self) {
        let nodes: Vec<String> = self.accepted.lock().keys().cloned().collect();
        for n in nodes {
            self.recheck(&n);
        }
    }

    fn register(&self, peer: &PeerId, conn: &quinn::Connection) {
        let mut accepted = self.accepted.lock();
        let list = accepted.entry(peer.node_id.clone()).or_default();
        list.retain(|(_, c)| c.close_reason().is_none());
        list.push((peer.clone(), conn.clone()));
    }

    fn unregister(&self, peer: &PeerId, conn: &quinn::Connection) {
        let mut accepted = self.accepted.lock();
        if let Some(list) = accepted.get_mut(&peer.node_id) {
            list.retain(|(_, c)| c.stable_id() != conn.stable_id());
            if list.is_empty() {
                accepted.remove(&peer.node_id);
            }
        }
    }

    /// Switches to a new certificate (a role change): new connections, both
    /// ways, use it; existing ones are dropped.
    /// Incoming connections refused since the endpoint was bound, by where.
    pub fn refused(&self) -> [(&'static str, u64); 2] {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        [
            ("handshake", load(&self.refused_handshake)),
            ("admission", load(&self.refused_admission)),
        ]
    }

    /// Bytes of UDP payload (QUIC packets of every kind) the endpoint sent
    /// and received since it was bound.
    pub fn bytes(&self) -> [(&'static str, u64); 2] {
        let (sent, received) = self.bytes.get();
        [("sent", sent), ("received", received)]
    }

    /// Connections of the endpoint, inbound and outbound, of every kind
    /// (control, mesh, overlay), as quinn counts them now.
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    pub fn reload(&self, identity: &TlsIdentity) -> Result<(), TransportError> {
        let mut server = tls::server_config(identity)?;
        server.transport_config(server_transport_config(&self.config));
        let mut client = tls::client_config(identity)?;
        client.transport_config(transport_config(&self.config));
        let mut mesh_client = tls::mesh_client_config(identity)?;
        mesh_client.transport_config(transport_config(&self.config));
        let overlay_client = tls::overlay_client_config(identity)?;
        self.endpoint.set_server_config(Some(server));
        *self.client.write() = client;
        *self.mesh_client.write() = mesh_client;
        *self.overlay_client.write() = overlay_client;
        for (_, c) in self.overlays.lock().drain() {
            c.close(0u32.into(), b"certificate changed");
        }
        for (_, c) in self.conns.lock().drain() {
            c.close(0u32.into(), b"certificate changed");
        }
        for (_, c) in self.tunnels.lock().drain() {
            c.close(0u32.into(), b"certificate changed");
        }
        Ok(())
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// A connection to `addr`, reused while it lives.
    pub async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        self.cached(&self.conns, &self.client, addr).await
    }

    /// A new connection to `addr` with `client`'s configuration.
    async fn dial(
        &self,
        client: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        let connect = |e: &dyn std::fmt::Display| TransportError::Connect(addr, e.to_string());
        self.endpoint
            .connect_with(client, addr, tls::server_name())
            .map_err(|e| connect(&e))?
            .await
            .map_err(|e| connect(&e))
    }

    /// The connection `cache` holds for `addr` while it lives, or a new one
    /// made with `client`.
    async fn cached(
        &self,
        cache: &Mutex<HashMap<SocketAddr, quinn::Connection>>,
        client: &RwLock<quinn::ClientConfig>,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = cache.lock().get(&addr) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let client = client.read().clone();
        let conn = self.dial(client, addr).await?;
        cache.lock().insert(addr, conn.clone());
        Ok(conn)
    }

    /// An injected fault on the way to `addr`: delays, or refuses with an error.
    async fn outbound_fault(&self, addr: SocketAddr) -> Result<(), TransportError> {
        match self.faults.verdict(addr, true) {
            faults::Verdict::Drop => Err(TransportError::Stream(
                addr,
                "dropped by an injected fault".into(),
            )),
            faults::Verdict::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            faults::Verdict::Pass => Ok(()),
        }
    }

    /// A new tunnel (bidirectional stream) to `addr` on the mesh connection.
    pub async fn open_tunnel(
        &self,
        addr: SocketAddr,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        self.outbound_fault(addr).await?;
        let conn = self.cached(&self.tunnels, &self.mesh_client, addr).await?;
        conn.open_bi()
            .await
            .map_err(|e| TransportError::Stream(addr, e.to_string()))
    }

    /// The overlay data plane's connection to `addr`, reused while it
    /// lives; new ones use `config` (see `overlay_transport_config`).
    pub async fn overlay_connect(
        &self,
        addr: SocketAddr,
        config: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::Connection, TransportError> {
        if let Some(c) = self.overlays.lock().get(&addr) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let mut client = self.overlay_client.read().clone();
        client.transport_config(config);
        let conn = self.dial(client, addr).await?;
        self.overlays.lock().insert(addr, conn.clone());
        Ok(conn)
    }

    /// Sends a one-way message.
    pub async fn send(&self, addr: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        match self.faults.verdict(addr, true) {
            faults::Verdict::Drop => return Ok(()),
            faults::Verdict::Delay(d) => tokio::time::sleep(d).await,
            faults::Verdict::Pass => {}
        }
        let conn = self.connect(addr).await?;
        let mut s = conn
            .open_uni()
            .await
            .map_err(|e| TransportError::Stream(addr, e.to_string()))?;
        write_frame(&mut s, bytes).await?;
        s.finish()
            .map_err(|e| TransportError::Stream(addr, e.to_string()))?;
        Ok(())
    }

    /// Queues a one-way message on the ordered pipe to `addr`: messages
    /// queued for one peer arrive in the order they were queued, or not at
    /// all (a lost connection loses what was in flight; Raft sends again).
    /// Never waits: a peer whose pipe is full (dead, or far behind) loses
    /// the message. A message an injected fault delays takes the
    /// one-stream-per-message path instead, so the delay does not hold up
    /// the pipe.
    pub fn send_ordered(self: &Arc<Self>, addr: SocketAddr, bytes: Vec<u8>) {
        match self.faults.verdict(addr, true) {
            faults::Verdict::Drop => return,
            faults::Verdict::Delay(_) => {
                let t = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = t.send(addr, &bytes).await {
                        tracing::debug!(%addr, error = %e, "send failed");
                    }
                });
                return;
            }
            faults::Verdict::Pass => {}
        }
        let mut pipes = self.pipes.lock();
        let tx = match pipes.get(&addr) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = tokio::sync::mpsc::channel(PIPE_DEPTH);
                tokio::spawn(pipe(Arc::downgrade(self), addr, rx));
                pipes.insert(addr, tx.clone());
                tx
            }
        };
        drop(pipes);
        if let Err(e) = tx.try_send(bytes) {
            tracing::debug!(%addr, error = %e, "ordered pipe full or closed; message dropped");
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.outbound_fault(addr).await?;
        let conn = self.connect(addr).await?;
        exchange(&conn, addr, bytes, self.config.max_frame).await
    }

    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// Drops the control connection and ordered pipe this transport holds
    /// to `addr`: the node there may have started again, and what was open
    /// would lead to its previous process, which no longer answers. What is
    /// sent next dials anew, instead of vanishing until an idle timeout.
    /// Mesh and overlay connections stay (they carry users' traffic; they
    /// redial on their own errors).
    pub fn forget(&self, addr: SocketAddr) {
        if let Some(c) = self.conns.lock().remove(&addr) {
            c.close(0u32.into(), b"peer registered again");
        }
        self.pipes.lock().remove(&addr);
    }
}

/// Messages queued on one peer's ordered pipe before new ones are dropped.
const PIPE_DEPTH: usize = 4096;

/// Bytes of queued frames a pipe writes in one go.
const PIPE_BATCH: usize = 1024 * 1024;

/// The task behind one peer's ordered pipe: takes whatever is queued (up to
/// `PIPE_BATCH` bytes), writes it as consecutive frames on its stream, and
/// opens a new stream (on a new connection if need be) after a failure. It
/// ends when the transport is gone or nothing can reach it any more.
async fn pipe(
    t: std::sync::Weak<Transport>,
    addr: SocketAddr,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut stream: Option<quinn::SendStream> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match frame::header(m.len()) {
                Ok(h) => {
                    buf.extend_from_slice(&h);
                    buf.extend_from_slice(&m);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "message too large to send"),
            }
            if buf.len() < PIPE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let Some(transport) = t.upgrade() else {
            return;
        };
        if stream.is_none() {
            let opened = match transport.connect(addr).await {
                Ok(conn) => conn
                    .open_uni()
                    .await
                    .map_err(|e| TransportError::Stream(addr, e.to_string())),
                Err(e) => Err(e),
            };
            match opened {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "ordered pipe cannot reach its peer; messages dropped");
                    continue;
                }
            }
        }
        drop(transport);
        if let Some(s) = stream.as_mut() {
            if let Err(e) = s.write_all(&buf).await {
                tracing::debug!(%addr, error = %e, "ordered pipe lost its stream; messages dropped");
                stream = None;
            }
        }
    }
}

/// One request on a fresh bidirectional stream: send the frame, read the answer.
async fn exchange(
    conn: &quinn::Connection,
    addr: SocketAddr,
    bytes: &[u8],
    max_frame: usize,
) -> Result<Vec<u8>, TransportError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| TransportError::Stream(addr, e.to_string()))?;
    write_frame(&mut send, bytes).await?;
    send.finish()
        .map_err(|e| TransportError::Stream(addr, e.to_string()))?;
    Ok(read_frame(&mut recv, max_frame).await?)
}

async fn accept_loop(t: Arc<Transport>, inbound: Arc<dyn Inbound>) {
    while let Some(incoming) = t.endpoint.accept().await {
        let t = t.clone();
        let inbound = inbound.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    t.refused_handshake
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Anyone can send packets: a flood must not flood the log.
                    if let Some(suppressed) = t.refusals.admit() {
                        tracing::warn!(error = %e, suppressed, "refused an incoming connection (and {suppressed} more since the last such line)");
                    } else {
                        tracing::debug!(error = %e, "refused an incoming connection");
                    }
                    return;
                }
            };
            serve_connection(t, conn, inbound).await;
        });
    }
}

async fn serve_connection(t: Arc<Transport>, conn: quinn::Connection, inbound: Arc<dyn Inbound>) {
    let remote = conn.remote_address();
    let Some(peer) = peer_id(&conn) else {
        serve_anonymous(t, conn, inbound).await;
        return;
    };
    if let Err(why) = inbound.admits(&peer) {
        t.refused_admission
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%remote, node = %peer.node_id, reason = why, "refused a connection");
        conn.close(close::REFUSED.into(), why.as_bytes());
        return;
    }
    t.register(&peer, &conn);
    if alpn_is(&conn, tls::MESH_ALPN) {
        let mesh = t.mesh.read().clone();
        match mesh {
            Some(mesh) => serve_tunnels(&conn, &peer, &inbound, &mesh).await,
            None => conn.close(close::REFUSED.into(), b"no mesh here"),
        }
    } else if alpn_is(&conn, tls::OVERLAY_ALPN) {
        let overlay = t.overlay.read().clone();
        match overlay {
            Some(overlay) => overlay.overlay(&peer, conn.clone()).await,
            None => conn.close(close::REFUSED.into(), b"no overlay here"),
        }
    } else {
        serve_streams(&t, &conn, &peer, &inbound).await;
    }
    t.unregister(&peer, &conn);
}

fn alpn_is(conn: &quinn::Connection, alpn: &[u8]) -> bool {
    conn.handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .is_some_and(|p| p == alpn)
}

/// A mesh connection carries tunnels only: each stream goes to the mesh's
/// handler, as long as the peer keeps its standing.
async fn serve_tunnels(
    conn: &quinn::Connection,
    peer: &PeerId,
    inbound: &Arc<dyn Inbound>,
    mesh: &Arc<dyn Tunnels>,
) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        if !still_admitted(inbound, peer, conn) {
            return;
        }
        tokio::spawn(mesh.clone().tunnel(peer, send, recv));
    }
}

/// Refuses (and closes the connection of) a peer that lost its standing
/// since the connection was accepted.
fn still_admitted(inbound: &Arc<dyn Inbound>, peer: &PeerId, conn: &quinn::Connection) -> bool {
    match inbound.admits(peer) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(remote = %conn.remote_address(), node = %peer.node_id, reason = why, "closing a connection");
            conn.close(close::REFUSED.into(), why.as_bytes());
            false
        }
    }
}

async fn serve_streams(
    t: &Arc<Transport>,
    conn: &quinn::Connection,
    peer: &PeerId,
    inbound: &Arc<dyn Inbound>,
) {
    let remote = conn.remote_address();
    let max = t.config.max_frame;
    loop {
        tokio::select! {
            uni = conn.accept_uni() => {
                let Ok(recv) = uni else { return };
                if !still_admitted(inbound, peer, conn) {
                    return;
                }
                // Read apart from this loop: a pipe's stream lasts as long as
                // the connection, and its frames are taken in order.
                let (t, peer, inbound, conn) = (t.clone(), peer.clone(), inbound.clone(), conn.clone());
                tokio::spawn(async move { serve_uni(&t, &conn, &peer, &inbound, recv).await });
            }
            bi = conn.accept_bi() => {
                let Ok((mut send, mut recv)) = bi else { return };
                if !still_admitted(inbound, peer, conn) {
                    return;
                }
                let verdict = t.faults.verdict(remote, false);
                if verdict == faults::Verdict::Drop {
                    // Unanswered: the stream ends without a reply, as if lost.
                    continue;
                }
                let (peer, inbound, conn) = (peer.clone(), inbound.clone(), conn.clone());
                tokio::spawn(async move {
                    if let faults::Verdict::Delay(d) = verdict {
                        tokio::time::sleep(d).await;
                    }
                    let answer = match read_frame(&mut recv, max).await {
                        Ok(bytes) => inbound.request(Some(&peer), bytes).await,
                        Err(e) => Err(e.into()),
                    };
                    match answer {
                        Ok(bytes) => {
                            if write_frame(&mut send, &bytes).await.is_ok() {
                                let _ = send.finish();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%remote, node = %peer.node_id, error = %e, "malformed request; closing the connection");
                            conn.close(close::MALFORMED.into(), b"malformed frame");
                        }
                    }
                });
            }
        }
    }
}

/// Frames off one unidirectional stream, one after the other, until it ends:
/// a single message, or an ordered pipe's many. A malformed frame closes
/// the connection.
async fn serve_uni(
    t: &Arc<Transport>,
    conn: &quinn::Connection,
    peer: &PeerId,
    inbound: &Arc<dyn Inbound>,
    mut recv: quinn::RecvStream,
) {
    let remote = conn.remote_address();
    let max = t.config.max_frame;
    let mut first = true;
    loop {
        let bytes = match frame::read_next_frame(&mut recv, max).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                if conn.close_reason().is_none() {
                    tracing::warn!(%remote, node = %peer.node_id, error = %e, "malformed message; closing the connection");
                    conn.close(close::MALFORMED.into(), b"malformed frame");
                }
                return;
            }
        };
        // Asked at the stream's start by the accept loop, and again for
        // every later message.
        if !first && !still_admitted(inbound, peer, conn) {
            return;
        }
        first = false;
        let result = match t.faults.verdict(remote, false) {
            faults::Verdict::Drop => Ok(()),
            faults::Verdict::Delay(d) => {
                // Delivered later, off this stream: a delay adds latency
                // to each message, it must not queue the stream behind it.
                let (peer, inbound, conn) = (peer.clone(), inbound.clone(), conn.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    if let Err(e) = inbound.message(&peer, bytes) {
                        tracing::warn!(%remote, node = %peer.node_id, error = %e, "malformed message; closing the connection");
                        conn.close(close::MALFORMED.into(), b"malformed frame");
                    }
                });
                Ok(())
            }
            faults::Verdict::Pass => inbound.message(peer, bytes),
        };
        if let Err(e) = result {
            tracing::warn!(%remote, node = %peer.node_id, error = %e, "malformed message; closing the connection");
            conn.close(close::MALFORMED.into(), b"malformed frame");
            return;
        }
    }
}

/// A client without a certificate gets exactly one request (a join), no
/// one-way messages, and small frames.
async fn serve_anonymous(t: Arc<Transport>, conn: quinn::Connection, inbound: Arc<dyn Inbound>) {
    const MAX_JOIN_FRAME: usize = 64 * 1024;
    let remote = conn.remote_address();
    let accepted = tokio::time::timeout(t.config.idle_timeout * 10, conn.accept_bi()).await;
    let Ok(Ok((mut send, mut recv))) = accepted else {
        conn.close(close::REFUSED.into(), b"a certificate is required");
        return;
    };
    let answer = match read_frame(&mut recv, MAX_JOIN_FRAME).await {
        Ok(bytes) => inbound.request(None, bytes).await,
        Err(e) => Err(e.into()),
    };
    match answer {
        Ok(bytes) => {
            if write_frame(&mut send, &bytes).await.is_ok() {
                let _ = send.finish();
                // Let the answer reach the client before the connection goes.
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            }
        }
        Err(e) => {
            if let Some(suppressed) = t.refusals.admit() {
                tracing::warn!(%remote, error = %e, suppressed, "malformed request from a node without a certificate");
            } else {
                tracing::debug!(%remote, error = %e, "malformed request from a node without a certificate");
            }
            conn.close(close::MALFORMED.into(), b"malformed frame");
        }
    }
}

/// One request to `addr` without a client certificate, trusting only the CA
/// whose digest is `ca_digest` (how a node joins with a token).
pub async fn anonymous_request(
    bind: SocketAddr,
    addr: SocketAddr,
    ca_digest: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| TransportError::Bind(bind, e))?;
    endpoint.set_default_client_config(tls::join_client_config(ca_digest)?);
    let conn = endpoint
        .connect(addr, tls::server_name())
        .map_err(|e| TransportError::Connect(addr, e.to_string()))?
        .await
        .map_err(|e| TransportError::Connect(addr, e.to_string()))?;
    let answer = exchange(&conn, addr, bytes, MAX_FRAME).await;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    answer
}
