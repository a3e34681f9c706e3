//! Per-task sandboxes: the one place that makes namespaces. A process task
//! (unless its service asks for `--network host`) runs in its own network
//! namespace and its own mount namespace. Its `eth0` is one end of a veth
//! pair whose other end stays on the host, routed rather than bridged (as
//! Calico wires pods): the task holds one address of the node's blocks as
//! a /32, with `169.254.1.1` as an on-link default gateway whose MAC is a
//! permanent neighbour entry (the host ends all carry `ee:ee:ee:ee:ee:ee`);
//! the host holds a /32 route and a permanent neighbour entry to the task
//! through the host end, which has no address of its own. No Linux bridge,
//! so no 1,024-port limit: what a node holds is set by its address blocks
//! (see `MAX_SANDBOXES`).
//!
//! Addresses: blocks of 10.201.0.0/16, one /22 each. A node starts with
//! one and claims another (the lowest free on this host) when its blocks
//! are full, up to `NODE_BLOCKS`; a block other than the first is given
//! back when its last task goes. A block is claimed by its `.1` (as a /22)
//! on the node's claim link `shb<tag>` (a bridge without ports: a link to
//! hold addresses, which every kernel has; `dummy` is a module not every
//! kernel builds), which is how every daemon on the
//! host sees it taken; the first block's `.1` is the node's own address
//! towards its tasks (the source of its connections to them), and the
//! prefix route the claim brings sinks whatever is sent to an address of
//! a block that no task holds.
//!
//! Isolation is nftables' (the table `shoal_<tag>`): the set `tasks`
//! holds the host end of every task's veth, the set `bound` each with its
//! task's address; nothing is forwarded from one task interface to
//! another, nor into one but answers, and a task sends only from its own
//! address.
//!
//! Ownership: the sandbox creates a task's namespace before the program is
//! spawned and removes it when the driver forgets the task. Everything it
//! makes carries this data dir's tag (`net.json`): the claim link
//! `shb<tag>`, the namespaces `shn<tag>-<task>`, the host ends of the
//! veths `sv<tag><hex of the address's last two bytes>` and the nftables
//! tables `shoal_<tag>` and `shoalbr_<tag>`, so that `open` can remove
//! whatever a daemon killed with `kill -9` left, and nothing of another
//! node's.
//!
//! Blocking (netlink requests, answered on the calling thread; whole
//! nftables tables through `nft -f`): call it from the process driver's
//! starter threads or a blocking task, never from an actor handler.

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

/// Task addresses come from 10.201.0.0/16 (clear of the overlay pool and
/// of what a local Docker engine holds), in blocks of a /22: 64 blocks a
/// host, shared by the nodes on it.
const POOL: [u8; 2] = [10, 201];
const BLOCKS: u8 = 64;
const PREFIX: u8 = 22;
/// The addresses of a block a task may hold: `.2` to `.1022` of the /22
/// (`.0` and the last stay unused, `.1` is the block's claim).
const BLOCK_FIRST: u16 = 2;
const BLOCK_LAST: u16 = 1022;
pub const BLOCK_HOSTS: usize = (BLOCK_LAST - BLOCK_FIRST + 1) as usize;
/// The most blocks one node claims: 8 of the host's 64, so eight nodes on
/// one host can each fill theirs.
const NODE_BLOCKS: usize = 8;
/// Every task's default gateway, on its link (as Calico's): the host end
/// of its veth answers for it with `HOST_MAC`.
pub const TASK_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The MAC of every host end of a task's veth (each is its own link).
const HOST_MAC: [u8; 6] = [0xee; 6];
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
    #[error("no free address left in this node's blocks")]
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

/// How many sandboxes a node holds at most: one per address of the blocks
/// it may claim (8 × 1,021 = 8,168).
pub const MAX_SANDBOXES: usize = NODE_BLOCKS * BLOCK_HOSTS;

