//! `sim`: a large cluster in one process (the in-process harness of
//! `shoal_actors::harness`: `--managers` managers, each with its real
//! store, Raft actor and, while it leads, leader actors, on an in-memory
//! network; a real agent per node, a fake driver, a paused clock), the
//! service(s) of `--tasks` replicas created, driven until every task runs.
//! Then, unless `--no-late-manager`, one more manager joins and catches up
//! from a snapshot sent in chunks; and a process of its own loads the
//! leader's state as a restarted manager would, to tell what a manager
//! needs to hold it (`--no-state-rss` skips that).
//!
//! ```text
//! cargo run --release -p shoal-benches --bin sim -- --nodes 1000 --tasks 100000 [--managers 3] [--seed S] [--services K]
//! ```
//!
//! The last line is `all running: <seconds> s`, in wall-clock seconds from
//! the first `service create` to the last task RUNNING (what an operator
//! waits; scripts read that line). The lines before it give the same on the
//! harness's simulated clock, the scheduler's and dispatcher's throughput,
//! the Raft entries and bytes appended, the late manager's catch-up, the
//! elections (one leader per term is checked), and the RSS figures.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use shoal_actors::harness::{Harness, NetConfig, Setup};
use shoal_actors::store::StoreEvent;
use shoal_core::limits::MAX_REPLICAS;
use shoal_core::model::{Task, TaskState};
use shoal_core::state::{Change, ClusterState};

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Simulate a cluster in one process and time service create to all RUNNING"
)]
struct Args {
    /// Nodes in the cluster, the managers included (they run tasks too);
    /// the late manager is one more.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Managers (Raft voters) from the start.
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Delay of every message between managers, in microseconds.
    #[arg(long, default_value_t = 100)]
    net_delay_us: u64,
    /// Of every million messages between managers, how many are lost.
    #[arg(long, default_value_t = 0)]
    loss_per_million: u32,
    /// Skip the manager that joins once every task runs.
    #[arg(long)]
    no_late_manager: bool,
    /// Skip measuring a manager's RSS with the final state in a process of its own.
    #[arg(long)]
    no_state_rss: bool,
    /// Internal: load the state snapshot in this file into a store, as a
    /// restarted manager does, and print the RSS (the parent runs this).
    #[arg(long, hide = true)]
    load_state: Option<std::path::PathBuf>,
    /// Internal: open the store `--load-state` left, as a restarted
    /// manager does, and print the RSS.
    #[arg(long, hide = true)]
    open_store: Option<std::path::PathBuf>,
    /// Tasks in all, split evenly over the services.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Seed of the harness's ids and random numbers: a seed replays a run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replicated services the tasks are split over.
    #[arg(long, default_value_t = 1)]
    services: u64,
    /// Give up after this long on the harness's clock (seconds).
    #[arg(long, default_value_t = 600)]
    limit: u64,
}

/// How often (on the harness's clock) the driver looks at the state.
const SAMPLE: Duration = Duration::from_millis(100);

/// One field of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// When the run reached its milestones, on both clocks, as the store's
/// events tell it (the harness's clock stands still while there is work,
/// so the whole run may fit between two looks of the main loop).
struct Progress {
    want: usize,
    placed: HashSet<String>,
    running: HashSet<String>,
    placed_at: Option<(Instant, tokio::time::Instant)>,
    running_at: Option<(Instant, tokio::time::Instant)>,
}

impl Progress {
    fn see(&mut self, t: &Task) {
        let state = t.status.state;
        if self.placed_at.is_none() && state >= TaskState::Assigned && !state.is_terminal() {
            self.placed.insert(t.id.clone());
        }
        if state == TaskState::Running && t.desired_state == TaskState::Running {
            self.running.insert(t.id.clone());
        }
    }

    fn on_event(&mut self, state: &ClusterState, ev: Option<&StoreEvent>) {
        match ev {
            Some(ev) => {
                for c in ev.changes.iter() {
                    if let Change::Task { id, .. } = c {
                        if let Some(t) = state.tasks.get(id) {
                            self.see(t);
                        }
                    }
                }
            }
            None => state.tasks.values().for_each(|t| self.see(t)),
        }
        let now = (Instant::now(), tokio::time::Instant::now());
        if self.placed_at.is_none() && self.placed.len() >= self.want {
            self.placed_at = Some(now);
        }
        if self.running_at.is_none() && self.running.len() >= self.want {
            self.running_at = Some(now);
        }
    }
}

