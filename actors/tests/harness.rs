//! The in-process harness: its own guarantees, then end-to-end cases from
//! cli/tests ported to it as a table (the end-to-end tests stay, for wiring).

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_actors::harness::{running_in, Behaviour, DriverCall, Harness};
use shoal_core::command::Command;
use shoal_core::model::{Availability, NodeState, RestartCondition, ServiceSpec, TaskState};
use shoal_core::state::ClusterState;

const LIMIT: Duration = Duration::from_secs(60);

fn harness(seed: u64, workers: usize) -> Harness {
    Harness::new(seed, workers).expect("harness")
}

fn converge(h: &mut Harness, service: &str, n: usize) -> Duration {
    let what = format!("{n} running tasks of {service}");
    h.drive_until(&what, LIMIT, |s| running_in(s, service) == n)
        .expect("converges")
}

/// Running tasks of the service per node hostname.
fn spread(h: &Harness, service: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in h.tasks(service) {
        if t.status.state == TaskState::Running && t.desired_state == TaskState::Running {
            let host = h.state(|s| {
                t.node_id
                    .as_ref()
                    .and_then(|n| s.nodes.get(n))
                    .map(|n| n.hostname.clone())
            });
            *out.entry(host.unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

/// Whether any task of the state is running, and meant to, on `host`.
fn on_node(s: &ClusterState, host: &str) -> bool {
    s.tasks.values().any(|t| {
        t.status.state == TaskState::Running
            && t.desired_state == TaskState::Running
            && t.node_id
                .as_ref()
                .and_then(|n| s.nodes.get(n))
                .is_some_and(|n| n.hostname == host)
    })
}

/// Tasks of image `image` on the manager's node exit with `code` after `ms`.
fn exits_after(h: &mut Harness, image: &str, ms: u64, code: i32) {
    h.nodes[0].driver.behave(
        image,
        Behaviour::ExitAfter {
            after: Duration::from_millis(ms),
            code,
        },
    );
}

/// One replica of `image` with this restart condition and attempt limit (0: none).
fn restarting(name: &str, image: &str, condition: RestartCondition, max: u64) -> ServiceSpec {
    let mut spec = Harness::spec(name, 1, image);
    spec.task_template.restart_policy.condition = condition;
    spec.task_template.restart_policy.max_attempts = max;
    spec
}

fn one_running(h: &Harness, service: &str) -> String {
    h.tasks(service)
        .into_iter()
        .find(|t| t.status.state == TaskState::Running)
        .map(|t| t.id)
        .expect("a running task")
}

/// One scripted run: a service, a failure, a scale and a cut.
fn scripted(seed: u64) -> (Vec<Vec<u8>>, Duration) {
    let mut h = harness(seed, 2);
    h.create_service(Harness::spec("web", 4, "run"))
        .expect("create");
    converge(&mut h, "web", 4);
    let victim = one_running(&h, "web");
    assert!(h.fail(&victim));
    converge(&mut h, "web", 4);
    h.scale("web", 6).expect("scale");
    converge(&mut h, "web", 6);
    h.cut(2);
    h.drive_until("worker-2 down", LIMIT, |s| {
        s.nodes
            .values()
            .any(|n| n.hostname == "worker-2" && n.state == shoal_core::model::NodeState::Down)
    })
    .expect("down");
    converge(&mut h, "web", 6);
    h.advance(Duration::from_secs(2));
    (h.log(), h.elapsed())
}

#[test]
fn the_same_seed_gives_the_same_command_log() {
    let (a, ta) = scripted(42);
    let (b, tb) = scripted(42);
    assert!(a.len() > 10, "the run wrote something: {} entries", a.len());
    assert_eq!(a.len(), b.len(), "as many entries");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "entry {i} differs");
    }
    assert_eq!(ta, tb, "the same time on the harness's clock");
    let (c, _) = scripted(43);
    assert_ne!(a, c, "another seed, other ids");
}

/// A node that stops heartbeating (its wire cut) is declared down by the
/// dispatcher's sessions, its tasks move, and once healed it registers
/// again: the log of that run, and its time on the harness's clock.
fn down_and_back(seed: u64) -> (Vec<Vec<u8>>, Vec<Command>, Duration) {
    let mut h = harness(seed, 3);
    h.create_service(Harness::spec("web", 6, "run"))
        .expect("create");
    converge(&mut h, "web", 6);
    h.cut(3);
    h.drive_until("worker-3 down", LIMIT, |s| {
        s.nodes
            .values()
            .any(|n| n.hostname == "worker-3" && n.state == NodeState::Down)
    })
    .expect("down");
    h.drive_until("replicas off worker-3", LIMIT, |s| {
        running_in(s, "web") == 6 && !on_node(s, "worker-3")
    })
    .expect("moved");
    h.heal(3);
    h.drive_until("worker-3 ready again", LIMIT, |s| {
        s.nodes
            .values()
            .any(|n| n.hostname == "worker-3" && n.state == NodeState::Ready)
    })
    .expect("back");
    h.advance(Duration::from_secs(2));
    (h.log(), h.commands(), h.elapsed())
}

#[test]
fn a_seed_replays_a_node_going_down_and_coming_back_entry_for_entry() {
    let (a, commands, ta) = down_and_back(11);
    let (b, _, tb) = down_and_back(11);
    // The run went through the dispatcher's node-down rule, once.
    let downs: Vec<&Command> = commands
        .iter()
        .filter(|c| {
            matches!(c, Command::SetNodeState { state: NodeState::Down, message, .. }
                if message == shoal_core::plan::sessions::DOWN_MESSAGE)
        })
        .collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(a.len(), b.len(), "as many entries");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "entry {i} differs");
    }
    assert_eq!(ta, tb, "the same time on the harness's clock");
}

