//! Process tasks confined as containers are (docs/confinement.md), against
//! real daemons: the probes of issue 26 are each refused, the seed's
//! registry example runs, a task's forked processes go with it, and its
//! cgroup enforces its limits. Needs root (skipped, saying so, without).

mod common;

use common::{pids_with, wait_for, Daemon, LONG};

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A one-node swarm.
fn node() -> Daemon {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d
}

/// `service create -d --driver process --name NAME FLAGS.. /bin/sh -c SCRIPT`.
fn create_sh(d: &Daemon, name: &str, flags: &[&str], script: &str) {
    let mut args = vec![
        "service", "create", "-d", "--driver", "process", "--name", name,
    ];
    args.extend_from_slice(flags);
    args.extend(["/bin/sh", "-c", script]);
    d.ok(&args);
}

/// The service's log once it holds `marker`.
fn logs_with(d: &Daemon, service: &str, marker: &str) -> String {
    let mut out = String::new();
    wait_for(&format!("{service} to log {marker}"), LONG, || {
        out = d.ok(&["service", "logs", "--raw", service]);
        out.contains(marker)
    });
    out
}

/// The value after `key` on a line of the log (`key value`).
fn value_of(log: &str, key: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default()
}

#[test]
fn a_process_task_has_dockers_defaults_and_cannot_reach_the_node_or_other_tasks() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = node();
    let data = d.data_dir();
    let socket = d.socket.clone();
    // Another task, with a secret, on the same node.
    let value = common::token("other-secret");
    let secret_file = d.dir.path().join("secret-value");
    std::fs::write(&secret_file, &value).expect("secret file");
    d.ok(&[
        "secret",
        "create",
        "victim_pw",
        secret_file.to_str().expect("path"),
    ]);
    create_sh(
        &d,
        "victim",
        &["--secret", "victim_pw"],
        "echo UP; exec sleep 100000",
    );
    logs_with(&d, "victim", "UP");
    let daemon_pid = d.pid().expect("daemon pid");
    let script = format!(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status\n\
         echo processes: $(cat /proc/[0-9]*/comm | sort -u | tr '\\n' ' ')\n\
         echo data: $(ls -A {data} 2>&1 | wc -l) $(cat {data}/state.db/conf 2>&1 | head -c 40)\n\
         {shoal} -H unix://{socket} info >/dev/null 2>&1; echo socket: $?\n\
         nsenter -t {daemon_pid} -m -n true 2>/dev/null; echo nsenter-daemon: $?\n\
         nsenter -t 1 -m true 2>/dev/null; echo nsenter-init: $?\n\
         echo secret: $(cat /run/secrets/victim_pw /proc/[0-9]*/root/run/secrets/victim_pw 2>/dev/null)\n\
         echo mount: $(mount -t tmpfs none /mnt 2>&1 >/dev/null; echo $?)\n\
         echo hostname: $(hostname)\n\
         echo nice: $(cut -d' ' -f19 /proc/self/stat)\n\
         echo ldpath: $LD_LIBRARY_PATH\n\
         echo sigign: $(grep SigIgn /proc/self/status)\n\
         echo DONE\n\
         exec sleep 100000",
        data = data.display(),
        socket = socket.display(),
        shoal = common::shoal_bin().display(),
    );
    create_sh(
        &d,
        "probe",
        &[
            "--hostname",
            "probe-host",
            "--env",
            "LD_LIBRARY_PATH=/probe/evil",
        ],
        &script,
    );
    let log = logs_with(&d, "probe", "DONE");
    // Each task's keeper is a program of its own (forked by the launcher,
    // the daemon's binary started afresh), not a copy of the daemon, and
    // root on the host with none of the task's environment: the
    // service's LD_LIBRARY_PATH reaches the program only.
    let daemon_cmdline = std::fs::read(format!("/proc/{daemon_pid}/cmdline")).expect("cmdline");
    let keepers = children_of(daemon_pid);
    let mut seen = 0;
    for k in &keepers {
        let cmdline = std::fs::read(format!("/proc/{k}/cmdline")).unwrap_or_default();
        assert_ne!(
            cmdline, daemon_cmdline,
            "the daemon's child {k} is a copy of it"
        );
        if cmdline.split(|b| *b == 0).nth(1) == Some(b"task-keeper".as_slice()) {
            seen += 1;
            let environ = std::fs::read(format!("/proc/{k}/environ")).unwrap_or_default();
            assert!(environ.is_empty(), "keeper {k}'s environment: {environ:?}");
        }
    }
    assert!(seen >= 2, "no keeper for each task among {keepers:?}");
    assert_eq!(value_of(&log, "CapEff:"), "00000000a80425fb", "{log}");
    assert_eq!(value_of(&log, "NoNewPrivs:"), "1", "{log}");
    assert_eq!(value_of(&log, "Seccomp:"), "2", "{log}");
    // Started by a thread that runs below the daemon, at the daemon's priority.
    let daemon_stat = std::fs::read_to_string(format!("/proc/{daemon_pid}/stat")).expect("stat");
    let daemon_nice = daemon_stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(16))
        .expect("the daemon's nice");
    assert_eq!(value_of(&log, "nice:"), daemon_nice, "{log}");
    assert_eq!(value_of(&log, "ldpath:"), "/probe/evil", "{log}");
    // The signals the daemon was started with ignoring, and no more: not
    // SIGPIPE (Rust's runtime ignores it), not glibc's own 32 and 33
    // (its posix_spawn ignores them in the child: the launcher here, and
    // this test's daemon).
    let ignored = |status: &str| {
        value_of(status, "SigIgn:")
            .split_whitespace()
            .next()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .expect("SigIgn")
    };
    let daemon_status =
        std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).expect("status");
    assert_eq!(
        ignored(&log),
        ignored(&daemon_status) & !(1 << (libc::SIGPIPE - 1) | 1 << 31 | 1 << 32),
        "{log}"
    );
    // Only its own processes: its init, the shell and what the shell ran;
    // not the other task's sleep, not the daemon.
    let procs = value_of(&log, "processes:");
    assert!(
        !procs.contains("sleep") && !procs.contains("shoal "),
        "{procs}"
    );
    assert!(procs.split_whitespace().count() <= 6, "{procs}");
    assert!(value_of(&log, "data:").starts_with("0 "), "{log}");
    assert!(
        !log.contains(&value),
        "the other task's secret leaked: {log}"
    );
    assert_eq!(value_of(&log, "secret:"), "", "{log}");
    assert_ne!(value_of(&log, "socket:"), "0", "{log}");
    assert_ne!(value_of(&log, "nsenter-daemon:"), "0", "{log}");
    assert_ne!(value_of(&log, "nsenter-init:"), "0", "{log}");
    assert_ne!(value_of(&log, "mount:"), "0", "{log}");
    assert_eq!(value_of(&log, "hostname:"), "probe-host", "{log}");
    // The explicit ways out: capabilities added, seccomp off.
    create_sh(
        &d,
        "loose",
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--cap-drop",
            "NET_RAW",
            "--security-opt",
            "seccomp=unconfined",
        ],
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; echo DONE; exec sleep 100000",
    );
    let log = logs_with(&d, "loose", "DONE");
    // + CAP_SYS_ADMIN (bit 21), - CAP_NET_RAW (bit 13).
    assert_eq!(value_of(&log, "CapEff:"), "00000000a82405fb", "{log}");
    assert_eq!(value_of(&log, "Seccomp:"), "0", "{log}");
    // service update moves a capability from the add list to the drop list.
    d.ok(&[
        "service",
        "update",
        "-d",
        "--cap-drop",
        "CAP_SYS_ADMIN",
        "loose",
    ]);
    logs_with(&d, "loose", "00000000a80405fb");
}

