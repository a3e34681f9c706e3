//! The kernel side of overlay networks on this node: one bridge per overlay
//! network that has a local task (the network's gateway address on it), one
//! more veth per attachment in a task's namespace, the TUN device the
//! encrypted data plane reads and writes, the routes into it, and the
//! nftables table that balances VIPs and keeps networks apart.
//!
//! Names carry the sandbox tag, so the sweep of a killed daemon's leftovers
//! finds them: bridges `so<tag>b<n>`, the TUN `so<tag>t`, VXLAN devices
//! `so<tag>x<n>`, the table `shoalov_<tag>`. A task's host-side veths are
//! `sx<k><task>`; they go with the task's namespace.
//!
//! Addressing: a task's overlay address is a /32 on its interface with the
//! network's subnet routed `via gateway onlink`, and the bridge holds the
//! gateway as a /32 with one host route per local task. So every packet,
//! even between two tasks of one node, goes through the node's L3 (where
//! conntrack sees both directions of a VIP connection: no DNAT hairpin
//! problem, no bridged shortcut), and the subnet as a whole is routed into
//! the TUN: whatever is not a local task goes to the data plane.
//!
//! Blocking (netlink on the calling thread; `nft -f` for the whole table,
//! `ip`/`bridge` for the VXLAN fast path's device and forwarding entries):
//! starter threads and blocking tasks only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};

use shoal_core::model::network::Subnet;

use super::ip;
use super::nl::{self, nft::Element, nft::Op, route::RouteSpec};
use super::{NsHandle, Sandbox, SandboxError};

/// What a task's interface on one overlay network needs, from the network
/// table and the task's attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAttach {
    pub network_id: String,
    pub addr: Ipv4Addr,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    /// The MTU of the task's interface: the data plane's inner MTU.
    pub mtu: u32,
}

/// One local overlay network: its bridge and the tasks using it.
#[derive(Debug)]
struct LocalNet {
    bridge: String,
    users: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(super) struct Local {
    nets: BTreeMap<String, LocalNet>,
    /// The attachments each task holds: (network id, address).
    tasks: BTreeMap<String, Vec<(String, Ipv4Addr)>>,
    next_bridge: u32,
}

/// The host end of a task's `k`th overlay veth.
fn veth_host(k: usize, task_id: &str) -> String {
    format!("sx{k:x}{}", &task_id[..task_id.len().min(12)])
}

/// Names of everything overlay this tag owns start with this.
pub(super) fn link_prefix(tag: &str) -> String {
    format!("so{tag}")
}

/// The prefix of `sb`'s overlay links (bridges, TUN, VXLAN device).
pub fn link_prefix_of(sb: &super::Sandbox) -> String {
    link_prefix(&sb.saved.tag)
}

pub(super) fn table_name(tag: &str) -> String {
    format!("shoalov_{tag}")
}

/// Removes every overlay link and the overlay table of `tag`.
pub(super) fn remove_all(tag: &str) {
    let prefix = link_prefix(tag);
    let _ = nl::host(|r| {
        for (_, name) in r.links()? {
            if name.starts_with(&prefix) {
                r.del_link_if_any(&name)?;
            }
        }
        Ok(())
    });
    let t = table_name(tag);
    let _ = ip::nft(&format!("add table ip {t}\ndelete table ip {t}\n"));
}

impl Sandbox {
    /// The name of this node's VXLAN device (unencrypted overlays).
    pub fn vxlan_name(&self) -> String {
        format!("{}x", link_prefix(&self.saved.tag))
    }

    /// The name of this node's TUN device.
    pub fn tun_name(&self) -> String {
        format!("{}t", link_prefix(&self.saved.tag))
    }

    /// The overlay nftables table of this node.
    pub fn overlay_table(&self) -> String {
        table_name(&self.saved.tag)
    }

    /// The bridge of `network_id` on this node, if a local task uses it.
    pub fn overlay_bridge(&self, network_id: &str) -> Option<String> {
        self.overlay
            .lock()
            .nets
            .get(network_id)
            .map(|n| n.bridge.clone())
    }

