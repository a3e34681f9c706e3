//! The cluster under test: `shoal daemon` processes this runner started on
//! 127.0.0.x, or an existing cluster given by its control sockets. Node
//! faults are signals; everything else goes through the control API.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::api;
use crate::history::NodeInfo;
use crate::scenario::{node_names, ClusterShape};

const ANSWER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Up,
    Paused,
    Down,
}

/// How to start a node's daemon again.
#[derive(Debug, Clone)]
struct Launch {
    argv: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
}

#[derive(Debug)]
pub struct Node {
    pub info: NodeInfo,
    pub socket: PathBuf,
    /// The daemon's data directory, when the harness started it.
    pub data_dir: Option<PathBuf>,
    /// A tmpfs of its own is mounted there (`[cluster] disk`); unmounted when the cluster goes.
    pub mounted: bool,
    pub liveness: Liveness,
    /// The network namespace it runs in (`[cluster] netns`).
    pub netns: Option<String>,
    launch: Option<Launch>,
    pid: Option<i32>,
    child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Sockets live here (kept short: a Unix socket path holds 107 bytes).
    sock_dir: Option<PathBuf>,
    /// The namespaces and bridge of `[cluster] netns`; removed once the
    /// daemons in them are gone.
    underlay: Option<crate::netns::Underlay>,
}

/// The daemon's flag that makes it claim an older record format: how the
/// harness starts "the previous build" (docs/upgrades.md).
const MAX_FORMAT: &str = "--max-format";

