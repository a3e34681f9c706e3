//! Test harness: real `shoal daemon` processes in temporary directories,
//! killed (with every task they started) when the test ends, pass or fail.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_node::transport::tls::TlsIdentity;
use shoal_node::transport::{Inbound, InboundError, PeerId, Transport, TransportConfig};
use std::sync::Arc;

pub fn shoal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shoal"))
}

/// The workload program, built by the same `cargo test --workspace` run.
pub fn echo_bin() -> PathBuf {
    let p = shoal_bin().with_file_name("shoal-echo");
    assert!(
        p.exists(),
        "{} is missing: run the tests with --workspace",
        p.display()
    );
    p
}

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub host: String,
    args: Vec<String>,
    /// The cluster (QUIC) address.
    pub listen: String,
    /// Extra environment, and the umask the daemon starts under.
    env: Vec<(String, String)>,
    umask: Option<u32>,
    /// The network namespace the daemon runs in (`ip netns exec`), if not
    /// the test's own.
    pub netns: Option<String>,
}

fn free_udp_port(ip: &str) -> u16 {
    let s = std::net::UdpSocket::bind(format!("{ip}:0")).expect("bind a free port");
    s.local_addr().expect("addr").port()
}

impl Daemon {
    /// A daemon on 127.0.0.1 with a free cluster port.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_on("127.0.0.1", "node-1", args)
    }

    /// A daemon on 127.0.0.1 started under `umask` (if given) with `env` added.
    pub fn start_with(umask: Option<u32>, env: &[(&str, &str)]) -> Daemon {
        Self::build("127.0.0.1", "node-1", &[], umask, env)
    }

    /// A daemon whose cluster endpoint listens on `ip` (127.0.0.x) at a free port.
    pub fn start_on(ip: &str, hostname: &str, args: &[&str]) -> Daemon {
        Self::build(ip, hostname, args, None, &[])
    }

    fn build(
        ip: &str,
        hostname: &str,
        args: &[&str],
        umask: Option<u32>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("shoal-e2e")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("shoal.sock");
        let listen = format!("{ip}:{}", free_udp_port(ip));
        let mut all: Vec<String> = vec![
            "--hostname".into(),
            hostname.into(),
            "--listen-addr".into(),
            listen.clone(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            child: None,
            host: format!("unix://{}", socket.display()),
            socket,
            dir,
            args: all,
            listen,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            umask,
            netns: None,
        };
        d.spawn();
        d
    }

    /// A daemon run with `ip netns exec ns`, its cluster endpoint on
    /// `ip:2377` in that namespace (the control socket is a file: the CLI
    /// talks to it from the test's namespace).
    pub fn start_in_netns(ns: &str, ip: &str, hostname: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("shoal-e2e")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("shoal.sock");
        let listen = format!("{ip}:2377");
        let mut all: Vec<String> = vec![
            "--hostname".into(),
            hostname.into(),
            "--listen-addr".into(),
            listen.clone(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            child: None,
            host: format!("unix://{}", socket.display()),
            socket,
            dir,
            args: all,
            listen,
            env: Vec::new(),
            umask: None,
            netns: Some(ns.to_string()),
        };
        d.spawn();
        d
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("daemon log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(shoal_bin());
                c
            }
            None => Command::new(shoal_bin()),
        };
        if let Some(mask) = self.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("-H")
            .arg(&self.host)
            .arg("daemon")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start shoal daemon");
        self.child = Some(child);
        // A loaded CI machine has taken more than 20 s to bring a daemon up.
        wait_for("the daemon to answer", LONG, || {
            self.api("GET", "/_ping", None)
                .is_some_and(|(code, _)| code == 200)
        });
    }

    /// kill -9 the daemon (its tasks die with it) and start it again on the same data.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// kill -9 the daemon and start it again on the same data with `flags`
    /// in place of those it was started with (beyond its hostname and
    /// listen address): the node restarted on another build, say.
    pub fn restart_with(&mut self, flags: &[&str]) {
        self.kill9();
        self.args.truncate(4);
        self.args.extend(flags.iter().map(|s| s.to_string()));
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to the daemon, then waits for it to exit (a hang is
    /// nextest's to catch); its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the daemon runs");
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        child.wait().expect("wait for the daemon")
    }

    pub fn shoal(&self, args: &[&str]) -> Output {
        Command::new(shoal_bin())
            .args(args)
            .env("SHOAL_HOST", &self.host)
            .stdin(Stdio::null())
            .output()
            .expect("run shoal")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?} failed: {}{}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            !out.status.success(),
            "shoal {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `service create -d --driver process` of the workload program with
    /// `extra` flags and `workload` arguments; returns the service id.
    pub fn create_echo(
        &self,
        name: &str,
        replicas: &str,
        extra: &[&str],
        workload: &[&str],
    ) -> String {
        let echo = echo_bin();
        let mut args = vec![
            "service",
            "create",
            "-d",
            "--name",
            name,
            "--replicas",
            replicas,
            "--driver",
            "process",
        ];
        args.extend_from_slice(extra);
        args.push(echo.to_str().expect("path"));
        args.extend_from_slice(workload);
        self.ok(&args).trim().to_string()
    }

    /// `--format json` output, one object a line.
    pub fn rows(&self, args: &[&str]) -> Vec<Value> {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        self.ok(&a)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json row"))
            .collect()
    }

    /// A raw control-API request: (status, parsed body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Option<(u16, Value)> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let code = resp.split(' ').nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        Some((
            code,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        ))
    }

    pub fn tasks(&self, service: &str) -> Vec<Value> {
        let (code, v) = self
            .api("GET", &format!("/tasks?service={service}"), None)
            .expect("tasks");
        assert_eq!(code, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        // A killed daemon leaves its tasks' namespaces and its bridge.
        match &self.netns {
            Some(ns) => {
                let _ = Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(shoal_bin())
                    .arg("daemon")
                    .arg("--data-dir")
                    .arg(self.data_dir())
                    .arg("--clean-sandbox")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            None => shoal_node::sandbox::clean(&self.data_dir()),
        }
        unmount_below(self.dir.path());
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
            eprintln!("--- daemon log ({}) ---\n{log}", self.dir.path().display());
        }
    }
}