/// CPU seconds this process has used, user and system (all its threads:
/// the runtime's one and sled's). On a loaded machine the wall clock is
/// longer than this by the time other processes had the cores.
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here,
    // in clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? as f64 / 100.0, ticks(12)? as f64 / 100.0))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn check(args: &Args) -> Result<()> {
    if args.managers == 0 || args.managers > 7 {
        bail!("--managers must be between 1 and 7");
    }
    if args.nodes < args.managers {
        bail!(
            "--nodes ({}) must be at least --managers ({})",
            args.nodes,
            args.managers
        );
    }
    if args.net_delay_us > 1_000_000 {
        bail!("--net-delay-us must be at most 1000000 (a second)");
    }
    if args.loss_per_million > 100_000 {
        bail!("--loss-per-million must be at most 100000 (one in ten)");
    }
    if args.services == 0 {
        bail!("--services must be at least 1");
    }
    if args.tasks < args.services {
        bail!(
            "--tasks ({}) must be at least --services ({}): every service gets a task",
            args.tasks,
            args.services
        );
    }
    if args.tasks.div_ceil(args.services) > MAX_REPLICAS {
        bail!(
            "{} tasks over {} service(s) is more than {MAX_REPLICAS} replicas per service; add --services",
            args.tasks,
            args.services
        );
    }
    if args.limit == 0 {
        bail!("--limit must be at least 1 second");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match (&args.load_state, &args.open_store) {
        (Some(path), _) => load_state(path),
        (None, Some(path)) => open_store(path),
        (None, None) => run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    check(&args)?;
    let rss_start = proc_status_kib("VmRSS").unwrap_or(0);

    let setup = Instant::now();
    let mut h = Harness::build(Setup {
        managers: args.managers,
        net: NetConfig {
            delay: Duration::from_micros(args.net_delay_us),
            loss_per_million: args.loss_per_million,
        },
        ..Setup::new(args.seed, args.nodes - args.managers)
    })
    .context("building the cluster")?;
    let setup_wall = setup.elapsed();
    let setup_sim = h.elapsed();
    let rss_cluster = proc_status_kib("VmRSS").unwrap_or(0);
    let (entries_before, bytes_before) = h.raft_appended();
    println!(
        "cluster: {} nodes ({} managers) ready in {:.2} s wall, {:.2} s simulated; RSS {:.1} MiB ({:.1} KiB per node)",
        args.nodes,
        args.managers,
        setup_wall.as_secs_f64(),
        setup_sim.as_secs_f64(),
        mib(rss_cluster),
        rss_cluster.saturating_sub(rss_start) as f64 / args.nodes as f64,
    );

    let want = args.tasks as usize;
    let progress = Arc::new(Mutex::new(Progress {
        want,
        placed: HashSet::new(),
        running: HashSet::new(),
        placed_at: None,
        running_at: None,
    }));
    let observer = progress.clone();
    h.on_event(move |state, ev| {
        if let Ok(mut p) = observer.lock() {
            p.on_event(state, ev);
        }
    });
    let cpu_before = cpu_seconds();
    let wall = Instant::now();
    let sim = h.clock();
    let base = args.tasks / args.services;
    let extra = args.tasks % args.services;
    for i in 0..args.services {
        let replicas = base + u64::from(i < extra);
        h.create_service(Harness::spec(&format!("svc-{i}"), replicas, "run"))
            .with_context(|| format!("creating service svc-{i}"))?;
    }
    let limit = Duration::from_secs(args.limit);
    let mut last_report = Instant::now();
    loop {
        let counts = h.task_counts();
        let on_clock = h.clock() - sim;
        if counts.running >= want {
            break;
        }
        if on_clock > limit {
            bail!(
                "not all running within {} s of the harness's clock: {} of {want} running, {} placed, {} tasks in the state",
                args.limit,
                counts.running,
                counts.placed,
                counts.total
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {:>6.1} s wall, {:>6.1} s simulated: {} tasks, {} placed, {} running",
                wall.elapsed().as_secs_f64(),
                on_clock.as_secs_f64(),
                counts.total,
                counts.placed,
                counts.running
            );
        }
        h.advance(SAMPLE);
    }
    let (done_wall, done_sim) = (wall.elapsed(), h.clock() - sim);
    let since = |at: Option<(Instant, tokio::time::Instant)>| match at {
        Some((w, s)) => (w.duration_since(wall), s.duration_since(sim)),
        None => (done_wall, done_sim),
    };
    let (placed_wall, placed_sim, running_wall, running_sim) = {
        let p = progress
            .lock()
            .map_err(|_| anyhow::anyhow!("the progress observer panicked"))?;
        let (pw, ps) = since(p.placed_at);
        let (rw, rs) = since(p.running_at);
        (pw, ps, rw, rs)
    };
    let cpu_after = cpu_seconds();
    let (entries, bytes) = h.raft_appended();
    let (entries, bytes) = (entries - entries_before, bytes - bytes_before);
    let peak = proc_status_kib("VmHWM").unwrap_or(0);
    let late = if args.no_late_manager {
        None
    } else {
        Some(late_manager(&mut h, limit)?)
    };
    let leaders = h.leaders_by_term();
    let twice: Vec<_> = leaders.iter().filter(|(_, l)| l.len() > 1).collect();
    if !twice.is_empty() {
        bail!("terms with two leaders: {twice:?}");
    }
    let state_rss = if args.no_state_rss {
        None
    } else {
        Some(state_rss(&h)?)
    };
    let per_sec = |d: Duration| args.tasks as f64 / d.as_secs_f64().max(1e-9);

    println!(
        "nodes {}, tasks {}, services {}, seed {}",
        args.nodes, args.tasks, args.services, args.seed
    );
    println!(
        "scheduler: all {} tasks assigned in {:.2} s wall ({:.0} tasks/s), {:.2} s simulated",
        args.tasks,
        placed_wall.as_secs_f64(),
        per_sec(placed_wall),
        placed_sim.as_secs_f64()
    );
    println!(
        "dispatcher: all {} tasks reported RUNNING in {:.2} s wall ({:.0} tasks/s), {:.2} s simulated",
        args.tasks,
        running_wall.as_secs_f64(),
        per_sec(running_wall),
        running_sim.as_secs_f64()
    );
    println!(
        "raft: {entries} entries appended, {bytes} bytes ({:.1} MiB, {:.0} bytes per task)",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / args.tasks as f64
    );
    if let Some(late) = &late {
        println!("{late}");
    }
    let (delivered, lost) = h.net_counts();
    println!(
        "elections: {} term(s), one leader each ({:?}); {delivered} messages between managers, {lost} lost",
        leaders.len(),
        leaders
            .iter()
            .map(|(t, l)| (*t, l.iter().next().copied().unwrap_or(0)))
            .collect::<Vec<_>>()
    );
    println!(
        "peak RSS: {:.1} MiB (VmHWM, all {} managers' copies of the state included; {:.1} KiB per simulated node with its tasks)",
        mib(peak),
        args.managers,
        peak.saturating_sub(rss_start) as f64 / args.nodes as f64
    );
    if let Some(rss) = &state_rss {
        println!("{rss}");
    }
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu_before, cpu_after) {
        println!(
            "cpu: {:.2} s user, {:.2} s system, from the first create to all running (all threads)",
            u1 - u0,
            s1 - s0
        );
    }
    println!(
        "simulated clock: {:.2} s from the first create to all running (it moves only while the actors wait on timers)",
        running_sim.as_secs_f64()
    );
    println!(
        "wall clock: {:.2} s from the first create to all running",
        running_wall.as_secs_f64()
    );
    println!("all running: {:.2} s", running_wall.as_secs_f64());
    // Tearing down 1,000 nodes' actors is not part of the measurement.
    std::mem::forget(h);
    Ok(())
}