#[test]
fn the_seeds_registry_config_example_runs_under_the_process_driver() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let target = std::path::Path::new("/etc/docker/registry/config.yml");
    let was_on_host = target.exists();
    let d = node();
    let value = format!("version: 0.1\n# {}\n", common::token("registry"));
    let file = d.dir.path().join("config.yml");
    std::fs::write(&file, &value).expect("config");
    d.ok(&[
        "config",
        "create",
        "registry-config",
        file.to_str().expect("path"),
    ]);
    create_sh(
        &d,
        "registry",
        &[
            "--config",
            "source=registry-config,target=/etc/docker/registry/config.yml",
            "--read-only",
        ],
        "cat /etc/docker/registry/config.yml; touch /etc/x 2>/dev/null || echo READ-ONLY; echo DONE; exec sleep 100000",
    );
    let log = logs_with(&d, "registry", "DONE");
    assert!(log.contains(value.trim_end()), "{log}");
    assert!(log.contains("READ-ONLY"), "{log}");
    assert_eq!(target.exists(), was_on_host, "the config reached the host");
}

#[test]
fn forked_processes_go_with_service_rm_and_with_a_killed_daemon() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut d = node();
    // A sleep of a unique length: every one of them can be found by it.
    let unique = common::token("t");
    let nanos = unique.rsplit('-').next().unwrap_or("1");
    let seconds = format!("9{}.{nanos}", std::process::id());
    let script = format!(
        "for i in 1 2 3; do (sleep {seconds}; true) & done; (setsid sleep {seconds} &); echo DONE; wait"
    );
    create_sh(&d, "tree", &[], &script);
    logs_with(&d, "tree", "DONE");
    wait_for("the four sleepers", LONG, || pids_with(&seconds).len() >= 4);
    d.ok(&["service", "rm", "tree"]);
    wait_for("every sleeper to go with service rm", LONG, || {
        pids_with(&seconds).is_empty()
    });
    create_sh(&d, "tree2", &[], &script);
    wait_for("the four sleepers again", LONG, || {
        pids_with(&seconds).len() >= 4
    });
    let task = d.ok(&["service", "ps", "-q", "--no-trunc", "tree2"]);
    let task = task.trim().to_string();
    assert!(!task_cgroups(&task).is_empty(), "no cgroup for task {task}");
    d.kill9();
    wait_for("every sleeper to go with the daemon", LONG, || {
        pids_with(&seconds).is_empty()
    });
    // The restarted daemon reaps what its killed self left; a daemon of
    // another test starting meanwhile may sweep it first. Either way the
    // groups go.
    d.kill9_and_restart();
    wait_for("the killed daemon's task cgroups to go", LONG, || {
        task_cgroups(&task).is_empty()
    });
}

