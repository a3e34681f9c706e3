//! End-to-end checks from the security review: the control API's limits, the
//! control socket's mode, `service create` on a service that cannot converge,
//! and output to a closed pipe.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{echo_bin, shoal_bin, wait_for, Daemon};

/// Whether the daemon has closed this connection (EOF or reset), without blocking.
fn closed_by_daemon(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // an answer (e.g. 408) means the daemon gave up on it too
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Reads a whole response (the daemon closes every connection after one).
fn response(s: &mut UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn half_sent_requests_neither_lock_out_clients_nor_stay_open() {
    const HALF_OPEN: usize = 600; // more than the 512-connection cap
    let d = Daemon::start_with(
        None,
        &[
            ("SHOAL_API_HEADER_TIMEOUT_MS", "8000"),
            ("SHOAL_API_BODY_TIMEOUT_MS", "1000"),
        ],
    );
    let opened = Instant::now();
    let mut conns: Vec<UnixStream> = (0..HALF_OPEN)
        .map(|i| {
            let mut s =
                UnixStream::connect(&d.socket).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.write_all(b"GET /inf").expect("half a request line");
            s
        })
        .collect();
    let open_took = opened.elapsed();

    // (a) A normal client is still served while they are held.
    let info = d.shoal(&["info"]);
    assert!(
        info.status.success(),
        "shoal info failed with {HALF_OPEN} half-sent requests open: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(String::from_utf8_lossy(&info.stdout).contains("Swarm: inactive"));
    for s in &conns {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let closed_at_info = conns
        .iter_mut()
        .map(closed_by_daemon)
        .filter(|c| *c)
        .count();
    // Beyond the cap, each newer connection evicted an older half-sent one;
    // the newest are still open well inside the 8 s head timeout.
    assert!(
        closed_at_info < HALF_OPEN && !closed_by_daemon(&mut conns[HALF_OPEN - 1]),
        "{closed_at_info} of {HALF_OPEN} closed already ({open_took:?} to open them)"
    );

    // (b) The daemon closes every one of them, with no new connections to evict
    // them: the head timeout does it.
    let mut open: Vec<UnixStream> = conns.into_iter().collect();
    let took = wait_for(
        "the daemon to close every half-sent request",
        Duration::from_secs(60),
        || {
            open.retain_mut(|s| !closed_by_daemon(s));
            open.is_empty()
        },
    );
    eprintln!(
        "{HALF_OPEN} half-sent requests: opened in {open_took:?}, {closed_at_info} evicted by the time `shoal info` returned, all closed {:?} later",
        took
    );
    assert!(d.shoal(&["info"]).status.success());

    // A body that stops short fails after the body timeout (400), not never.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.write_all(
        b"POST /swarm/init HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Listen",
    )
    .expect("partial body");
    let resp = response(&mut s);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("did not arrive within"), "{resp}");

    // A body over the 2 MiB cap is refused with 413.
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    let size = shoal_node::api::server::MAX_BODY_BYTES + 4096;
    let head = format!(
        "POST /swarm/init HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&vec![b' '; size]); // the daemon may stop reading
    });
    let resp = response(&mut s);
    let _ = writer.join();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
}

#[test]
fn control_socket_is_private_whatever_the_umask() {
    let d = Daemon::start_with(Some(0), &[]);
    let meta = std::fs::metadata(&d.socket).expect("socket");
    let mode = meta.permissions().mode() & 0o777;
    let group = nix::unistd::Group::from_name("shoal").expect("group lookup");
    let expected = if group.is_some() { 0o660 } else { 0o600 };
    assert_eq!(
        mode,
        expected,
        "socket mode {mode:o} under umask 000 (group shoal exists: {})",
        group.is_some()
    );
    if let Some(g) = group {
        assert_eq!(meta.gid(), g.gid.as_raw(), "socket group");
    }
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "socket owner");
    // No staging directory is left next to it.
    let leftovers: Vec<String> = std::fs::read_dir(d.dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".shoal-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(d.shoal(&["info"]).status.success());
}

/// Runs `shoal args` against `d`; kills it after `limit` (a hang is the bug).
fn shoal_with_limit(d: &Daemon, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(shoal_bin())
        .args(args)
        .env("SHOAL_HOST", &d.host)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shoal");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            true
        })
    };
    let out = child.wait_with_output().expect("wait shoal");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = watchdog.join().unwrap_or(false);
    assert!(
        !killed,
        "shoal {args:?} still waiting after {limit:?}; it printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

#[test]
fn blocking_create_ends_when_the_service_cannot_converge() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let echo = echo_bin();
    let echo = echo.to_str().expect("path");

    // Tasks that complete, with restart condition none: docker waits forever.
    let out = shoal_with_limit(
        &d,
        &[
            "service",
            "create",
            "--name",
            "once",
            "--replicas",
            "2",
            "--restart-condition",
            "none",
            "--driver",
            "process",
            echo,
            "--exit-after",
            "0.3",
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // Every task, or (when the second starts after the first has ended)
    // the count of those that have.
    assert!(
        stderr.contains("service once cannot converge: ")
            && stderr.contains("restart policy (condition none) starts no new one"),
        "{stderr}"
    );
    assert!(
        stdout.contains("overall progress: 0 out of 2 tasks"),
        "{stdout}"
    );
    // Whichever task ended first (the second may start after it).
    assert!(
        stdout.contains("1/2: complete") || stdout.contains("2/2: complete"),
        "{stdout}"
    );
    // The service is left as it is.
    assert_eq!(d.rows(&["service", "ls"])[0]["Name"], "once");

    // Tasks that fail, with on-failure and one restart allowed.
    let out = shoal_with_limit(
        &d,
        &[
            "service",
            "create",
            "--name",
            "flaky",
            "--restart-condition",
            "on-failure",
            "--restart-max-attempts",
            "1",
            "--restart-delay",
            "100ms",
            "--driver",
            "process",
            echo,
            "--exit-after",
            "0.3",
            "--exit-code",
            "3",
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("service flaky cannot converge: every task has finished and its restart policy (max attempts 1 reached) starts no new one"),
        "{stderr}"
    );
    assert!(stdout.contains("1/1: task: non-zero exit (3)"), "{stdout}");
    // The first task and its one restart.
    assert_eq!(d.ok(&["service", "ps", "-q", "flaky"]).lines().count(), 2);

    // A service that converges still ends with docker's message.
    let out = d.ok(&[
        "service",
        "create",
        "--name",
        "steady",
        "--restart-condition",
        "none",
        "--driver",
        "process",
        echo,
    ]);
    assert!(out.contains("verify: Service steady converged"), "{out}");
}

/// Runs `shoal args` with its stdout a pipe nobody reads (closed before it writes).
fn shoal_into_closed_pipe(d: &Daemon, args: &[&str]) -> std::process::ExitStatus {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(shoal_bin())
        .args(args)
        .env("SHOAL_HOST", &d.host)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run shoal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "shoal {args:?} into a closed pipe printed: {stderr}"
    );
    out.status
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let d = Daemon::start(&[]);
    for args in [
        &["swarm", "init"][..],
        &["info"],
        &["node", "ls"],
        &["service", "ls"],
        &["--help"],
    ] {
        let status = shoal_into_closed_pipe(&d, args);
        // Killed by SIGPIPE, as docker's Go client is.
        assert_eq!(
            status.signal(),
            Some(libc_sigpipe()),
            "shoal {args:?}: {status}"
        );
    }
    // The swarm was initialized even though its output went nowhere.
    assert!(d.ok(&["info"]).contains("Swarm: active"));
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}

#[test]
fn log_follow_outlives_the_head_and_body_timeouts() {
    let d = Daemon::start_with(
        None,
        &[
            ("SHOAL_API_HEADER_TIMEOUT_MS", "300"),
            ("SHOAL_API_BODY_TIMEOUT_MS", "300"),
        ],
    );
    assert!(d.shoal(&["swarm", "init"]).status.success());
    let tok = common::token("follow");
    let echo = echo_bin();
    let out = d.shoal(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--driver",
        "process",
        echo.to_str().expect("path"),
        "--print",
        &tok,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log_file = d.dir.path().join("follow.out");
    let mut follow = Command::new(shoal_bin())
        .args(["service", "logs", "--follow", "web"])
        .env("SHOAL_HOST", &d.host)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log_file).expect("file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("logs --follow");
    let followed = wait_for(
        "the task's line in the followed logs",
        Duration::from_secs(30),
        || std::fs::read_to_string(&log_file).is_ok_and(|l| l.contains(&tok)),
    );
    // Well past both timeouts, the stream is still open.
    std::thread::sleep(Duration::from_secs(2));
    let still = follow.try_wait().expect("try_wait");
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        still.is_none(),
        "logs --follow ended ({still:?}) after {followed:?}"
    );
    let _ = d.shoal(&["service", "rm", "web"]);
}