#[test]
fn a_cut_node_s_tasks_are_replaced_after_the_node_down_time() {
    let mut h = harness(1, 2);
    h.create_service(Harness::spec("web", 6, "run"))
        .expect("create");
    converge(&mut h, "web", 6);
    let on_w1 = spread(&h, "web").get("worker-1").copied().unwrap_or(0);
    assert!(on_w1 > 0, "worker-1 runs some: {:?}", spread(&h, "web"));
    h.cut(1);
    let moved = h
        .drive_until("replicas off worker-1", LIMIT, |s| {
            running_in(s, "web") == 6 && !on_node(s, "worker-1")
        })
        .expect("moved");
    // Three missed heartbeats: not before, and soon after. (A cut node's
    // port is not closed, so no probe cuts this short.)
    let down_after = shoal_actors::session::DEFAULT_HEARTBEAT * 3;
    assert!(moved >= down_after, "moved after {moved:?}");
    assert!(
        moved <= down_after + Duration::from_secs(2),
        "moved after {moved:?}"
    );
    // Healed, it registers again and stops what was replaced elsewhere.
    h.heal(1);
    let w1 = h.nodes[1].driver.clone();
    h.drive_until("worker-1's old tasks stopped", LIMIT, |_| {
        w1.running().is_empty()
    })
    .expect("stopped");
    assert_eq!(h.running("web"), 6);
}

#[test]
fn a_leader_restart_resumes_from_the_state_alone() {
    let mut h = harness(2, 1);
    h.create_service(Harness::spec("web", 3, "run"))
        .expect("create");
    converge(&mut h, "web", 3);
    let before: Vec<String> = h.tasks("web").into_iter().map(|t| t.id).collect();
    let starts = |h: &Harness| {
        h.nodes
            .iter()
            .flat_map(|n| n.driver.calls())
            .filter(|c| matches!(c, DriverCall::Start(_)))
            .count()
    };
    let started = starts(&h);
    h.restart_leader().expect("restart");
    // Nothing running is touched, and the new actors act on new writes.
    h.advance(Duration::from_secs(5));
    let after: Vec<String> = h.tasks("web").into_iter().map(|t| t.id).collect();
    assert_eq!(before, after, "no task replaced by the restart");
    assert_eq!(starts(&h), started, "no task started again");
    h.scale("web", 5).expect("scale");
    converge(&mut h, "web", 5);
    let victim = one_running(&h, "web");
    h.fail(&victim);
    h.drive_until("the failed slot replaced", LIMIT, |s| {
        running_in(s, "web") == 5
            && s.tasks
                .values()
                .any(|t| t.status.state == TaskState::Failed)
    })
    .expect("replaced");
}

/// A case ported from cli/tests: a few lines against a fresh harness.
struct Case {
    name: &'static str,
    workers: usize,
    run: fn(&mut Harness),
}