/// Has a manager join once every task runs: the others first drop their
/// logs behind a snapshot, so it can only catch up from one.
fn late_manager(h: &mut Harness, limit: Duration) -> Result<String> {
    let wall = Instant::now();
    let sim = h.clock();
    let index = h.compact();
    let late = h.add_manager().context("adding the late manager")?;
    h.caught_up(late, limit)
        .context("the late manager catching up")?;
    let (done_wall, done_sim) = (wall.elapsed(), h.clock() - sim);
    let raft_id = late as u64 + 1;
    let sent: Vec<_> = h
        .snapshots()
        .into_iter()
        .filter(|c| c.to == raft_id)
        .collect();
    let Some(last) = sent.last() else {
        bail!("the late manager caught up without a snapshot (log compacted at {index})");
    };
    let tasks = h.manager_state(late, |s, _| s.tasks.len());
    let want = h.state(|s| s.tasks.len());
    if tasks != want {
        bail!("the late manager holds {tasks} tasks, the leader {want}");
    }
    Ok(format!(
        "late manager: caught up in {:.2} s wall, {:.2} s simulated, from {} snapshot(s); the last {:.1} MiB in {} chunks; it holds all {tasks} tasks",
        done_wall.as_secs_f64(),
        done_sim.as_secs_f64(),
        sent.len(),
        last.bytes as f64 / (1024.0 * 1024.0),
        last.chunks
    ))
}

