//! The process driver: a task's IMAGE is an executable run with its ARGs (no
//! shell), confined as a container is (see `confine`): its own namespaces,
//! root, capabilities, seccomp filter and cgroup, killed with the daemon.

use super::{process_mounts, process_options};
use crate::templates::NodeInfo;
use crate::volumes::Volumes;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use shoal_actors::driver::{BoxFuture, Driver, DriverError, Exit, Launch, Lifecycle};
use shoal_core::model::{DriverInfo, Health, HealthConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

use crate::confine::cgroup::TaskCgroup;
use crate::confine::keeper::{self, Keeper};
use crate::confine::launcher::{Ended, Launcher};
use crate::confine::{Abilities, ConfineError, Confiner};
use crate::driver::user;
use crate::logs;
use crate::sandbox::overlay::NetAttach;
use crate::sandbox::Sandbox;

struct Proc {
    /// The keeper: the daemon's child (see `confine::keeper`).
    pid: u32,
    /// The init (pid 1 of the task's pid namespace) and the program (pid
    /// 2), in the host's pid namespace; 0 if it was gone before it was read.
    init: u32,
    program: u32,
    cgroup: TaskCgroup,
    exit: watch::Receiver<Option<Exit>>,
    /// The health check's verdicts, if the task has one.
    health: Option<watch::Receiver<Health>>,
    /// `--stop-signal`, sent to the program alone (`None`: SIGTERM to the
    /// task's process group, which its keeper and init ignore).
    stop_signal: Option<Signal>,
}

pub struct ProcessDriver {
    log_dir: PathBuf,
    /// The node's volumes, which its tasks mount.
    volumes: Arc<Volumes>,
    /// The node as service templates name it.
    node: Arc<NodeInfo>,
    procs: Arc<Mutex<HashMap<String, Proc>>>,
    /// Tasks whose process is being started (so a second start waits for
    /// nothing and starts nothing).
    starting: Arc<Mutex<HashSet<String>>>,
    /// The threads that start tasks (see `Starter`), started with the first task.
    starter: OnceLock<Starter>,
    /// Where tasks get their own network namespace; `None` on a node that
    /// cannot make them (only `--network host` tasks run there).
    sandbox: Option<Arc<Sandbox>>,
    /// What confines tasks, or what this node cannot do (then no task starts).
    confiner: Result<Arc<Confiner>, Abilities>,
    /// The overlay networks tasks join (their interfaces come from it).
    overlay: Arc<crate::overlay::Overlay>,
}

type StartJob = (
    Launch,
    Vec<NetAttach>,
    oneshot::Sender<Result<Lifecycle, DriverError>>,
);

/// What a starter thread needs to start tasks.
#[derive(Clone)]
struct StartCtx {
    log_dir: PathBuf,
    volumes: Arc<Volumes>,
    node: Arc<NodeInfo>,
    sandbox: Option<Arc<Sandbox>>,
    confiner: Arc<Confiner>,
    /// Forks the tasks' keepers (started by the first start).
    launcher: Arc<Launcher>,
}

/// Tasks are started (sandbox, cgroup, root plan, keeper) on a few threads
/// of their own that live as long as the daemon. Not on the runtime's
/// threads: a start is blocking work (netlink, cgroup files, waiting for
/// the keeper's report), and starting 2,000 tasks must not take those
/// threads from heartbeats. Not on tokio's blocking pool either: the
/// parent-death signal fires when the *thread* that spawned a child exits,
/// and idle pool threads exit after ten seconds.
struct Starter(std::sync::mpsc::Sender<StartJob>);

/// Starts that may run at once.
const STARTER_THREADS: usize = 4;

/// How far below the daemon the starter threads run (nice). Starting
/// thousands of tasks is kernel work (namespaces, links, mounts); four
/// threads of it at the daemon's priority took the CPU from its runtime
/// for seconds on a 2-core host (heartbeats, Raft and the control API
/// starved; issue 30). Below it, task starts use what the control plane
/// leaves; so do the keeper and init while they build the task. The
/// program is set back to the daemon's value before its exec
/// (`child::Launch::nice`).
const STARTER_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority by `STARTER_NICE`, if this daemon
/// may raise it back in the tasks it starts (root: `CAP_SYS_NICE`). Returns
/// the value to set back, `None` when it was left alone.
fn lower_starter_priority() -> Option<libc::c_int> {
    // SAFETY: geteuid, and get/setpriority on the calling thread (0).
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        #[allow(clippy::useless_conversion)]
        let who = libc::PRIO_PROCESS.try_into().unwrap_or_default();
        *libc::__errno_location() = 0;
        let base = libc::getpriority(who, 0);
        if base == -1 && *libc::__errno_location() != 0 {
            return None;
        }
        (libc::setpriority(who, 0, base + STARTER_NICE) == 0).then_some(base)
    }
}

