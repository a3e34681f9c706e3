//! The unencrypted kernel fast path for overlays created with
//! `-o encrypted=false`: one VXLAN device per node (`so<tag>x`, VNI 4242,
//! UDP port 4790: clear of the 4789 a local Docker engine in swarm mode
//! holds), Flannel-style static entries and no learning: for every task of
//! another node on such a network, a /32 route into the device, a permanent
//! neighbour entry giving the owning node's device MAC (derived from the
//! node's address) and an FDB entry sending that MAC to the node's address.
//!
//! Plaintext and unauthenticated between nodes: anyone on the underlay who
//! can reach UDP 4790 can inject packets. It is the operator's choice.
//!
//! Blocking: runs `ip` and `bridge` on the blocking pool.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use shoal_core::rules::network::NetworkTable;

use crate::sandbox::overlay as kernel;

pub const VNI: u32 = 4242;
pub const PORT: u16 = 4790;
/// IPv4 + UDP + VXLAN + inner Ethernet.
pub const OVERHEAD: u32 = 50;

/// The MAC of a node's VXLAN device, from its underlay address.
pub fn mac(node: Ipv4Addr) -> String {
    let o = node.octets();
    format!("02:5e:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Remote addresses on unencrypted networks and the underlay address of
/// the node holding each.
pub fn wanted(table: &NetworkTable, own_node: &str) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    let plain: Vec<&str> = table
        .networks
        .iter()
        .filter(|n| !n.encrypted && !n.ingress)
        .map(|n| n.id.as_str())
        .collect();
    table
        .tasks
        .iter()
        .filter(|t| t.node_id != own_node && plain.contains(&t.network_id.as_str()))
        .filter_map(|t| {
            let ip = match t.node_addr.parse::<std::net::SocketAddr>().ok()?.ip() {
                std::net::IpAddr::V4(a) => a,
                std::net::IpAddr::V6(_) => return None,
            };
            Some((t.addr, ip))
        })
        .collect()
}

/// The device, once made.
#[derive(Debug, Default)]
pub struct Vxlan {
    dev: Option<String>,
    entries: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl Vxlan {
    /// Brings the entries to `now`, making the device on first need.
    pub fn apply(
        &mut self,
        dev: &str,
        underlay: Ipv4Addr,
        mtu: u32,
        now: BTreeMap<Ipv4Addr, Ipv4Addr>,
    ) {
        if now.is_empty() && self.entries.is_empty() {
            return;
        }
        if self.dev.is_none() {
            let made = kernel::vxlan_device(dev, VNI, PORT, underlay, &mac(underlay), mtu);
            if let Err(e) = made {
                tracing::warn!(error = %e, "cannot make the VXLAN device: unencrypted overlays do not cross nodes");
                return;
            }
            self.dev = Some(dev.to_string());
        }
        let mut ip_lines = Vec::new();
        let mut fdb_lines = Vec::new();
        for (addr, node) in &self.entries {
            if now.get(addr) != Some(node) {
                ip_lines.push(format!("route del {addr}/32 dev {dev}"));
                ip_lines.push(format!("neigh del {addr} dev {dev}"));
            }
        }
        let nodes: std::collections::BTreeSet<Ipv4Addr> = now.values().copied().collect();
        let old_nodes: std::collections::BTreeSet<Ipv4Addr> =
            self.entries.values().copied().collect();
        for gone in old_nodes.difference(&nodes) {
            fdb_lines.push(format!("fdb del {} dev {dev} dst {gone}", mac(*gone)));
        }
        for n in &nodes {
            fdb_lines.push(format!("fdb replace {} dev {dev} dst {n}", mac(*n)));
        }
        for (addr, node) in &now {
            ip_lines.push(format!(
                "neigh replace {addr} lladdr {} dev {dev} nud permanent",
                mac(*node)
            ));
            ip_lines.push(format!("route replace {addr}/32 dev {dev} scope link"));
        }
        kernel::force_batches(&ip_lines, &fdb_lines);
        self.entries = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_and_per_node() {
        assert_eq!(mac(Ipv4Addr::new(10, 250, 3, 2)), "02:5e:0a:fa:03:02");
        assert_ne!(
            mac(Ipv4Addr::new(10, 250, 3, 2)),
            mac(Ipv4Addr::new(10, 250, 3, 3))
        );
    }
}
