//! The encrypted overlay data plane of one node: the TUN device every
//! overlay subnet is routed into, a forwarder that sends each IP packet it
//! reads as a QUIC datagram to the node that holds the destination (its own
//! connection, ALPN `shoal-overlay/1`, mutual TLS with the cluster's
//! certificates), and a receiver that checks each datagram against the
//! network table before it writes it into the TUN.
//!
//! Authority comes from the cluster state, never from the packet: a packet
//! from peer node P is accepted only if its source is an address the table
//! gives to a task (or an outside-container block) on P, its destination
//! one the table gives to this node, both on the same network. Everything
//! else is dropped and counted.
//!
//! The table also drives the kernel side (on the blocking pool, never on
//! the runtime's threads): subnet routes into the TUN and the nftables
//! table that balances VIPs (`vip.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use shoal_core::model::network::Subnet;
use shoal_core::rules::network::NetworkTable;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::sandbox::{overlay as kernel, Sandbox};
use crate::transport::Transport;

use super::gro::{self, checksum};

/// IPv4 + UDP + QUIC short header (8-byte connection ids), packet number,
/// AEAD tag and datagram frame header, with room to spare.
const QUIC_OVERHEAD: u32 = 28 + 64;
/// The underlay MTU assumed when the listen address's interface is not
/// found, and the bounds of what is believed.
const DEFAULT_UNDERLAY_MTU: u32 = 1500;
const MAX_UNDERLAY_MTU: u32 = 9000;
const MIN_UNDERLAY_MTU: u32 = 1280;

/// Packets dropped and why: what `node inspect`-style tools and tests read.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Not an IPv4 packet, or a length that does not add up.
    pub malformed: AtomicU64,
    /// A source the table does not give to the sending node, or a
    /// destination not on this node, or two networks.
    pub unauthorised: AtomicU64,
    /// Read from the TUN for an address no node holds.
    pub no_route: AtomicU64,
    /// No connection to the owning node yet (one is being made).
    pub no_connection: AtomicU64,
    pub too_big: AtomicU64,
    /// The TUN's queue was full.
    pub tun_full: AtomicU64,
    /// Received packets written merged with others (`gro.rs`), and the
    /// writes into the TUN that took.
    pub merged: AtomicU64,
    pub tun_writes: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> [(&'static str, u64); 10] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("sent", g(&self.sent)),
            ("received", g(&self.received)),
            ("malformed", g(&self.malformed)),
            ("unauthorised", g(&self.unauthorised)),
            ("no_route", g(&self.no_route)),
            ("no_connection", g(&self.no_connection)),
            ("too_big", g(&self.too_big)),
            ("tun_full", g(&self.tun_full)),
            ("merged", g(&self.merged)),
            ("tun_writes", g(&self.tun_writes)),
        ]
    }
}

/// Who holds an address of an encrypted overlay.
#[derive(Debug, Clone)]
struct Owner {
    node_id: Arc<str>,
    node_addr: Option<SocketAddr>,
    /// Index of its network in the plan.
    net: u32,
}

/// The table, as the forwarder and receiver look it up.
#[derive(Debug, Default)]
struct Plan {
    addrs: HashMap<Ipv4Addr, Owner>,
    blocks: Vec<(Subnet, Owner)>,
    /// Subnets of the encrypted overlays (routed into the TUN).
    subnets: BTreeSet<Subnet>,
}

impl Plan {
    fn build(table: &NetworkTable) -> Plan {
        let mut plan = Plan::default();
        let mut index = HashMap::new();
        for (i, n) in table.networks.iter().enumerate() {
            if !n.encrypted || n.ingress {
                continue;
            }
            index.insert(n.id.as_str(), i as u32);
            plan.subnets.insert(n.subnet);
        }
        let mut nodes: HashMap<String, Arc<str>> = HashMap::new();
        let mut node = |id: &str| -> Arc<str> {
            nodes
                .entry(id.to_string())
                .or_insert_with(|| Arc::from(id))
                .clone()
        };
        for t in &table.tasks {
            let Some(&net) = index.get(t.network_id.as_str()) else {
                continue;
            };
            plan.addrs.insert(
                t.addr,
                Owner {
                    node_id: node(&t.node_id),
                    node_addr: t.node_addr.parse().ok(),
                    net,
                },
            );
        }
        for b in &table.blocks {
            let Some(&net) = index.get(b.network_id.as_str()) else {
                continue;
            };
            plan.blocks.push((
                b.block,
                Owner {
                    node_id: node(&b.node_id),
                    node_addr: b.node_addr.parse().ok(),
                    net,
                },
            ));
        }
        plan
    }

