//! The routing mesh: this node's userspace L4 proxy for published ports.
//! Every node listens on every ingress port (on its advertise address) and
//! sends each TCP connection to a running task of the service, on this node
//! directly or on another through a tunnel over QUIC; a host-mode port is
//! bound only where its task runs, straight to that task.
//!
//! The proxy follows the endpoint table the leader's dispatcher sends
//! (`ports::endpoints`, from the replicated state): it decides nothing about
//! which tasks exist, only which of them a connection goes to, and it never
//! dials a task of another node itself.
//!
//! A tunnel a peer opens is taken only for what the same table publishes:
//! a running task of this node, a target port and protocol its service
//! publishes in ingress mode (`admit::tunnel`); and it is never dialled on
//! a loopback address (a `--network host` task), so no peer reaches this
//! node's own loopback services through it.

mod admit;
pub mod limits;
mod pool;
mod proxy_header;
mod relay;
pub mod tunnel;
mod udp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shoal_actors::driver::Drivers;
use shoal_actors::session::EndpointSink;
use shoal_core::model::port::{Balance, Protocol, ProxyProtocol, PublishMode};
use shoal_core::rules::port::{Backend, ServiceEndpoints};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::net::TransportSlot;
pub use pool::Pool;

/// Backends one connection tries before it gives up.
const TRIES: usize = 3;

/// Where a listening port leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// Any running task of the service, on any node.
    Ingress {
        service_id: String,
        target: u16,
        proxy: Option<ProxyProtocol>,
        /// TCP: a connection idle this long is closed.
        idle: Duration,
    },
    /// This node's own task.
    Host {
        task_id: String,
        target: u16,
        proxy: Option<ProxyProtocol>,
        idle: Duration,
    },
}

struct Listener {
    route: Arc<RwLock<Route>>,
    accept: tokio::task::JoinHandle<()>,
    /// A UDP port's socket, which its flows share to answer through.
    udp: Option<Arc<tokio::net::UdpSocket>>,
}

pub struct Mesh {
    /// This node's id and the address its published ports listen on, once
    /// it is in a swarm.
    own: RwLock<Option<String>>,
    bind_ip: RwLock<IpAddr>,
    drivers: Arc<Drivers>,
    transport: TransportSlot,
    pools: Mutex<BTreeMap<String, (Balance, Pool)>>,
    listeners: Mutex<BTreeMap<(Protocol, u16), Listener>>,
    /// The sockets of UDP ports no longer published: their flows may hold
    /// them (bound) a while yet, so a port published again takes its old
    /// socket back instead of failing to bind.
    retired_udp: Mutex<BTreeMap<u16, std::sync::Weak<tokio::net::UdpSocket>>>,
    /// The latest endpoint table: what a peer's tunnel may ask for.
    table: RwLock<Vec<ServiceEndpoints>>,
    /// Refused tunnels are logged at most once a period (a hostile peer
    /// must not fill the log).
    refusals: crate::transport::quiet::Quiet,
    /// Every connection and flow the published ports hold, capped.
    registry: Arc<limits::Registry>,
    /// Connections and flows admitted per published port, and tunnels to
    /// another node that could not be opened (`--metrics-addr`).
    pub counts: MeshCounts,
}

/// What the mesh counts as it works; `NodeMetrics` registers the handles.
#[derive(Debug, Clone, Default)]
pub struct MeshCounts {
    pub admitted: Family<PortLabels, Counter>,
    /// Where an ingress connection or flow went: a task of this node, one
    /// of another node, or none (no backend answered).
    pub backends: Family<BackendLabels, Counter>,
    pub tunnel_errors: Counter,
}

/// A published port, its protocol and where the mesh sent a connection:
/// `local`, `remote` or `none`. No task or node id: at most three values
/// per published port.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub port: u16,
    pub protocol: &'static str,
    pub backend: &'static str,
}

