//! What the embedded DNS answers, decided from the network table alone.
//!
//! `Index::build` turns one `NetworkTable` into hash maps (name → records on
//! each network, asking address → the networks of its task) so a query costs
//! two lookups and no walk of the table; it is rebuilt whenever the table
//! changes. `Index::lookup` is pure apart from the dnsrr rotation counters.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use shoal_core::model::network::EndpointMode;

use shoal_core::rules::network::NetworkTable;

/// Longest name in wire form is 255 bytes; its dotted text is shorter.
pub const MAX_NAME: usize = 255;

/// What the server does with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records, in the order to send them (TTL 0).
    Addrs(Vec<Ipv4Addr>),
    /// The name is ours but has no record of the asked type (AAAA, MX...):
    /// NOERROR with no answers, as docker's resolver does for AAAA.
    NoData,
    /// The name is ours on the asker's networks but nothing serves it now
    /// (dnsrr or `tasks.` with no serving task, or no VIP yet).
    NxDomain,
    /// Not one of ours, or an asker we do not know: ask the node's resolvers.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The service's VIP on that network (endpoint mode vip).
    Vip,
    /// The serving tasks, rotated on each answer (endpoint mode dnsrr).
    RoundRobin,
    /// `tasks.NAME`: every serving task, in address order.
    Tasks,
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    /// Index in `NetworkTable::networks`.
    net: u32,
    /// Index in `NetworkTable::services` (the rotation counter).
    service: u32,
    kind: Kind,
    /// `addrs[start..start + len]`.
    start: u32,
    len: u32,
}

/// The table, indexed for answering. Cheap to share (`Arc`), rebuilt on
/// each change of the table.
#[derive(Debug)]
pub struct Index {
    /// The table this index was built from (compared by pointer).
    pub source: Arc<NetworkTable>,
    /// Address of a task on this node → the networks that task is on.
    askers: HashMap<Ipv4Addr, Arc<[u32]>>,
    /// Lower-case name without the trailing dot → its records per network.
    names: HashMap<Box<[u8]>, Vec<Hit>>,
    addrs: Vec<Ipv4Addr>,
    cursors: Box<[AtomicUsize]>,
    gateways: Vec<Ipv4Addr>,
}

impl Default for Index {
    fn default() -> Self {
        Index::build(Arc::default(), None)
    }
}

impl Index {
    /// Indexes `table`. Only tasks on `node` (when given) may ask: a query
    /// from any other address gets forwarding only.
    pub fn build(table: Arc<NetworkTable>, node: Option<&str>) -> Index {
        let nets: HashMap<&str, u32> = table
            .networks
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.ingress)
            .map(|(i, n)| (n.id.as_str(), i as u32))
            .collect();

        // The networks of each task that may ask, then each of its addresses.
        let mut task_nets: HashMap<&str, Vec<u32>> = HashMap::new();
        for t in &table.tasks {
            if node.is_some_and(|n| n != t.node_id) {
                continue;
            }
            if let Some(&net) = nets.get(t.network_id.as_str()) {
                let v = task_nets.entry(t.task_id.as_str()).or_default();
                if !v.contains(&net) {
                    v.push(net);
                }
            }
        }
        let task_nets: HashMap<&str, Arc<[u32]>> = task_nets
            .into_iter()
            .map(|(k, v)| (k, Arc::from(v)))
            .collect();
        let mut askers = HashMap::new();
        for t in &table.tasks {
            if node.is_some_and(|n| n != t.node_id) || !nets.contains_key(t.network_id.as_str()) {
                continue;
            }
            if let Some(v) = task_nets.get(t.task_id.as_str()) {
                askers.insert(t.addr, v.clone());
            }
        }
        // A container connected by hand asks from its node's block (which
        // of its addresses it holds is that node's business).
        for b in &table.blocks {
            if node.is_some_and(|n| n != b.node_id) {
                continue;
            }
            if let Some(&net) = nets.get(b.network_id.as_str()) {
                let scope: Arc<[u32]> = Arc::from(vec![net]);
                for off in 0..b.block.size() {
                    askers.insert(b.block.nth(off as u32), scope.clone());
                }
            }
        }

