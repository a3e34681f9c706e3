//! Wrong wall clocks (docs/security.md, clocks): a node whose clock is off
//! the cluster's is flagged in `node ls` and `node inspect`, the leader
//! counts a task's restart delay on its own clock whatever the worker's
//! says, and the seam that moves a clock is refused without --enable-chaos.

mod common;

use common::{cluster, wait_for, Daemon, LONG};
use serde_json::Value;

fn move_clock(d: &Daemon, offset_ms: i64) {
    let (code, body) = d
        .api(
            "POST",
            "/debug/chaos/clock",
            Some(&format!(r#"{{"OffsetMs": {offset_ms}}}"#)),
        )
        .expect("api");
    assert_eq!(code, 200, "{body}");
}

fn status_of(d: &Daemon, host: &str) -> String {
    d.rows(&["node", "ls"])
        .into_iter()
        .find(|r| r["Hostname"] == host)
        .map(|r| r["Status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn time(v: &Value, pointer: &str) -> chrono::DateTime<chrono::Utc> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time at {pointer} in {v}"))
}

#[test]
fn a_wrong_clock_is_flagged_and_the_leader_keeps_time() {
    let nodes = cluster(1, 2, &["--enable-chaos"]);
    let m = &nodes[0];
    // worker-1's clock a day ahead.
    move_clock(&nodes[1], 86_400_000);
    wait_for("worker-1 flagged", LONG, || {
        status_of(m, "worker-1") == "Ready (clock +1d0h0m)"
    });
    assert_eq!(status_of(m, "worker-2"), "Ready");
    assert_eq!(status_of(m, "manager-1"), "Ready");
    let inspect: Value =
        serde_json::from_str(&m.ok(&["node", "inspect", "worker-1"])).expect("json");
    assert_eq!(inspect[0]["ClockSkew"], "+1d0h0m", "{inspect}");
    assert_eq!(
        inspect[0]["Status"]["Message"], "clock +1d0h0m off the cluster's",
        "{inspect}"
    );
    assert!(m
        .ok(&["node", "inspect", "--pretty", "worker-1"])
        .contains("clock +1d0h0m off the cluster's"));

    // A task failing over and over on worker-1: each replacement waits out
    // the restart delay, counted on the leader's clock. (Had the worker's
    // times been taken as they are, each failure would look a day old or
    // a day ahead, and the delay would be skipped.)
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "crashy",
        "--driver",
        "process",
        "--constraint",
        "node.hostname==worker-1",
        "--restart-delay",
        "3s",
        "--restart-max-attempts",
        "3",
        "/bin/sh",
        "-c",
        "exit 3",
    ]);
    wait_for("three failed tries", LONG, || {
        m.tasks("crashy")
            .iter()
            .filter(|t| t["Status"]["State"] == "failed")
            .count()
            >= 3
    });
    let mut tasks = m.tasks("crashy");
    tasks.sort_by_key(|t| time(t, "/CreatedAt"));
    let now = chrono::Utc::now();
    for pair in tasks.windows(2) {
        let failed = time(&pair[0], "/Status/Timestamp");
        assert!(
            (failed - now).num_seconds().abs() < 120,
            "a status time off the leader's clock: {failed} (now {now})"
        );
        let next = time(&pair[1], "/CreatedAt");
        assert!(
            next - failed >= chrono::TimeDelta::milliseconds(2_500),
            "restarted {} ms after the failure, under the 3 s delay",
            (next - failed).num_milliseconds()
        );
    }

    // Put right: the flag goes.
    move_clock(&nodes[1], 0);
    wait_for("worker-1 no longer flagged", LONG, || {
        status_of(m, "worker-1") == "Ready"
    });
    let inspect: Value =
        serde_json::from_str(&m.ok(&["node", "inspect", "worker-1"])).expect("json");
    assert!(inspect[0].get("ClockSkew").is_none(), "{inspect}");

    // The seam is bounded, and refused on a daemon without --enable-chaos.
    let (code, _) = m
        .api(
            "POST",
            "/debug/chaos/clock",
            Some(r#"{"OffsetMs": 99999999999999}"#),
        )
        .expect("api");
    assert_eq!(code, 400);
    let plain = Daemon::start(&[]);
    plain.ok(&["swarm", "init"]);
    let (code, _) = plain
        .api("POST", "/debug/chaos/clock", Some(r#"{"OffsetMs": 1000}"#))
        .expect("api");
    assert_eq!(code, 403);
}
