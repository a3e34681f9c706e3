//! Writes a follower forwards to the leader travel together
//! (`Request::ProposeMany`) and each gets its own answer; the leader checks
//! such a request's bounds, since a peer's request is untrusted input.
//! Real daemons: three managers on 127.0.0.2-4.

mod common;

use std::collections::BTreeMap;

use common::{cluster, stolen_identity, wait_for, Daemon, Peer, LONG};
use shoal_node::cluster::wire::{Refusal, Request, Response};
use shoal_node::protocol::command::Command;
use shoal_node::protocol::limits::{MAX_FORWARDED_BYTES, MAX_FORWARDED_COMMANDS};

/// Writers at once through the follower: each config name is created twice.
const WRITERS: usize = 32;

fn node_id(d: &Daemon, hostname: &str) -> String {
    d.rows(&["node", "ls"])
        .iter()
        .find(|r| r["Hostname"] == hostname)
        .and_then(|r| r["ID"].as_str().map(str::to_string))
        .expect("node listed")
}

fn labels(d: &Daemon, id: &str) -> serde_json::Value {
    let (code, v) = d.api("GET", &format!("/nodes/{id}"), None).expect("api");
    assert_eq!(code, 200, "{v}");
    v["Spec"]["Labels"].clone()
}

fn label(id: &str, key: &str) -> Command {
    Command::UpdateNode {
        id: id.into(),
        role: None,
        availability: None,
        labels_add: vec![(key.into(), "yes".into())],
        labels_rm: Vec::new(),
        at: chrono::Utc::now(),
    }
}

#[test]
fn writes_forwarded_together_get_their_own_answers_and_bounds_are_checked() {
    let nodes = cluster(3, 0, &[]);
    let mut leader = None;
    wait_for("a leader", LONG, || {
        leader = common::leader_of(&nodes, 0);
        leader.is_some()
    });
    let leader = leader.expect("leader");
    let follower = (leader + 1) % nodes.len();

    // Concurrent writes through the follower, every name twice: one of each
    // pair is created, the other refused as a duplicate, whichever batch
    // (or entry) they shared.
    let answers: Vec<(String, u16)> = std::thread::scope(|s| {
        let f = &nodes[follower];
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("fwd-{}", i / 2);
                    let body = format!(r#"{{"Name":"{name}","Data":"eA=="}}"#);
                    let code = f
                        .api("POST", "/configs/create", Some(&body))
                        .map_or(0, |(code, _)| code);
                    (name, code)
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let mut by_name: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for (name, code) in answers {
        by_name.entry(name).or_default().push(code);
    }
    for (name, mut codes) in by_name {
        codes.sort();
        assert_eq!(codes, [201, 409], "{name}: one created, one refused");
    }
    let (_, configs) = nodes[leader].api("GET", "/configs", None).expect("api");
    let count = configs
        .as_array()
        .expect("configs")
        .iter()
        .filter(|c| {
            c["Spec"]["Name"]
                .as_str()
                .is_some_and(|n| n.starts_with("fwd-"))
        })
        .count();
    assert_eq!(count, WRITERS / 2);

    // A batch as a follower sends it: a result per write, in order; the
    // refused one fails alone.
    let peer = Peer::new(&stolen_identity(&nodes[follower].data_dir()));
    let target = node_id(&nodes[leader], &format!("manager-{}", leader + 1));
    let r = peer.ask(
        &nodes[leader],
        &Request::ProposeMany(vec![
            label(&target, "first"),
            Command::RemoveNode { id: "ghost".into() },
            label(&target, "third"),
        ]),
    );
    match r {
        Ok(Response::EachApplied(each, applied)) => {
            assert!(applied > 0, "the leader says how far it applied");
            assert_eq!(each.len(), 3, "{each:?}");
            assert_eq!(each[0], Ok(()));
            assert!(
                matches!(&each[1], Err(Refusal::Rejected(e)) if e.to_string().contains("ghost")),
                "{each:?}"
            );
            assert_eq!(each[2], Ok(()));
        }
        other => panic!("expected a result per write, got {other:?}"),
    }
    let l = labels(&nodes[leader], &target);
    assert_eq!(l["first"], "yes", "{l}");
    assert_eq!(l["third"], "yes", "{l}");

    // Past the bounds: refused whole, nothing proposed.
    let too_many = vec![label(&target, "too-many"); MAX_FORWARDED_COMMANDS + 1];
    let r = peer.ask(&nodes[leader], &Request::ProposeMany(too_many));
    assert!(
        matches!(r, Ok(Response::Refused(Refusal::BadRequest(_)))),
        "{r:?}"
    );
    let big = "x".repeat(MAX_FORWARDED_BYTES / 2);
    let too_big = vec![
        Command::DeleteTasks(vec![big.clone()]),
        Command::DeleteTasks(vec![big]),
        label(&target, "too-big"),
    ];
    let r = peer.ask(&nodes[leader], &Request::ProposeMany(too_big));
    assert!(
        matches!(r, Ok(Response::Refused(Refusal::BadRequest(_)))),
        "{r:?}"
    );
    let l = labels(&nodes[leader], &target);
    assert!(
        l.get("too-many").is_none() && l.get("too-big").is_none(),
        "{l}"
    );

    // Malformed bytes: the connection is closed, the leader carries on.
    let sock = nodes[leader].listen.parse().expect("addr");
    // `ProposeMany` claiming 2^64 - 1 commands.
    let mut garbage = vec![9u8, 0xfd];
    garbage.extend([0xff; 8]);
    let r = peer.rt.block_on(peer.transport.request(sock, &garbage));
    assert!(r.is_err(), "a malformed request is not answered: {r:?}");
    let r = peer.ask(
        &nodes[leader],
        &Request::ProposeMany(vec![label(&target, "after")]),
    );
    assert!(
        matches!(r, Ok(Response::EachApplied(ref e, _)) if e == &[Ok(())]),
        "{r:?}"
    );
}

/// A write through a follower returns once applied there too (docs/api.md),
/// so a read from that follower right after it sees it. The chaos harness's
/// `register-leader-faults` found a follower that answered once the leader
/// had applied the write and served the value before it 1 ms later.
#[test]
fn a_read_from_a_follower_right_after_a_write_through_it_sees_the_write() {
    let nodes = cluster(3, 0, &[]);
    let mut leader = None;
    wait_for("a leader", LONG, || {
        leader = common::leader_of(&nodes, 0);
        leader.is_some()
    });
    let leader = leader.expect("leader");
    let f = &nodes[(leader + 1) % nodes.len()];
    for i in 0..100 {
        let body = format!(r#"{{"Name":"ryw-{i}","Data":"eA=="}}"#);
        let (code, v) = f.api("POST", "/configs/create", Some(&body)).expect("api");
        assert_eq!(code, 201, "{v}");
        let (code, v) = f
            .api("GET", &format!("/configs/ryw-{i}"), None)
            .expect("api");
        assert_eq!(
            code, 200,
            "write {i} acknowledged by the follower, not there: {v}"
        );
    }

    // A single forwarded write is answered with the leader's applied index.
    let peer = Peer::new(&stolen_identity(&f.data_dir()));
    let target = node_id(&nodes[leader], &format!("manager-{}", leader + 1));
    let r = peer.ask(
        &nodes[leader],
        &Request::Propose(Box::new(label(&target, "single"))),
    );
    assert!(matches!(r, Ok(Response::Applied(i)) if i > 0), "{r:?}");
}
