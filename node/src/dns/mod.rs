//! The node's embedded DNS server (service discovery on overlay networks).
//!
//! It listens on UDP and TCP port 53 of every overlay network's gateway
//! address (tasks' resolv.conf and docker tasks' `Dns` point there) and
//! answers from the network table the leader pushes (`NetworkWatch`):
//! `NAME` and its aliases → the service's VIP (endpoint mode vip) or its
//! serving tasks in rotating order (dnsrr), `tasks.NAME` → every serving
//! task, `NAME.NETWORK` likewise on that network only; TTL 0, A records
//! only, scoped to the networks of the asking task (found by the query's
//! source address among this node's tasks). Everything else goes to the
//! node's own resolvers.
//!
//! * `index.rs` — the table indexed for answering; the pure lookup.
//! * `handler.rs` — hickory's `RequestHandler`: query → answer.
//! * `forward.rs` — relaying to the node's resolvers.
//! * `listen.rs` — the sockets (`IP_FREEBIND`), one set per gateway.
//! * `tcp.rs` — DNS over TCP with a connection cap and idle timeout.

pub mod forward;
pub mod handler;
pub mod index;
pub mod listen;
pub mod tcp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::rules::network::NetworkTable;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use forward::{parse_resolv_conf, Forwarder};
pub use handler::{Handler, Shared};
pub use index::{Answer, Index};
pub use listen::Limits;

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Only this node's tasks may ask (None: any task of the table).
    pub node_id: Option<String>,
    /// 53 in a daemon; tests use another.
    pub port: u16,
    /// Where to forward; None: the `nameserver`s of `resolv_conf`.
    pub upstreams: Option<Vec<SocketAddr>>,
    pub resolv_conf: PathBuf,
    /// Forwarded queries in flight at once; more get SERVFAIL.
    pub forward_in_flight: usize,
    /// How long one upstream has to answer.
    pub forward_timeout: Duration,
    pub limits: Limits,
    /// What the server counts (`--metrics-addr`); the node hands in the
    /// handles its registry serves.
    pub counts: DnsCounts,
}

/// Queries, answers by outcome, and queries relayed to the node's resolvers.
#[derive(Debug, Clone, Default)]
pub struct DnsCounts {
    pub queries: prometheus_client::metrics::counter::Counter,
    pub answers: prometheus_client::metrics::family::Family<
        OutcomeLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    pub forwarded: prometheus_client::metrics::counter::Counter,
}

/// How a query was answered: `local` (an address of the swarm), `nodata`,
/// `nxdomain`, `forwarded`, `servfail` (no upstream answered), `refused`
/// (not a query, or malformed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl DnsCounts {
    pub fn answered(&self, outcome: &'static str) {
        self.answers.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

impl DnsConfig {
    pub fn new(node_id: Option<String>) -> DnsConfig {
        DnsConfig {
            node_id,
            port: 53,
            upstreams: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            forward_in_flight: 256,
            forward_timeout: Duration::from_secs(2),
            limits: Limits {
                tcp_connections: 64,
                tcp_idle: Duration::from_secs(10),
            },
            counts: DnsCounts::default(),
        }
    }
}

/// A running server; stopped (every socket closed) by `stop` or on drop.
pub struct DnsServer {
    shared: Arc<Shared>,
    bound: watch::Receiver<Vec<SocketAddr>>,
    follower: JoinHandle<()>,
}

impl DnsServer {
    /// Starts serving the networks of `tables` and follows it; must be
    /// called inside a tokio runtime.
    pub async fn start(config: DnsConfig, tables: watch::Receiver<Arc<NetworkTable>>) -> DnsServer {
        let upstreams = match config.upstreams.clone() {
            Some(u) => u,
            None => match tokio::fs::read_to_string(&config.resolv_conf).await {
                Ok(text) => parse_resolv_conf(&text),
                Err(e) => {
                    tracing::warn!(path = %config.resolv_conf.display(), error = %e, "dns: cannot read the node's resolvers; names that are not the swarm's get SERVFAIL");
                    Vec::new()
                }
            },
        };
        if upstreams.is_empty() {
            tracing::warn!(
                "dns: no resolver to forward to; names that are not the swarm's get SERVFAIL"
            );
        }
        let forwarder = Forwarder::new(upstreams, config.forward_in_flight, config.forward_timeout);
        let shared = Arc::new(Shared::new(
            tables.clone(),
            config.node_id.clone(),
            forwarder,
            config.port,
            config.counts.clone(),
        ));
        let (bound_tx, bound) = watch::channel(Vec::new());
        let mut listeners =
            listen::Listeners::new(config.port, Handler(shared.clone()), config.limits);
        let follower = {
            let shared = shared.clone();
            let mut tables = tables;
            tokio::spawn(async move {
                loop {
                    tables.borrow_and_update();
                    let ix = shared.index();
                    listeners.sync(ix.gateways());
                    bound_tx.send_if_modified(|b| {
                        let now = listeners.bound();
                        let changed = *b != now;
                        *b = now;
                        changed
                    });
                    if tables.changed().await.is_err() {
                        break;
                    }
                }
            })
        };
        DnsServer {
            shared,
            bound,
            follower,
        }
    }

    /// The addresses served now (changes as networks come and go).
    pub fn bound(&self) -> watch::Receiver<Vec<SocketAddr>> {
        self.bound.clone()
    }

    /// The resolvers unknown names go to.
    pub fn upstreams(&self) -> &[SocketAddr] {
        self.shared.forwarder().upstreams()
    }

    pub fn stop(self) {}
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.follower.abort();
    }
}