impl Starter {
    /// The starter records what it started in `procs` itself before it
    /// answers, and only then takes the task out of `starting`: a start
    /// whose caller went away (its task actor was killed) still leaves a
    /// tracked process, and no second start can slip in between.
    fn start(
        ctx: StartCtx,
        procs: Arc<Mutex<HashMap<String, Proc>>>,
        starting: Arc<Mutex<HashSet<String>>>,
    ) -> Result<Starter, DriverError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| DriverError::failed_by("no runtime to start tasks on", e))?;
        let (tx, rx) = std::sync::mpsc::channel::<StartJob>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..STARTER_THREADS {
            let (rx, runtime, ctx) = (rx.clone(), runtime.clone(), ctx.clone());
            let (procs, starting) = (procs.clone(), starting.clone());
            std::thread::Builder::new()
                .name(format!("shoal-starter-{i}"))
                .spawn(move || {
                    // The output pumps and exit waiters are spawned on the runtime.
                    let _guard = runtime.enter();
                    let nice = lower_starter_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((launch, nets, reply)) = job else {
                            return;
                        };
                        let id = &launch.task.id;
                        if reply.is_closed() {
                            // Its caller went away while the job queued (the
                            // task was stopped, or the node shuts down): a
                            // start nobody waits for is not made. Thousands
                            // queued at a shutdown went on forking, and
                            // sandboxing, for minutes (issue 30).
                            starting.lock().remove(id);
                            continue;
                        }
                        let started = spawn(&ctx, &launch, &nets, nice).map(|p| {
                            let l = ProcessDriver::lifecycle(&p);
                            procs.lock().insert(id.clone(), p);
                            l
                        });
                        starting.lock().remove(id);
                        let _ = reply.send(started);
                    }
                })
                .map_err(|e| DriverError::failed_by("cannot start a starter thread", e))?;
        }
        Ok(Starter(tx))
    }
}

impl ProcessDriver {
    /// The sandbox its tasks run in, if this node has one.
    pub fn sandbox(&self) -> Option<Arc<Sandbox>> {
        self.sandbox.clone()
    }

    pub fn new(
        log_dir: PathBuf,
        volumes: Arc<Volumes>,
        node: Arc<NodeInfo>,
        sandbox: Option<Arc<Sandbox>>,
        confiner: Result<Arc<Confiner>, Abilities>,
        overlay: Arc<crate::overlay::Overlay>,
    ) -> Arc<Self> {
        Arc::new(ProcessDriver {
            log_dir,
            volumes,
            node,
            procs: Arc::default(),
            starting: Arc::default(),
            starter: OnceLock::new(),
            sandbox,
            confiner,
            overlay,
        })
    }

