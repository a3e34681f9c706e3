//! What the clients of published ports may hold of this node: caps on TCP
//! connections and UDP flows (over all ports, per port, per client address),
//! with the connection idle longest evicted when a cap is reached, and a
//! file-descriptor budget that leaves a reserve to the control API, Raft,
//! the transport and the drivers. Nothing a client of a published port
//! sends may make the node stop answering its operator.
//!
//! A tunnel a peer opens to one of this node's tasks counts here too (its
//! "source" is the peer node), so a flood through another node's ingress
//! is bounded on both nodes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shoal_core::model::port::Protocol;
use tokio::sync::Notify;

/// Descriptors kept for everything but the mesh (control API, Raft, QUIC,
/// sled, drivers, task logs), at most half the limit.
pub const FD_RESERVE: u64 = 1024;
/// New UDP flows one published port takes a second (datagrams of further
/// new flows are dropped; flows already open go on).
pub const UDP_NEW_FLOWS_PER_SEC: usize = 512;
/// A proxied TCP connection with no byte either way for this long is
/// closed, unless its port sets its own `IdleTimeout`.
pub const TCP_IDLE: Duration = Duration::from_secs(300);

/// The caps, for one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Over every published port (and every peer's tunnels) of the node.
    pub total: usize,
    /// On one published port (or over every peer's tunnels).
    pub per_port: usize,
    /// One client address on one port (one peer's tunnels: `per_port`).
    pub per_source: usize,
    /// New connections (flows) one published port takes a second; 0: no
    /// limit. A flood of new UDP flows costs a socket, a task and perhaps
    /// a tunnel stream each: beyond this rate they are dropped before any.
    pub new_per_sec: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub tcp: Caps,
    pub udp: Caps,
}

impl Limits {
    /// The caps for a process allowed `nofile` descriptors: a proxied TCP
    /// connection holds two (client and task; one through a tunnel), a UDP
    /// flow one, and `FD_RESERVE` stay free for the rest of the node.
    pub fn for_nofile(nofile: u64) -> Limits {
        let reserve = FD_RESERVE.min(nofile / 2);
        let budget = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
        // Half the budget each: TCP in pairs of descriptors.
        let tcp_total = (budget / 4).clamp(16, 4096);
        let udp_total = (budget / 2).clamp(16, 4096);
        let caps = |total: usize, new_per_sec| Caps {
            total,
            per_port: (total / 2).max(1),
            per_source: (total / 16).clamp(1, 256),
            new_per_sec,
        };
        Limits {
            tcp: caps(tcp_total, 0),
            udp: caps(udp_total, UDP_NEW_FLOWS_PER_SEC),
        }
    }

    fn caps(&self, protocol: Protocol) -> Caps {
        match protocol {
            Protocol::Tcp => self.tcp,
            Protocol::Udp => self.udp,
        }
    }
}

/// Where a connection comes in: a published port, or a peer's tunnels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Door {
    Port(u16),
    Tunnels,
}

/// Who holds it: a client address, or a peer node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Client(std::net::IpAddr),
    Node(String),
}

/// Why a new connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this client holds its share of the port's connections")]
    PerSource,
    #[error("the port took its share of new connections this second")]
    Rate,
}

