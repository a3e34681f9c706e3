//! What the harness must take down if it is interrupted (SIGINT, SIGTERM,
//! SIGHUP) rather than reaching its end: the daemons it started, their
//! sandboxes, the network namespaces of `[cluster] netns` and the tmpfs
//! mounts of `[cluster] disk`. The cluster registers each as it makes it;
//! on a signal, [`install`]'s thread kills the daemons, waits for them,
//! cleans their sandboxes, removes the rest and exits with 128 + the signal.
//! A normal end (pass or fail) takes them down through `Drop` instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Owned {
    /// Live daemons: pid -> how to clean its sandbox afterwards
    /// (`[ip netns exec NS] shoal daemon --data-dir D --clean-sandbox`).
    daemons: BTreeMap<i32, Vec<String>>,
    /// Every node's sandbox clean-up, by data dir (run for killed ones too).
    sandboxes: BTreeMap<PathBuf, Vec<String>>,
    netns: Vec<String>,
    mounts: Vec<PathBuf>,
}

static OWNED: Mutex<Option<Owned>> = Mutex::new(None);

fn with(f: impl FnOnce(&mut Owned)) {
    if let Ok(mut g) = OWNED.lock() {
        f(g.get_or_insert_with(Owned::default));
    }
}

pub fn add_daemon(pid: i32, data_dir: PathBuf, clean: Vec<String>) {
    with(|o| {
        o.daemons.insert(pid, clean.clone());
        o.sandboxes.insert(data_dir, clean);
    });
}

pub fn forget_daemon(pid: i32) {
    with(|o| {
        o.daemons.remove(&pid);
    });
}

pub fn forget_sandbox(data_dir: &std::path::Path) {
    with(|o| {
        o.sandboxes.remove(data_dir);
    });
}

pub fn add_netns(name: &str) {
    with(|o| o.netns.push(name.to_string()));
}

pub fn forget_netns(name: &str) {
    with(|o| o.netns.retain(|n| n != name));
}

pub fn add_mount(dir: PathBuf) {
    with(|o| o.mounts.push(dir));
}

pub fn forget_mount(dir: &std::path::Path) {
    with(|o| o.mounts.retain(|d| d != dir));
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread
/// started after it) and starts the thread that waits for them. Call first
/// thing in `main`.
pub fn install() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("teardown".into())
        .spawn(move || {
            let Ok(sig) = set.wait() else { return };
            eprintln!("shoal-chaos: {sig}: taking down what this run made");
            take_down();
            std::process::exit(128 + sig as i32);
        });
    if spawned.is_err() {
        let _ = set.thread_unblock();
    }
}

fn take_down() {
    let owned = OWNED.lock().ok().and_then(|mut g| g.take());
    let Some(o) = owned else { return };
    for pid in o.daemons.keys() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let start = Instant::now();
    while o.daemons.keys().any(|p| crate::observe::alive(*p))
        && start.elapsed() < Duration::from_secs(10)
    {
        // Our children: reap them, or they stay zombies (alive() says no).
        let _ = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(20));
    }
    for clean in o.sandboxes.values() {
        if let Some((prog, args)) = clean.split_first() {
            let _ = std::process::Command::new(prog)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    for d in &o.mounts {
        let _ = nix::mount::umount2(d, nix::mount::MntFlags::MNT_DETACH);
    }
    for ns in &o.netns {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