    /// What this node can and cannot do to confine a task, as the swarm
    /// learns it (the scheduler's filters read it).
    pub fn confinement(&self) -> shoal_core::model::placement::Confinement {
        match &self.confiner {
            Ok(c) => shoal_core::model::placement::Confinement {
                can: c.abilities().can.clone(),
                cannot: Vec::new(),
                missing_limits: c
                    .hierarchy()
                    .missing(&crate::confine::cgroup::Limits {
                        memory_bytes: 1,
                        nano_cpus: 1,
                        pids: 1,
                    })
                    .iter()
                    .filter_map(|m| m.split_whitespace().next())
                    .map(str::to_string)
                    .collect(),
            },
            Err(a) => shoal_core::model::placement::Confinement {
                can: a.can.clone(),
                cannot: a.cannot.clone(),
                missing_limits: Vec::new(),
            },
        }
    }

    /// Removes every task cgroup of this daemon (it is leaving; its tasks
    /// die with it). Blocking.
    pub fn close(&self) {
        if let Ok(c) = &self.confiner {
            c.close();
        }
    }

    /// Keeps `path` (the control socket) out of every task's view.
    pub fn hide(&self, path: &std::path::Path) {
        if let Ok(c) = &self.confiner {
            c.hide(path);
        }
    }

    fn lifecycle(p: &Proc) -> Lifecycle {
        match *p.exit.borrow() {
            Some(e) => Lifecycle::Exited(e),
            None => Lifecycle::Running {
                pid: Some(if p.program > 0 { p.program } else { p.pid }),
            },
        }
    }
}

/// A task on overlay networks gets a generated one; any other task a copy
/// of the node's (its `/run` is its own, so a link into the host's `/run`
/// would lead nowhere), as docker gives every container its own.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Generated for every task, as docker writes one for every container.
const HOSTS: &str = "/etc/hosts";

/// A file the daemon writes into every task's root.
fn generated(name: &str, path: &str, data: Vec<u8>) -> shoal_core::model::secret::TaskFile {
    shoal_core::model::secret::TaskFile {
        kind: shoal_core::model::secret::Kind::Config,
        name: name.into(),
        path: path.into(),
        uid: 0,
        gid: 0,
        mode: 0o644,
        data: Arc::new(data),
    }
}