fn free_udp_port(ip: &str) -> Result<u16> {
    let s = std::net::UdpSocket::bind(format!("{ip}:0"))
        .with_context(|| format!("no free port on {ip}"))?;
    Ok(s.local_addr()?.port())
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn child_pid(n: &Node) -> i32 {
    n.pid.unwrap_or(0)
}

impl Node {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The command that removes what a killed daemon left of its sandbox
    /// (its tasks' namespaces, its bridge), run in the node's namespace:
    /// the same binary on the same data dir.
    fn clean_sandbox(&self) -> Vec<String> {
        let Some(l) = &self.launch else {
            return Vec::new();
        };
        let mut argv = l.argv.iter();
        let mut out: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            out.extend(["ip", "netns", "exec", ns].map(str::to_string));
            // Past `ip netns exec NS`.
            argv.nth(3);
        }
        let shoal = argv.next();
        let data = argv.skip_while(|a| *a != "--data-dir").nth(1);
        match (shoal, data) {
            (Some(shoal), Some(data)) => {
                out.extend(
                    [shoal, "daemon", "--data-dir", data, "--clean-sandbox"].map(String::from),
                );
                out
            }
            _ => Vec::new(),
        }
    }

    fn spawn(&mut self, own: bool) -> Result<()> {
        let launch = self
            .launch
            .as_ref()
            .ok_or_else(|| anyhow!("{}: do not know how to start this node", self.name()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("open {}", launch.log.display()))?;
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .current_dir(&launch.cwd)
            .env_clear()
            .envs(launch.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // harness blocks SIGINT, SIGTERM and SIGHUP in its threads (one
        // thread waits for them: `teardown`), and a child inherits the mask
        // (std resets it only when it spawns without a pre_exec): the
        // daemon must get them, `stop` is a SIGTERM.
        unsafe {
            cmd.pre_exec(|| {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if own {
            // SAFETY: only an async-signal-safe call between fork and exec.
            // A daemon of ours dies with the runner, whatever kills it. The
            // signal fires when the *thread* that forked exits, so every
            // spawn happens on the runner's main thread.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", launch.argv[0]))?;
        self.pid = Some(child.id() as i32);
        self.child = Some(child);
        if own {
            if let Some(d) = &self.data_dir {
                crate::teardown::add_daemon(child_pid(self), d.clone(), self.clean_sandbox());
            }
        }
        let socket = self.socket.clone();
        wait_until(
            &format!("{} to answer", self.name()),
            Duration::from_secs(30),
            || api::get(&socket, "/_ping", Duration::from_secs(1)).is_ok(),
        )?;
        self.liveness = Liveness::Up;
        Ok(())
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid
            .ok_or_else(|| anyhow!("{}: pid unknown", self.name()))?;
        kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("{sig} to {} (pid {pid})", self.name()))
    }

    fn reap(&mut self, limit: Duration) -> bool {
        let Some(pid) = self.pid else { return true };
        let start = Instant::now();
        loop {
            let gone = match self.child.as_mut() {
                Some(c) => c.try_wait().ok().flatten().is_some(),
                None => !crate::observe::alive(pid),
            };
            if gone {
                crate::teardown::forget_daemon(pid);
                // Its pid may soon be another process's: never signal it again.
                self.child = None;
                self.pid = None;
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9; returns once the process is gone.
    pub fn kill9(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        if !self.reap(Duration::from_secs(10)) {
            bail!("{} survived SIGKILL for 10s", self.name());
        }
        self.liveness = Liveness::Down;
        Ok(())
    }

    /// SIGTERM, and SIGKILL if it is still there after 20 s.
    pub fn stop(&mut self) -> Result<()> {
        if self.liveness == Liveness::Paused {
            self.signal(Signal::SIGCONT)?;
        }
        self.signal(Signal::SIGTERM)?;
        if !self.reap(Duration::from_secs(20)) {
            self.kill9()?;
            bail!("{} ignored SIGTERM for 20s and was killed", self.name());
        }
        self.liveness = Liveness::Down;
        Ok(())
    }

    /// Whether the node still runs as the previous build (`--max-format`).
    pub fn is_previous(&self) -> bool {
        self.launch
            .as_ref()
            .is_some_and(|l| l.argv.iter().any(|a| a == MAX_FORMAT))
    }

    /// The next build, in the harness's terms: from its next start on, the
    /// node runs without `--max-format`, on the same data dir.
    pub fn upgrade(&mut self) -> Result<()> {
        let launch = self
            .launch
            .as_mut()
            .ok_or_else(|| anyhow!("{}: do not know how to start this node", self.info.name))?;
        let Some(at) = launch.argv.iter().position(|a| a == MAX_FORMAT) else {
            bail!(
                "{} runs as the newest build already ([cluster] max_format not set, or upgraded)",
                self.info.name
            );
        };
        launch.argv.drain(at..(at + 2).min(launch.argv.len()));
        Ok(())
    }

    pub fn start(&mut self, own: bool) -> Result<()> {
        if self.liveness != Liveness::Down {
            bail!("{} is not stopped", self.name());
        }
        self.spawn(own)
    }

    pub fn pause(&mut self) -> Result<()> {
        if self.liveness != Liveness::Up {
            bail!("{} is not running", self.name());
        }
        self.signal(Signal::SIGSTOP)?;
        self.liveness = Liveness::Paused;
        Ok(())
    }

    pub fn resume(&mut self) -> Result<()> {
        if self.liveness != Liveness::Paused {
            bail!("{} is not paused", self.name());
        }
        self.signal(Signal::SIGCONT)?;
        self.liveness = Liveness::Up;
        Ok(())
    }
}

impl Cluster {
    /// Starts `managers + workers` daemons with `--enable-chaos`, initialises
    /// the swarm on manager-1 and joins the rest.
    pub fn start_local(shape: &ClusterShape, shoal: &Path, run_dir: &Path) -> Result<Cluster> {
        let sock_dir = std::env::temp_dir().join(format!("shoal-chaos-{}", std::process::id()));
        std::fs::create_dir_all(&sock_dir)?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            sock_dir: Some(sock_dir.clone()),
            underlay: None,
        };
        if shape.netns {
            cluster.underlay = Some(
                crate::netns::Underlay::new(shape.managers + shape.workers)
                    .context("a network namespace for each node")?,
            );
        }
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k != "RUST_LOG")
            .chain([("RUST_LOG".to_string(), "info".to_string())])
            .collect();
        for (i, name) in node_names(shape).into_iter().enumerate() {
            let netns = cluster
                .underlay
                .as_ref()
                .map(|u| (u.nodes[i].clone(), u.addr(i)));
            let addr = match &netns {
                // A namespace of its own: the port is its own too.
                Some((_, ip)) => format!("{ip}:2377"),
                None => {
                    let ip = format!("127.0.0.{}", 20 + i);
                    format!("{ip}:{}", free_udp_port(&ip)?)
                }
            };
            let socket = sock_dir.join(format!("{name}.sock"));
            let data = run_dir.join("nodes").join(&name);
            std::fs::create_dir_all(data.join("data"))?;
            if let Some(bytes) = shape.disk {
                mount_tmpfs(&data.join("data"), bytes)
                    .with_context(|| format!("a {bytes}-byte filesystem for {name}'s data"))?;
                crate::teardown::add_mount(data.join("data"));
            }
            let mut argv: Vec<String> = match &netns {
                Some((ns, _)) => ["ip", "netns", "exec", ns.as_str()]
                    .map(String::from)
                    .to_vec(),
                None => Vec::new(),
            };
            argv.extend([
                shoal.display().to_string(),
                "-H".into(),
                format!("unix://{}", socket.display()),
                "daemon".into(),
                "--data-dir".into(),
                data.join("data").display().to_string(),
                "--hostname".into(),
                name.clone(),
                "--listen-addr".into(),
                addr.clone(),
                "--enable-chaos".into(),
            ]);
            if let Some(format) = shape.max_format {
                argv.extend([MAX_FORMAT.into(), format.to_string()]);
            }
            let mut node = Node {
                info: NodeInfo {
                    manager: i < shape.managers,
                    name: name.clone(),
                    node_id: String::new(),
                    raft_id: 0,
                    addr,
                },
                socket,
                data_dir: Some(data.join("data")),
                mounted: false,
                liveness: Liveness::Down,
                netns: netns.map(|(ns, _)| ns),
                launch: Some(Launch {
                    argv,
                    cwd: run_dir.to_path_buf(),
                    env: env.clone(),
                    log: data.join("daemon.log"),
                }),
                pid: None,
                child: None,
            };
            node.mounted = shape.disk.is_some();
            // Pushed first: if it does not start, dropping the cluster unmounts it.
            cluster.nodes.push(node);
            if let Some(node) = cluster.nodes.last_mut() {
                node.spawn(true)?;
            }
        }
        cluster.form(shape.managers, shape.snapshot_interval)?;
        if shape.rebalance {
            let first = cluster.nodes[0].socket.clone();
            api::post(
                &first,
                "/swarm/update",
                &json!({ "Orchestration": { "Rebalance": true } }),
                Duration::from_secs(30),
            )?;
        }
        Ok(cluster)
    }

    fn form(&mut self, managers: usize, snapshot_interval: Option<u64>) -> Result<()> {
        let first = self.nodes[0].socket.clone();
        let init = match snapshot_interval {
            Some(n) => json!({ "Spec": { "Raft": { "SnapshotInterval": n } } }),
            None => json!({}),
        };
        api::post(&first, "/swarm/init", &init, Duration::from_secs(30)).context("swarm init")?;
        wait_until("manager-1 to lead", Duration::from_secs(30), || {
            api::get(&first, "/info", ANSWER).ok().and_then(|i| {
                i.pointer("/Swarm/RaftStatus/IsLeader")
                    .and_then(Value::as_bool)
            }) == Some(true)
        })?;
        let swarm = api::get(&first, "/swarm", ANSWER)?;
        let token = |kind: &str| {
            swarm
                .pointer(&format!("/JoinTokens/{kind}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (mtoken, wtoken) = (token("Manager"), token("Worker"));
        let remote = self.nodes[0].info.addr.clone();
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            let token = if i < managers { &mtoken } else { &wtoken };
            api::post(
                &node.socket,
                "/swarm/join",
                &json!({"JoinToken": token, "RemoteAddrs": [remote]}),
                Duration::from_secs(60),
            )
            .with_context(|| format!("{} joins the swarm", node.name()))?;
        }
        let total = self.nodes.len();
        wait_until("every node to be ready", Duration::from_secs(60), || {
            api::get(&first, "/nodes", ANSWER)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|l| {
                    l.len() == total
                        && l.iter().all(|n| {
                            n.pointer("/Status/State").and_then(Value::as_str) == Some("ready")
                        })
                })
        })?;
        self.learn_ids()
    }

    /// An existing cluster, one control socket per node. Every node must run
    /// with `--enable-chaos`.
    pub fn attach(hosts: &[String], run_dir: &Path) -> Result<Cluster> {
        let mut nodes = Vec::new();
        for host in hosts {
            let socket = api::socket_path(host);
            let info = api::get(&socket, "/info", ANSWER)
                .with_context(|| format!("ask {host} for /info"))?;
            if info["ChaosEnabled"] != json!(true) {
                bail!("{host} runs without --enable-chaos: restart it with --enable-chaos to let the harness inject faults");
            }
            let name = info["Name"].as_str().unwrap_or(host).to_string();
            // A pid that is not a live process other than init would make
            // signals hit the wrong thing (0 and -1 mean groups of processes).
            let pid = info["Pid"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 1 && crate::observe::alive(*p))
                .ok_or_else(|| anyhow!("{host} reports no usable Pid in /info (is it a shoal daemon on this machine?)"))?;
            let pid = Some(pid);
            let launch = pid.and_then(|p| recorded_launch(p, &run_dir.join(format!("{name}.log"))));
            nodes.push(Node {
                info: NodeInfo {
                    manager: info.pointer("/Swarm/ControlAvailable") == Some(&json!(true)),
                    name,
                    node_id: String::new(),
                    raft_id: 0,
                    addr: info
                        .pointer("/Swarm/NodeAddr")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                },
                socket,
                data_dir: None,
                mounted: false,
                liveness: Liveness::Up,
                netns: None,
                launch,
                pid,
                child: None,
            });
        }
        let mut c = Cluster {
            nodes,
            sock_dir: None,
            underlay: None,
        };
        c.learn_ids()?;
        Ok(c)
    }

    fn learn_ids(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            let info = api::get(&n.socket, "/info", ANSWER)
                .with_context(|| format!("/info of {}", n.info.name))?;
            n.info.node_id = info["ID"].as_str().unwrap_or("").to_string();
            n.info.raft_id = info
                .pointer("/Swarm/RaftStatus/ID")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        Ok(())
    }

    pub fn owned(&self) -> bool {
        self.sock_dir.is_some()
    }

    pub fn infos(&self) -> Vec<NodeInfo> {
        self.nodes.iter().map(|n| n.info.clone()).collect()
    }

    pub fn by_name(&mut self, name: &str) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.info.name == name)
            .ok_or_else(|| anyhow!("no node named {name}"))
    }

    /// Sockets of managers that are up, in order.
    pub fn live_managers(&self) -> Vec<(String, PathBuf)> {
        self.nodes
            .iter()
            .filter(|n| n.info.manager && n.liveness == Liveness::Up)
            .map(|n| (n.info.name.clone(), n.socket.clone()))
            .collect()
    }
}

/// Reads how a running daemon was started, so it can be started again.
fn recorded_launch(pid: i32, log: &Path) -> Option<Launch> {
    let split = |b: Vec<u8>| -> Vec<String> {
        // NUL-terminated strings: only the last terminator goes, so empty
        // arguments survive.
        b.strip_suffix(&[0])
            .unwrap_or(&b)
            .split(|c| *c == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let argv = split(std::fs::read(format!("/proc/{pid}/cmdline")).ok()?);
    let env = split(std::fs::read(format!("/proc/{pid}/environ")).ok()?)
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (!argv.is_empty()).then(|| Launch {
        argv,
        cwd,
        env,
        log: log.to_path_buf(),
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.owned() {
            for n in &mut self.nodes {
                if n.liveness != Liveness::Down {
                    let _ = n.signal(Signal::SIGCONT);
                    let _ = n.signal(Signal::SIGKILL);
                    n.reap(Duration::from_secs(5));
                }
                // A killed daemon leaves its tasks' namespaces and its bridge:
                // the same binary, on the same data dir, removes them.
                if let Some((prog, args)) = n.clean_sandbox().split_first() {
                    let _ = std::process::Command::new(prog)
                        .args(args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
                if let Some(d) = &n.data_dir {
                    crate::teardown::forget_sandbox(d);
                }
            }
            // The daemons are gone: their namespaces can go.
            self.underlay = None;
            for n in &self.nodes {
                if let (true, Some(d)) = (n.mounted, &n.data_dir) {
                    // Lazily: a task's mount below it or a late file handle must not keep it.
                    if let Err(e) = nix::mount::umount2(d, nix::mount::MntFlags::MNT_DETACH) {
                        eprintln!("shoal-chaos: could not unmount {}: {e}", d.display());
                    }
                    crate::teardown::forget_mount(d);
                }
            }
            if let Some(d) = &self.sock_dir {
                let _ = std::fs::remove_dir_all(d);
            }
        } else {
            for n in &mut self.nodes {
                if n.liveness == Liveness::Paused {
                    let _ = n.resume();
                }
            }
        }
    }
}

/// A tmpfs of `bytes` on `dir`, for one daemon's data: a fault can fill it.
fn mount_tmpfs(dir: &Path, bytes: u64) -> Result<()> {
    let opts = format!("size={bytes},mode=0700");
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| {
        anyhow!(
            "mount -t tmpfs -o {opts} on {}: {e} (this needs root)",
            dir.display()
        )
    })
}

/// What `fill` left on a node's filesystem, to take back.
pub const FILLER: &str = "chaos-fill";

/// Fills the filesystem of `dir` with one file until a write fails for want
/// of space; the bytes written.
pub fn fill(dir: &Path) -> Result<u64> {
    use std::io::Write;
    let path = dir.join(FILLER);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let mut written = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if chunk.len() <= 4096 {
                    break;
                }
                let half = chunk.len() / 2;
                chunk.truncate(half);
            }
            Err(e) => return Err(anyhow!("fill {}: {e}", path.display())),
        }
    }
    Ok(written)
}

/// Takes back what `fill` wrote.
pub fn unfill(dir: &Path) -> Result<()> {
    let path = dir.join(FILLER);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("remove {}: {e}", path.display())),
    }
}
