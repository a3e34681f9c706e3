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

mod pool;
mod proxy_header;
mod tunnel;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use shoal_actors::driver::Drivers;
use shoal_actors::ports::{
    Backend, Balance, Protocol, ProxyProtocol, PublishMode, ServiceEndpoints,
};
use shoal_actors::session::EndpointSink;
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
    },
    /// This node's own task.
    Host {
        task_id: String,
        target: u16,
        proxy: Option<ProxyProtocol>,
    },
}

struct Listener {
    route: Arc<RwLock<Route>>,
    accept: tokio::task::JoinHandle<()>,
}

pub struct Mesh {
    /// This node's id and the address its published ports listen on, once
    /// it is in a swarm.
    own: RwLock<Option<String>>,
    bind_ip: RwLock<IpAddr>,
    drivers: Arc<Drivers>,
    transport: TransportSlot,
    pools: Mutex<BTreeMap<String, (Balance, Pool)>>,
    listeners: Mutex<BTreeMap<u16, Listener>>,
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
        })
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
        let ip = self.local_addr(task_id)?;
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

    fn routes(&self, table: &[ServiceEndpoints]) -> BTreeMap<u16, Route> {
        let own = self.own.read().clone();
        let mut routes = BTreeMap::new();
        for svc in table {
            for p in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                match p.publish_mode {
                    PublishMode::Ingress if p.published_port != 0 => {
                        routes.insert(
                            p.published_port,
                            Route::Ingress {
                                service_id: svc.service_id.clone(),
                                target: p.target_port,
                                proxy: p.proxy_protocol,
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
                                p.published_port,
                                Route::Host {
                                    task_id: b.task_id.clone(),
                                    target: p.target_port,
                                    proxy: p.proxy_protocol,
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
        listeners.retain(|port, l| {
            let keep = routes.contains_key(port) && !l.accept.is_finished();
            if !keep {
                l.accept.abort();
            }
            keep
        });
        for (port, route) in routes {
            if let Some(l) = listeners.get(&port) {
                *l.route.write() = route;
                continue;
            }
            let bind_ip = *self.bind_ip.read();
            let std_listener = match std::net::TcpListener::bind((bind_ip, port)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%port, error = %e, "cannot listen on a published port");
                    continue;
                }
            };
            let listener = match std_listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(std_listener))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%port, error = %e, "cannot listen on a published port");
                    continue;
                }
            };
            tracing::info!(addr = %bind_ip, %port, "listening on a published port");
            let route = Arc::new(RwLock::new(route));
            let accept = tokio::spawn(accept_loop(self.clone(), listener, route.clone()));
            listeners.insert(port, Listener { route, accept });
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
        let transport = self.transport.read().clone()?;
        let addr: SocketAddr = backend.node_addr.parse().ok()?;
        let header = tunnel::Header {
            task_id: backend.task_id.clone(),
            port: target,
            client,
            dest,
            proxy,
        };
        match tunnel::open(&transport, addr, &header).await {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                tracing::debug!(task = %backend.task_id, error = %e, "tunnel to a backend failed");
                None
            }
        }
    }

    async fn serve_client(self: Arc<Self>, mut client: TcpStream, peer: SocketAddr, route: Route) {
        let Ok(dest) = client.local_addr() else {
            return;
        };
        let (mut upstream, _held) = match route {
            Route::Host {
                task_id,
                target,
                proxy,
            } => {
                let header = proxy.map(|v| (v, peer, dest));
                match self.dial_local(&task_id, target, header).await {
                    Some(s) => (Box::new(s) as Box<dyn Duplex>, None),
                    None => return,
                }
            }
            Route::Ingress {
                service_id,
                target,
                proxy,
            } => {
                let mut tried = Vec::new();
                let mut found = None;
                while tried.len() < TRIES {
                    let Some((backend, held)) = self.pick(&service_id, &tried) else {
                        break;
                    };
                    if let Some(s) = self.connect(&backend, target, (peer, dest), proxy).await {
                        found = Some((s, Some(held)));
                        break;
                    }
                    tried.push(backend.task_id);
                }
                match found {
                    Some(f) => f,
                    None => {
                        tracing::debug!(service = %service_id, "no backend answered; connection closed");
                        return;
                    }
                }
            }
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }

    /// A tunnel another node opened to one of this node's tasks.
    pub fn serve_tunnel(
        self: &Arc<Self>,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> shoal_actors::driver::BoxFuture<()> {
        let me = self.clone();
        Box::pin(async move {
            tunnel::serve(send, recv, |h| async move {
                let header = h.proxy.map(|v| (v, h.client, h.dest));
                me.dial_local(&h.task_id, h.port, header).await
            })
            .await
        })
    }
}

/// A byte stream both ways (a TCP socket or a tunnel).
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

async fn accept_loop(mesh: Arc<Mesh>, listener: TcpListener, route: Arc<RwLock<Route>>) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let route = route.read().clone();
        tokio::spawn(mesh.clone().serve_client(client, peer, route));
    }
}

/// The agent hands the table here (from an actor handler): applying it
/// binds sockets, so it happens on a task of its own, one table at a time
/// and in order (only the newest of a burst is applied).
pub struct MeshSink(tokio::sync::mpsc::UnboundedSender<Vec<ServiceEndpoints>>);

impl MeshSink {
    pub fn new(mesh: Arc<Mesh>) -> MeshSink {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<ServiceEndpoints>>();
        tokio::spawn(async move {
            while let Some(mut table) = rx.recv().await {
                while let Ok(newer) = rx.try_recv() {
                    table = newer;
                }
                mesh.apply(table);
            }
        });
        MeshSink(tx)
    }
}

impl EndpointSink for MeshSink {
    fn update(&self, table: Vec<ServiceEndpoints>) {
        let _ = self.0.send(table);
    }
}