/// The addresses a node holds: its blocks, which addresses of them are
/// free, and which task holds each of the others.
#[derive(Debug)]
struct Addrs {
    /// How many addresses of a block tasks hold: `.2` on (`BLOCK_HOSTS`,
    /// fewer for tests: `shoal daemon --sandbox-block-hosts`).
    per_block: u16,
    /// The block indexes (the third byte of a block's address / 4).
    blocks: BTreeSet<u8>,
    free: BTreeSet<Ipv4Addr>,
    tasks: BTreeMap<String, Ipv4Addr>,
}

impl Addrs {
    fn new(per_block: u16) -> Addrs {
        Addrs {
            per_block,
            blocks: BTreeSet::new(),
            free: BTreeSet::new(),
            tasks: BTreeMap::new(),
        }
    }

    /// The addresses of block `index` tasks may hold.
    fn range(&self, index: u8) -> std::ops::RangeInclusive<Ipv4Addr> {
        block_addr(index, BLOCK_FIRST)..=block_addr(index, BLOCK_FIRST + self.per_block - 1)
    }

    fn add_block(&mut self, index: u8) {
        if self.blocks.insert(index) {
            let first = BLOCK_FIRST;
            self.free
                .extend((first..first + self.per_block).map(|h| block_addr(index, h)));
        }
    }
}

/// The `host`th address of block `index`.
fn block_addr(index: u8, host: u16) -> Ipv4Addr {
    let [hi, lo] = host.to_be_bytes();
    Ipv4Addr::new(POOL[0], POOL[1], index * 4 + hi, lo)
}

/// The block an address of the pool is in.
fn block_of(addr: Ipv4Addr) -> u8 {
    addr.octets()[2] / 4
}

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
    /// The blocks and the address each task holds.
    addrs: Mutex<Addrs>,
    /// Held while a block is claimed, so that two tasks do not claim two.
    grow: Mutex<()>,
    /// Overlay bridges and the tasks' attachments to them.
    overlay: Mutex<overlay::Local>,
}

fn netns_name(tag: &str, task_id: &str) -> String {
    format!("shn{tag}-{}", &task_id[..task_id.len().min(12)])
}

/// The host end of the veth of the task holding `addr`: unique on the
/// host (the address is), and found by the tag's prefix `sv<tag>`.
fn veth_name(tag: &str, addr: Ipv4Addr) -> String {
    let [.., c, d] = addr.octets();
    format!("sv{tag}{c:02x}{d:02x}")
}

