//! VIP load balancing by nftables DNAT, and isolation between overlay
//! networks, as one table (`shoalov_<tag>`) replaced whole in one
//! transaction on every change of the network table.
//!
//! A new connection (the first packet of a conntrack entry) to a service's
//! VIP, on any port, is DNATed to one of the service's serving tasks on
//! that network, round robin (`numgen inc`); later packets follow the
//! conntrack entry, and replies are un-NATed on the way back. The client's
//! address is kept. A VIP with no serving task refuses at once (TCP reset,
//! ICMP port unreachable). When a backend leaves, its conntrack entries
//! through the VIP are flushed (over ctnetlink), so
//! that a UDP flow does not stick to a task that is gone, except TCP
//! connections it has answered: a backend leaves when it starts to drain,
//! and those keep their NAT until they end.
//!
//! Blocking: runs `nft` (and ctnetlink requests) on the blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use shoal_core::model::network::EndpointMode;

use shoal_core::rules::network::NetworkTable;

use crate::sandbox::{overlay as kernel, Sandbox};

/// What the table held after the last apply: each VIP's backends.
#[derive(Debug, Default)]
pub struct Applied {
    backends: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
}

/// Each VIP of the table and the addresses of its serving tasks.
pub fn vips(table: &NetworkTable) -> BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>> {
    let mut out = BTreeMap::new();
    for s in &table.services {
        if s.mode != EndpointMode::Vip {
            continue;
        }
        for n in &s.networks {
            let Some(vip) = n.vip else { continue };
            let ingress = table.network(&n.network_id).is_none_or(|i| i.ingress);
            if ingress {
                continue;
            }
            let backends: BTreeSet<Ipv4Addr> = table
                .backends(&s.service_id, &n.network_id)
                .map(|t| t.addr)
                .collect();
            out.insert(vip, backends);
        }
    }
    out
}

/// The chains of the overlay table for `table`; `links` is the prefix of
/// this node's overlay links (`so<tag>`).
pub fn script(table: &NetworkTable, links: &str) -> String {
    let vips = vips(table);
    let mut nat = String::new();
    let mut refuse = String::new();
    for (vip, backends) in &vips {
        if backends.is_empty() {
            let _ = writeln!(
                refuse,
                "    ip daddr {vip} meta l4proto tcp reject with tcp reset\n    ip daddr {vip} reject"
            );
            continue;
        }
        let map: Vec<String> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b}"))
            .collect();
        let _ = writeln!(
            nat,
            "    ip daddr {vip} dnat to numgen inc mod {} map {{ {} }}",
            backends.len(),
            map.join(", ")
        );
    }
    let overlays: Vec<String> = table
        .networks
        .iter()
        .filter(|n| !n.ingress)
        .map(|n| n.subnet.to_string())
        .collect();
    let mut isolate = String::new();
    if !overlays.is_empty() {
        let _ = writeln!(
            isolate,
            "    set overlays {{ type ipv4_addr; flags interval; elements = {{ {} }} }}",
            overlays.join(", ")
        );
    }
    // The gateways (the DNS server's addresses) answer only the tasks on
    // the overlay links and the node itself, never a neighbour that routes
    // through the node.
    let gateways: Vec<String> = table
        .networks
        .iter()
        .filter(|n| !n.ingress)
        .map(|n| n.gateway.to_string())
        .collect();
    let mut guard_in = String::new();
    if !gateways.is_empty() {
        let set = gateways.join(", ");
        let _ = writeln!(
            guard_in,
            "    ip daddr {{ {set} }} iifname \"lo\" accept\n    ip daddr {{ {set} }} iifname \"{links}*\" accept\n    ip daddr {{ {set} }} drop"
        );
    }
    let mut fwd = String::new();
    for n in table.networks.iter().filter(|n| !n.ingress) {
        let _ = writeln!(
            fwd,
            "    ip saddr {s} ip daddr @overlays ip daddr != {s} drop",
            s = n.subnet
        );
    }
    format!(
        "{isolate}  chain vip_pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n{nat}  }}\n\
         \x20 chain vip_out {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}\n\
         \x20 chain guard {{\n    type filter hook forward priority 0; policy accept;\n{refuse}{fwd}  }}\n\
         \x20 chain guard_out {{\n    type filter hook output priority 0; policy accept;\n{refuse}  }}\n\
         \x20 chain guard_in {{\n    type filter hook input priority 0; policy accept;\n{guard_in}  }}\n"
    )
}

/// Replaces the overlay table with what `table` asks for and flushes the
/// conntrack entries of backends that left a VIP.
pub fn apply(sb: &Sandbox, table: &NetworkTable, before: Applied) -> Applied {
    let now = vips(table);
    let body = script(table, &crate::sandbox::overlay::link_prefix_of(sb));
    if let Err(e) = kernel::replace_table(&sb.overlay_table(), &body) {
        tracing::warn!(error = %e, "cannot apply the overlay's nftables table");
        return before;
    }
    for (vip, old) in &before.backends {
        let kept = now.get(vip);
        for gone in old.iter().filter(|b| kept.is_none_or(|k| !k.contains(b))) {
            flush_conntrack(*vip, *gone);
        }
    }
    Applied { backends: now }
}

fn flush_conntrack(vip: Ipv4Addr, backend: Ipv4Addr) {
    match crate::sandbox::nl::conntrack::flush(vip, backend) {
        Ok(n) => {
            tracing::debug!(%vip, %backend, entries = n, "flushed the conntrack entries of a backend that left")
        }
        Err(e) => {
            tracing::debug!(error = %e, "entries of a removed backend stay until they expire")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::model::network::Subnet;
    use shoal_core::rules::network::{NetworkInfo, ServiceNames, ServiceNet, TaskAddr};

    #[test]
    fn balances_serving_tasks_and_refuses_without_any() {
        let table = NetworkTable {
            networks: vec![NetworkInfo {
                id: "n".into(),
                name: "n".into(),
                subnet: Subnet::parse("10.0.9.0/24").unwrap(),
                gateway: Ipv4Addr::new(10, 0, 9, 1),
                internal: false,
                encrypted: true,
                attachable: false,
                ingress: false,
            }],
            tasks: [(2, true), (3, true), (4, false)]
                .into_iter()
                .map(|(h, serving)| TaskAddr {
                    network_id: "n".into(),
                    addr: Ipv4Addr::new(10, 0, 9, h),
                    task_id: format!("t{h}"),
                    service_id: "s".into(),
                    node_id: "x".into(),
                    node_addr: "1.2.3.4:5".into(),
                    serving,
                })
                .collect(),
            blocks: vec![],
            services: ["s", "empty"]
                .iter()
                .enumerate()
                .map(|(i, id)| ServiceNames {
                    service_id: id.to_string(),
                    name: id.to_string(),
                    mode: EndpointMode::Vip,
                    networks: vec![ServiceNet {
                        network_id: "n".into(),
                        vip: Some(Ipv4Addr::new(10, 0, 9, 100 + i as u8)),
                        aliases: vec![],
                    }],
                })
                .collect(),
        };
        let s = script(&table, "sotest");
        assert!(
            s.contains(
                "ip daddr 10.0.9.100 dnat to numgen inc mod 2 map { 0 : 10.0.9.2, 1 : 10.0.9.3 }"
            ),
            "{s}"
        );
        assert!(s.contains("ip daddr 10.0.9.101 meta l4proto tcp reject with tcp reset"));
        assert!(!s.contains("10.0.9.4"));
    }
}