    /// Marks `task_id` as a user of the network's bridge, making the bridge
    /// (with the gateway on it) if it is the first.
    fn join_bridge(&self, task_id: &str, a: &NetAttach) -> Result<String, SandboxError> {
        let mut local = self.overlay.lock();
        if let Some(n) = local.nets.get_mut(&a.network_id) {
            n.users.insert(task_id.to_string());
            return Ok(n.bridge.clone());
        }
        let bridge = format!(
            "{}b{:x}",
            link_prefix(&self.saved.tag),
            local.next_bridge & 0xffff
        );
        local.next_bridge = local.next_bridge.wrapping_add(1);
        nl::host(|r| {
            r.del_link_if_any(&bridge)?;
            r.add_bridge(&bridge, Some(a.mtu))?;
            let index = r.link_index(&bridge)?;
            r.add_addr(index, a.gateway, 32)?;
            r.set_up(&bridge)
        })?;
        // Tasks reach each other through this node's L3 only; a redirect
        // would tell them to go straight (and they refuse it anyway, /32).
        let conf = format!("/proc/sys/net/ipv4/conf/{bridge}/send_redirects");
        let _ = std::fs::write(conf, b"0");
        local.nets.insert(
            a.network_id.clone(),
            LocalNet {
                bridge: bridge.clone(),
                users: [task_id.to_string()].into(),
            },
        );
        Ok(bridge)
    }

    /// Drops `task_id` from the network's bridge users; the last one takes
    /// the bridge with it.
    fn leave_bridge(&self, task_id: &str, network_id: &str) {
        let mut local = self.overlay.lock();
        let Some(n) = local.nets.get_mut(network_id) else {
            return;
        };
        n.users.remove(task_id);
        if n.users.is_empty() {
            let bridge = n.bridge.clone();
            local.nets.remove(network_id);
            if let Err(e) = nl::host(|r| r.del_link_if_any(&bridge)) {
                tracing::warn!(%bridge, error = %e, "cannot remove an overlay bridge");
            }
        }
    }

    /// Gives the task (whose namespace `ns` is being wired) one interface
    /// per overlay attachment: `eth<first>`, `eth<first+1>`, ... in the
    /// order given. Returns the port bindings to add, which the caller
    /// applies in one transaction with its own.
    pub(super) fn attach(
        &self,
        task_id: &str,
        ns: &mut NsHandle,
        nets: &[NetAttach],
        first: usize,
    ) -> Result<Vec<Element>, SandboxError> {
        let mut bind = Vec::new();
        let nsfd = std::os::fd::AsRawFd::as_raw_fd(&ns.fd);
        for (k, a) in nets.iter().enumerate() {
            let bridge = self.join_bridge(task_id, a)?;
            self.overlay
                .lock()
                .tasks
                .entry(task_id.to_string())
                .or_default()
                .push((a.network_id.clone(), a.addr));
            let host = veth_host(k, task_id);
            let dev = format!("eth{}", k + first);
            nl::host(|r| {
                r.del_link_if_any(&host)?;
                let master = r.link_index(&bridge)?;
                r.add_veth(&host, Some(master), &dev, nsfd, Some(a.mtu))?;
                let mut to_task = RouteSpec::to(a.addr, 32);
                to_task.dev = Some(master);
                to_task.src = Some(a.gateway);
                to_task.link_scope = true;
                r.add_route(&to_task, true)
            })?;
            bind.extend(Sandbox::port_elements(Op::Add, &host, a.addr));
            let r = &mut ns.route;
            let index = r.link_index(&dev)?;
            r.add_addr(index, a.addr, 32)?;
            r.set_up(&dev)?;
            let mut subnet = RouteSpec::to(a.subnet.addr, a.subnet.prefix);
            subnet.via = Some(a.gateway);
            subnet.dev = Some(index);
            subnet.onlink = true;
            subnet.src = Some(a.addr);
            r.add_route(&subnet, false)?;
        }
        Ok(bind)
    }

    /// Removes the task's overlay interfaces and host routes; bridges left
    /// without a task go.
    pub(super) fn detach(&self, task_id: &str) {
        let held = self
            .overlay
            .lock()
            .tasks
            .remove(task_id)
            .unwrap_or_default();
        for (k, (network_id, addr)) in held.iter().enumerate() {
            let host = veth_host(k, task_id);
            self.unbind_port(&host, *addr);
            let bridge = self.overlay_bridge(network_id);
            let _ = nl::host(|r| {
                r.del_link_if_any(&host)?;
                if let Some(bridge) = &bridge {
                    let mut to_task = RouteSpec::to(*addr, 32);
                    to_task.dev = Some(r.link_index(bridge)?);
                    r.del_route_if_any(&to_task)?;
                }
                Ok(())
            });
            self.leave_bridge(task_id, network_id);
        }
    }