/// Detaches every mount below `dir`, deepest first: a daemon killed with its
/// tasks leaves their secrets' tmpfs mounted under its data dir.
fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        if let Ok(c) = std::ffi::CString::new(point) {
            // SAFETY: a valid C string; MNT_DETACH only detaches.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

pub mod images;
pub mod netns;

/// Polls `cond` until it holds; panics after `limit` (a hang, not a timing target).
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of live processes whose command line contains `token`.
pub fn pids_with(token: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
            .unwrap_or_default();
        let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
            .unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(token) {
            pids.push(pid);
        }
    }
    pids
}

/// A token unique to this test run, passed to the workload so its processes can be found.
pub fn token(name: &str) -> String {
    format!("e2e-{name}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Running / total tasks that want to run, from `service ps --format json`.
pub fn running(d: &Daemon, service: &str) -> usize {
    d.rows(&["service", "ps", service])
        .iter()
        .filter(|r| {
            r["DesiredState"] == "Running"
                && r["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
        .count()
}

/// For a failure message: what each process with `token` is (service, slot, node).
pub fn describe(token: &str) -> String {
    pids_with(token)
        .into_iter()
        .map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let vars: Vec<String> = env
                .split(|b| *b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|v| v.starts_with("SHOAL_"))
                .collect();
            format!("{pid}: {}", vars.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub const LONG: Duration = Duration::from_secs(60);

pub fn join(d: &Daemon, token: &str, manager: &Daemon) -> String {
    d.ok(&["swarm", "join", "--token", token, &manager.listen])
}

/// A first manager on 127.0.0.2, then `managers - 1` more and `workers` workers.
pub fn cluster(managers: usize, workers: usize, args: &[&str]) -> Vec<Daemon> {
    let first = Daemon::start_on("127.0.0.2", "manager-1", args);
    first.ok(&["swarm", "init"]);
    let mtoken = first
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let wtoken = first
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let mut nodes = vec![first];
    for i in 1..managers {
        let d = Daemon::start_on(
            &format!("127.0.0.{}", 2 + i),
            &format!("manager-{}", i + 1),
            args,
        );
        assert!(join(&d, &mtoken, &nodes[0]).contains("joined a swarm as a manager"));
        nodes.push(d);
    }
    for i in 0..workers {
        let d = Daemon::start_on(
            &format!("127.0.0.{}", 2 + managers + i),
            &format!("worker-{}", i + 1),
            args,
        );
        assert!(join(&d, &wtoken, &nodes[0]).contains("joined a swarm as a worker"));
        nodes.push(d);
    }
    let total = managers + workers;
    wait_for("every node ready", LONG, || {
        let rows = nodes[0].rows(&["node", "ls"]);
        rows.len() == total && rows.iter().all(|r| r["Status"] == "Ready")
    });
    nodes
}

/// A peer that speaks the cluster protocol with a certificate taken from a
/// node's data directory (as a thief of that directory would).
pub struct Peer {
    pub rt: tokio::runtime::Runtime,
    pub transport: Arc<Transport>,
}

/// An inbound side that ignores everything (a peer that only asks).
pub struct Deaf;
impl Inbound for Deaf {
    fn message(&self, _: &PeerId, _: Vec<u8>) -> Result<(), InboundError> {
        Ok(())
    }
    fn request(
        &self,
        _: Option<&PeerId>,
        _: Vec<u8>,
    ) -> shoal_node::protocol::BoxFuture<Result<Vec<u8>, InboundError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The certificate, key and CA files of a node's data directory, as they are now.
pub fn stolen_identity(data: &Path) -> TlsIdentity {
    let read = |p: &str| std::fs::read_to_string(data.join(p)).expect(p);
    TlsIdentity {
        ca_pem: read("ca/ca.crt"),
        chain_pem: read("certs/node.crt"),
        key_pem: read("certs/node.key"),
    }
}

impl Peer {
    pub fn new(id: &TlsIdentity) -> Peer {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let transport = rt.block_on(async {
            Transport::bind(
                "127.0.0.9:0".parse().expect("addr"),
                id,
                TransportConfig::default(),
                Arc::new(Deaf),
            )
            .expect("bind")
        });
        Peer { rt, transport }
    }

    pub fn ask(
        &self,
        to: &Daemon,
        req: &shoal_node::cluster::wire::Request,
    ) -> Result<shoal_node::cluster::wire::Response, String> {
        let bytes = shoal_node::protocol::codec::encode(req).expect("encode");
        let target = to.listen.parse().expect("addr");
        self.rt.block_on(async {
            let answer = self
                .transport
                .request(target, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            shoal_node::protocol::codec::decode(&answer).map_err(|e| e.to_string())
        })
    }
}

/// The index in `nodes` of the leader, as `node ls` on `nodes[asked]` names it
/// (hostnames `manager-N`, as `cluster` gives them).
pub fn leader_of(nodes: &[Daemon], asked: usize) -> Option<usize> {
    let rows = nodes[asked].rows(&["node", "ls"]);
    let host = rows
        .iter()
        .find(|r| r["ManagerStatus"] == "Leader")?
        .get("Hostname")?
        .as_str()?
        .to_string();
    host.strip_prefix("manager-")?
        .parse::<usize>()
        .ok()
        .map(|n| n - 1)
}

/// The last index of the daemon's Raft log.
pub fn raft_last_index(d: &Daemon) -> u64 {
    let (_, info) = d.api("GET", "/info", None).expect("info");
    info["Swarm"]["RaftStatus"]["LastIndex"]
        .as_u64()
        .expect("raft status")
}

/// A manager certificate for `node` of `cluster`, signed by `ca`.
pub fn minted_identity(ca: &shoal_node::ca::RootCa, cluster: &str, node: &str) -> TlsIdentity {
    let cert = ca
        .issue(
            cluster,
            node,
            shoal_node::protocol::model::NodeRole::Manager,
            0,
            Duration::from_secs(3600),
        )
        .expect("cert");
    TlsIdentity {
        ca_pem: ca.cert_pem.clone(),
        chain_pem: cert.cert_pem,
        key_pem: cert.key_pem,
    }
}

/// A TCP port nothing on 127.0.0.1 listens on now.
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// One HTTP request to a shoal-echo at `addr`: the task id its answer names.
pub fn echo_task_at(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace()
        .find(|w| w.starts_with("task="))
        .map(|w| w.trim_start_matches("task=").to_string())
}