/// The MAC of a task's `eth0`: `0a:58` and its address, so that the host
/// knows it without asking.
fn task_mac(addr: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = addr.octets();
    [0x0a, 0x58, a, b, c, d]
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

/// The block indexes some interface of this host already has an address in.
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
    /// `block_hosts`: tasks take only that many addresses of a block (at
    /// most `BLOCK_HOSTS`), so that a test sees blocks claimed and given
    /// back with a few hundred tasks.
    pub fn open(
        data_dir: &Path,
        max: Option<usize>,
        block_hosts: Option<usize>,
    ) -> Result<Arc<Sandbox>, SandboxError> {
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
                let index = (0..BLOCKS)
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
        let per_block = block_hosts.map_or(BLOCK_HOSTS, |b| b.clamp(1, BLOCK_HOSTS));
        let most = NODE_BLOCKS * per_block;
        let sb = Sandbox {
            capacity: max.map_or(most, |m| m.min(most)),
            addrs: Mutex::new(Addrs::new(per_block as u16)),
            ..Sandbox::of(saved)
        };
        nl::netns::prepare_dir()?;
        sb.remove_leftovers()?;
        overlay::remove_all(&sb.saved.tag);
        sb.set_up_link()?;
        sb.addrs.lock().add_block(sb.saved.index);
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
            addrs: Mutex::new(Addrs::new(BLOCK_HOSTS as u16)),
            grow: Mutex::new(()),
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

    /// The name of this node's claim link, which holds its blocks' claims.
    pub fn bridge(&self) -> String {
        format!("shb{}", self.saved.tag)
    }

    /// The prefix of the host ends of this node's task veths.
    fn veth_prefix(&self) -> String {
        format!("sv{}", self.saved.tag)
    }

    fn table(&self) -> String {
        format!("shoal_{}", self.saved.tag)
    }

    /// The bridge-family table that binds each task port of an overlay
    /// bridge to its address.
    fn port_table(&self) -> String {
        format!("shoalbr_{}", self.saved.tag)
    }

    /// The elements that make `link` (the host end of a task's veth) one
    /// of the task interfaces of the node's table, bound to `addr`.
    fn task_elements(op: Op, link: &str, addr: Ipv4Addr) -> [Element; 2] {
        let tasks = Element {
            op,
            set: "tasks",
            key: nl::nft::ifname_key(link),
        };
        let bound = Element {
            op,
            set: "bound",
            key: nl::nft::ifname_addr_key(link, addr),
        };
        match op {
            Op::Add => [tasks, bound],
            Op::Delete => [bound, tasks],
        }
    }

    /// Applies task interface elements (`task_elements`) as one transaction.
    fn apply_tasks(&self, elements: &[Element]) -> Result<(), SandboxError> {
        let t = self.table();
        nl::host_nft(|n| n.apply(nl::nft::NFPROTO_IPV4, &t, elements))?;
        Ok(())
    }

    /// From now on, IPv4 frames that enter an overlay bridge from `port` (a
    /// task's host-side veth) must carry `addr` as their source.
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

    /// Forgets a task interface (it is going); each element alone, so one
    /// already gone does not keep the other.
    fn unbind_task(&self, link: &str, addr: Ipv4Addr) {
        for e in Self::task_elements(Op::Delete, link, addr) {
            let _ = self.apply_tasks(std::slice::from_ref(&e));
        }
    }

    /// Forgets a port's binding (the port is going); each element alone,
    /// so one already gone does not keep the other.
    pub(crate) fn unbind_port(&self, port: &str, addr: Ipv4Addr) {
        for e in Self::port_elements(Op::Delete, port, addr) {
            let _ = self.apply_ports(std::slice::from_ref(&e));
        }
    }

    /// The node's own address towards its tasks (`.1` of its first block):
    /// the source of its connections to them.
    pub fn gateway(&self) -> Ipv4Addr {
        block_addr(self.saved.index, 1)
    }

    /// Every block this node holds now, as `a.b.c.0/22`.
    pub fn subnets(&self) -> Vec<String> {
        self.addrs
            .lock()
            .blocks
            .iter()
            .map(|b| format!("{}/{PREFIX}", block_addr(*b, 0)))
            .collect()
    }

    /// The node's claim link with its first block's claim (made afresh:
    /// the claims of other blocks a previous daemon held go with the old
    /// one), forwarding, and the node's table.
    fn set_up_link(&self) -> Result<(), SandboxError> {
        let link = self.bridge();
        let gateway = self.gateway();
        nl::host(|r| {
            r.del_link_if_any(&link)?;
            r.add_bridge(&link, None)?;
            let index = r.link_index(&link)?;
            r.add_addr(index, gateway, PREFIX)?;
            r.set_up(&link)
        })?;
        let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
        std::fs::write(forward, b"1").map_err(io(forward))?;
        let table = self.table();
        let overlay = overlay::link_prefix(&self.saved.tag);
        // Recreated whole each time: `delete` of a missing table fails, so
        // add it empty first. `tasks`: the host ends of the node's task
        // veths (`task_elements`), `bound`: each with its task's address.
        // `spoof`: a task sends only from its own address, and strict
        // reverse-path filtering on the task-facing links: a packet from a
        // task must carry a source this node routes back out of the link
        // it came in on (not another network's, nor another node's).
        // `pass`: nothing is routed from one task interface to another,
        // and an overlay bridge takes forwarded packets only from shoal's
        // overlay links (its own bridge, another network's, which the
        // overlay table then filters, the TUN, the VXLAN device). Nothing
        // is forwarded into a task interface but answers: the node reaches
        // its tasks from itself, never for a neighbour that routes via it.
        // `masq`: what tasks send out of the node leaves with the node's
        // address.
        ip::nft(&format!(
            "add table ip {table}\ndelete table ip {table}\n\
             table ip {table} {{\n\
               set tasks {{ type ifname; }}\n\
               set bound {{ type ifname . ipv4_addr; }}\n\
               chain masq {{\n\
                 type nat hook postrouting priority 100; policy accept;\n\
                 iifname @tasks oifname != @tasks masquerade\n\
               }}\n\
               chain spoof {{\n\
                 type filter hook prerouting priority -150; policy accept;\n\
                 iifname @tasks iifname . ip saddr != @bound drop\n\
                 iifname @tasks fib saddr . iif oif missing drop\n\
                 iifname \"{overlay}b*\" fib saddr . iif oif missing drop\n\
               }}\n\
               chain pass {{\n\
                 type filter hook forward priority 0; policy accept;\n\
                 iifname @tasks oifname @tasks drop\n\
                 oifname \"{overlay}b*\" iifname != \"{overlay}*\" drop\n\
                 iifname @tasks accept\n\
                 oifname @tasks ct state established,related accept\n\
                 oifname @tasks drop\n\
               }}\n\
             }}\n"
        ))?;
        // Per-task anti-spoofing at L2: a task's port on an overlay bridge
        // passes only IPv4 from the task's own address there (`bind_port`).
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

    /// Namespaces of this tag and the host ends of their veths a dead
    /// daemon left (their routes and neighbour entries go with the links).
    fn remove_leftovers(&self) -> Result<(), SandboxError> {
        let veths = self.veth_prefix();
        let mut left = 0usize;
        nl::host(|r| {
            for (_, name) in r.links()? {
                if name.starts_with(&veths) {
                    r.del_link_if_any(&name)?;
                    left += 1;
                }
            }
            Ok(())
        })?;
        if left > 0 {
            tracing::info!(count = left, "removed task veths a previous daemon left");
        }
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
        let addr = match self.take_addr(task_id) {
            Ok(a) => a,
            Err(e) => {
                self.retire(task_id);
                return Err(e);
            }
        };
        let ns = netns_name(&self.saved.tag, task_id);
        let host = veth_name(&self.saved.tag, addr);
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

    /// The task's address: the one it holds, or the lowest free one of
    /// the node's blocks, claiming one more block when they are full.
    fn take_addr(&self, task_id: &str) -> Result<Ipv4Addr, SandboxError> {
        loop {
            {
                let mut addrs = self.addrs.lock();
                if let Some(a) = addrs.tasks.get(task_id) {
                    return Ok(*a);
                }
                if let Some(a) = addrs.free.pop_first() {
                    addrs.tasks.insert(task_id.to_string(), a);
                    return Ok(a);
                }
                if addrs.blocks.len() >= NODE_BLOCKS {
                    return Err(SandboxError::NoAddress);
                }
            }
            let _grow = self.grow.lock();
            if !self.addrs.lock().free.is_empty() {
                // Another task claimed one meanwhile.
                continue;
            }
            let index = self.claim_block()?;
            tracing::info!(block = %format!("{}/{PREFIX}", block_addr(index, 0)), "this node's task addresses grow by a block");
            self.addrs.lock().add_block(index);
        }
    }

    /// Claims the lowest block of the pool no interface of this host has
    /// an address in, with its `.1` on the node's claim link.
    fn claim_block(&self) -> Result<u8, SandboxError> {
        let _lock = HostLock::take()?;
        let used = used_indexes()?;
        let index = (0..BLOCKS)
            .find(|i| !used.contains(i))
            .ok_or(SandboxError::NoSubnet)?;
        let link = self.bridge();
        nl::host(|r| {
            let dev = r.link_index(&link)?;
            r.add_addr(dev, block_addr(index, 1), PREFIX)
        })?;
        Ok(index)
    }

    /// Gives back `addr`, and its block when it is not the first one and
    /// no task holds an address of it any more.
    fn free_addr(&self, addr: Ipv4Addr) {
        let block = block_of(addr);
        let empty = {
            let mut addrs = self.addrs.lock();
            if !addrs.blocks.contains(&block) {
                return;
            }
            addrs.free.insert(addr);
            let range = addrs.range(block);
            let empty = block != self.saved.index
                && addrs.free.range(range.clone()).count() == usize::from(addrs.per_block);
            if empty {
                addrs.blocks.remove(&block);
                let gone: Vec<Ipv4Addr> = addrs.free.range(range).copied().collect();
                for a in gone {
                    addrs.free.remove(&a);
                }
            }
            empty
        };
        if empty {
            let link = self.bridge();
            let removed = nl::host(|r| {
                let dev = r.link_index(&link)?;
                r.del_addr_if_any(dev, block_addr(block, 1), PREFIX)
            });
            match removed {
                Ok(()) => {
                    tracing::info!(block = %format!("{}/{PREFIX}", block_addr(block, 0)), "a block of task addresses given back")
                }
                Err(e) => tracing::warn!(error = %e, "cannot give back a block of task addresses"),
            }
        }
    }

    /// `prepare`'s kernel work: the namespace, its `eth0` (the veth routed
    /// from the host, `addr` as a /32, the default route through
    /// `TASK_GATEWAY`), `lo`, and the overlay interfaces; the task
    /// interface's elements in one transaction, the overlay ports' in one.
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
        let nsfd = handle.fd.as_raw_fd();
        let gateway = self.gateway();
        nl::host(|r| {
            r.add_veth_with(
                host,
                None,
                "eth0",
                nsfd,
                None,
                Some((HOST_MAC, task_mac(addr))),
            )?;
            let dev = r.link_index(host)?;
            r.set_neighbour(dev, addr, task_mac(addr))?;
            let mut to_task = RouteSpec::to(addr, 32);
            to_task.dev = Some(dev);
            to_task.src = Some(gateway);
            to_task.link_scope = true;
            r.add_route(&to_task, true)
        })?;
        let internal_only = !nets.is_empty() && nets.iter().all(|n| n.internal);
        let r = &mut handle.route;
        let eth0 = r.link_index("eth0")?;
        r.add_addr(eth0, addr, 32)?;
        r.set_up("eth0")?;
        r.set_up("lo")?;
        r.set_neighbour(eth0, TASK_GATEWAY, HOST_MAC)?;
        let mut on_link = RouteSpec::to(TASK_GATEWAY, 32);
        on_link.dev = Some(eth0);
        on_link.link_scope = true;
        r.add_route(&on_link, false)?;
        if !internal_only {
            let mut default = RouteSpec::to(Ipv4Addr::UNSPECIFIED, 0);
            default.via = Some(TASK_GATEWAY);
            default.dev = Some(eth0);
            r.add_route(&default, false)?;
        }
        self.apply_tasks(&Self::task_elements(Op::Add, host, addr))?;
        let bind = self.attach(task_id, &mut handle, nets, 1)?;
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
        self.addrs.lock().tasks.get(task_id).copied()
    }

    /// Removes the task's namespace (its veth goes with it) and frees its address.
    pub fn release(&self, task_id: &str) {
        self.retire(task_id);
        self.detach(task_id);
        let addr = self.addrs.lock().tasks.remove(task_id);
        let ns = netns_name(&self.saved.tag, task_id);
        if let Some(a) = addr {
            // The veth (its route and neighbour entry with it) would go
            // with the namespace, but only once the kernel gets to it:
            // removed here, it is gone when this returns, before its
            // address is given to another task.
            let host = veth_name(&self.saved.tag, a);
            self.unbind_task(&host, a);
            if let Err(e) = nl::host(|r| r.del_link_if_any(&host)) {
                tracing::warn!(task = %task_id, error = %e, "cannot remove a task's veth");
            }
        }
        if addr.is_some() || Path::new(NETNS_DIR).join(&ns).exists() {
            if let Err(e) = nl::netns::delete(&ns) {
                tracing::warn!(task = %task_id, error = %e, "cannot remove a task namespace");
            }
        }
        if let Some(a) = addr {
            self.free_addr(a);
        }
    }

    /// Removes every task's namespace (leaving the swarm).
    pub fn release_all(&self) {
        let ids: Vec<String> = self.addrs.lock().tasks.keys().cloned().collect();
        for id in ids {
            self.release(&id);
        }
        let _ = self.remove_leftovers();
        self.close_overlay();
    }

    /// Removes everything of this node's: namespaces, veths, the claim link
    /// (its blocks' claims with it), the tables.
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