/// The host pid of `pid`'s first child (from `/proc`), or 0.
fn first_child(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Starts a task's process (its keeper: called on a starter thread, inside
/// the runtime, which the output pumps and the exit waiter are spawned on).
fn spawn(
    ctx: &StartCtx,
    launch: &Launch,
    nets: &[NetAttach],
    nice: Option<libc::c_int>,
) -> Result<Proc, DriverError> {
    let expanded = crate::templates::expand_task(&launch.task, &launch.node_id, &ctx.node)
        .map_err(DriverError::Rejected)?;
    let launch = &Launch {
        task: expanded,
        ..launch.clone()
    };
    let task = &launch.task;
    let log = logs::log_path(&ctx.log_dir, &task.id)
        .ok_or_else(|| DriverError::Rejected(format!("invalid task id {:?}", task.id)))?;
    let spec = &task.spec;
    let credentials = if spec.user.is_empty() {
        None
    } else {
        Some(user::resolve(&spec.user).map_err(|e| DriverError::Rejected(e.to_string()))?)
    };
    let options = &spec.options;
    let mut task_files = launch.files.clone();
    if !task_files.iter().any(|f| f.path == RESOLV_CONF) {
        let embedded = nets.first().map(|n| IpAddr::V4(n.gateway));
        let host = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
        let data = process_options::resolv_conf(embedded, &options.dns, &host);
        task_files.push(generated("resolv.conf", RESOLV_CONF, data));
    }
    let (netns, sandbox_addr) = sandboxed(ctx.sandbox.as_deref(), task, nets)?;
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    if !task_files.iter().any(|f| f.path == HOSTS) {
        let addr = nets
            .first()
            .map(|n| n.addr)
            .or(sandbox_addr)
            .map(IpAddr::V4);
        let data = process_options::hosts_file(&Confiner::hostname(task), addr, options);
        task_files.push(generated("hosts", HOSTS, data));
    }
    let extra_groups = process_options::groups(&options.groups).map_err(DriverError::Rejected)?;
    let ids = process_options::with_groups(
        credentials
            .as_ref()
            .map(|c| (c.uid, c.gid, c.groups.clone())),
        &extra_groups,
    );
    let mounts = process_mounts::resolve(&ctx.volumes, &ctx.confiner, task, &task.spec.mounts)
        .map_err(DriverError::Rejected)?;
    let (mut confined, cgroup) = ctx
        .confiner
        .prepare(task, &task_files, &mounts, netns_fd, ids.clone())
        .map_err(|e| match e {
            // The node's cgroups, not the task, are at fault.
            ConfineError::Cgroup(..) => DriverError::node_fault_by("cannot confine the task", e),
            ConfineError::Io(..) => DriverError::failed_by("cannot confine the task", e),
            _ => DriverError::rejected_by("cannot confine the task", e),
        })?;
    confined.nice = nice;
    let (program, args) = process_options::program(spec);
    let home = credentials.as_ref().and_then(|c| c.home.as_deref());
    let order = match keeper::Order::new(
        keeper::Job::Launch(confined),
        &program,
        &args,
        &task_env(launch, home),
    ) {
        Ok(o) => o,
        Err(e) => {
            cgroup.remove();
            return Err(DriverError::rejected_by("cannot start", e));
        }
    };
    // `--tty`: stdout and stderr are one terminal, read through its other side.
    let terminal = if options.tty {
        match process_options::terminal() {
            Ok(pair) => Some(pair),
            Err(e) => {
                cgroup.remove();
                return Err(DriverError::failed_by("cannot open the task's terminal", e));
            }
        }
    } else {
        None
    };
    // The task's output: a pipe for each stream, or its terminal for both.
    let streams = match &terminal {
        Some((_, theirs)) => theirs
            .try_clone()
            .and_then(|t| Ok((None, t.try_clone()?, t))),
        None => output_pipes(),
    };
    let (readers, out, err) = match streams {
        Ok(s) => s,
        Err(e) => {
            cgroup.remove();
            return Err(DriverError::failed_by(
                "cannot make the task's output pipes",
                e,
            ));
        }
    };
    let launched = ctx.launcher.launch(&order, out.as_fd(), err.as_fd());
    // The daemon's copies of the keeper's ends (the terminal's side too) go.
    drop((out, err));
    let terminal = terminal.map(|(ours, _)| ours);
    drop(order);
    let (keeper, report) = match launched {
        Ok(l) => l,
        Err(e) => {
            cgroup.remove();
            return Err(DriverError::failed_by("cannot start the task's keeper", e));
        }
    };
    if let Err(e) = report.verdict() {
        // The keeper ends by itself once it has reported; its cgroup can
        // only go once it has.
        keeper.kill();
        tokio::spawn(async move {
            let _ = keeper.wait().await;
            let _ = tokio::task::spawn_blocking(move || cgroup.remove()).await;
        });
        let what = match e.kind() {
            std::io::ErrorKind::NotFound => "executable file not found",
            std::io::ErrorKind::PermissionDenied => "permission denied",
            _ => "cannot start",
        };
        return Err(DriverError::rejected_by(format!("{what}: {program}"), e));
    }
    let pid = keeper.pid;
    // The exec happened: the keeper, the init and the program all exist
    // (unless the program already ended).
    let init = first_child(pid);
    let program = if init > 0 { first_child(init) } else { 0 };
    let (tx, rx) = watch::channel(None);
    let (lines_tx, lines_rx) = mpsc::unbounded_channel::<String>();
    if let Some((stdout, stderr)) = readers {
        tokio::spawn(pump(stdout, "stdout", lines_tx.clone()));
        tokio::spawn(pump(stderr, "stderr", lines_tx.clone()));
    }
    if let Some(ours) = terminal {
        let tty = tokio::fs::File::from_std(std::fs::File::from(ours));
        tokio::spawn(pump(tty, "stdout", lines_tx));
    }
    tokio::spawn(write_log(log, lines_rx));
    let oom_cgroup = cgroup.clone();
    tokio::spawn(async move {
        let ended = keeper.wait().await;
        // Did the kernel kill something of it at its memory limit?
        let oom = tokio::task::spawn_blocking(move || oom_cgroup.oom_kills() > 0)
            .await
            .unwrap_or(false);
        let exit = match ended {
            Ok(Ended::Code(137) | Ended::Signal(9)) if oom => Exit::OomKilled,
            Ok(Ended::Code(c)) => Exit::Code(c),
            Ok(Ended::Signal(s)) => Exit::Signal(s),
            Err(_) => Exit::Code(-1),
        };
        let _ = tx.send(Some(exit));
    });
    let health_ids = ids;
    let health = task
        .spec
        .healthcheck
        .clone()
        .filter(|h| !h.is_disabled())
        .map(|check| {
            let (health_tx, health_rx) = watch::channel(Health::Starting);
            // The check runs inside the task, as docker's runs in the container.
            let inside = Inside {
                confiner: ctx.confiner.clone(),
                program,
                cgroup: cgroup.clone(),
                ids: health_ids.clone(),
            };
            tokio::spawn(health_loop(
                check,
                launch.clone(),
                Arc::new(inside),
                rx.clone(),
                health_tx,
            ));
            health_rx
        });
    let stop_signal = match launch.task.spec.isolation.stop_signal.as_str() {
        "" => None,
        s => super::support::stop_signal(s).ok(),
    };
    Ok(Proc {
        pid,
        init,
        program,
        cgroup,
        exit: rx,
        health,
        stop_signal,
    })
}

type Readers = (pipe::Receiver, pipe::Receiver);

/// A pipe for the task's stdout and one for its stderr: the daemon's read
/// ends (registered with the runtime) and the keeper's write ends.
fn output_pipes() -> std::io::Result<(Option<Readers>, OwnedFd, OwnedFd)> {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let readers = (
        pipe::Receiver::from_owned_fd(out_r)?,
        pipe::Receiver::from_owned_fd(err_r)?,
    );
    Ok((Some(readers), out_w, err_w))
}

/// What a health check needs to run inside its task.
struct Inside {
    confiner: Arc<Confiner>,
    program: u32,
    cgroup: TaskCgroup,
    ids: Option<(u32, u32, Vec<u32>)>,
}

/// The environment a task runs with (its health check too): the daemon's
/// `PATH`, the service's `--env`, shoal's own variables, and `HOME` of the
/// task's user. A later name replaces an earlier one.
fn task_env(launch: &Launch, home: Option<&str>) -> Vec<(String, String)> {
    let task = &launch.task;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set("PATH", &std::env::var("PATH").unwrap_or_default());
    for (k, v) in task.spec.env.iter().filter_map(|kv| kv.split_once('=')) {
        set(k, v);
    }
    set("SHOAL_TASK_ID", &task.id);
    set("SHOAL_TASK_SLOT", &task.slot.to_string());
    set("SHOAL_SERVICE_NAME", &task.service_name);
    set("SHOAL_NODE_ID", &launch.node_id);
    if let Some(home) = home {
        set("HOME", home);
    }
    env
}

/// Runs the task's health check every interval, on a task of its own, until
/// the task's process ends; as docker: failures during the start period do
/// not count, `retries` failures in a row make the task unhealthy, and a
/// success makes it healthy again.
async fn health_loop(
    check: HealthConfig,
    launch: Launch,
    inside: Arc<Inside>,
    mut exit: watch::Receiver<Option<Exit>>,
    health: watch::Sender<Health>,
) {
    let started = tokio::time::Instant::now();
    let start_period = Duration::from_nanos(check.start_period_ns);
    let mut failures = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(check.interval()) => {}
            _ = exit.wait_for(|e| e.is_some()) => return,
        }
        let passed = probe(&check, &launch, inside.clone()).await;
        let verdict = if passed {
            failures = 0;
            Some(Health::Healthy)
        } else if started.elapsed() < start_period {
            None
        } else {
            failures += 1;
            (failures >= check.retries()).then_some(Health::Unhealthy)
        };
        if let Some(v) = verdict {
            health.send_if_modified(|h| std::mem::replace(h, v) != v);
        }
    }
}