const CASES: &[Case] = &[
    // single_node::killed_task_is_replaced_and_kept_in_history
    Case {
        name: "a failed task's slot gets a new task, the old one kept in history",
        workers: 0,
        run: |h| {
            h.create_service(Harness::spec("web", 3, "run"))
                .expect("create");
            converge(h, "web", 3);
            let victim = one_running(h, "web");
            let slot = h
                .tasks("web")
                .iter()
                .find(|t| t.id == victim)
                .map(|t| t.slot);
            h.fail(&victim);
            converge(h, "web", 3);
            h.drive_until("the failure recorded", LIMIT, |s| {
                s.tasks
                    .get(&victim)
                    .is_some_and(|t| t.status.state == TaskState::Failed)
            })
            .expect("failed");
            let in_slot: Vec<_> = h
                .tasks("web")
                .into_iter()
                .filter(|t| Some(t.slot) == slot)
                .collect();
            assert_eq!(in_slot.len(), 2, "the failed task and its replacement");
            assert_eq!(in_slot[0].status.exit_code, Some(1));
        },
    },
    // single_node::restart_policy_conditions_and_max_attempts (on-failure, 2)
    Case {
        name: "on-failure with max attempts 2 runs a slot three times, then gives up",
        workers: 0,
        run: |h| {
            exits_after(h, "crash", 200, 3);
            let spec = restarting("fail", "crash", RestartCondition::OnFailure, 2);
            h.create_service(spec).expect("create");
            h.drive_until("three failed tasks", LIMIT, |s| {
                s.tasks
                    .values()
                    .filter(|t| t.status.state == TaskState::Failed)
                    .count()
                    == 3
            })
            .expect("three");
            h.advance(Duration::from_secs(10));
            let t = h.tasks("fail");
            assert_eq!(t.len(), 3, "no restart after max attempts");
            assert!(t.iter().all(|t| t.status.exit_code == Some(3)));
        },
    },
    // single_node::restart_policy_conditions_and_max_attempts (none)
    Case {
        name: "restart condition none never restarts",
        workers: 0,
        run: |h| {
            exits_after(h, "crash", 200, 1);
            let spec = restarting("once", "crash", RestartCondition::None, 0);
            h.create_service(spec).expect("create");
            h.advance(Duration::from_secs(10));
            let t = h.tasks("once");
            assert_eq!(t.len(), 1);
            assert_eq!(t[0].status.state, TaskState::Failed);
        },
    },
    // single_node::restart_policy_conditions_and_max_attempts (any / on-failure, clean exit)
    Case {
        name: "any restarts a clean exit, on-failure does not",
        workers: 0,
        run: |h| {
            exits_after(h, "done", 300, 0);
            h.create_service(Harness::spec("again", 1, "done"))
                .expect("create");
            let clean = restarting("clean", "done", RestartCondition::OnFailure, 0);
            h.create_service(clean).expect("create");
            h.advance(Duration::from_secs(5));
            assert!(h.tasks("again").len() >= 2);
            let c = h.tasks("clean");
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].status.state, TaskState::Complete);
        },
    },
    // single_node::service_converges_scales_logs_and_is_removed (scale)
    Case {
        name: "scale up then down keeps the lowest slots",
        workers: 2,
        run: |h| {
            h.create_service(Harness::spec("web", 2, "run"))
                .expect("create");
            converge(h, "web", 2);
            h.scale("web", 7).expect("up");
            converge(h, "web", 7);
            h.scale("web", 3).expect("down");
            converge(h, "web", 3);
            h.drive_until("nothing else runs", LIMIT, |s| {
                s.tasks
                    .values()
                    .filter(|t| t.status.state == TaskState::Running)
                    .count()
                    == 3
            })
            .expect("stopped");
            let mut slots: Vec<u64> = h
                .tasks("web")
                .iter()
                .filter(|t| t.desired_state == TaskState::Running)
                .map(|t| t.slot)
                .collect();
            slots.sort();
            assert_eq!(slots, vec![1, 2, 3]);
        },
    },
    // cluster::three_managers_two_workers_form_spread_and_survive_leader_loss (spread)
    Case {
        name: "replicas spread evenly over the nodes",
        workers: 2,
        run: |h| {
            h.create_service(Harness::spec("web", 6, "run"))
                .expect("create");
            converge(h, "web", 6);
            assert!(
                spread(h, "web").values().all(|n| *n == 2),
                "{:?}",
                spread(h, "web")
            );
        },
    },
    // cluster::a_lost_worker_s_tasks_move_and_its_return_duplicates_nothing
    Case {
        name: "a lost node's tasks move, and its return runs no slot twice",
        workers: 2,
        run: |h| {
            h.create_service(Harness::spec("web", 4, "run"))
                .expect("create");
            converge(h, "web", 4);
            h.cut(1);
            h.drive_until("all running elsewhere", LIMIT, |s| {
                running_in(s, "web") == 4 && !on_node(s, "worker-1")
            })
            .expect("moved");
            h.heal(1);
            let w1 = h.nodes[1].driver.clone();
            h.drive_until("worker-1 stops its old tasks", LIMIT, |_| {
                w1.running().is_empty()
            })
            .expect("stopped");
            let mut per_slot: BTreeMap<u64, usize> = BTreeMap::new();
            for t in h.tasks("web").iter().filter(|t| {
                t.status.state == TaskState::Running && t.desired_state == TaskState::Running
            }) {
                *per_slot.entry(t.slot).or_default() += 1;
            }
            assert_eq!(per_slot.len(), 4);
            assert!(per_slot.values().all(|n| *n == 1), "{per_slot:?}");
        },
    },
    // cluster::tokens_rotate_nodes_drain_pause_leave_and_removed_nodes_stay_out (drain)
    Case {
        name: "a drained node's tasks move and none come back",
        workers: 2,
        run: |h| {
            h.create_service(Harness::spec("web", 6, "run"))
                .expect("create");
            converge(h, "web", 6);
            let id = h.nodes[2].id.clone();
            h.propose(Command::UpdateNode {
                id,
                role: None,
                availability: Some(Availability::Drain),
                labels_add: vec![],
                labels_rm: vec![],
                at: h.now(),
            })
            .expect("drain");
            let w2 = h.nodes[2].driver.clone();
            h.drive_until("worker-2 empty", LIMIT, |s| {
                running_in(s, "web") == 6 && w2.running().is_empty()
            })
            .expect("drained");
            h.scale("web", 8).expect("scale");
            converge(h, "web", 8);
            assert!(!spread(h, "web").contains_key("worker-2"));
        },
    },
    // single_node::a_task_for_a_driver_no_node_has_stays_pending_with_a_reason (rejection)
    Case {
        name: "a task its driver rejects is recorded REJECTED with the reason",
        workers: 0,
        run: |h| {
            h.nodes[0]
                .driver
                .behave("bad", Behaviour::Reject("no such image".into()));
            h.create_service(Harness::spec("bad", 1, "bad"))
                .expect("create");
            h.drive_until("a rejected task", LIMIT, |s| {
                s.tasks
                    .values()
                    .any(|t| t.status.state == TaskState::Rejected)
            })
            .expect("rejected");
            let t = h.tasks("bad");
            assert!(
                t[0].status
                    .err
                    .as_deref()
                    .is_some_and(|e| e.contains("no such image")),
                "{:?}",
                t[0].status
            );
        },
    },
    Case {
        name: "a slot whose node cannot start its tasks backs off exponentially, not at the restart delay",
        workers: 0,
        run: |h| {
            h.nodes[0]
                .driver
                .behave("netless", Behaviour::NodeFault("no free address".into()));
            // Restart delay 0: without the backoff, a new task every pass.
            h.create_service(Harness::spec("netless", 1, "netless"))
                .expect("create");
            h.advance(Duration::from_secs(40));
            let starts = h.nodes[0]
                .driver
                .calls()
                .iter()
                .filter(|c| matches!(c, DriverCall::Start(_)))
                .count();
            // Waits of 1, 2, 4, 8 and 16 s fit in 40 s: 6 starts, give or
            // take the time each task takes to be placed and fail.
            assert!((5..=7).contains(&starts), "{starts} starts in 40 s");
            let newest = h.tasks("netless").into_iter().max_by_key(|t| t.created_at);
            let newest = newest.expect("a task");
            assert!(newest.node_faults >= 4, "{}", newest.node_faults);
            let failed = h
                .tasks("netless")
                .into_iter()
                .find(|t| t.status.state == TaskState::Failed)
                .expect("a failed task");
            assert!(failed.status.node_fault, "{:?}", failed.status);
            assert!(
                failed.status.err.as_deref().is_some_and(|e| e.contains("no free address")),
                "{:?}",
                failed.status
            );
        },
    },
    Case {
        name: "a task actor restarted while its start is under way does not fail the task as lost",
        workers: 0,
        run: |h| {
            h.nodes[0]
                .driver
                .behave("slow", Behaviour::StartAfter(Duration::from_secs(3)));
            h.create_service(Harness::spec("slow", 1, "slow"))
                .expect("create");
            h.drive_until("a starting task", LIMIT, |s| {
                s.tasks
                    .values()
                    .any(|t| t.status.state == TaskState::Starting)
            })
            .expect("starting");
            let id = h.tasks("slow")[0].id.clone();
            assert!(h.kill_task_actor(&id), "the task's actor runs");
            h.drive_until("the task running", LIMIT, |s| {
                s.tasks
                    .get(&id)
                    .is_some_and(|t| t.status.state == TaskState::Running)
            })
            .expect("running");
            let t = h.tasks("slow");
            assert_eq!(t.len(), 1, "no replacement: {t:?}");
            assert!(t[0].status.err.is_none(), "{:?}", t[0].status);
        },
    },
];

