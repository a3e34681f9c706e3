//! Several hosts on one machine for overlay tests: a "switch" namespace
//! holding a bridge, and one network namespace per node with a veth into it
//! and an address of 10.250.X.0/24 (X picked per underlay, so that tests
//! running at once do not meet). The bridge is not in the test's own
//! namespace, where a local Docker engine's iptables (FORWARD policy DROP,
//! with bridged frames passed through iptables) would drop what crosses it;
//! nothing routes between it and the rest of the machine: the nodes reach
//! each other and nothing else. Everything is removed on drop, pass or fail.

use std::process::{Command, Stdio};

pub struct Underlay {
    pub bridge: String,
    /// The namespace the bridge is in.
    pub switch: String,
    /// The nodes' namespaces, in order.
    pub nodes: Vec<String>,
    /// The third octet of the nodes' addresses.
    pub net: u8,
    id: String,
    /// The veth `add_root` made in the test's namespace.
    root: Option<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this test can make namespaces (root, with `ip`).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && ip(&["netns", "list"]).is_ok()
}

impl Underlay {
    /// `n` node namespaces on one bridge; `mtu` for every link.
    pub fn new(n: usize, mtu: u32) -> Underlay {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = nanos ^ std::process::id().rotate_left(16);
        let id = format!("{:05x}", seed & 0xfffff);
        let net = (seed % 240) as u8 + 10;
        let mut u = Underlay {
            bridge: format!("shtb{id}"),
            switch: format!("shtn{id}-sw"),
            nodes: Vec::new(),
            net,
            id,
            root: None,
        };
        let mtu_s = mtu.to_string();
        ip(&["netns", "add", &u.switch]).expect("switch namespace");
        let sw = u.switch.clone();
        ip(&[
            "-n", &sw, "link", "add", &u.bridge, "mtu", &mtu_s, "type", "bridge",
        ])
        .expect("test bridge");
        ip(&["-n", &sw, "link", "set", &u.bridge, "up"]).expect("test bridge up");
        for i in 0..n {
            let ns = format!("shtn{}-{i}", u.id);
            ip(&["netns", "add", &ns]).expect("node namespace");
            u.nodes.push(ns.clone());
            let host = format!("shtv{}{i}", u.id);
            ip(&[
                "-n", &sw, "link", "add", &host, "mtu", &mtu_s, "type", "veth", "peer", "name",
                "eth0", "mtu", &mtu_s, "netns", &ns,
            ])
            .expect("node veth");
            ip(&["-n", &sw, "link", "set", &host, "master", &u.bridge, "up"]).expect("veth up");
            let addr = format!("{}/24", u.addr(i));
            for cmd in [
                vec!["addr", "add", &addr, "dev", "eth0"],
                vec!["link", "set", "eth0", "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                let mut args = vec!["-n", ns.as_str()];
                args.extend(cmd);
                ip(&args).expect("node address");
            }
        }
        u
    }

    /// Joins the test's own namespace (where a local Docker engine runs) to
    /// the switch: a veth whose end here has the returned address (`.200`).
    /// It goes when the switch namespace does.
    pub fn add_root(&mut self) -> String {
        let (here, there) = (format!("shtr{}", self.id), format!("shtw{}", self.id));
        let me = std::process::id().to_string();
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &there,
            "type",
            "veth",
            "peer",
            "name",
            &here,
            "netns",
            &me,
        ])
        .expect("root veth");
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &there,
            "master",
            &self.bridge,
            "up",
        ])
        .expect("root veth up");
        let addr = format!("10.250.{}.200", self.net);
        ip(&["addr", "add", &format!("{addr}/24"), "dev", &here]).expect("root address");
        ip(&["link", "set", &here, "up"]).expect("root veth up");
        self.root = Some(here);
        addr
    }

    /// The address of node `i` on the underlay.
    pub fn addr(&self, i: usize) -> String {
        format!("10.250.{}.{}", self.net, i + 2)
    }

    /// `ip netns exec` of node `i`'s namespace, ready for arguments.
    pub fn exec(&self, i: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nodes[i]]);
        c
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        if let Some(link) = &self.root {
            let _ = ip(&["link", "del", link]);
        }
        for ns in &self.nodes {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// Runs `args` in the network (and mount) namespace of process `pid`: what
/// the task with that process sees, its `/etc/resolv.conf` included.
pub fn in_task(pid: i32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "-m", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("nsenter")
}