/// One run of the health check: exit 0 within the timeout passes. The start
/// and the wait happen on the blocking pool, not on the runtime's threads
/// (the thread is busy with this probe for as long as the probe lives, so
/// the parent-death signal cannot fire early).
async fn probe(check: &HealthConfig, launch: &Launch, inside: Arc<Inside>) -> bool {
    let (check, launch) = (check.clone(), launch.clone());
    tokio::task::spawn_blocking(move || probe_blocking(&check, &launch, &inside))
        .await
        .unwrap_or(false)
}

/// Runs the check in the task's namespaces, cgroup, user, capabilities and
/// seccomp filter (`confine::child::join`, in a keeper of its own).
fn probe_blocking(check: &HealthConfig, launch: &Launch, inside: &Inside) -> bool {
    if inside.program == 0 {
        return false;
    }
    let (program, args): (&str, Vec<String>) = match check.test.first().map(String::as_str) {
        Some("CMD") if check.test.len() > 1 => (&check.test[1], check.test[2..].to_vec()),
        Some("CMD-SHELL") if check.test.len() == 2 => {
            ("/bin/sh", vec!["-c".into(), check.test[1].clone()])
        }
        _ => return true,
    };
    let joined = inside.confiner.join(
        &launch.task,
        inside.program,
        &inside.cgroup,
        inside.ids.clone(),
    );
    // The task is gone (or its namespaces are): the check fails. The
    // namespaces' descriptors stay open in `_namespaces` until the keeper
    // has its copies.
    let Ok((join, _namespaces)) = joined else {
        return false;
    };
    let Ok(order) = keeper::Order::new(
        keeper::Job::Join(join),
        program,
        &args,
        &task_env(launch, None),
    ) else {
        return false;
    };
    let Ok((mut child, keeper)) = Keeper::start() else {
        return false;
    };
    if keeper.hand_over(&order).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    }
    let deadline = std::time::Instant::now() + check.timeout();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Too slow (or not waitable): the whole check goes (its
            // process dies with the keeper).
            _ => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// What `pump` reads at once: a buffer inside its future (two a task), not
/// tokio's `BufReader`, which zero-fills 8 KiB each up front whether the
/// task ever writes a byte or not (most never do; issue 30's memory).
const PUMP_CHUNK: usize = 1024;

/// Sends the task's output on, a line at a time (a line that is not UTF-8
/// is sent with U+FFFD in its place; the last one even without a newline).
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    stream: &'static str,
    tx: mpsc::UnboundedSender<String>,
) {
    use tokio::io::AsyncReadExt;
    let send = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        // A terminal ends its lines with CR LF.
        tx.send(logs::format_line(stream, text.trim_end_matches('\r')))
            .is_ok()
    };
    let mut chunk = [0u8; PUMP_CHUNK];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            if !send(&line) {
                return;
            }
            line.clear();
            if line.capacity() > 4 * PUMP_CHUNK {
                line = Vec::new();
            }
        }
        line.extend_from_slice(rest);
    }
    if !line.is_empty() {
        send(&line);
    }
}