struct Entry {
    protocol: Protocol,
    door: Door,
    source: Source,
    activity: Arc<AtomicU64>,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    entries: BTreeMap<u64, Entry>,
    totals: BTreeMap<Protocol, usize>,
    doors: BTreeMap<(Protocol, Door), usize>,
    sources: BTreeMap<(Protocol, Door, Source), usize>,
    /// New connections per published port in the current second.
    rates: BTreeMap<(Protocol, u16), (u64, usize)>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        let dec = |n: &mut usize| *n = n.saturating_sub(1);
        self.totals.entry(e.protocol).and_modify(dec);
        let door = (e.protocol, e.door.clone());
        self.doors.entry(door.clone()).and_modify(dec);
        if self.doors.get(&door) == Some(&0) {
            self.doors.remove(&door);
        }
        let source = (e.protocol, e.door.clone(), e.source.clone());
        self.sources.entry(source.clone()).and_modify(dec);
        if self.sources.get(&source) == Some(&0) {
            self.sources.remove(&source);
        }
        Some(e)
    }

    /// Evicts the entry idle longest among those `within` picks.
    fn evict_oldest(&mut self, within: impl Fn(&Entry) -> bool) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| within(e))
            .min_by_key(|(_, e)| e.activity.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.remove(id)) {
            Some(e) => {
                // A permit is stored if the holder is not waiting yet.
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Every connection and flow the mesh holds.
pub struct Registry {
    limits: Limits,
    epoch: Instant,
    inner: Mutex<Inner>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

/// A connection's place in the registry; it leaves when this is dropped.
pub struct Admitted {
    id: u64,
    registry: Arc<Registry>,
    activity: Arc<AtomicU64>,
    evict: Arc<Notify>,
}

impl Registry {
    pub fn new(limits: Limits) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A place for a new connection (TCP) or flow (UDP) from `source` on
    /// `door`: refused if the source holds its share; otherwise taken, the
    /// connection idle longest making room if a cap is reached.
    pub fn admit(
        self: &Arc<Self>,
        protocol: Protocol,
        door: Door,
        source: Source,
    ) -> Result<Admitted, Refused> {
        self.admit_at(protocol, door, source, self.now_ms())
    }

    /// `admit`, `now_ms` after the registry was made.
    fn admit_at(
        self: &Arc<Self>,
        protocol: Protocol,
        door: Door,
        source: Source,
        now_ms: u64,
    ) -> Result<Admitted, Refused> {
        let caps = self.limits.caps(protocol);
        let mut inner = self.inner.lock();
        let key = (protocol, door.clone(), source.clone());
        // A peer's tunnels carry many clients (the ingress node capped each
        // of them): one peer may hold a port's share.
        let per_source = match door {
            Door::Tunnels => caps.per_port,
            Door::Port(_) => caps.per_source,
        };
        if inner.sources.get(&key).copied().unwrap_or(0) >= per_source {
            // A UDP flow is soft state: at its share, a client's own flow
            // idle longest makes room. A client that takes a new source
            // port for every exchange (a DNS resolver does) would otherwise
            // be refused once it made `per_source` exchanges within
            // `udp::IDLE` (the chaos harness's traffic load found it: 256
            // flows in 30 s, ~8.5 exchanges a second through one node). A
            // flood from one address still holds no more than its share.
            let own = protocol == Protocol::Udp
                && matches!(door, Door::Port(_))
                && inner.evict_oldest(|e| {
                    e.protocol == protocol && e.door == door && e.source == source
                });
            if !own {
                drop(inner);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerSource);
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if let (Door::Port(port), n) = (&door, caps.new_per_sec) {
            if n > 0 {
                let second = now_ms / 1000;
                let rate = inner.rates.entry((protocol, *port)).or_insert((second, 0));
                if rate.0 != second {
                    *rate = (second, 0);
                }
                if rate.1 >= n {
                    drop(inner);
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::Rate);
                }
                rate.1 += 1;
            }
        }
        let door_key = (protocol, door.clone());
        if inner.doors.get(&door_key).copied().unwrap_or(0) >= caps.per_port
            && inner.evict_oldest(|e| e.protocol == protocol && e.door == door)
        {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if inner.totals.get(&protocol).copied().unwrap_or(0) >= caps.total
            && inner.evict_oldest(|e| e.protocol == protocol)
        {
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.next;
        inner.next += 1;
        let activity = Arc::new(AtomicU64::new(now_ms));
        let evict = Arc::new(Notify::new());
        *inner.totals.entry(protocol).or_default() += 1;
        *inner.doors.entry(door_key).or_default() += 1;
        *inner.sources.entry(key).or_default() += 1;
        inner.entries.insert(
            id,
            Entry {
                protocol,
                door,
                source,
                activity: activity.clone(),
                evict: evict.clone(),
            },
        );
        Ok(Admitted {
            id,
            registry: self.clone(),
            activity,
            evict,
        })
    }

    /// Connections and flows held now: (TCP, UDP).
    pub fn held(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        let n = |p| inner.totals.get(&p).copied().unwrap_or(0);
        (n(Protocol::Tcp), n(Protocol::Udp))
    }

    /// Evictions and refusals since start.
    pub fn turned_away(&self) -> (u64, u64) {
        (
            self.evicted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

impl Admitted {
    /// Bytes moved: the connection is not idle.
    pub fn touch(&self) {
        self.activity
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }

    /// Ends when the registry evicted this connection to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Ends once nothing moved for `idle` (since the last `touch`).
    pub async fn idle_for(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let last = self.activity.load(Ordering::Relaxed);
            let now = self.registry.now_ms();
            let quiet = now.saturating_sub(last);
            if quiet >= idle_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.inner.lock().remove(self.id);
    }
}

/// This process's soft limit on open files (1,024 if it cannot be read;
/// `shoal daemon` raises it to the hard limit first).
pub fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> Source {
        Source::Client(std::net::IpAddr::from([10, 0, 0, n]))
    }

    fn small() -> Limits {
        let caps = Caps {
            total: 4,
            per_port: 3,
            per_source: 2,
            new_per_sec: 0,
        };
        Limits {
            tcp: caps,
            udp: caps,
        }
    }

    #[test]
    fn a_source_gets_its_share_and_no_more() {
        let r = Registry::new(small());
        let a = r.admit(Protocol::Tcp, Door::Port(80), client(1));
        let b = r.admit(Protocol::Tcp, Door::Port(80), client(1));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(
            r.admit(Protocol::Tcp, Door::Port(80), client(1)).err(),
            Some(Refused::PerSource)
        );
        // Another port, another protocol, another client: their own shares.
        assert!(r.admit(Protocol::Tcp, Door::Port(81), client(1)).is_ok());
        assert!(r.admit(Protocol::Udp, Door::Port(80), client(1)).is_ok());
        drop(a);
        assert!(r.admit(Protocol::Tcp, Door::Port(80), client(1)).is_ok());
    }

    #[test]
    fn a_udp_client_at_its_share_makes_room_with_its_own_oldest_flow() {
        let r = Registry::new(small());
        let admit = |n| r.admit(Protocol::Udp, Door::Port(53), client(n));
        let first = admit(1).expect("first");
        let _second = admit(1).expect("second");
        let other = admit(2).expect("another client");
        // A third exchange from client 1: its own first flow goes, not client 2's.
        let _third = admit(1).expect("third, in place of the first");
        assert_eq!(r.held().1, 3);
        assert_eq!(r.turned_away(), (1, 0));
        drop(other);
        assert_eq!(r.held().1, 2, "client 1 still holds its share");
        drop(first);
    }

    #[tokio::test]
    async fn at_a_cap_the_connection_idle_longest_is_evicted() {
        let r = Registry::new(small());
        let pause = || tokio::time::sleep(Duration::from_millis(5));
        let admit = |port, n| r.admit(Protocol::Tcp, Door::Port(port), client(n));
        let first = admit(80, 1).expect("first");
        pause().await;
        let second = admit(80, 2).expect("second");
        pause().await;
        let third = admit(80, 3).expect("third");
        pause().await;
        first.touch();
        // The port's cap (3) is reached: the fourth evicts `second`, idle
        // longest since `first` moved bytes.
        let fourth = admit(80, 4).expect("fourth");
        second.evicted().await;
        assert_eq!(r.held(), (3, 0));
        // Another port, under the node's cap (4): nothing is evicted.
        let fifth = admit(81, 5).expect("fifth");
        assert_eq!(r.held(), (4, 0));
        // At the node's cap: the one idle longest anywhere goes.
        let sixth = admit(81, 6).expect("sixth");
        third.evicted().await;
        assert_eq!(r.held(), (4, 0));
        assert_eq!(r.turned_away(), (2, 0));
        drop((first, fourth, fifth, sixth, second, third));
        assert_eq!(r.held(), (0, 0));
    }

    #[tokio::test]
    async fn idle_for_ends_only_after_a_quiet_spell() {
        let r = Registry::new(small());
        let a = r
            .admit(Protocol::Tcp, Door::Tunnels, Source::Node("n".into()))
            .expect("admit");
        let start = Instant::now();
        a.idle_for(Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_port_takes_only_so_many_new_flows_a_second() {
        let caps = Caps {
            total: 100,
            per_port: 100,
            per_source: 100,
            new_per_sec: 3,
        };
        let r = Registry::new(Limits {
            tcp: caps,
            udp: caps,
        });
        let at = |n, ms| r.admit_at(Protocol::Udp, Door::Port(53), client(n), ms);
        let first: Vec<_> = (0..5).map(|n| at(n, 1_000 + u64::from(n))).collect();
        assert_eq!(first.iter().filter(|a| a.is_ok()).count(), 3);
        assert_eq!(first[4].as_ref().err(), Some(&Refused::Rate));
        // The next second takes three more.
        assert!(at(10, 2_000).is_ok());
        // Another port and a peer's tunnels are counted apart.
        assert!(r.admit(Protocol::Udp, Door::Port(54), client(9)).is_ok());
        assert!(r
            .admit(Protocol::Udp, Door::Tunnels, Source::Node("n".into()))
            .is_ok());
    }

    #[test]
    fn the_caps_leave_the_reserve_free() {
        let l = Limits::for_nofile(20_000);
        assert!(l.tcp.total * 2 + l.udp.total <= 20_000 - FD_RESERVE as usize);
        let tiny = Limits::for_nofile(256);
        assert!(tiny.tcp.total * 2 + tiny.udp.total <= 256);
        assert!(tiny.tcp.per_source >= 1);
    }
}