#[test]
fn a_killed_launcher_leaves_its_tasks_running_and_is_started_again() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = node();
    create_sh(&d, "before", &[], "echo UP; exec sleep 100000");
    logs_with(&d, "before", "UP");
    let daemon = d.pid().expect("daemon pid");
    let launcher = |d: u32| {
        // Its keepers are forks of it: its name tells it apart.
        children_of(d).into_iter().find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|n| n.trim() == "shoal-launcher")
        })
    };
    let first = launcher(daemon).expect("a launcher among the daemon's children");
    // SAFETY: kill(2) of a process of this test's daemon.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    // The next task is started by a new launcher, without a failed try.
    create_sh(&d, "after", &[], "echo UP2; exec sleep 100000");
    logs_with(&d, "after", "UP2");
    let second = launcher(daemon).expect("a launcher again");
    assert_ne!(first, second);
    // The task the first one started runs on (its keeper is the
    // daemon's child), never restarted.
    for service in ["before", "after"] {
        let tasks = d.ok(&["service", "ps", "--format", "{{.CurrentState}}", service]);
        assert_eq!(tasks.lines().count(), 1, "{service}: {tasks}");
        assert!(tasks.starts_with("Running"), "{service}: {tasks}");
    }
}

/// The host pids of `pid`'s children (of every thread of it).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The cgroup directories of one task, in every hierarchy (v1 or v2).
fn task_cgroups(task: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut parents = vec![std::path::PathBuf::from("/sys/fs/cgroup/shoal")];
    parents.extend(roots.flatten().map(|e| e.path().join("shoal")));
    for parent in parents {
        for tag in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let dir = tag.path().join(task);
            if dir.is_dir() {
                found.push(dir);
            }
        }
    }
    found
}

#[test]
fn a_task_over_its_memory_limit_is_oom_killed_and_restarted() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = node();
    // tail keeps a line in memory until it ends: /dev/zero has no end of line.
    d.ok(&[
        "service",
        "create",
        "-d",
        "--driver",
        "process",
        "--name",
        "hog",
        "--limit-memory",
        "32m",
        "--restart-delay",
        "0s",
        "tail",
        "/dev/zero",
    ]);
    let mut failed = Vec::new();
    wait_for("two OOM-killed tasks", LONG, || {
        failed = d
            .rows(&["service", "ps", "--no-trunc", "hog"])
            .into_iter()
            .filter(|r| {
                r["Error"]
                    .as_str()
                    .is_some_and(|e| e.contains("task: non-zero exit (137): OOMKilled"))
            })
            .collect();
        failed.len() >= 2
    });
    let tasks = d.tasks("hog");
    let oom = tasks
        .iter()
        .find(|t| t["Status"]["Err"] == "task: non-zero exit (137): OOMKilled")
        .expect("an OOM-killed task");
    assert_eq!(oom["Status"]["ContainerStatus"]["ExitCode"], 137, "{oom}");
}

