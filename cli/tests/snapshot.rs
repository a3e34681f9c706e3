//! A state larger than one transport frame (16 MiB): the leader compacts
//! its log into a snapshot of it, and a third manager that joins afterwards
//! can only catch up from that snapshot, which crosses in chunks
//! (`node/src/cluster/chunks.rs`). Real daemons over QUIC. (Two managers
//! keep the quorum meanwhile, as in a real swarm: a second manager joining
//! a lone one makes a quorum of two that waits on the newcomer.)

mod common;

use std::io::Read;

use common::{join, wait_for, Daemon, LONG};
use serde_json::Value;

/// Configs of almost the largest size (1,000 KiB), of random bytes.
const CONFIGS: usize = 22;
const SIZE: usize = 1000 * 1024 - 16;

fn raft(d: &Daemon) -> Value {
    let (_, info) = d.api("GET", "/info", None).expect("info");
    info["Swarm"]["RaftStatus"].clone()
}

#[test]
fn a_late_manager_catches_up_from_a_snapshot_larger_than_a_frame() {
    let first = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    first.ok(&["swarm", "init", "--snapshot-interval", "5"]);
    let token = first
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let second = Daemon::start_on("127.0.0.3", "manager-2", &[]);
    assert!(join(&second, &token, &first).contains("joined a swarm as a manager"));
    let files = tempfile::tempdir().expect("tempdir");
    let mut random = std::fs::File::open("/dev/urandom").expect("urandom");
    for i in 0..CONFIGS {
        let mut data = vec![0u8; SIZE];
        random.read_exact(&mut data).expect("random bytes");
        let path = files.path().join(format!("c{i}"));
        std::fs::write(&path, &data).expect("config file");
        first.ok(&[
            "config",
            "create",
            &format!("big-{i}"),
            path.to_str().expect("path"),
        ]);
    }
    // The log is compacted into a snapshot of the whole state.
    wait_for("a snapshot past the configs", LONG, || {
        raft(&first)["SnapshotIndex"].as_u64().unwrap_or(0) > CONFIGS as u64 / 2
    });
    let late = Daemon::start_on("127.0.0.4", "manager-3", &[]);
    assert!(join(&late, &token, &first).contains("joined a swarm as a manager"));
    // The leader's commit index: `/info` leaves the Raft status out when
    // the Raft actor does not answer within 2 s (busy sending the snapshot),
    // and a missing one must not read as 0 (every index is past it).
    let mut commit = 0;
    wait_for("the first manager's commit index", LONG, || {
        commit = raft(&first)["Commit"].as_u64().unwrap_or(0);
        commit > 0
    });
    wait_for(
        "the late manager applies what the leader committed",
        LONG,
        || raft(&late)["Applied"].as_u64().unwrap_or(0) >= commit,
    );
    let listed = late.ok(&["config", "ls", "-q"]);
    assert_eq!(listed.lines().count(), CONFIGS, "{listed}");
    // Whichever manager led by then sent it (a busy machine may move the lead).
    let chunked = [&first, &second].iter().any(|d| {
        std::fs::read_to_string(d.dir.path().join("daemon.log"))
            .unwrap_or_default()
            .contains("sending a snapshot in chunks")
    });
    assert!(chunked, "the snapshot was not chunked");
    // The late manager is a voter that takes part in writes. (On a loaded
    // machine a write may time out and still commit later: tried again
    // until it is there.)
    let c0 = files.path().join("c0");
    wait_for("a write through the late manager", LONG, || {
        late.shoal(&["config", "create", "after", c0.to_str().expect("path")])
            .status
            .success()
            || late
                .ok(&["config", "ls", "-q", "--filter", "name=after"])
                .trim()
                != ""
    });
    assert_eq!(
        first.ok(&["config", "ls", "-q"]).lines().count(),
        CONFIGS + 1
    );
}