        // Serving tasks per (service, network), in address order.
        let mut backends: HashMap<(&str, &str), Vec<Ipv4Addr>> = HashMap::new();
        for t in table.tasks.iter().filter(|t| t.serving) {
            backends
                .entry((t.service_id.as_str(), t.network_id.as_str()))
                .or_default()
                .push(t.addr);
        }
        for v in backends.values_mut() {
            v.sort_unstable();
            v.dedup();
        }

        let mut addrs = Vec::new();
        let mut names: HashMap<Box<[u8]>, Vec<Hit>> = HashMap::new();
        for (si, svc) in table.services.iter().enumerate() {
            for sn in &svc.networks {
                let Some(&net) = nets.get(sn.network_id.as_str()) else {
                    continue;
                };
                let net_name = &table.networks[net as usize].name;
                let tasks = backends
                    .get(&(svc.service_id.as_str(), sn.network_id.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let mut push = |kind: Kind, list: &[Ipv4Addr]| {
                    let start = addrs.len() as u32;
                    addrs.extend_from_slice(list);
                    Hit {
                        net,
                        service: si as u32,
                        kind,
                        start,
                        len: list.len() as u32,
                    }
                };
                let own = match svc.mode {
                    EndpointMode::Vip => push(Kind::Vip, sn.vip.as_slice()),
                    EndpointMode::Dnsrr => push(Kind::RoundRobin, tasks),
                };
                let all = push(Kind::Tasks, tasks);
                let labels = std::iter::once(svc.name.as_str())
                    .chain(sn.aliases.iter().map(String::as_str))
                    .filter(|n| !n.is_empty());
                for label in labels {
                    for (key, hit) in [(label.to_string(), own), (format!("tasks.{label}"), all)] {
                        let qualified = format!("{key}.{net_name}");
                        for k in [key, qualified] {
                            let k = normalize(k.as_bytes());
                            let hits = names.entry(k).or_default();
                            if !hits.iter().any(|h| {
                                h.net == hit.net && h.service == hit.service && h.kind == hit.kind
                            }) {
                                hits.push(hit);
                            }
                        }
                    }
                }
            }
        }
        let cursors = (0..table.services.len())
            .map(|_| AtomicUsize::new(0))
            .collect();
        let mut gateways: Vec<Ipv4Addr> = table
            .networks
            .iter()
            .filter(|n| !n.ingress)
            .map(|n| n.gateway)
            .collect();
        gateways.sort_unstable();
        gateways.dedup();
        Index {
            source: table,
            askers,
            names,
            addrs,
            cursors,
            gateways,
        }
    }

    /// The addresses the server listens on: every gateway but the ingress's.
    pub fn gateways(&self) -> &[Ipv4Addr] {
        &self.gateways
    }

    /// The answer to `name` (dotted text, any case, with or without the
    /// trailing dot) asked by `src` for a record of type A (`want_a`) or of
    /// another type.
    pub fn lookup(&self, src: IpAddr, name: &[u8], want_a: bool) -> Answer {
        let IpAddr::V4(src) = src else {
            return Answer::Forward;
        };
        let Some(nets) = self.askers.get(&src) else {
            return Answer::Forward;
        };
        let mut key = [0u8; MAX_NAME];
        let Some(key) = key_of(name, &mut key) else {
            return Answer::Forward;
        };
        let Some(hits) = self.names.get(key) else {
            return Answer::Forward;
        };
        let mut seen = false;
        let mut out = Vec::new();
        let mut rotate = None;
        for h in hits.iter().filter(|h| nets.contains(&h.net)) {
            seen = true;
            let (s, l) = (h.start as usize, h.len as usize);
            out.extend_from_slice(&self.addrs[s..s + l]);
            if h.kind == Kind::RoundRobin && rotate.is_none() {
                rotate = Some(h.service as usize);
            }
        }
        if !seen {
            return Answer::Forward;
        }
        if out.is_empty() {
            return Answer::NxDomain;
        }
        if !want_a {
            return Answer::NoData;
        }
        if let Some(svc) = rotate {
            if let Some(c) = self.cursors.get(svc) {
                let turn = c.fetch_add(1, Ordering::Relaxed);
                let n = out.len();
                out.rotate_left(turn % n);
            }
        }
        Answer::Addrs(out)
    }
}

/// `name` lower-cased and without its trailing dot, for the index's keys.
fn normalize(name: &[u8]) -> Box<[u8]> {
    let mut buf = [0u8; MAX_NAME];
    match key_of(name, &mut buf) {
        Some(k) => k.into(),
        None => name.to_ascii_lowercase().into(),
    }
}

/// Writes `name` lower-cased, without a trailing dot, into `buf`; `None` if
/// it does not fit (such a name is never one of ours).
fn key_of<'a>(name: &[u8], buf: &'a mut [u8; MAX_NAME]) -> Option<&'a [u8]> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let out = buf.get_mut(..name.len())?;
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::model::network::Subnet;
    use shoal_core::rules::network::{NetworkInfo, NodeBlock, ServiceNames, ServiceNet, TaskAddr};

    const NODE: &str = "node-a";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn src(s: &str) -> IpAddr {
        IpAddr::V4(ip(s))
    }

    fn network(id: &str, name: &str, third: u8) -> NetworkInfo {
        NetworkInfo {
            id: id.into(),
            name: name.into(),
            subnet: Subnet {
                addr: Ipv4Addr::new(10, 9, third, 0),
                prefix: 24,
            },
            gateway: Ipv4Addr::new(10, 9, third, 1),
            internal: false,
            encrypted: true,
            attachable: false,
            ingress: false,
        }
    }

    fn task(net: &str, addr: &str, task: &str, svc: &str, node: &str, serving: bool) -> TaskAddr {
        TaskAddr {
            network_id: net.into(),
            addr: ip(addr),
            task_id: task.into(),
            service_id: svc.into(),
            node_id: node.into(),
            node_addr: "192.0.2.1:2377".into(),
            serving,
        }
    }

    fn service(
        id: &str,
        name: &str,
        mode: EndpointMode,
        nets: &[(&str, Option<&str>, &[&str])],
    ) -> ServiceNames {
        ServiceNames {
            service_id: id.into(),
            name: name.into(),
            mode,
            networks: nets
                .iter()
                .map(|(n, vip, aliases)| ServiceNet {
                    network_id: (*n).into(),
                    vip: vip.map(ip),
                    aliases: aliases.iter().map(|a| (*a).into()).collect(),
                })
                .collect(),
        }
    }

    /// Networks `front` (10.9.1.0/24) and `back` (10.9.2.0/24); `web` (vip)
    /// on both, `db` (dnsrr) on back only, `client` on front only, `admin`
    /// on both; `idle` (dnsrr) with no serving task.
    fn table() -> Arc<NetworkTable> {
        let mut ingress = network("ing", "ingress", 0);
        ingress.ingress = true;
        Arc::new(NetworkTable {
            networks: vec![network("f", "front", 1), network("b", "back", 2), ingress],
            tasks: vec![
                task("f", "10.9.1.10", "c1", "client", NODE, true),
                task("f", "10.9.1.20", "w1", "web", NODE, true),
                task("b", "10.9.2.20", "w1", "web", NODE, true),
                task("f", "10.9.1.21", "w2", "web", "node-b", true),
                task("b", "10.9.2.21", "w2", "web", "node-b", true),
                task("f", "10.9.1.22", "w3", "web", NODE, false),
                task("b", "10.9.2.22", "w3", "web", NODE, false),
                task("b", "10.9.2.30", "d1", "db", NODE, true),
                task("b", "10.9.2.31", "d2", "db", "node-b", true),
                task("b", "10.9.2.32", "d3", "db", NODE, true),
                task("f", "10.9.1.40", "a1", "admin", NODE, true),
                task("b", "10.9.2.40", "a1", "admin", NODE, true),
                task("ing", "10.0.0.5", "c1", "client", NODE, true),
            ],
            blocks: vec![
                block("b", NODE, "10.9.2.240/28"),
                block("f", "node-b", "10.9.1.240/28"),
            ],
            services: vec![
                service(
                    "web",
                    "web",
                    EndpointMode::Vip,
                    &[
                        ("f", Some("10.9.1.2"), &["www"]),
                        ("b", Some("10.9.2.2"), &[]),
                    ],
                ),
                service("db", "db", EndpointMode::Dnsrr, &[("b", None, &["pg"])]),
                service(
                    "client",
                    "client",
                    EndpointMode::Vip,
                    &[("f", Some("10.9.1.3"), &[])],
                ),
                service("idle", "idle", EndpointMode::Dnsrr, &[("b", None, &[])]),
                service("novip", "novip", EndpointMode::Vip, &[("b", None, &[])]),
            ],
        })
    }

    fn index() -> Index {
        Index::build(table(), Some(NODE))
    }

    fn block(net: &str, node: &str, cidr: &str) -> NodeBlock {
        NodeBlock {
            network_id: net.into(),
            node_id: node.into(),
            node_addr: String::new(),
            block: Subnet::parse(cidr).expect("cidr"),
        }
    }

    #[test]
    fn a_connected_container_asks_from_its_node_s_block() {
        let ix = index();
        // This node's block on back: back's names.
        assert_eq!(
            ix.lookup(src("10.9.2.241"), b"web", true),
            addrs(&["10.9.2.2"])
        );
        assert_eq!(ix.lookup(src("10.9.2.241"), b"www", true), Answer::Forward);
        // Another node's block is not an asker here.
        assert_eq!(ix.lookup(src("10.9.1.241"), b"web", true), Answer::Forward);
    }

    fn addrs(list: &[&str]) -> Answer {
        Answer::Addrs(list.iter().map(|s| ip(s)).collect())
    }

    #[test]
    fn vip_name_and_alias_resolve_to_the_vip_of_the_shared_network() {
        let ix = index();
        let client = src("10.9.1.10");
        assert_eq!(ix.lookup(client, b"web", true), addrs(&["10.9.1.2"]));
        assert_eq!(ix.lookup(client, b"www", true), addrs(&["10.9.1.2"]));
        // A task on both networks gets the VIP of each.
        let admin = src("10.9.2.40");
        assert_eq!(
            ix.lookup(admin, b"web", true),
            addrs(&["10.9.1.2", "10.9.2.2"])
        );
        // The alias is declared on front only.
        assert_eq!(ix.lookup(src("10.9.2.30"), b"www", true), Answer::Forward);
    }

    #[test]
    fn names_are_scoped_to_the_askers_networks() {
        let ix = index();
        // client is on front only: db lives on back.
        assert_eq!(ix.lookup(src("10.9.1.10"), b"db", true), Answer::Forward);
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"tasks.db", true),
            Answer::Forward
        );
        // Its address on the ingress network does not make it an asker there.
        assert_eq!(ix.lookup(src("10.0.0.5"), b"web", true), Answer::Forward);
        // The same task, asking from its front address, sees front's names.
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"client", true),
            addrs(&["10.9.1.3"])
        );
    }

    #[test]
    fn unknown_askers_and_names_are_forwarded() {
        let ix = index();
        assert_eq!(ix.lookup(src("10.9.1.99"), b"web", true), Answer::Forward);
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"example.com", true),
            Answer::Forward
        );
        assert_eq!(
            ix.lookup("::1".parse().expect("v6"), b"web", true),
            Answer::Forward
        );
        // A task of another node is not an asker here.
        assert_eq!(ix.lookup(src("10.9.1.21"), b"web", true), Answer::Forward);
        // Without a node filter, any task of the table may ask.
        let any = Index::build(table(), None);
        // (w2 is on both networks: both VIPs.)
        assert_eq!(
            any.lookup(src("10.9.1.21"), b"web", true),
            addrs(&["10.9.1.2", "10.9.2.2"])
        );
        // A name longer than any DNS name is never ours.
        assert_eq!(
            ix.lookup(src("10.9.1.10"), &[b'a'; 300], true),
            Answer::Forward
        );
    }

    #[test]
    fn tasks_name_lists_serving_tasks_on_shared_networks() {
        let ix = index();
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"tasks.web", true),
            addrs(&["10.9.1.20", "10.9.1.21"])
        );
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"tasks.www", true),
            addrs(&["10.9.1.20", "10.9.1.21"])
        );
        assert_eq!(
            ix.lookup(src("10.9.2.40"), b"tasks.web", true),
            addrs(&["10.9.1.20", "10.9.1.21", "10.9.2.20", "10.9.2.21"])
        );
        assert_eq!(
            ix.lookup(src("10.9.2.20"), b"tasks.db", true),
            addrs(&["10.9.2.30", "10.9.2.31", "10.9.2.32"])
        );
    }

    #[test]
    fn dnsrr_rotates_the_serving_tasks() {
        let ix = index();
        let web = src("10.9.2.20");
        let mut firsts = Vec::new();
        for _ in 0..3 {
            let Answer::Addrs(a) = ix.lookup(web, b"db", true) else {
                panic!("db resolves");
            };
            let mut sorted = a.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                vec![ip("10.9.2.30"), ip("10.9.2.31"), ip("10.9.2.32")]
            );
            firsts.push(a[0]);
        }
        firsts.sort();
        assert_eq!(
            firsts,
            vec![ip("10.9.2.30"), ip("10.9.2.31"), ip("10.9.2.32")]
        );
        // The alias rotates too.
        let Answer::Addrs(a) = ix.lookup(web, b"pg", true) else {
            panic!("pg resolves");
        };
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let ix = index();
        let client = src("10.9.1.10");
        for name in [&b"WEB"[..], b"web.", b"Web.", b"TASKS.web.", b"wWw"] {
            assert!(
                matches!(ix.lookup(client, name, true), Answer::Addrs(_)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn name_qualified_by_network_resolves_on_that_network() {
        let ix = index();
        let admin = src("10.9.1.40");
        assert_eq!(ix.lookup(admin, b"web.back", true), addrs(&["10.9.2.2"]));
        assert_eq!(
            ix.lookup(admin, b"tasks.web.front.", true),
            addrs(&["10.9.1.20", "10.9.1.21"])
        );
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"web.back", true),
            Answer::Forward
        );
    }

    #[test]
    fn other_types_of_a_known_name_get_no_data() {
        let ix = index();
        assert_eq!(ix.lookup(src("10.9.1.10"), b"web", false), Answer::NoData);
        assert_eq!(
            ix.lookup(src("10.9.1.10"), b"tasks.web", false),
            Answer::NoData
        );
    }

    #[test]
    fn a_known_name_with_nothing_serving_is_nxdomain() {
        let ix = index();
        let back = src("10.9.2.30");
        assert_eq!(ix.lookup(back, b"idle", true), Answer::NxDomain);
        assert_eq!(ix.lookup(back, b"tasks.idle", true), Answer::NxDomain);
        assert_eq!(ix.lookup(back, b"idle", false), Answer::NxDomain);
        assert_eq!(ix.lookup(back, b"novip", true), Answer::NxDomain);
    }

    #[test]
    fn gateways_leave_out_the_ingress_network() {
        assert_eq!(index().gateways(), &[ip("10.9.1.1"), ip("10.9.2.1")]);
    }
}