#[test]
fn a_fork_bomb_stops_at_its_pids_limit_and_the_node_keeps_answering() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = node();
    create_sh(
        &d,
        "bomb",
        &["--limit-pids", "10"],
        "echo DONE; b() { b | b & }; b; exec sleep 100000",
    );
    logs_with(&d, "bomb", "DONE");
    for _ in 0..20 {
        d.ok(&["node", "ls"]);
    }
    d.ok(&["service", "rm", "bomb"]);
    wait_for("the service to go", LONG, || {
        d.ok(&["service", "ls", "-q"]).trim().is_empty()
    });
}

#[test]
fn a_health_check_runs_inside_the_task_as_its_user() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = node();
    create_sh(
        &d,
        "checked",
        &[
            "--user",
            "nobody",
            "--health-cmd",
            "echo \"uid=$(id -u) pids=$(ls /proc | grep -c '^[0-9]') ns=$(readlink /proc/self/ns/pid)\" > /tmp/health",
            "--health-interval",
            "200ms",
        ],
        "echo task-ns=$(readlink /proc/self/ns/pid); until [ -s /tmp/health ]; do sleep 0.1; done; cat /tmp/health; echo DONE; exec sleep 100000",
    );
    let log = logs_with(&d, "checked", "DONE");
    let nobody = shoal_node::driver::user::resolve("nobody").expect("nobody");
    assert!(log.contains(&format!("uid={}", nobody.uid)), "{log}");
    let task_ns = value_of(&log, "task-ns=");
    assert!(log.contains(&format!("ns={task_ns}")), "{log}");
}

/// A daemon run as `nobody`, killed when dropped.
struct Unprivileged {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Unprivileged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unprivileged {
    fn shoal(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(common::shoal_bin())
            .args(args)
            .env(
                "SHOAL_HOST",
                format!("unix://{}/s.sock", self.dir.path().display()),
            )
            .output()
            .expect("shoal")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        let log = std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
        assert!(out.status.success(), "shoal {args:?}: {out:?}\n{log}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn a_node_that_cannot_confine_says_so_and_leaves_process_tasks_pending() {
    if !root() {
        eprintln!("skipped: needs root (to start a daemon as nobody)");
        return;
    }
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let dir = tempfile::Builder::new()
        .prefix("shoal-e2e")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
    // The build's directory may be closed to nobody: a link of the binary it can run.
    let bin = dir.path().join("shoal");
    std::fs::hard_link(common::shoal_bin(), &bin)
        .or_else(|_| std::fs::copy(common::shoal_bin(), &bin).map(|_| ()))
        .expect("binary");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("-H")
        .arg(format!("unix://{}/s.sock", dir.path().display()))
        .arg("daemon")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-addr", "127.0.0.1:0", "--hostname", "lone"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = Unprivileged {
        child: cmd.spawn().expect("daemon"),
        dir,
    };
    wait_for("the daemon to answer", LONG, || {
        d.shoal(&["info"]).status.success()
    });
    d.ok(&["swarm", "init"]);
    let confinement: serde_json::Value = serde_json::from_str(&d.ok(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{json .Description.Confinement}}",
    ]))
    .expect("json");
    assert_eq!(confinement["Available"], false, "{confinement}");
    assert!(
        confinement["Cannot"].to_string().contains("need root"),
        "{confinement}"
    );
    d.ok(&[
        "service",
        "create",
        "-d",
        "--driver",
        "process",
        "--network",
        "host",
        "--name",
        "p",
        "/bin/sleep",
        "1000",
    ]);
    wait_for("the task to wait with the reason", LONG, || {
        d.ok(&["service", "ps", "--no-trunc", "p"])
            .contains("no suitable node (process task confinement unavailable on 1 node)")
    });
}