/// A published port and its protocol: at most a few thousand values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: u16,
    pub protocol: &'static str,
}

impl MeshCounts {
    fn admitted(&self, protocol: Protocol, port: u16) {
        let protocol = protocol.as_str();
        self.admitted
            .get_or_create(&PortLabels { port, protocol })
            .inc();
    }

    pub(crate) fn backend(&self, protocol: Protocol, port: u16, backend: &'static str) {
        let protocol = protocol.as_str();
        self.backends
            .get_or_create(&BackendLabels {
                port,
                protocol,
                backend,
            })
            .inc();
    }
}

/// `local` for a backend on this node, else `remote`.
fn whose(backend: &Backend, own: Option<&String>) -> &'static str {
    if Some(&backend.node_id) == own {
        "local"
    } else {
        "remote"
    }
}

impl Mesh {
    pub fn new(drivers: Arc<Drivers>, transport: TransportSlot) -> Arc<Self> {
        Arc::new(Mesh {
            bind_ip: RwLock::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            own: RwLock::new(None),
            drivers,
            transport,
            pools: Mutex::new(BTreeMap::new()),
            listeners: Mutex::new(BTreeMap::new()),
            retired_udp: Mutex::new(BTreeMap::new()),
            table: RwLock::new(Vec::new()),
            refusals: crate::transport::quiet::Quiet::new(Duration::from_secs(10)),
            registry: limits::Registry::new(limits::Limits::for_nofile(limits::nofile())),
            counts: MeshCounts::default(),
        })
    }

    /// Connections and flows held now (TCP, UDP), and evictions and
    /// refusals since start.
    pub fn held(&self) -> ((usize, usize), (u64, u64)) {
        (self.registry.held(), self.registry.turned_away())
    }

    /// This node's id and the address to listen on (its advertise address).
    pub fn set_node(&self, node_id: &str, bind_ip: IpAddr) {
        *self.own.write() = Some(node_id.to_string());
        *self.bind_ip.write() = bind_ip;
    }

    /// Stops listening everywhere (leaving the swarm, shutting down).
    pub fn clear(&self) {
        for (_, l) in std::mem::take(&mut *self.listeners.lock()) {
            l.accept.abort();
        }
        self.pools.lock().clear();
        self.table.write().clear();
    }

    /// The address of a task of this node, from the driver that runs it.
    fn local_addr(&self, task_id: &str) -> Option<IpAddr> {
        self.drivers.values().find_map(|d| d.address(task_id))
    }

    /// A connection to this node's task, opened with a PROXY protocol header
    /// naming `client` if the port asks for one.
    async fn dial_local(
        &self,
        task_id: &str,
        port: u16,
        proxy: Option<(ProxyProtocol, SocketAddr, SocketAddr)>,
    ) -> Option<TcpStream> {
        dial(self.local_addr(task_id)?, port, proxy).await
    }