/// Appends the task's lines to its log, opened at the first line: most
/// tasks never write one, and a node of 5,000 would hold 5,000 more
/// descriptors (issue 30; `service logs` of a task without a file is empty).
async fn write_log(path: PathBuf, mut rx: mpsc::UnboundedReceiver<String>) {
    let Some(first) = rx.recv().await else {
        return;
    };
    let mut file = match logs::open_for_append(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open task log");
            return;
        }
    };
    let mut line = Some(first);
    while let Some(l) = line {
        if file.write_all(l.as_bytes()).await.is_err() {
            return;
        }
        line = rx.recv().await;
    }
}

impl ProcessDriver {
    /// Stops every task this driver runs (the node leaves the swarm).
    pub async fn stop_all(&self, grace: Duration) {
        let ids: Vec<String> = self.procs.lock().keys().cloned().collect();
        let stops: Vec<_> = ids.iter().map(|id| self.stop(id, grace)).collect();
        futures::future::join_all(stops).await;
        self.procs.lock().clear();
    }
}

impl Driver for ProcessDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: "process".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn start(&self, launch: Launch) -> BoxFuture<Result<Lifecycle, DriverError>> {
        let id = launch.task.id.clone();
        if let Some(p) = self.procs.lock().get(&id) {
            let l = Self::lifecycle(p);
            return Box::pin(async move { Ok(l) });
        }
        if !self.starting.lock().insert(id.clone()) {
            return Box::pin(async move {
                Err(DriverError::Failed(format!(
                    "task {id} is already starting"
                )))
            });
        }
        let confiner = match &self.confiner {
            Ok(c) => c.clone(),
            Err(abilities) => {
                self.starting.lock().remove(&id);
                let why = abilities.cannot.join("; ");
                return Box::pin(async move {
                    Err(DriverError::Rejected(format!(
                        "this node cannot confine process tasks: {why}"
                    )))
                });
            }
        };
        let starter = match self.starter.get() {
            Some(f) => Ok(f.0.clone()),
            None => Starter::start(
                StartCtx {
                    log_dir: self.log_dir.clone(),
                    volumes: self.volumes.clone(),
                    node: self.node.clone(),
                    sandbox: self.sandbox.clone(),
                    confiner,
                    launcher: Arc::default(),
                },
                self.procs.clone(),
                self.starting.clone(),
            )
            .map(|f| self.starter.get_or_init(|| f).0.clone()),
        };
        let starter = match starter {
            Ok(f) => f,
            Err(e) => {
                self.starting.lock().remove(&id);
                return Box::pin(async move { Err(e) });
            }
        };
        let (overlay, starting) = (self.overlay.clone(), self.starting.clone());
        let host = on_host_network(&launch.task);
        Box::pin(async move {
            // Dropped before the starter has the job (its caller went
            // away), the start is over: `starting` must not keep the task.
            let mut guard = StartGuard {
                starting: starting.clone(),
                id: Some(id.clone()),
            };
            // The task's networks first: its program never starts without them.
            let nets = if host {
                Ok(Vec::new())
            } else {
                overlay.attachments(&launch.task).await
            };
            let nets = match nets {
                Ok(n) => n,
                Err(why) => {
                    starting.lock().remove(&id);
                    return Err(DriverError::Failed(why));
                }
            };
            let (reply, answer) = oneshot::channel();
            if starter.send((launch, nets, reply)).is_err() {
                starting.lock().remove(&id);
                return Err(DriverError::Failed("the starter thread is gone".into()));
            }
            // The starter takes the task out of `starting` once it is in `procs`.
            guard.id = None;
            answer
                .await
                .unwrap_or_else(|_| Err(DriverError::Failed("the starter thread is gone".into())))
        })
    }

    fn inspect(&self, task_id: &str) -> Option<Lifecycle> {
        self.procs.lock().get(task_id).map(Self::lifecycle)
    }

    fn starting(&self, task_id: &str) -> bool {
        self.starting.lock().contains(task_id)
    }

    fn wait(&self, task_id: &str) -> BoxFuture<Option<Exit>> {
        let rx = self.procs.lock().get(task_id).map(|p| p.exit.clone());
        Box::pin(async move {
            let mut rx = rx?;
            let exit = rx.wait_for(|e| e.is_some()).await.ok()?;
            *exit
        })
    }

    fn stop(&self, task_id: &str, grace: Duration) -> BoxFuture<()> {
        let proc = self.procs.lock().get(task_id).map(|p| {
            let signal = p.stop_signal.map(|s| (s, p.program));
            (p.pid, p.init, p.cgroup.clone(), p.exit.clone(), signal)
        });
        Box::pin(async move {
            let Some((pid, init, cgroup, mut exit, signal)) = proc else {
                return;
            };
            if exit.borrow().is_some() {
                return;
            }
            // SIGTERM to the task's process group (its keeper and init
            // ignore it); then SIGKILL to its init, which ends every
            // process of its pid namespace, and to its whole cgroup.
            let group = Pid::from_raw(pid as i32);
            match signal {
                // As dockerd sends a stop signal: to the program only (the
                // keeper and init would not ignore any signal).
                Some((sig, program)) if program > 0 => {
                    let _ = nix::sys::signal::kill(Pid::from_raw(program as i32), sig);
                }
                _ => {
                    let _ = killpg(group, Signal::SIGTERM);
                }
            }
            let ended = tokio::time::timeout(grace, exit.wait_for(|e| e.is_some()))
                .await
                .is_ok_and(|r| r.is_ok());
            if !ended {
                if init > 0 {
                    let _ = nix::sys::signal::kill(Pid::from_raw(init as i32), Signal::SIGKILL);
                }
                let _ = killpg(group, Signal::SIGKILL);
                let _ = tokio::task::spawn_blocking(move || cgroup.kill_all()).await;
                let _ = exit.wait_for(|e| e.is_some()).await;
            }
        })
    }

    fn remove(&self, task_id: &str) {
        let proc = self.procs.lock().remove(task_id);
        if let Some(p) = proc {
            // Whatever of the task is left dies with its cgroup (off the
            // runtime's threads: it waits for the processes to go).
            tokio::task::spawn_blocking(move || p.cgroup.remove());
        }
        let (volumes, id) = (self.volumes.clone(), task_id.to_string());
        tokio::task::spawn_blocking(move || volumes.remove_anonymous(&id));
        if let Some(sb) = &self.sandbox {
            // Its place is free at once; netlink runs off the runtime's threads.
            sb.retire(task_id);
            let (sb, id) = (sb.clone(), task_id.to_string());
            tokio::task::spawn_blocking(move || sb.release(&id));
        }
    }

    fn address(&self, task_id: &str) -> Option<std::net::IpAddr> {
        let running = self
            .procs
            .lock()
            .get(task_id)
            .is_some_and(|p| p.exit.borrow().is_none());
        if !running {
            return None;
        }
        match self.sandbox.as_ref().and_then(|sb| sb.addr_of(task_id)) {
            Some(a) => Some(a.into()),
            None => Some(std::net::Ipv4Addr::LOCALHOST.into()),
        }
    }

    fn health(&self, task_id: &str) -> Option<watch::Receiver<Health>> {
        self.procs
            .lock()
            .get(task_id)
            .and_then(|p| p.health.clone())
    }
}

