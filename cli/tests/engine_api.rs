//! The Engine API's negotiation, its refusals of bad input (each a clear
//! Engine-style error with nothing written), and `shoal events` following
//! the swarm's commits live, against a real daemon.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{echo_bin, shoal_bin, Daemon};

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn versions_are_negotiated_and_bad_requests_are_refused_with_nothing_written() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let echo = echo_bin();
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--driver",
        "process",
        echo.to_str().expect("path"),
        "--port",
        "0",
    ]);

    // Every route answers with and without a version prefix.
    for path in ["/services", "/v1.41/services", "/v1.24/services"] {
        let (code, v) = d.api("GET", path, None).expect("answer");
        assert_eq!(code, 200, "{path}: {v}");
        assert_eq!(v[0]["Spec"]["Name"], "web");
    }
    let (code, v) = d.api("GET", "/v1.42/services", None).expect("answer");
    assert_eq!(code, 400);
    assert_eq!(
        v["message"],
        "client version 1.42 is too new. Maximum supported API version is 1.41"
    );
    let (code, v) = d.api("GET", "/v1.0/version", None).expect("answer");
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("is too old")),
        "{v}"
    );
    let (code, v) = d.api("GET", "/version", None).expect("answer");
    assert_eq!((code, v["ApiVersion"].as_str()), (200, Some("1.41")));

    // Filters: docker's JSON, checked keys, bounded.
    let f = enc(r#"{"name":{"we":true}}"#);
    let (code, v) = d
        .api("GET", &format!("/services?filters={f}"), None)
        .expect("answer");
    assert_eq!((code, v.as_array().map(Vec::len)), (200, Some(1)));
    let f = enc(r#"{"name":{"nope":true}}"#);
    let (_, v) = d
        .api("GET", &format!("/services?filters={f}"), None)
        .expect("answer");
    assert_eq!(v.as_array().map(Vec::len), Some(0));
    let f = enc(r#"{"colour":{"red":true}}"#);
    let (code, v) = d
        .api("GET", &format!("/nodes?filters={f}"), None)
        .expect("answer");
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("invalid filter 'colour'"))
    );
    let f = enc("{not json");
    let (code, v) = d
        .api("GET", &format!("/tasks?filters={f}"), None)
        .expect("answer");
    assert_eq!(code, 400, "{v}");
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("invalid filter")));

    // A stale version is refused and the service keeps its spec.
    let (_, svc) = d.api("GET", "/services/web", None).expect("inspect");
    let version = svc["Version"]["Index"].as_u64().expect("version");
    let mut spec = svc["Spec"].clone();
    spec["Labels"] = serde_json::json!({"changed": "yes"});
    let (code, v) = d
        .api(
            "POST",
            &format!("/services/web/update?version={}", version - 1),
            Some(&spec.to_string()),
        )
        .expect("answer");
    assert_eq!(code, 409, "{v}");
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.contains("update out of sequence")));
    let (_, after) = d.api("GET", "/services/web", None).expect("inspect");
    assert_eq!(after["Spec"]["Labels"], svc["Spec"]["Labels"]);

    // A stale node version, likewise.
    let node = d.api("GET", "/nodes", None).expect("nodes").1[0].clone();
    let id = node["ID"].as_str().expect("node id");
    let body = r#"{"Labels":{"x":"y"},"Role":"manager","Availability":"active"}"#;
    let (code, _) = d
        .api("POST", &format!("/nodes/{id}/update?version=1"), Some(body))
        .expect("answer");
    assert_eq!(code, 409);

    // A field shoal would not act on: refused by name, nothing created.
    let spec =
        r#"{"Name":"mounted","TaskTemplate":{"ContainerSpec":{"Image":"x","OomScoreAdj":100}}}"#;
    let (code, v) = d
        .api("POST", "/services/create", Some(spec))
        .expect("answer");
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("TaskTemplate.ContainerSpec.OomScoreAdj")),
        "{v}"
    );
    let (_, list) = d.api("GET", "/services", None).expect("list");
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    // Bad event times.
    let (code, _) = d
        .api("GET", "/events?since=yesterday", None)
        .expect("answer");
    assert_eq!(code, 400);
    let (code, _) = d
        .api("GET", "/events?since=20&until=10", None)
        .expect("answer");
    assert_eq!(code, 400);
}

#[test]
fn shoal_events_follows_commits_live_and_replays_them_with_filters() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let mut follower = Command::new(shoal_bin())
        .args([
            "events",
            "--filter",
            "type=service",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}} {{.Scope}}",
        ])
        .env("SHOAL_HOST", &d.host)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shoal events");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    // The stream is open once the daemon answers; give it its subscription.
    std::thread::sleep(Duration::from_millis(300));
    let echo = echo_bin();
    let started = Instant::now();
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "live",
        "--driver",
        "process",
        echo.to_str().expect("path"),
        "--port",
        "0",
    ]);
    let first = lines.next().expect("an event").expect("a line");
    eprintln!("service create -> event line: {:?}", started.elapsed());
    assert_eq!(first, "create live swarm");
    d.ok(&["service", "scale", "-d", "live=2"]);
    assert_eq!(
        lines.next().expect("an event").expect("a line"),
        "update live swarm"
    );
    d.ok(&["service", "rm", "live"]);
    assert_eq!(
        lines.next().expect("an event").expect("a line"),
        "remove live swarm"
    );
    let _ = follower.kill();
    let _ = follower.wait();

    // The same, replayed; and docker's default line.
    let past = d.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "service=live",
        "--filter",
        "event=update",
    ]);
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\S+Z service update [a-z0-9]{25} \(name=live, replicas\.new=2, replicas\.old=1\)\n$")
            .expect("pattern")
            .is_match(&past),
        "{past}"
    );
    let nodes = d.ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "type=node",
        "--format",
        "{{.Action}}",
    ]);
    assert!(nodes.starts_with("create\n"), "{nodes}");
    let err = d.fails(&["events", "--filter", "colour=red"]);
    assert!(err.contains("Invalid filter 'colour'"), "{err}");
}