    fn routes(&self, table: &[ServiceEndpoints]) -> BTreeMap<(Protocol, u16), Route> {
        let own = self.own.read().clone();
        let mut routes = BTreeMap::new();
        for svc in table {
            for p in &svc.ports {
                let key = (p.protocol, p.published_port);
                match p.publish_mode {
                    PublishMode::Ingress if p.published_port != 0 => {
                        routes.insert(
                            key,
                            Route::Ingress {
                                service_id: svc.service_id.clone(),
                                target: p.target_port,
                                proxy: p.proxy_protocol,
                                idle: idle_timeout(p),
                            },
                        );
                    }
                    PublishMode::Host if p.published_port != 0 => {
                        let mine = svc
                            .backends
                            .iter()
                            .find(|b| Some(&b.node_id) == own.as_ref());
                        if let Some(b) = mine {
                            routes.insert(
                                key,
                                Route::Host {
                                    task_id: b.task_id.clone(),
                                    target: p.target_port,
                                    proxy: p.proxy_protocol,
                                    idle: idle_timeout(p),
                                },
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        routes
    }

    fn apply(self: &Arc<Self>, table: Vec<ServiceEndpoints>) {
        self.table.write().clone_from(&table);
        {
            let mut pools = self.pools.lock();
            pools.retain(|id, _| table.iter().any(|s| s.service_id == *id));
            for svc in &table {
                let entry = pools.entry(svc.service_id.clone()).or_default();
                entry.0 = svc.balance;
                entry.1.set(svc.backends.clone());
            }
        }
        let routes = self.routes(&table);
        let mut listeners = self.listeners.lock();
        let mut retired = self.retired_udp.lock();
        retired.retain(|_, socket| socket.strong_count() > 0);
        listeners.retain(|key, l| {
            let keep = routes.contains_key(key) && !l.accept.is_finished();
            if !keep {
                l.accept.abort();
                if let Some(socket) = &l.udp {
                    retired.insert(key.1, Arc::downgrade(socket));
                }
            }
            keep
        });
        for (key, route) in routes {
            if let Some(l) = listeners.get(&key) {
                *l.route.write() = route;
                continue;
            }
            let (protocol, port) = key;
            let bind_ip = *self.bind_ip.read();
            let route = Arc::new(RwLock::new(route));
            let mut udp = None;
            let accept = match protocol {
                Protocol::Tcp => std::net::TcpListener::bind((bind_ip, port))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std)
                    .map(|l| tokio::spawn(accept_loop(self.clone(), l, port, route.clone()))),
                Protocol::Udp => {
                    let reused = retired
                        .remove(&port)
                        .and_then(|w| w.upgrade())
                        .filter(|s| s.local_addr().is_ok_and(|a| a.ip() == bind_ip));
                    match reused {
                        Some(socket) => Ok(socket),
                        None => std::net::UdpSocket::bind((bind_ip, port))
                            .and_then(|s| s.set_nonblocking(true).map(|()| s))
                            .and_then(tokio::net::UdpSocket::from_std)
                            .map(Arc::new),
                    }
                    .map(|socket| {
                        udp = Some(socket.clone());
                        tokio::spawn(udp_loop(self.clone(), socket, port, route.clone()))
                    })
                }
            };
            match accept {
                Ok(accept) => {
                    tracing::info!(addr = %bind_ip, %port, protocol = protocol.as_str(), "listening on a published port");
                    listeners.insert(key, Listener { route, accept, udp });
                }
                Err(e) => {
                    tracing::warn!(%port, protocol = protocol.as_str(), error = %e, "cannot listen on a published port");
                }
            }
        }
    }

    fn pick(&self, service_id: &str, tried: &[String]) -> Option<(Backend, pool::Held)> {
        let mut pools = self.pools.lock();
        let (balance, pool) = pools.get_mut(service_id)?;
        if pool.is_empty() {
            return None;
        }
        let picked = pool.pick(*balance, tried);
        if let Some((b, h)) = &picked {
            tracing::debug!(task = %b.task_id, open = h.open(), balance = balance.as_str(), "picked a backend");
        }
        picked
    }

    /// A stream to `backend`'s task: dialled here if it is this node's,
    /// otherwise through a tunnel to its node.
    async fn connect(
        &self,
        backend: &Backend,
        target: u16,
        ends: (SocketAddr, SocketAddr),
        proxy: Option<ProxyProtocol>,
    ) -> Option<Box<dyn Duplex>> {
        let (client, dest) = ends;
        let own = self.own.read().clone();
        if Some(&backend.node_id) == own.as_ref() {
            let header = proxy.map(|v| (v, client, dest));
            let s = self.dial_local(&backend.task_id, target, header).await?;
            return Some(Box::new(s));
        }
        let (transport, addr) = self.tunnel_to(backend)?;
        let header = tunnel::Header {
            task_id: backend.task_id.clone(),
            port: target,
            client,
            dest,
            proxy,
            protocol: Protocol::Tcp,
        };
        match tunnel::open(&transport, addr, &header).await {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                self.counts.tunnel_errors.inc();
                tracing::debug!(task = %backend.task_id, error = %e, "tunnel to a backend failed");
                None
            }
        }
    }

    async fn serve_client(
        self: Arc<Self>,
        client: TcpStream,
        (peer, port): (SocketAddr, u16),
        route: Route,
        admitted: limits::Admitted,
    ) {
        let Ok(dest) = client.local_addr() else {
            return;
        };
        let (upstream, _held, idle) = match route {
            Route::Host {
                task_id,
                target,
                proxy,
                idle,
            } => {
                let header = proxy.map(|v| (v, peer, dest));
                match self.dial_local(&task_id, target, header).await {
                    Some(s) => (Box::new(s) as Box<dyn Duplex>, None, idle),
                    None => return,
                }
            }
            Route::Ingress {
                service_id,
                target,
                proxy,
                idle,
            } => {
                let mut tried = Vec::new();
                let mut found = None;
                while tried.len() < TRIES {
                    let Some((backend, held)) = self.pick(&service_id, &tried) else {
                        break;
                    };
                    if let Some(s) = self.connect(&backend, target, (peer, dest), proxy).await {
                        let own = self.own.read().clone();
                        let backend = whose(&backend, own.as_ref());
                        self.counts.backend(Protocol::Tcp, port, backend);
                        found = Some((s, Some(held)));
                        break;
                    }
                    tried.push(backend.task_id);
                }
                match found {
                    Some((s, held)) => (s, held, idle),
                    None => {
                        self.counts.backend(Protocol::Tcp, port, "none");
                        tracing::debug!(service = %service_id, "no backend answered; connection closed");
                        return;
                    }
                }
            }
        };
        relay::relay(client, upstream, &admitted, idle).await;
    }

    /// A tunnel another node (`peer`) opened to one of this node's tasks.
    /// Refused unless the endpoint table publishes that task's target port
    /// and protocol in ingress mode, and the task has an address of its own.
    pub fn serve_tunnel(
        self: &Arc<Self>,
        peer: String,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> shoal_actors::driver::BoxFuture<()> {
        let me = self.clone();
        Box::pin(async move {
            let mut recv = recv;
            let Some(h) = tunnel::read_header(&mut recv).await else {
                return tunnel::refuse(send).await;
            };
            let (ip, idle) = match me.tunnel_target(&peer, &h) {
                Ok(target) => target,
                Err(why) => {
                    if let Some(suppressed) = me.refusals.admit() {
                        tracing::warn!(node = %peer, task = %h.task_id, port = h.port, protocol = h.protocol.as_str(), reason = %why, suppressed, "refused a tunnel (and {suppressed} more since the last such line)");
                    } else {
                        tracing::debug!(node = %peer, task = %h.task_id, port = h.port, reason = %why, "refused a tunnel");
                    }
                    return tunnel::refuse(send).await;
                }
            };
            // The descriptor the far end opens counts against this node's
            // caps, one share per peer.
            let source = limits::Source::Node(peer);
            let Ok(admitted) = me.registry.admit(h.protocol, limits::Door::Tunnels, source) else {
                return tunnel::refuse(send).await;
            };
            match h.protocol {
                Protocol::Tcp => {
                    let header = h.proxy.map(|v| (v, h.client, h.dest));
                    let Some(task) = dial(ip, h.port, header).await else {
                        return tunnel::refuse(send).await;
                    };
                    if let Some(t) = tunnel::accept(send, recv).await {
                        tunnel::splice(t, task, &admitted, idle).await;
                    }
                }
                Protocol::Udp => {
                    let Some(task) = udp_connect(ip, h.port).await else {
                        return tunnel::refuse(send).await;
                    };
                    if let Some(t) = tunnel::accept(send, recv).await {
                        udp::relay_tunnel(t, task, &admitted).await;
                    }
                }
            }
        })
    }

    /// The address a peer's tunnel may be dialled on, or why not.
    fn tunnel_target(
        &self,
        peer: &str,
        h: &tunnel::Header,
    ) -> Result<(IpAddr, Duration), admit::Refusal> {
        let own = self.own.read().clone().ok_or(admit::Refusal::NotInSwarm)?;
        let idle = {
            let table = self.table.read();
            let port = admit::tunnel(&table, &own, peer, &h.task_id, h.port, h.protocol)?;
            idle_timeout(port)
        };
        let ip = self
            .local_addr(&h.task_id)
            .ok_or(admit::Refusal::NotRunning)?;
        admit::address(ip)?;
        Ok((ip, idle))
    }
}

impl Mesh {
    /// The transport and address a tunnel to `backend`'s node takes.
    fn tunnel_to(
        &self,
        backend: &Backend,
    ) -> Option<(Arc<crate::transport::Transport>, SocketAddr)> {
        let transport = self.transport.read().clone()?;
        Some((transport, backend.node_addr.parse().ok()?))
    }

    /// A UDP socket connected to this node's task.
    async fn udp_local(&self, task_id: &str, port: u16) -> Option<tokio::net::UdpSocket> {
        udp_connect(self.local_addr(task_id)?, port).await
    }

    /// Where a new UDP flow from `client` goes, and the hold on its backend.
    async fn udp_upstream(
        &self,
        route: &Route,
        client: SocketAddr,
        dest: SocketAddr,
    ) -> Option<(udp::Upstream<tunnel::Tunnel>, Option<pool::Held>)> {
        match route {
            Route::Host {
                task_id, target, ..
            } => Some((
                udp::Upstream::Local(self.udp_local(task_id, *target).await?),
                None,
            )),
            Route::Ingress {
                service_id, target, ..
            } => {
                let mut tried = Vec::new();
                while tried.len() < TRIES {
                    let (backend, held) = self.pick(service_id, &tried)?;
                    let own = self.own.read().clone();
                    if Some(&backend.node_id) == own.as_ref() {
                        if let Some(s) = self.udp_local(&backend.task_id, *target).await {
                            return Some((udp::Upstream::Local(s), Some(held)));
                        }
                    } else if let Some((transport, addr)) = self.tunnel_to(&backend) {
                        let header = tunnel::Header {
                            task_id: backend.task_id.clone(),
                            port: *target,
                            client,
                            dest,
                            proxy: None,
                            protocol: Protocol::Udp,
                        };
                        match tunnel::open(&transport, addr, &header).await {
                            Ok(t) => return Some((udp::Upstream::Tunnel(t), Some(held))),
                            Err(_) => {
                                self.counts.tunnel_errors.inc();
                            }
                        }
                    }
                    tried.push(backend.task_id);
                }
                None
            }
        }
    }
}

/// A connection to `ip:port`, opened with a PROXY protocol header naming
/// `client` if the port asks for one.
async fn dial(
    ip: IpAddr,
    port: u16,
    proxy: Option<(ProxyProtocol, SocketAddr, SocketAddr)>,
) -> Option<TcpStream> {
    let mut s = tokio::time::timeout(tunnel::DIAL_TIMEOUT, TcpStream::connect((ip, port)))
        .await
        .ok()?
        .ok()?;
    if let Some((version, client, dest)) = proxy {
        s.write_all(&proxy_header::encode(version, client, dest))
            .await
            .ok()?;
    }
    Some(s)
}

/// A UDP socket connected to `ip:port`.
async fn udp_connect(ip: IpAddr, port: u16) -> Option<tokio::net::UdpSocket> {
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let s = tokio::net::UdpSocket::bind(any).await.ok()?;
    s.connect((ip, port)).await.ok()?;
    Some(s)
}

/// A published port's TCP idle timeout: its own, or `limits::TCP_IDLE`.
fn idle_timeout(p: &shoal_core::model::port::PortConfig) -> Duration {
    match p.idle_timeout_ns {
        0 => limits::TCP_IDLE,
        ns => Duration::from_nanos(ns),
    }
}

async fn udp_loop(
    mesh: Arc<Mesh>,
    socket: Arc<tokio::net::UdpSocket>,
    port: u16,
    route: Arc<RwLock<Route>>,
) {
    let flows = Arc::new(udp::Flows::default());
    let dest = socket.local_addr().ok();
    let mut buf = vec![0u8; udp::MAX_DATAGRAM];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        if flows.send(client, &buf[..n]) {
            continue;
        }
        // A new flow: a datagram beyond the caps is dropped (UDP may drop).
        let source = limits::Source::Client(client.ip());
        let Ok(admitted) = mesh
            .registry
            .admit(Protocol::Udp, limits::Door::Port(port), source)
        else {
            continue;
        };
        mesh.counts.admitted(Protocol::Udp, port);
        let rx = flows.start(client, buf[..n].to_vec());
        let (mesh, socket, flows) = (mesh.clone(), socket.clone(), flows.clone());
        let route = route.read().clone();
        let Some(dest) = dest else { continue };
        tokio::spawn(async move {
            let upstream = mesh.udp_upstream(&route, client, dest).await;
            if matches!(route, Route::Ingress { .. }) {
                let backend = match &upstream {
                    Some((udp::Upstream::Local(_), _)) => "local",
                    Some((udp::Upstream::Tunnel(_), _)) => "remote",
                    None => "none",
                };
                mesh.counts.backend(Protocol::Udp, port, backend);
            }
            if let Some((upstream, _held)) = upstream {
                udp::relay_flow(socket, client, rx, upstream, &admitted).await;
            }
            flows.end(client);
        });
    }
}

/// A byte stream both ways (a TCP socket or a tunnel).
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

async fn accept_loop(mesh: Arc<Mesh>, listener: TcpListener, port: u16, route: Arc<RwLock<Route>>) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            // Out of descriptors, say: a pause, not a spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Beyond its share, a client's new connection is closed at once.
        let source = limits::Source::Client(peer.ip());
        let Ok(admitted) = mesh
            .registry
            .admit(Protocol::Tcp, limits::Door::Port(port), source)
        else {
            continue;
        };
        mesh.counts.admitted(Protocol::Tcp, port);
        let _ = client.set_nodelay(true);
        let route = route.read().clone();
        tokio::spawn(
            mesh.clone()
                .serve_client(client, (peer, port), route, admitted),
        );
    }
}

/// The agent hands the table here (from an actor handler): applying it
/// binds sockets, so it happens on a task of its own, one table at a time
/// and in order (only the newest of a burst is applied).
pub struct MeshSink(tokio::sync::mpsc::UnboundedSender<Vec<ServiceEndpoints>>);

impl MeshSink {
    /// The sink, and the loop that applies what it is given (the newest
    /// table of those waiting) until the sink is dropped; the caller runs
    /// the loop among its own, so that it ends before the mesh is cleared.
    pub fn new(mesh: Arc<Mesh>) -> (MeshSink, impl std::future::Future<Output = ()> + Send) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<ServiceEndpoints>>();
        let applier = async move {
            while let Some(mut table) = rx.recv().await {
                while let Ok(newer) = rx.try_recv() {
                    table = newer;
                }
                mesh.apply(table);
            }
        };
        (MeshSink(tx), applier)
    }
}

impl EndpointSink for MeshSink {
    fn update(&self, table: Vec<ServiceEndpoints>) {
        let _ = self.0.send(table);
    }
}

impl crate::transport::Tunnels for Mesh {
    fn tunnel(
        self: Arc<Self>,
        peer: &crate::transport::PeerId,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> shoal_actors::driver::BoxFuture<()> {
        self.serve_tunnel(peer.node_id.clone(), send, recv)
    }
}
