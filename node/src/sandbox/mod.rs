//! Per-task sandboxes: the one place that makes namespaces. A process task
//! (unless its service asks for `--network host`) runs in its own network
//! namespace, wired by a veth pair into this node's bridge with an address
//! of the node's subnet and NAT for egress, and in its own mount namespace.
//!
//! Ownership: the sandbox creates a task's namespace before the program is
//! spawned and removes it when the driver forgets the task. Everything it
//! makes carries this data dir's tag (`net.json`): the bridge `shb<tag>`, the
//! namespaces `shn<tag>-<task>`, the host ends of the veths `shv<task>` and
//! the nftables table `shoal_<tag>`, so that `open` can remove whatever a
//! daemon killed with `kill -9` left, and nothing of another node's.
//!
//! Blocking (netlink requests, answered on the calling thread; whole
//! nftables tables through `nft -f`): call it from the process driver's
//! forker threads or a blocking task, never from an actor handler.

mod docker_user;
pub mod files;
mod ip;
pub mod nl;
pub mod overlay;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nl::nft::{Element, Op};
use nl::route::{Route, RouteSpec};
use nl::NlError;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use ip::IpError;

/// Task subnets come from 10.201.0.0/16, one /22 per node on this host
/// (clear of the overlay pool and of what a local Docker engine holds): 64
/// nodes a host, 1,021 tasks a node (a Linux bridge takes 1,024 ports).
const POOL: [u8; 2] = [10, 201];
const SUBNETS: u8 = 64;
const PREFIX: u8 = 22;
const HOSTS: u16 = 1022;
const NETNS_DIR: &str = nl::netns::NETNS_DIR;
const HOST_LOCK: &str = "/run/shoal-sandbox.lock";
/// One file a tag, holding the pid of the daemon that uses it: a tag whose
/// daemon is gone (and whose data dir may be gone too) is swept by the next
/// daemon that opens a sandbox on this host.
const OWNERS: &str = "/run/shoal-sandbox";

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("network sandboxes need root (this daemon runs as uid {0})")]
    NotRoot(u32),
    #[error(transparent)]
    Ip(#[from] IpError),
    #[error(transparent)]
    Nl(#[from] NlError),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("no free /22 left in 10.201.0.0/16 on this host")]
    NoSubnet,
    #[error("no free address left on this node's bridge")]
    NoAddress,
    #[error("this node holds as many sandboxes as it can ({0})")]
    Full(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |e| SandboxError::Io(path.to_path_buf(), e)
}

/// What `open` keeps in the data dir: which names and subnet are this node's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    tag: String,
    index: u8,
}

/// A namespace being wired: a netlink socket inside it and a descriptor of it.
pub(crate) struct NsHandle {
    route: Route,
    fd: std::fs::File,
}

impl NsHandle {
    fn open(name: &str, route: Route) -> Result<NsHandle, SandboxError> {
        let path = nl::netns::path(name);
        let fd = std::fs::File::open(&path).map_err(io(&path))?;
        Ok(NsHandle { route, fd })
    }
}

/// A task's network, ready before its program starts.
#[derive(Debug, Clone)]
pub struct TaskNet {
    pub netns: PathBuf,
    pub addr: Ipv4Addr,
}

/// How many sandboxes a node holds at most: one per address of its subnet
/// (its bridge takes one port per task too, up to 1,024).
pub const MAX_SANDBOXES: usize = (HOSTS - 1) as usize;

pub struct Sandbox {
    saved: Saved,
    /// How many tasks may hold a sandbox at once (`MAX_SANDBOXES`, or
    /// fewer: `shoal daemon --max-sandboxes`); what the node reports.
    capacity: usize,
    /// The tasks that hold one now: taken by `prepare`, given back by
    /// `retire` as soon as the task has ended, before the kernel work of
    /// `release`, so that the count the scheduler keeps (tasks not ended)
    /// never runs ahead of this one.
    held: Mutex<BTreeSet<String>>,
    /// The address each task holds.
    tasks: Mutex<BTreeMap<String, Ipv4Addr>>,
    /// Overlay bridges and the tasks' attachments to them.
    overlay: Mutex<overlay::Local>,
}

fn netns_name(tag: &str, task_id: &str) -> String {
    format!("shn{tag}-{}", &task_id[..task_id.len().min(12)])
}

fn veth_names(task_id: &str) -> (String, String) {
    let short = &task_id[..task_id.len().min(12)];
    (format!("shv{short}"), format!("sht{short}"))
}

/// Holds the host-wide lock while subnets are chosen, so that two daemons
/// starting at once do not pick the same one.
struct HostLock(#[allow(dead_code)] std::fs::File);

impl HostLock {
    fn take() -> Result<HostLock, SandboxError> {
        let path = Path::new(HOST_LOCK);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(SandboxError::Io(
                path.into(),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(HostLock(f))
    }
}

/// The subnet indexes some interface of this host already has an address in.
fn used_indexes() -> Result<Vec<u8>, SandboxError> {
    let addrs = nl::host(|r| r.ipv4_addrs())?;
    Ok(addrs
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.octets()[..2] == POOL)
        .map(|a| a.octets()[2] / 4)
        .collect())
}

impl Sandbox {
    /// Sets up this node's bridge, subnet and NAT (or takes them back), and
    /// removes every namespace and veth a previous daemon of this data dir
    /// left. Fails on a node that cannot make namespaces. It holds at most
    /// `max` sandboxes (`None`, or more than `MAX_SANDBOXES`: that many).
    pub fn open(data_dir: &Path, max: Option<usize>) -> Result<Arc<Sandbox>, SandboxError> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            return Err(SandboxError::NotRoot(uid));
        }
        let path = data_dir.join("net.json");
        let saved: Option<Saved> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let _lock = HostLock::take()?;
        sweep_dead_owners(saved.as_ref().map(|s| s.tag.as_str()));
        // A subnet another node took while this one was down is given up.
        let saved = saved.filter(|s| {
            let own = nl::host(|r| r.link_exists(&format!("shb{}", s.tag))).unwrap_or(false);
            own || used_indexes().is_ok_and(|u| !u.contains(&s.index))
        });
        let saved = match saved {
            Some(s) => s,
            None => {
                let used = used_indexes()?;
                let index = (0..SUBNETS)
                    .find(|i| !used.contains(i))
                    .ok_or(SandboxError::NoSubnet)?;
                let tag: String = shoal_core::model::id_from(&mut rand::rng())[..8].into();
                let s = Saved { tag, index };
                let bytes = serde_json::to_vec(&s).unwrap_or_default();
                std::fs::write(&path, &bytes).map_err(io(&path))?;
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .map_err(io(&path))?;
                s
            }
        };
        let sb = Sandbox {
            capacity: max.map_or(MAX_SANDBOXES, |m| m.min(MAX_SANDBOXES)),
            ..Sandbox::of(saved)
        };
        nl::netns::prepare_dir()?;
        sb.remove_leftovers()?;
        overlay::remove_all(&sb.saved.tag);
        sb.set_up_bridge()?;
        let owners = Path::new(OWNERS);
        std::fs::create_dir_all(owners).map_err(io(owners))?;
        let mine = owners.join(&sb.saved.tag);
        // The pid first (what the sweep reads), then the data dir, for whoever looks.
        let owner = format!("{} {}", std::process::id(), data_dir.display());
        std::fs::write(&mine, owner).map_err(io(&mine))?;
        Ok(Arc::new(sb))
    }

    /// A sandbox of `saved`'s names holding nothing yet.
    fn of(saved: Saved) -> Sandbox {
        Sandbox {
            saved,
            capacity: MAX_SANDBOXES,
            held: Mutex::new(BTreeSet::new()),
            tasks: Mutex::new(BTreeMap::new()),
            overlay: Mutex::default(),
        }
    }

    /// How many tasks may hold a sandbox at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The task has ended: its place counts as free from now on, although
    /// `release` (blocking) may not have removed its namespace yet.
    pub fn retire(&self, task_id: &str) {
        self.held.lock().remove(task_id);
    }

    /// The name of this node's bridge.
    pub fn bridge(&self) -> String {
        format!("shb{}", self.saved.tag)
    }

    fn table(&self) -> String {
        format!("shoal_{}", self.saved.tag)
    }

    /// The bridge-family table that binds each task port to its address.
    fn port_table(&self) -> String {
        format!("shoalbr_{}", self.saved.tag)
    }

    /// From now on, IPv4 frames that enter the bridge from `port` (a task's
    /// host-side veth) must carry `addr` as their source.
    /// The elements `bind_port` adds (`Op::Add`) or removes.
    fn port_elements(op: Op, port: &str, addr: Ipv4Addr) -> [Element; 2] {
        let ports = Element {
            op,
            set: "ports",
            key: nl::nft::ifname_key(port),
        };
        let bound = Element {
            op,
            set: "bound",
            key: nl::nft::ifname_addr_key(port, addr),
        };
        match op {
            Op::Add => [ports, bound],
            Op::Delete => [bound, ports],
        }
    }

    /// Applies port bindings (`port_elements`) as one transaction.
    fn apply_ports(&self, elements: &[Element]) -> Result<(), SandboxError> {
        let t = self.port_table();
        nl::host_nft(|n| n.apply(nl::nft::NFPROTO_BRIDGE, &t, elements))?;
        Ok(())
    }

    /// Forgets a port's binding (the port is going); each element alone,
    /// so one already gone does not keep the other.
    pub(crate) fn unbind_port(&self, port: &str, addr: Ipv4Addr) {
        for e in Self::port_elements(Op::Delete, port, addr) {
            let _ = self.apply_ports(std::slice::from_ref(&e));
        }
    }

    /// The `host`th address of this node's subnet.
    fn addr(&self, host: u16) -> Ipv4Addr {
        let [hi, lo] = host.to_be_bytes();
        Ipv4Addr::new(POOL[0], POOL[1], self.saved.index * 4 + hi, lo)
    }

    /// The bridge's address: the tasks' gateway, and the source of the
    /// node's connections to them.
    pub fn gateway(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// This node's task subnet, as `a.b.c.0/22`.
    pub fn subnet(&self) -> String {
        format!("{}/{PREFIX}", self.addr(0))
    }

    fn set_up_bridge(&self) -> Result<(), SandboxError> {
        let br = self.bridge();
        let gateway = self.gateway();
        nl::host(|r| {
            if !r.link_exists(&br)? {
                r.add_bridge(&br, None)?;
                let index = r.link_index(&br)?;
                r.add_addr(index, gateway, PREFIX)?;
            }
            r.set_up(&br)
        })?;
        let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
        std::fs::write(forward, b"1").map_err(io(forward))?;
        let (table, subnet) = (self.table(), self.subnet());
        let overlay = overlay::link_prefix(&self.saved.tag);
        // Recreated whole each time: `delete` of a missing table fails, so
        // add it empty first. `pass`: nothing is routed from one task port
        // of the bridge to another (the ports are isolated at L2 too), and
        // an overlay bridge takes forwarded packets only from shoal's
        // overlay links (its own bridge, another network's, which the
        // overlay table then filters, the TUN, the VXLAN device). Nothing
        // is forwarded into the node bridge but answers: the node reaches
        // its tasks from itself, never for a neighbour that routes via it.
        // `spoof`: strict reverse-path filtering on the task-facing links:
        // a packet from a task must carry a source this node routes back
        // out of the link it came in on (its own address; not another
        // network's, nor another node's).
        ip::nft(&format!(
            "add table ip {table}\ndelete table ip {table}\n\
             table ip {table} {{\n\
               chain masq {{\n\
                 type nat hook postrouting priority 100; policy accept;\n\
                 ip saddr {subnet} oifname != \"{br}\" masquerade\n\
               }}\n\
               chain spoof {{\n\
                 type filter hook prerouting priority -150; policy accept;\n\
                 iifname \"{br}\" fib saddr . iif oif missing drop\n\
                 iifname \"{overlay}b*\" fib saddr . iif oif missing drop\n\
               }}\n\
               chain pass {{\n\
                 type filter hook forward priority 0; policy accept;\n\
                 iifname \"{br}\" oifname \"{br}\" drop\n\
                 oifname \"{overlay}b*\" iifname != \"{overlay}*\" drop\n\
                 iifname \"{br}\" accept\n\
                 oifname \"{br}\" ct state established,related accept\n\
                 oifname \"{br}\" drop\n\
               }}\n\
             }}\n"
        ))?;
        // Per-task anti-spoofing at L2: a task's port on the node bridge
        // or an overlay bridge passes only IPv4 from the task's own
        // address there (`bind_port`).
        let ports = self.port_table();
        ip::nft(&format!(
            "add table bridge {ports}\ndelete table bridge {ports}\n\
             table bridge {ports} {{\n\
               set ports {{ type ifname; }}\n\
               set bound {{ type ifname . ipv4_addr; }}\n\
               chain spoof {{\n\
                 type filter hook prerouting priority -200; policy accept;\n\
                 ether type ip iifname @ports iifname . ip saddr != @bound drop\n\
               }}\n\
             }}\n"
        ))?;
        docker_user::allow(&self.saved.tag);
        Ok(())
    }

    /// Namespaces of this tag (and their veths) a dead daemon left.
    fn remove_leftovers(&self) -> Result<(), SandboxError> {
        let prefix = format!("shn{}-", self.saved.tag);
        let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
            return Ok(());
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                tracing::info!(netns = %name, "removing a task namespace a previous daemon left");
                nl::netns::delete(&name)?;
            }
        }
        Ok(())
    }

    /// Creates the task's network namespace with its address, route and
    /// veth, and one more interface per overlay network in `nets`. A task
    /// only on internal networks gets no default route (nothing leaves
    /// the swarm from it).
    pub fn prepare(
        &self,
        task_id: &str,
        nets: &[overlay::NetAttach],
    ) -> Result<TaskNet, SandboxError> {
        {
            let mut held = self.held.lock();
            if !held.contains(task_id) {
                if held.len() >= self.capacity {
                    return Err(SandboxError::Full(self.capacity));
                }
                held.insert(task_id.to_string());
            }
        }
        let Some(addr) = self.take_addr(task_id) else {
            self.retire(task_id);
            return Err(SandboxError::NoAddress);
        };
        let ns = netns_name(&self.saved.tag, task_id);
        let (host, _) = veth_names(task_id);
        // A half-made namespace of an earlier try goes first.
        self.detach(task_id);
        let made = self.wire(task_id, &ns, &host, addr, nets);
        if let Err(e) = made {
            self.release(task_id);
            return Err(e);
        }
        Ok(TaskNet {
            netns: Path::new(NETNS_DIR).join(ns),
            addr,
        })
    }

    /// The task's address: the one it holds, or the lowest free one.
    fn take_addr(&self, task_id: &str) -> Option<Ipv4Addr> {
        let mut tasks = self.tasks.lock();
        if let Some(a) = tasks.get(task_id) {
            return Some(*a);
        }
        let used: std::collections::HashSet<Ipv4Addr> = tasks.values().copied().collect();
        let a = (2..=HOSTS)
            .map(|h| self.addr(h))
            .find(|a| !used.contains(a))?;
        tasks.insert(task_id.to_string(), a);
        Some(a)
    }

    /// `prepare`'s kernel work: the namespace, its `eth0` on the node
    /// bridge (an isolated port bound to `addr`), `lo`, the default route,
    /// and the overlay interfaces; the port bindings in one transaction.
    fn wire(
        &self,
        task_id: &str,
        ns: &str,
        host: &str,
        addr: Ipv4Addr,
        nets: &[overlay::NetAttach],
    ) -> Result<(), SandboxError> {
        nl::host(|r| r.del_link_if_any(host))?;
        nl::netns::delete(ns)?;
        let inside = nl::netns::create(ns)?;
        let mut handle = NsHandle::open(ns, inside)?;
        let bridge = self.bridge();
        let nsfd = handle.fd.as_raw_fd();
        nl::host(|r| {
            let master = r.link_index(&bridge)?;
            r.add_veth(host, Some(master), "eth0", nsfd, None)?;
            // Task ports reach the gateway (the node, the mesh), never
            // each other (as `docker_gwbridge` with `icc=false`).
            r.set_isolated(host)
        })?;
        let internal_only = !nets.is_empty() && nets.iter().all(|n| n.internal);
        let r = &mut handle.route;
        let eth0 = r.link_index("eth0")?;
        r.add_addr(eth0, addr, PREFIX)?;
        r.set_up("eth0")?;
        r.set_up("lo")?;
        if !internal_only {
            let mut default = RouteSpec::to(Ipv4Addr::UNSPECIFIED, 0);
            default.via = Some(self.gateway());
            r.add_route(&default, false)?;
        }
        let mut bind: Vec<Element> = Self::port_elements(Op::Add, host, addr).into();
        bind.extend(self.attach(task_id, &mut handle, nets, 1)?);
        self.apply_ports(&bind)
    }

    /// Gives a container's network namespace (its process `pid`) overlay
    /// interfaces from `eth<first>` on, under `key` (a task id, or a
    /// connected container's): the namespace is named like a process
    /// task's (`ip netns attach`), so that `release(key)` removes the name
    /// and the interfaces the same way; the namespace itself is the
    /// container's.
    pub fn attach_container(
        &self,
        task_id: &str,
        pid: u32,
        nets: &[overlay::NetAttach],
        first: usize,
    ) -> Result<(), SandboxError> {
        let ns = netns_name(&self.saved.tag, task_id);
        self.detach(task_id);
        let made = nl::netns::delete(&ns)
            .and_then(|()| nl::netns::attach(&ns, pid))
            .and_then(|()| nl::netns::socket_in(&ns))
            .map_err(SandboxError::from)
            .and_then(|route| NsHandle::open(&ns, route))
            .and_then(|mut handle| self.attach(task_id, &mut handle, nets, first))
            .and_then(|bind| self.apply_ports(&bind));
        if let Err(e) = made {
            self.release(task_id);
            return Err(e);
        }
        Ok(())
    }

    /// The address of a task this node sandboxes.
    pub fn addr_of(&self, task_id: &str) -> Option<Ipv4Addr> {
        self.tasks.lock().get(task_id).copied()
    }

    /// Removes the task's namespace (its veth goes with it) and frees its address.
    pub fn release(&self, task_id: &str) {
        self.retire(task_id);
        self.detach(task_id);
        let addr = self.tasks.lock().remove(task_id);
        let had = addr.is_some();
        if let Some(a) = addr {
            self.unbind_port(&veth_names(task_id).0, a);
        }
        let ns = netns_name(&self.saved.tag, task_id);
        if had || Path::new(NETNS_DIR).join(&ns).exists() {
            // The veth would go with the namespace, but only once the kernel
            // gets to it: removed here, it is gone when this returns.
            let (host, _) = veth_names(task_id);
            let removed =
                nl::host(|r| r.del_link_if_any(&host)).and_then(|()| nl::netns::delete(&ns));
            if let Err(e) = removed {
                tracing::warn!(task = %task_id, error = %e, "cannot remove a task namespace");
            }
        }
    }

    /// Removes every task's namespace (leaving the swarm).
    pub fn release_all(&self) {
        let ids: Vec<String> = self.tasks.lock().keys().cloned().collect();
        for id in ids {
            self.release(&id);
        }
        let _ = self.remove_leftovers();
        self.close_overlay();
    }

    /// Removes everything of this node's: namespaces, bridge, NAT table.
    pub fn close(&self) {
        self.release_all();
        let _ = nl::host(|r| r.del_link_if_any(&self.bridge()));
        let _ = ip::nft(&format!(
            "add table ip {t}\ndelete table ip {t}\nadd table bridge {b}\ndelete table bridge {b}\n",
            t = self.table(),
            b = self.port_table()
        ));
        docker_user::remove(&self.saved.tag);
        let _ = std::fs::remove_file(Path::new(OWNERS).join(&self.saved.tag));
    }
}

/// Removes what daemons that are gone left on this host (their bridge,
/// namespaces and table), `own` excepted: this daemon takes its own back.
fn sweep_dead_owners(own: Option<&str>) {
    let Ok(dir) = std::fs::read_dir(OWNERS) else {
        return;
    };
    for e in dir.flatten() {
        let tag = e.file_name().to_string_lossy().into_owned();
        if Some(tag.as_str()) == own || tag.len() != 8 {
            continue;
        }
        let pid: Option<i32> = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        // SAFETY: signal 0 only checks that the process exists.
        let alive = pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
        if !alive {
            tracing::info!(%tag, "removing the network sandbox of a daemon that is gone");
            Sandbox::of(Saved { tag, index: 0 }).close();
        }
    }
}

/// Removes what the daemon of `data_dir` made, whether or not it still runs
/// (for tests and `swarm leave`; a live daemon's tasks lose their network).
pub fn clean(data_dir: &Path) {
    let Some(saved) = std::fs::read(data_dir.join("net.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
    else {
        return;
    };
    Sandbox::of(saved).close();
}