    fn owner(&self, a: Ipv4Addr) -> Option<&Owner> {
        self.addrs.get(&a).or_else(|| {
            self.blocks
                .iter()
                .find(|(s, _)| s.contains(a))
                .map(|(_, o)| o)
        })
    }
}

/// A well-formed IPv4 packet's source and destination, or `None`.
fn addresses(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || total != p.len() {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst))
}

pub struct Dataplane {
    node_id: Arc<str>,
    sandbox: Arc<Sandbox>,
    transport: Arc<Transport>,
    tun: AsyncFd<OwnedFd>,
    tun_name: String,
    plan: RwLock<Arc<Plan>>,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    connecting: Mutex<HashSet<SocketAddr>>,
    quic: Arc<quinn::TransportConfig>,
    /// The MTU of tasks' overlay interfaces and of the TUN.
    pub mtu: u32,
    /// The MTU of tasks' interfaces on unencrypted (VXLAN) networks.
    pub vxlan_mtu: u32,
    underlay: Ipv4Addr,
    pub counters: Counters,
    /// The networks whose routes are in place (tasks wait for theirs).
    routed: watch::Sender<BTreeSet<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Dataplane {
    /// Opens the TUN and starts following the table. Blocking parts run on
    /// the blocking pool.
    pub async fn start(
        node_id: &str,
        underlay: Ipv4Addr,
        sandbox: Arc<Sandbox>,
        transport: Arc<Transport>,
        networks: &super::NetworkWatch,
    ) -> Result<Arc<Dataplane>, crate::sandbox::SandboxError> {
        let sb = sandbox.clone();
        let (fd, tun_name, under) = tokio::task::spawn_blocking(move || {
            let under = kernel::mtu_of_addr(underlay)
                .unwrap_or(DEFAULT_UNDERLAY_MTU)
                .clamp(MIN_UNDERLAY_MTU, MAX_UNDERLAY_MTU);
            let name = sb.tun_name();
            let fd = kernel::open_tun(&name)?;
            kernel::set_up_tun(&name, under - QUIC_OVERHEAD)?;
            Ok::<_, crate::sandbox::SandboxError>((fd, name, under))
        })
        .await
        .map_err(|e| {
            crate::sandbox::SandboxError::Io("tun".into(), std::io::Error::other(e.to_string()))
        })??;
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open,
        // the same descriptor, for as long as the AsyncFd lives.
        let tun = unsafe { AsyncFd::register(fd) }
            .map_err(|e| crate::sandbox::SandboxError::Io("tun".into(), e.into_parts().1))?;
        let mtu = under - QUIC_OVERHEAD;
        let udp_payload = (under - 28).min(u32::from(u16::MAX)) as u16;
        let dp = Arc::new(Dataplane {
            node_id: Arc::from(node_id),
            sandbox,
            transport,
            tun,
            tun_name,
            plan: RwLock::new(Arc::default()),
            conns: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashSet::new()),
            quic: crate::transport::overlay_transport_config(udp_payload),
            mtu,
            vxlan_mtu: under - super::vxlan::OVERHEAD,
            underlay,
            counters: Counters::default(),
            routed: watch::channel(BTreeSet::new()).0,
            tasks: Mutex::new(Vec::new()),
        });
        tracing::info!(tun = %dp.tun_name, mtu, "overlay data plane up");
        let reader = tokio::spawn(dp.clone().read_loop());
        let follow = tokio::spawn(dp.clone().follow(networks.subscribe()));
        let report = tokio::spawn(dp.clone().report());
        dp.tasks.lock().extend([reader, follow, report]);
        Ok(dp)
    }

    /// Stops the forwarder and the table follower (leaving the swarm).
    pub fn stop(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        for (_, c) in self.conns.lock().drain() {
            c.close(0u32.into(), b"leaving");
        }
    }