    /// Removes every overlay bridge, device and the overlay table.
    pub(super) fn close_overlay(&self) {
        {
            let mut local = self.overlay.lock();
            local.nets.clear();
            local.tasks.clear();
        }
        remove_all(&self.saved.tag);
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens (creates) the TUN device `name`, non-blocking, each packet behind
/// a `virtio_net_hdr` (no offloads asked for on what it reads). It lives as long as
/// the descriptor: a killed daemon leaves no TUN behind.
pub fn open_tun(name: &str) -> Result<OwnedFd, SandboxError> {
    let path = std::path::Path::new("/dev/net/tun");
    let err = |e| SandboxError::Io(path.to_path_buf(), e);
    if name.len() >= libc::IFNAMSIZ {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name too long",
        )));
    }
    // SAFETY: open(2) on a constant path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        // Every packet behind a `virtio_net_hdr`: the receiver writes
        // merged TCP segments as one packet (overlay/gro.rs).
        flags: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads an ifreq, which `req` is laid out as.
    if unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // TCP handed over in packets of up to 64 KiB with the checksum left to
    // us (the forwarder cuts them, overlay/gro.rs): the kernel's path from
    // the task to the TUN runs once per 64 KiB instead of once per packet.
    // Without it (an old kernel) packets come one by one, as before.
    // SAFETY: TUNSETOFFLOAD takes its flags as the argument itself.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) } < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "no TSO on the overlay TUN");
    }
    Ok(owned)
}

/// Brings the TUN up with `mtu` and a deep enough queue.
pub fn set_up_tun(name: &str, mtu: u32) -> Result<(), SandboxError> {
    nl::host(|r| r.set_up_with(name, mtu, 1000))?;
    Ok(())
}

/// Routes each subnet into the TUN (`routes`: what should be there now;
/// `before`: what was), as one batch.
pub fn route_subnets(tun: &str, before: &BTreeSet<Subnet>, now: &BTreeSet<Subnet>) {
    if before.is_empty() && now.is_empty() {
        return;
    }
    let applied = nl::host(|r| {
        let dev = r.link_index(tun)?;
        let spec = |s: &Subnet| {
            let mut r = RouteSpec::to(s.addr, s.prefix);
            r.dev = Some(dev);
            r
        };
        // Each tried whatever the others do: one missing route must not
        // stop the rest.
        for s in before.difference(now) {
            if let Err(e) = r.del_route_if_any(&spec(s)) {
                tracing::debug!(error = %e, "an overlay route did not go");
            }
        }
        for s in now {
            if let Err(e) = r.add_route(&spec(s), true) {
                tracing::debug!(error = %e, "an overlay route did not apply");
            }
        }
        Ok(())
    });
    if let Err(e) = applied {
        tracing::debug!(error = %e, "the overlay routes did not apply");
    }
}

/// Replaces the overlay table with `script`'s chains in one transaction.
pub fn replace_table(table: &str, body: &str) -> Result<(), SandboxError> {
    ip::nft(&format!(
        "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n{body}}}\n"
    ))?;
    Ok(())
}

/// The MTU of the interface holding `ip` (the underlay), if one does.
pub fn mtu_of_addr(addr: Ipv4Addr) -> Option<u32> {
    let dev = nl::host(|r| {
        let index = r.ipv4_addrs()?.into_iter().find(|(_, a)| *a == addr);
        let links = r.links()?;
        Ok(index.and_then(|(i, _)| links.into_iter().find(|(j, _)| *j == i)))
    })
    .ok()??
    .1;
    std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Makes the VXLAN device of the unencrypted fast path (no learning: every
/// entry is static).
pub fn vxlan_device(
    dev: &str,
    vni: u32,
    port: u16,
    local: Ipv4Addr,
    mac: &str,
    mtu: u32,
) -> Result<(), SandboxError> {
    let _ = ip::ignore_missing(ip::ip(&["link", "del", dev]));
    ip::batch(
        None,
        &[
            format!("link add {dev} type vxlan id {vni} dstport {port} local {local} nolearning"),
            format!("link set {dev} address {mac} mtu {mtu} up"),
        ],
    )?;
    Ok(())
}

/// Applies `ip` and `bridge` lines, each tried whatever the others do.
pub fn force_batches(ip_lines: &[String], fdb_lines: &[String]) {
    if !fdb_lines.is_empty() {
        if let Err(e) = ip::bridge_force(fdb_lines) {
            tracing::debug!(error = %e, "some VXLAN FDB entries did not apply");
        }
    }
    if !ip_lines.is_empty() {
        if let Err(e) = ip::run_force(ip_lines) {
            tracing::debug!(error = %e, "some VXLAN routes did not apply");
        }
    }
}