#[test]
fn ported_cases() {
    let start = std::time::Instant::now();
    for (i, case) in CASES.iter().enumerate() {
        let t = std::time::Instant::now();
        let mut h = harness(100 + i as u64, case.workers);
        (case.run)(&mut h);
        eprintln!(
            "{:<80} {:>6.0?} wall, {:>6.1?} on the harness's clock",
            case.name,
            t.elapsed(),
            h.elapsed()
        );
    }
    eprintln!("{} cases in {:?}", CASES.len(), start.elapsed());
}

mod secrets {
    //! Delivery of secrets and configs, in milliseconds: only the node that
    //! runs a task using one gets it, a rotation rolls the service with the
    //! new value, and a manager that cannot open a secret (locked) gives it
    //! to no one.

    use super::*;
    use shoal_core::model::secret::{FileRef, Kind, Object, SecretCommand, Stored};

    fn object(h: &Harness, kind: Kind, name: &str, data: Stored, size: u64) -> Object {
        Object {
            id: format!("{name}0000000000000000000000000")[..25].to_string(),
            kind,
            name: name.into(),
            labels: Default::default(),
            data,
            size,
            data_version: 0,
            version: 0,
            created_at: h.now(),
            updated_at: h.now(),
        }
    }

    fn reference(o: &Object) -> FileRef {
        FileRef {
            id: o.id.clone(),
            name: o.name.clone(),
            target: o.name.clone(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data_version: 0,
        }
    }

    #[test]
    fn only_the_node_running_a_task_that_uses_a_config_gets_it_and_an_update_rolls_in_the_new_value(
    ) {
        let mut h = harness(14, 2);
        let conf = object(&h, Kind::Config, "conf", Stored::Plain(b"v1".to_vec()), 2);
        h.propose(Command::Secrets(SecretCommand::Create(Box::new(
            conf.clone(),
        ))))
        .expect("create");
        let mut spec = Harness::spec("web", 1, "img");
        spec.task_template.configs.push(reference(&conf));
        h.create_service(spec).expect("service");
        converge(&mut h, "web", 1);
        let task = h
            .tasks("web")
            .into_iter()
            .find(|t| t.status.state == TaskState::Running)
            .expect("running");
        let at = h
            .node_index(task.node_id.as_deref().expect("node"))
            .expect("index");
        assert_eq!(
            h.nodes[at].driver.files(&task.id),
            vec![("/conf".to_string(), b"v1".to_vec())]
        );
        for (i, n) in h.nodes.iter().enumerate() {
            if i != at {
                assert!(n.driver.tasks_with_files().is_empty(), "node {i} got files");
            }
        }
        h.propose(Command::Secrets(SecretCommand::Update {
            kind: Kind::Config,
            key: "conf".into(),
            data: Stored::Plain(b"v2".to_vec()),
            size: 2,
            at: h.now(),
        }))
        .expect("update");
        let old = task.id.clone();
        h.drive_until("a new task with the new value", LIMIT, |s| {
            s.tasks.values().any(|t| {
                t.id != old
                    && t.status.state == TaskState::Running
                    && t.spec.configs[0].data_version == 1
            })
        })
        .expect("rolls");
        let new = h
            .tasks("web")
            .into_iter()
            .find(|t| t.id != old && t.status.state == TaskState::Running)
            .expect("new task");
        let at = h
            .node_index(new.node_id.as_deref().expect("node"))
            .expect("index");
        assert_eq!(
            h.nodes[at].driver.files(&new.id),
            vec![("/conf".to_string(), b"v2".to_vec())]
        );
    }

    #[test]
    fn a_manager_without_keys_gives_no_secret_and_the_task_fails_on_its_node() {
        let mut h = harness(15, 1);
        let sealed = shoal_core::model::secret::Sealed {
            nonce: vec![0; 12],
            ciphertext: vec![7; 18],
        };
        let pw = object(&h, Kind::Secret, "pw", Stored::Sealed(sealed), 2);
        h.propose(Command::Secrets(SecretCommand::Create(Box::new(
            pw.clone(),
        ))))
        .expect("create");
        let mut spec = Harness::spec("db", 1, "img");
        spec.task_template.secrets.push(reference(&pw));
        h.create_service(spec).expect("service");
        h.drive_until("a failed task", LIMIT, |s| {
            s.tasks.values().any(|t| {
                t.status.state == TaskState::Failed
                    && t.status.err.as_deref() == Some("secret pw is not available on this node")
            })
        })
        .expect("fails");
        for n in &h.nodes {
            assert!(n.driver.tasks_with_files().is_empty());
        }
    }
}
