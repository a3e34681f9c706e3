//! `sim`: a large cluster in one process (the in-process harness of
//! `shoal_actors::harness`: one manager with its real store, Raft actor and
//! leader actors, a real agent per node, a fake driver, a paused clock), the
//! service(s) of `--tasks` replicas created, driven until every task runs.
//!
//! ```text
//! cargo run --release -p shoal-benches --bin sim -- --nodes 1000 --tasks 100000 [--seed S] [--services K]
//! ```
//!
//! The last line is `all running: <seconds> s`, in wall-clock seconds from
//! the first `service create` to the last task RUNNING (what an operator
//! waits; scripts read that line). The lines before it give the same on the
//! harness's simulated clock, the scheduler's and dispatcher's throughput,
//! the Raft entries and bytes appended, and the peak RSS.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use shoal_actors::harness::Harness;
use shoal_actors::limits::MAX_REPLICAS;
use shoal_actors::model::{Task, TaskState};
use shoal_actors::state::{Change, ClusterState};
use shoal_actors::store::StoreEvent;

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    about = "Simulate a cluster in one process and time service create to all RUNNING"
)]
struct Args {
    /// Nodes in the cluster, the manager included (it runs tasks too).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
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
    if args.nodes == 0 {
        bail!("--nodes must be at least 1 (the manager)");
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
    match run(Args::parse()) {
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
    let mut h = Harness::new(args.seed, args.nodes - 1).context("building the cluster")?;
    let setup_wall = setup.elapsed();
    let setup_sim = h.elapsed();
    let rss_cluster = proc_status_kib("VmRSS").unwrap_or(0);
    let (entries_before, bytes_before) = h.raft_appended();
    println!(
        "cluster: {} nodes ready in {:.2} s wall, {:.2} s simulated; RSS {:.1} MiB ({:.1} KiB per node)",
        args.nodes,
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
    println!(
        "peak RSS: {:.1} MiB (VmHWM; {:.1} KiB per simulated node with its tasks)",
        mib(peak),
        peak.saturating_sub(rss_start) as f64 / args.nodes as f64
    );
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
