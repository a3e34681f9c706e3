//! `[cluster] netns = true`: every daemon in a network namespace of its
//! own, the way separate hosts are, so overlay networks work (each node
//! needs its own overlay bridges, VXLAN/TUN devices and nftables tables).
//!
//! Layout (as `cli/tests/common/netns.rs` builds it for the overlay tests):
//! a "switch" namespace holding a bridge; one namespace per node with a veth
//! `eth0` into it, address 10.251.N.(i+2)/24; and a veth from the harness's
//! own namespace to the bridge (10.251.N.200), so that everything that
//! reaches a node by its address (the `mesh` probe, a published-port
//! `[traffic]`, network faults by peer address) works as it does on
//! 127.0.0.x. The bridge is not in the harness's namespace, where a local
//! Docker engine's iptables (FORWARD policy DROP) would drop bridged frames;
//! nothing routes between the switch and the rest of the machine.
//!
//! Every name carries the harness's pid (`shcn<pid>-…`). Everything is
//! removed when the [`Underlay`] is dropped, when the harness is
//! interrupted (SIGINT, SIGTERM, SIGHUP: `crate::teardown`), and, for a
//! harness that was SIGKILLed, by the next run, which removes the
//! namespaces of every `shcn<pid>` whose process is gone.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The prefix of every namespace and link the harness makes.
const PREFIX: &str = "shcn";

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ip (iproute2)")?;
    if out.status.success() {
        Ok(())
    } else {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

pub struct Underlay {
    /// The namespace the bridge is in.
    pub switch: String,
    /// The nodes' namespaces, in order.
    pub nodes: Vec<String>,
    /// The third octet of every address.
    pub net: u8,
    /// The veth end in the harness's own namespace.
    root: Option<String>,
}

/// Namespace names of this process's underlay, for the signal path.
fn tag() -> String {
    format!("{PREFIX}{}", std::process::id())
}

impl Underlay {
    /// `n` node namespaces joined by a bridge, and the harness's own
    /// namespace on it too. On an error, what was made is removed.
    pub fn new(n: usize) -> Result<Underlay> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("[cluster] netns = true makes network namespaces: run the harness as root");
        }
        sweep_stale();
        let tag = tag();
        // A /24 of 10.251/16 no other live harness uses.
        let used: Vec<u8> = std::fs::read_to_string("/proc/net/fib_trie")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("10.251."))
            .filter_map(|w| w.split('.').next()?.parse().ok())
            .collect();
        let net = (10..250u8)
            .map(|k| ((std::process::id() as u64 + k as u64) % 240) as u8 + 10)
            .find(|k| !used.contains(k))
            .unwrap_or(10);
        let mut u = Underlay {
            switch: format!("{tag}-sw"),
            nodes: Vec::new(),
            net,
            root: None,
        };
        u.build(n, &tag)?;
        Ok(u)
    }

    fn build(&mut self, n: usize, tag: &str) -> Result<()> {
        let bridge = format!("{tag}b");
        ip(&["netns", "add", &self.switch])?;
        crate::teardown::add_netns(&self.switch);
        let sw = self.switch.clone();
        ip(&["-n", &sw, "link", "add", &bridge, "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{tag}-{i}");
            ip(&["netns", "add", &ns])?;
            crate::teardown::add_netns(&ns);
            self.nodes.push(ns.clone());
            let host = format!("{tag}v{i}");
            ip(&[
                "-n", &sw, "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &host, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // The harness's own end: it goes when the switch namespace does.
        let (here, there) = (format!("{tag}r"), format!("{tag}w"));
        let me = std::process::id().to_string();
        ip(&[
            "-n", &sw, "link", "add", &there, "type", "veth", "peer", "name", &here, "netns", &me,
        ])?;
        self.root = Some(here.clone());
        ip(&["-n", &sw, "link", "set", &there, "master", &bridge, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.251.{}.200/24", self.net),
            "dev",
            &here,
        ])?;
        ip(&["link", "set", &here, "up"])?;
        Ok(())
    }

    /// Node `i`'s address on the underlay.
    pub fn addr(&self, i: usize) -> String {
        format!("10.251.{}.{}", self.net, i + 2)
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        if let Some(link) = &self.root {
            let _ = ip(&["link", "del", link]);
        }
        for ns in self.nodes.iter().chain(std::iter::once(&self.switch)) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                if std::path::Path::new("/run/netns").join(ns).exists() {
                    eprintln!("shoal-chaos: could not remove namespace {ns}: {e:#}");
                }
            }
            crate::teardown::forget_netns(ns);
        }
    }
}

/// Removes the namespaces of harnesses that are gone (SIGKILLed: nothing
/// of theirs ran at the end). A namespace goes with its last process, and
/// its veths with it.
pub fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        if pid != std::process::id() as i32 && !crate::observe::alive(pid) {
            eprintln!("shoal-chaos: removing namespace {name}, left by a harness that is gone");
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