/// Takes a task out of `starting` when dropped, unless disarmed.
struct StartGuard {
    starting: Arc<Mutex<HashSet<String>>>,
    id: Option<String>,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.starting.lock().remove(&id);
        }
    }
}

/// Whether the task runs on the node's own network.
pub fn on_host_network(task: &shoal_core::model::Task) -> bool {
    task.spec.host_network()
}

/// The task's namespace, made now (on the starter's thread) and open for the
/// child to enter; `None` for a task on the node's network.
fn sandboxed(
    sandbox: Option<&Sandbox>,
    task: &shoal_core::model::Task,
    nets: &[NetAttach],
) -> Result<(Option<std::fs::File>, Option<std::net::Ipv4Addr>), DriverError> {
    if on_host_network(task) {
        return Ok((None, None));
    }
    let Some(sb) = sandbox else {
        return Err(DriverError::Rejected(
            "this node cannot give tasks a network of their own (see node inspect); use --network host".into(),
        ));
    };
    let net = sb
        .prepare(&task.id, nets)
        .map_err(|e| DriverError::node_fault_by("cannot set up the task's network", e))?;
    let ns = std::fs::File::open(&net.netns)
        .map_err(|e| DriverError::failed_by("cannot open the task's network namespace", e))?;
    Ok((Some(ns), Some(net.addr)))
}
