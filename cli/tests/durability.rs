//! Durability under group commit and batched proposals: every manager of a
//! three-manager swarm is killed with SIGKILL in the middle of a burst of
//! concurrent writes, all three start again on their data, and every write
//! that was acknowledged before the kill is there, on every manager.
//!
//! With all three killed at once there is no survivor to copy a lost entry
//! from: an acknowledged write survives only if it was flushed on a quorum
//! of the managers' own disks before it was acknowledged.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster, wait_for, LONG};

/// Writer threads, each with one write in flight at a time.
const WRITERS: usize = 24;
/// Acknowledged writes to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 300;

/// POST `body` to `path` on the control socket: the status, if any answer came.
fn post(socket: &Path, path: &str, body: &str) -> Option<u16> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split(' ').nth(1)?.parse().ok()
}

/// Config names a manager's state holds.
fn configs(d: &common::Daemon) -> Option<BTreeSet<String>> {
    let (code, v) = d.api("GET", "/configs", None)?;
    if code != 200 {
        return None;
    }
    Some(
        v.as_array()?
            .iter()
            .filter_map(|c| c["Spec"]["Name"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn every_acknowledged_write_survives_a_kill_of_every_manager_mid_burst() {
    let mut nodes = cluster(3, 0, &[]);
    let sockets: Vec<PathBuf> = nodes.iter().map(|d| d.socket.clone()).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (sockets, acked, stop) = (sockets.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Round the managers: followers forward to the leader.
                    let socket = &sockets[(w + i) % sockets.len()];
                    let name = format!("dur-{w}-{i}");
                    let body = format!(r#"{{"Name":"{name}","Data":"eA=="}}"#);
                    match post(socket, "/configs/create", &body) {
                        Some(201) => acked.lock().expect("acked list").push(name),
                        // Refused, failed or cut off by the kill: its fate is
                        // unknown, so the check below allows it either way.
                        Some(_) => {}
                        None => std::thread::sleep(Duration::from_millis(20)),
                    }
                    i += 1;
                }
            })
        })
        .collect();

    wait_for("a burst of acknowledged writes", LONG, || {
        acked.lock().expect("acked list").len() >= ACKED_BEFORE_KILL
    });
    // Everything acknowledged until now must survive; writes acknowledged
    // while the kills go out count too (their answer came before the end).
    for d in nodes.iter_mut() {
        d.kill9();
    }
    let acknowledged: BTreeSet<String> =
        acked.lock().expect("acked list").iter().cloned().collect();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("a writer thread");
    }
    assert!(acknowledged.len() >= ACKED_BEFORE_KILL);
    eprintln!(
        "{} writes acknowledged before every manager was killed",
        acknowledged.len()
    );

    for d in nodes.iter_mut() {
        d.kill9_and_restart();
    }
    // A write through the restarted swarm: a leader was elected and the
    // log is committed through its term.
    wait_for("a write after the restart", LONG, || {
        post(
            &nodes[0].socket,
            "/configs/create",
            r#"{"Name":"after-restart","Data":"eA=="}"#,
        ) == Some(201)
    });
    for d in &nodes {
        wait_for("the barrier write on every manager", LONG, || {
            configs(d).is_some_and(|c| c.contains("after-restart"))
        });
        let have = configs(d).expect("configs");
        let lost: Vec<&String> = acknowledged.difference(&have).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost on {}: {:?}\n--- daemon log ---\n{}",
            lost.len(),
            acknowledged.len(),
            d.listen,
            &lost[..lost.len().min(20)],
            d.log_tail()
        );
    }
}