/// A manager's RSS with the final state, measured in processes of their
/// own (this one holds every manager's copy and every agent): one restores
/// the state into a store, as a manager sent a snapshot does; the next
/// opens that store, as a restarted manager does.
fn state_rss(h: &Harness) -> Result<String> {
    let data = h.snapshot_data();
    let dir = tempfile::tempdir().context("a directory for the state")?;
    let path = dir.path().join("state");
    std::fs::write(&path, &data).context("writing the state")?;
    let restored = child("--load-state", &path)?;
    let reopened = child("--open-store", &store_of(&path))?;
    Ok(format!(
        "{restored} (snapshot {:.1} MiB)\n{reopened}",
        data.len() as f64 / (1024.0 * 1024.0)
    ))
}

/// Where `--load-state FILE` leaves its store.
fn store_of(path: &std::path::Path) -> std::path::PathBuf {
    path.with_extension("db")
}

/// Runs this program with `flag path`; its output.
fn child(flag: &str, path: &std::path::Path) -> Result<String> {
    let exe = std::env::current_exe().context("this program's path")?;
    let out = std::process::Command::new(exe)
        .arg(flag)
        .arg(path)
        .output()
        .with_context(|| format!("running sim {flag}"))?;
    if !out.status.success() {
        bail!(
            "sim {flag} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The child side of `state_rss`: the state decoded alone, then a store
/// opened and the state restored into it, as a manager sent a snapshot
/// does (sled opened as the node opens it).
fn load_state(path: &std::path::Path) -> Result<()> {
    let kib = || proc_status_kib("VmRSS").unwrap_or(0);
    let empty = kib();
    let data = std::fs::read(path).context("reading the state")?;
    let with_bytes = kib();
    let decoded =
        shoal_actors::store::StateMachine::decode_snapshot(&data).context("decoding the state")?;
    let state_only = kib().saturating_sub(with_bytes);
    let (tasks, services) = (decoded.tasks.len(), decoded.services.len());
    drop(decoded);
    let db = shoal_node::runtime::store_config(&store_of(path))
        .open()
        .context("opening the store")?;
    let sm = shoal_actors::store::StateMachine::open(&db).context("opening the state")?;
    sm.restore(&data).context("restoring the state")?;
    drop(data);
    db.flush().context("flushing the store")?;
    let rss = kib();
    println!(
        "manager state: {tasks} tasks of {services} service(s): {:.1} MiB of memory decoded; a manager's store holding it after a snapshot (state and sled): RSS {:.1} MiB over an empty process ({:.1} MiB in all, peak {:.1} MiB while restoring)",
        mib(state_only),
        mib(rss.saturating_sub(empty)),
        mib(rss),
        mib(proc_status_kib("VmHWM").unwrap_or(0))
    );
    Ok(())
}

/// The second child of `state_rss`: the store opened again, as a manager
/// that restarts reads it.
fn open_store(path: &std::path::Path) -> Result<()> {
    let kib = || proc_status_kib("VmRSS").unwrap_or(0);
    let empty = kib();
    let db = shoal_node::runtime::store_config(path)
        .open()
        .context("opening the store")?;
    let sm = shoal_actors::store::StateMachine::open(&db).context("opening the state")?;
    let tasks = sm.read().0.tasks.len();
    let rss = kib();
    println!(
        "manager restarted: its store opened, {tasks} tasks loaded: RSS {:.1} MiB over an empty process ({:.1} MiB in all, peak {:.1} MiB)",
        mib(rss.saturating_sub(empty)),
        mib(rss),
        mib(proc_status_kib("VmHWM").unwrap_or(0))
    );
    Ok(())
}
