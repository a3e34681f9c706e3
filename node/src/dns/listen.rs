//! The server's sockets: UDP and TCP on port `port` of each gateway address,
//! bound with `IP_FREEBIND` so a gateway whose bridge does not exist yet can
//! be listened on already; opened and closed as networks come and go.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::handler::Handler;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// TCP connections open at once, per address.
    pub tcp_connections: usize,
    /// How long a TCP connection may sit between queries (and on one read
    /// or write).
    pub tcp_idle: Duration,
}

fn socket(ty: Type, proto: Protocol, addr: SocketAddrV4) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
    s.set_freebind_v4(true)?;
    s.set_nonblocking(true)?;
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    s.bind(&SocketAddr::V4(addr).into())?;
    Ok(s)
}

/// A UDP socket on `addr`, which need not be assigned to an interface yet.
pub fn bind_udp(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    UdpSocket::from_std(socket(Type::DGRAM, Protocol::UDP, addr)?.into())
}

/// A TCP listener on `addr`, which need not be assigned to an interface yet.
pub fn bind_tcp(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let s = socket(Type::STREAM, Protocol::TCP, addr)?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

/// One address served: hickory's server for UDP, ours for TCP.
struct Listener {
    udp: Server<Handler>,
    tcp: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.udp.shutdown_token().cancel();
        self.tcp.abort();
    }
}

pub struct Listeners {
    port: u16,
    handler: Handler,
    limits: Limits,
    open: HashMap<Ipv4Addr, Listener>,
    /// Why an address could not be bound, so each reason is logged once.
    failed: HashMap<Ipv4Addr, String>,
}

impl Listeners {
    pub fn new(port: u16, handler: Handler, limits: Limits) -> Listeners {
        Listeners {
            port,
            handler,
            limits,
            open: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// The addresses served now.
    pub fn bound(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .open
            .keys()
            .map(|ip| SocketAddr::from((*ip, self.port)))
            .collect();
        v.sort();
        v
    }

    /// Serves exactly `want`: closes the others, opens the missing ones
    /// (trying again those that failed before).
    pub fn sync(&mut self, want: &[Ipv4Addr]) {
        self.open.retain(|ip, _| want.contains(ip));
        self.failed.retain(|ip, _| want.contains(ip));
        for ip in want {
            if self.open.contains_key(ip) {
                continue;
            }
            let addr = SocketAddrV4::new(*ip, self.port);
            match self.listen(addr) {
                Ok(l) => {
                    if self.failed.remove(ip).is_some() {
                        tracing::info!(%addr, "dns: listening now");
                    } else {
                        tracing::debug!(%addr, "dns: listening");
                    }
                    self.open.insert(*ip, l);
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.failed.get(ip) != Some(&why) {
                        tracing::warn!(%addr, error = %why, "dns: cannot listen; tasks of this network get no name service from this node");
                        self.failed.insert(*ip, why);
                    }
                }
            }
        }
    }

    fn listen(&self, addr: SocketAddrV4) -> io::Result<Listener> {
        let udp_sock = bind_udp(addr)?;
        let tcp_sock = bind_tcp(addr)?;
        let mut udp = Server::new(self.handler.clone());
        udp.register_socket(udp_sock);
        let tcp = tokio::spawn(super::tcp::serve(
            tcp_sock,
            self.handler.clone(),
            self.limits.tcp_connections,
            self.limits.tcp_idle,
        ));
        Ok(Listener { udp, tcp })
    }
}