    /// Logs the counters (debug) every 10 s while they move, so an
    /// operator can see drops with `RUST_LOG=shoal_node::overlay=debug`.
    async fn report(self: Arc<Self>) {
        let mut last = self.counters.snapshot();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let now = self.counters.snapshot();
            if now != last {
                let conns: Vec<String> = self
                    .conns
                    .lock()
                    .iter()
                    .map(|(a, c)| {
                        let s = c.stats();
                        format!(
                            "{a}: lost {} congestion {} rtt {:?}",
                            s.path.lost_packets, s.path.congestion_events, s.path.rtt
                        )
                    })
                    .collect();
                tracing::debug!(counters = ?now, ?conns, "overlay data plane");
                last = now;
            }
        }
    }

    /// Waits (up to `limit`) until the routes of every network in `ids`
    /// are in place.
    pub async fn wait_routed(&self, ids: &[String], limit: std::time::Duration) -> bool {
        let mut rx = self.routed.subscribe();
        let ready = rx.wait_for(|r| ids.iter().all(|i| r.contains(i)));
        tokio::time::timeout(limit, ready)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn follow(self: Arc<Self>, mut rx: watch::Receiver<Arc<NetworkTable>>) {
        let mut routed_subnets = BTreeSet::new();
        let mut vips = super::vip::Applied::default();
        let mut vxlan = super::vxlan::Vxlan::default();
        loop {
            let table = rx.borrow_and_update().clone();
            let plan = Arc::new(Plan::build(&table));
            *self.plan.write() = plan.clone();
            self.connect_peers(&plan);
            let (sb, tun, t) = (self.sandbox.clone(), self.tun_name.clone(), table.clone());
            let before = std::mem::take(&mut routed_subnets);
            let now = plan.subnets.clone();
            let prev = std::mem::take(&mut vips);
            let mut vx = std::mem::take(&mut vxlan);
            let plain = super::vxlan::wanted(&table, &self.node_id);
            let (underlay, vxlan_mtu) = (self.underlay, self.vxlan_mtu);
            let applied = tokio::task::spawn_blocking(move || {
                kernel::route_subnets(&tun, &before, &now);
                vx.apply(&sb.vxlan_name(), underlay, vxlan_mtu, plain);
                let vips = super::vip::apply(&sb, &t, prev);
                (now, vips, vx)
            })
            .await;
            match applied {
                Ok((now, v, x)) => {
                    routed_subnets = now;
                    vips = v;
                    vxlan = x;
                }
                Err(e) => tracing::warn!(error = %e, "cannot apply the overlay routes"),
            }
            let ids: BTreeSet<String> = table.networks.iter().map(|n| n.id.clone()).collect();
            self.routed.send_replace(ids);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Opens connections to every node that holds an overlay address, so
    /// that the first packets find one.
    fn connect_peers(self: &Arc<Self>, plan: &Plan) {
        let peers: HashSet<SocketAddr> = plan
            .addrs
            .values()
            .chain(plan.blocks.iter().map(|(_, o)| o))
            .filter(|o| *o.node_id != *self.node_id)
            .filter_map(|o| o.node_addr)
            .collect();
        for p in peers {
            self.connection(p);
        }
    }

    /// The live connection to `addr`, or `None` while one is being made.
    fn connection(self: &Arc<Self>, addr: SocketAddr) -> Option<quinn::Connection> {
        if let Some(c) = self.conns.lock().get(&addr) {
            if c.close_reason().is_none() {
                return Some(c.clone());
            }
        }
        if !self.connecting.lock().insert(addr) {
            return None;
        }
        let dp = self.clone();
        tokio::spawn(async move {
            match dp.transport.overlay_connect(addr, dp.quic.clone()).await {
                Ok(c) => {
                    if let Some(max) = c.max_datagram_size() {
                        if (max as u64) < u64::from(dp.mtu) {
                            tracing::warn!(%addr, max, mtu = dp.mtu, "the overlay connection carries datagrams smaller than the inner MTU: larger packets are refused with ICMP");
                        }
                    }
                    dp.conns.lock().insert(addr, c);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "no overlay connection"),
            }
            dp.connecting.lock().remove(&addr);
        });
        None
    }

    async fn read_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; 65536 + gro::VNET_HDR_LEN];
        let mut segments = Vec::with_capacity(64);
        loop {
            let mut guard = match self.tun.readable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "the overlay TUN is gone");
                    return;
                }
            };
            let read = guard.try_io(|fd| {
                // SAFETY: read(2) into a buffer we own, at most its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) if n >= gro::VNET_HDR_LEN => {
                    let (vnet, p) = buf[..n].split_at_mut(gro::VNET_HDR_LEN);
                    match gro::prepare_read(vnet, p) {
                        Ok(true) => {
                            let packet = bytes::Bytes::copy_from_slice(p);
                            self.forward(packet).await;
                        }
                        Ok(false) if gro::segment_tso(vnet, p, &mut segments).is_ok() => {
                            self.forward_segments(&mut segments).await;
                        }
                        _ => {
                            segments.clear();
                            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(Ok(_)) => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the overlay TUN");
                    return;
                }
                Err(_would_block) => {}
            }
        }
    }

    /// Sends one packet read from the TUN to the node that holds its
    /// destination.
    async fn forward(self: &Arc<Self>, packet: bytes::Bytes) {
        if let Some((addr, conn)) = self.route(&packet) {
            self.send(addr, &conn, packet).await;
        }
    }

    /// Sends the segments of one TSO packet (one flow: one destination,
    /// looked up once).
    async fn forward_segments(self: &Arc<Self>, segments: &mut Vec<bytes::Bytes>) {
        let Some((addr, conn)) = segments.first().and_then(|p| self.route(p)) else {
            // Refused (and counted) for the first: count the others alike.
            for p in segments.drain(..).skip(1) {
                let _ = self.route(&p);
            }
            return;
        };
        for p in segments.drain(..) {
            self.send(addr, &conn, p).await;
        }
    }

    /// The peer and connection a packet goes to, or `None` (counted).
    fn route(self: &Arc<Self>, packet: &[u8]) -> Option<(SocketAddr, quinn::Connection)> {
        let c = &self.counters;
        let Some((_, dst)) = addresses(packet) else {
            c.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let target = {
            let plan = self.plan.read();
            plan.owner(dst)
                .filter(|o| *o.node_id != *self.node_id)
                .and_then(|o| o.node_addr)
        };
        let Some(addr) = target else {
            c.no_route.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let Some(conn) = self.connection(addr) else {
            c.no_connection.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some((addr, conn))
    }

    /// Sends one routed packet as a datagram, or answers "too big".
    async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        conn: &quinn::Connection,
        packet: bytes::Bytes,
    ) {
        let c = &self.counters;
        if conn.max_datagram_size().is_none_or(|m| packet.len() > m) {
            c.too_big.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = conn.max_datagram_size() {
                self.frag_needed(&packet, m);
            }
            return;
        }
        // Waits for room rather than dropping the oldest queued datagram:
        // back-pressure reaches the TUN's queue, where the kernel drops.
        match conn.send_datagram_wait(packet).await {
            Ok(()) => {
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.no_connection.fetch_add(1, Ordering::Relaxed);
                self.conns.lock().remove(&addr);
            }
        }
    }

    /// Tells the sender its packet is too big (ICMP "fragmentation
    /// needed", from the destination): its kernel lowers the path MTU.
    fn frag_needed(&self, packet: &[u8], mtu: usize) {
        let Some((src, dst)) = addresses(packet) else {
            return;
        };
        // Only for packets that may not be fragmented, and never about ICMP errors.
        if packet[6] & 0x40 == 0 || packet[9] == 1 {
            return;
        }
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let quoted = &packet[..(ihl + 8).min(packet.len())];
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&(mtu.min(usize::from(u16::MAX)) as u16).to_be_bytes());
        icmp.extend_from_slice(quoted);
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let total = (20 + icmp.len()) as u16;
        let mut ip = vec![0x45u8, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&src.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&icmp);
        self.write_tun(&ip);
    }

    fn write_tun(&self, packet: &[u8]) {
        self.write_tun_parts(&[&gro::PLAIN, packet]);
    }

    /// Writes one packet, gathered from `parts` (its `virtio_net_hdr`
    /// first).
    fn write_tun_parts(&self, parts: &[&[u8]]) {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: writev(2) of buffers we own and that outlive the call,
        // only read by the kernel; the TUN takes one packet a write. At
        // most 66 parts (a merged run), well under IOV_MAX.
        let n = unsafe {
            libc::writev(
                self.tun.get_ref().as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
            )
        };
        if n < 0 {
            self.counters.tun_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads the datagrams of an overlay connection `peer_node` opened,
    /// until it closes: each wakeup takes every datagram already queued (up
    /// to a bound), checks each, and writes them into the TUN with runs of
    /// one TCP flow merged (`gro.rs`).
    pub async fn serve(self: Arc<Self>, peer_node: String, conn: quinn::Connection) {
        use futures::FutureExt;
        let mut gro = gro::Coalescer::default();
        loop {
            let d = match conn.read_datagram().await {
                Ok(d) => d,
                Err(_) => return,
            };
            self.receive(&peer_node, d, &mut gro);
            for _ in 0..RECEIVE_BATCH {
                match conn.read_datagram().now_or_never() {
                    Some(Ok(d)) => self.receive(&peer_node, d, &mut gro),
                    _ => break,
                }
            }
            gro.flush(&mut |parts: &[&[u8]]| self.write_tun_parts(parts));
            let c = &self.counters;
            c.merged
                .fetch_add(std::mem::take(&mut gro.merged), Ordering::Relaxed);
            c.tun_writes
                .fetch_add(std::mem::take(&mut gro.writes), Ordering::Relaxed);
        }
    }

    /// Checks one datagram from `peer_node` and hands it to the coalescer,
    /// which writes it into the TUN.
    fn receive(&self, peer_node: &str, d: bytes::Bytes, gro: &mut gro::Coalescer) {
        let c = &self.counters;
        let Some((src, dst)) = addresses(&d) else {
            c.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let allowed = {
            let plan = self.plan.read();
            match (plan.owner(src), plan.owner(dst)) {
                (Some(s), Some(t)) => {
                    *s.node_id == *peer_node && *t.node_id == *self.node_id && s.net == t.net
                }
                _ => false,
            }
        };
        if !allowed {
            c.unauthorised.fetch_add(1, Ordering::Relaxed);
            return;
        }
        c.received.fetch_add(1, Ordering::Relaxed);
        gro.push(d, &mut |parts: &[&[u8]]| self.write_tun_parts(parts));
    }
}

/// Datagrams taken per wakeup of a receiver beyond the first.
const RECEIVE_BATCH: usize = 63;

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::rules::network::{NetworkInfo, TaskAddr};

    fn packet(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn parses_only_whole_ipv4_packets() {
        assert!(addresses(&packet([1, 2, 3, 4], [5, 6, 7, 8], 40)).is_some());
        assert!(addresses(&[]).is_none());
        assert!(addresses(&[0x60; 40]).is_none());
        let mut short = packet([1, 2, 3, 4], [5, 6, 7, 8], 40);
        short.truncate(30);
        assert!(addresses(&short).is_none());
        let mut bad_ihl = packet([1, 2, 3, 4], [5, 6, 7, 8], 40);
        bad_ihl[0] = 0x44;
        assert!(addresses(&bad_ihl).is_none());
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = addresses(&junk);
        }
    }

    #[test]
    fn plan_knows_owners_by_network() {
        let net = |id: &str, s: &str| NetworkInfo {
            id: id.into(),
            name: id.into(),
            subnet: Subnet::parse(s).unwrap(),
            gateway: Ipv4Addr::new(10, 0, 9, 1),
            internal: false,
            encrypted: true,
            attachable: false,
            ingress: false,
        };
        let task = |net: &str, a: [u8; 4], node: &str| TaskAddr {
            network_id: net.into(),
            addr: a.into(),
            task_id: format!("t{a:?}"),
            service_id: "s".into(),
            node_id: node.into(),
            node_addr: format!("10.250.0.{}:2377", node.len()),
            serving: true,
        };
        let table = NetworkTable {
            networks: vec![net("a", "10.0.9.0/24"), net("b", "10.0.8.0/24")],
            tasks: vec![
                task("a", [10, 0, 9, 2], "n1"),
                task("a", [10, 0, 9, 3], "n22"),
                task("b", [10, 0, 8, 2], "n22"),
            ],
            ..Default::default()
        };
        let plan = Plan::build(&table);
        assert_eq!(plan.subnets.len(), 2);
        let o = plan.owner(Ipv4Addr::new(10, 0, 9, 3)).unwrap();
        assert_eq!(&*o.node_id, "n22");
        assert_ne!(
            plan.owner(Ipv4Addr::new(10, 0, 8, 2)).unwrap().net,
            plan.owner(Ipv4Addr::new(10, 0, 9, 2)).unwrap().net
        );
        assert!(plan.owner(Ipv4Addr::new(10, 0, 9, 9)).is_none());
    }

    #[test]
    fn checksum_of_a_known_header() {
        // From RFC 1071's example style: a header whose checksum field holds
        // its checksum sums to zero.
        let mut h = vec![
            0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 1, 0, 0, 10, 0, 9, 2, 10, 0, 9, 3,
        ];
        let s = checksum(&h);
        h[10..12].copy_from_slice(&s.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }
}
