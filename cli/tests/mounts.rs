//! `--mount`: bind mounts, volumes and tmpfs mounts for process tasks (done
//! by shoal in the task's mount namespace) and docker tasks (done by the
//! engine), with dockerd's refusals; templates, stateful slots, and the
//! container options of the same issue (`--stop-signal`, …).

mod common;

use std::time::Duration;

use common::images::{build_image, engine, rt, IMAGE};
use common::*;

const LONG: Duration = Duration::from_secs(60);

fn logs(d: &Daemon, service: &str) -> String {
    String::from_utf8_lossy(&d.shoal(&["service", "logs", "--raw", service]).stdout).into_owned()
}

/// A process task writes to a named volume, sees a fresh tmpfs, cannot write
/// to a read-only bind; killed, it comes back on the same volume; `update
/// --force` keeps it too. Binding the data dir's parent shows the data dir
/// masked, as it is in the task's root.
#[test]
fn a_process_tasks_volume_outlives_it_and_its_tmpfs_does_not() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let shared = tempfile::tempdir().expect("tmp");
    std::fs::write(shared.path().join("hello"), "from the host\n").expect("write");
    let parent = d.data_dir().parent().expect("parent").to_path_buf();
    let data_name = d
        .data_dir()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let script = format!(
        "n=$(cat /data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/count; \
         echo \"count=$n scratch=$(ls -A /scratch | wc -l)\"; touch /scratch/x; \
         cat /ro/hello; if touch /ro/probe 2>/dev/null; then echo ro=writable; else echo ro=refused; fi; \
         if cat /host/{data_name}/certs/node.key >/dev/null 2>&1; then echo key=read; else echo key=hidden; fi; \
         if cat {parent}/{data_name}/certs/node.key >/dev/null 2>&1; then echo seed=key; else echo seed=none; fi; \
         exec sleep 100017",
        parent = parent.display()
    );
    let bind = format!("type=bind,src={},dst=/ro,readonly", shared.path().display());
    let host = format!("type=bind,src={},dst=/host", parent.display());
    // A new volume is seeded from what the host holds at its target, but
    // never from a directory that holds the data dir.
    let seeded = format!("type=volume,source=seeded,target={}", parent.display());
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "db",
        "--driver",
        "process",
        "--mount",
        "type=volume,source=dbdata,target=/data,volume-label=purpose=test",
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "--mount",
        &bind,
        "--mount",
        &host,
        "--mount",
        &seeded,
        "/bin/sh",
        "-c",
        &script,
    ]);
    wait_for("the first run's output", LONG, || {
        logs(&d, "db").contains("seed=")
    });
    let first = logs(&d, "db");
    assert!(first.contains("count=1 scratch=0"), "{first}");
    assert!(first.contains("from the host"), "{first}");
    assert!(first.contains("ro=refused"), "{first}");
    assert!(
        first.contains("key=hidden"),
        "the data dir shows through a bind: {first}"
    );
    assert!(
        first.contains("seed=none"),
        "a volume was seeded with the data dir: {first}"
    );
    let on_host = d.data_dir().join("volumes/dbdata/_data/count");
    assert_eq!(
        std::fs::read_to_string(&on_host)
            .expect("the volume on the node")
            .trim(),
        "1"
    );

    // Killed: the restarted task finds the volume's data and a new tmpfs.
    let mut pid = None;
    wait_for("the task's process", LONG, || {
        pid = pids_with("100017").first().copied();
        pid.is_some()
    });
    let pid = pid.unwrap_or_else(|| panic!("{}", logs(&d, "db")));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_for("the second run", LONG, || {
        logs(&d, "db").contains("count=2")
    });
    assert!(
        logs(&d, "db").contains("count=2 scratch=0"),
        "{}",
        logs(&d, "db")
    );

    d.ok(&["service", "update", "-d", "--force", "db"]);
    wait_for("the run after update --force", LONG, || {
        logs(&d, "db").contains("count=3")
    });

    // The spec shows the mounts as docker's `Mount`s, and --pretty lists them.
    let inspect = d.ok(&["service", "inspect", "db"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    let mounts = &v[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"];
    assert_eq!(mounts.as_array().map(Vec::len), Some(5), "{mounts}");
    assert!(mounts
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["Type"] == "volume" && m["Source"] == "dbdata" && m["Target"] == "/data"));
    let pretty = d.ok(&["service", "inspect", "--pretty", "db"]);
    assert!(
        pretty.contains(
            "Mounts:\n Target:\t/data\n  Source:\tdbdata\n  ReadOnly:\tfalse\n  Type:\t\tvolume"
        ),
        "{pretty}"
    );

    // --mount-rm by target, --mount-add replaces by target.
    d.ok(&[
        "service",
        "update",
        "-d",
        "--mount-rm",
        "/host",
        "--mount-add",
        "type=tmpfs,target=/scratch,tmpfs-size=2m",
        "db",
    ]);
    let inspect = d.ok(&["service", "inspect", "db"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("json");
    let mounts = v[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(mounts.len(), 4, "{mounts:?}");
    assert!(mounts
        .iter()
        .any(|m| m["Target"] == "/scratch" && m["TmpfsOptions"]["SizeBytes"] == 2 << 20));
    assert!(!mounts.iter().any(|m| m["Target"] == "/host"));

    wait_for("the run after the mounts' update", LONG, || {
        logs(&d, "db").contains("count=4")
    });

    // The node's volumes, as `docker volume` shows an engine's.
    let ls = d.ok(&["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     dbdata"), "{ls}");
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "dbdata"])).expect("json");
    assert_eq!(inspect[0]["Labels"]["purpose"], "test");
    assert_eq!(inspect[0]["UsageData"]["RefCount"], 1, "{inspect}");
    let busy = d.fails(&["volume", "rm", "dbdata"]);
    assert!(
        busy.contains("remove dbdata: volume is in use - ["),
        "{busy}"
    );
    d.ok(&["volume", "create", "--label", "spare=yes", "spare"]);
    let pruned = d.ok(&["volume", "prune", "-f"]);
    assert!(
        pruned.starts_with("Deleted Volumes:\nspare\n\nTotal reclaimed space: 0B"),
        "{pruned}"
    );
    d.ok(&["service", "rm", "db"]);
    wait_for("the volume free", LONG, || {
        d.shoal(&["volume", "rm", "dbdata"]).status.success()
    });
    assert!(!d.data_dir().join("volumes/dbdata").exists());
    assert!(d
        .fails(&["volume", "inspect", "dbdata"])
        .contains("No such volume: dbdata"));
}

/// Swarm's templates: `data-{{.Task.Slot}}` gives each replica a volume of
/// its own, and the hostname and env name the slot; an unknown field is
/// refused when the service is created, as swarmkit refuses it.
#[test]
fn each_slot_gets_its_own_volume_from_a_template() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "slots",
        "--replicas",
        "2",
        "--driver",
        "process",
        "--hostname",
        "{{.Service.Name}}-{{.Task.Slot}}",
        "--env",
        "SLOT={{.Task.Slot}}",
        "--mount",
        "type=volume,source=data-{{.Task.Slot}},target=/data",
        "/bin/sh",
        "-c",
        "echo \"$(hostname) $SLOT\" > /data/who; exec sleep 100018",
    ]);
    for slot in ["1", "2"] {
        let file = d.data_dir().join(format!("volumes/data-{slot}/_data/who"));
        wait_for("each slot's volume", LONG, || file.exists());
        wait_for("its content", LONG, || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == format!("slots-{slot} {slot}"))
        });
    }
    let err = d.fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "badtmpl",
        "--driver",
        "process",
        "--env",
        "X={{.Task.Nope}}",
        "/bin/sleep",
        "100",
    ]);
    assert!(
        err.contains("expanding env failed: expanding env \"X={{.Task.Nope}}\"")
            && err.contains("can't evaluate field Nope"),
        "{err}"
    );
}

/// What dockerd refuses, refused in its words, and nothing written; a bind
/// source the node does not have rejects the task, as dockerd rejects the
/// container.
#[test]
fn bad_mounts_are_refused_in_dockers_words() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let create = |mounts: &[&str]| {
        let mut args = vec![
            "service", "create", "-d", "--name", "bad", "--driver", "process",
        ];
        for m in mounts {
            args.extend(["--mount", m]);
        }
        args.extend(["/bin/sleep", "100"]);
        d.fails(&args)
    };
    for (mount, says) in [
        (
            "type=bind,src=relative,dst=/x",
            "invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
        (
            "type=bind,src=/tmp",
            "invalid mount config for type \"bind\": field Target must not be empty",
        ),
        (
            "type=nfs,dst=/x",
            "invalid mount config for type \"nfs\": mount type unknown",
        ),
        ("type=bind,dst=/x,color=red", "unknown option 'color' in 'color=red'"),
        (
            "type=tmpfs,dst=/x,volume-nocopy",
            "cannot mix 'volume-*' options with mount type 'tmpfs'",
        ),
        (
            "type=volume,src=v,dst=/x,volume-driver=nfs",
            "the process driver cannot honour a volume driver",
        ),
        (
            "type=volume,src=v,dst=/",
            "invalid specification: destination can't be '/'",
        ),
    ] {
        let err = create(&[mount]);
        assert!(err.contains(says), "{mount}: {err}");
    }
    let err = create(&["type=tmpfs,dst=/x", "type=volume,src=v,dst=/x"]);
    assert!(err.contains("invalid duplicate mount point: /x"), "{err}");
    assert!(
        d.ok(&["service", "ls", "-q"]).trim().is_empty(),
        "a refused service was written"
    );

    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "nosrc",
        "--driver",
        "process",
        "--mount",
        "type=bind,src=/nonexistent-shoal-src,dst=/x",
        "/bin/sleep",
        "100",
    ]);
    wait_for("the task's rejection", LONG, || {
        d.ok(&["service", "ps", "--no-trunc", "nosrc"]).contains(
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-shoal-src",
        )
    });
}

/// A docker task's mounts are the engine's: the named volume is made by the
/// engine with its labels, and the container mounts it where asked.
#[test]
fn a_docker_tasks_volume_is_made_by_the_engine() {
    let Some(docker) = engine() else {
        eprintln!("no docker engine here; skipped");
        return;
    };
    build_image(&docker);
    let volume = format!("shoal-test-{}", std::process::id());
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let mount = format!("type=volume,source={volume},target=/data,volume-label=from=shoal");
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dockvol",
        "--mount",
        &mount,
        "--hostname",
        "{{.Service.Name}}-{{.Task.Slot}}",
        "--read-only",
        "--cap-add",
        "NET_ADMIN",
        "--stop-signal",
        "usr1",
        IMAGE,
        "--port",
        "80",
    ]);
    wait_for("the task running", LONG, || running(&d, "dockvol") == 1);
    let inspected = rt().block_on(docker.inspect_volume(&volume));
    let v = inspected.expect("the engine made the volume");
    assert_eq!(v.labels.get("from").map(String::as_str), Some("shoal"));
    let containers = rt().block_on(
        docker.list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::default()
                .filters(&std::collections::HashMap::from([(
                    "label".to_string(),
                    vec!["com.shoal.service.name=dockvol".to_string()],
                )]))
                .build(),
        )),
    );
    let c = containers.expect("containers");
    let mounts = c.first().and_then(|c| c.mounts.clone()).unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(volume.as_str())
                && m.destination.as_deref() == Some("/data")),
        "{mounts:?}"
    );
    // The container options reach the engine, the hostname's template expanded.
    let id = c.first().and_then(|c| c.id.clone()).expect("container id");
    let inspected = rt()
        .block_on(docker.inspect_container(&id, None))
        .expect("inspect");
    let config = inspected.config.expect("config");
    assert_eq!(config.hostname.as_deref(), Some("dockvol-1"));
    assert_eq!(config.stop_signal.as_deref(), Some("SIGUSR1"));
    let host = inspected.host_config.expect("host config");
    assert_eq!(host.readonly_rootfs, Some(true));
    assert!(host
        .cap_add
        .unwrap_or_default()
        .iter()
        .any(|c| c.contains("NET_ADMIN")));
    d.ok(&["service", "rm", "dockvol"]);
    wait_for("the container gone", LONG, || {
        rt().block_on(
            docker.list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&std::collections::HashMap::from([(
                        "label".to_string(),
                        vec!["com.shoal.service.name=dockvol".to_string()],
                    )]))
                    .build(),
            )),
        )
        .map(|c| c.is_empty())
        .unwrap_or(false)
    });
    let _ = rt().block_on(docker.remove_volume(
        &volume,
        None::<bollard::query_parameters::RemoveVolumeOptions>,
    ));
}

/// The node each running slot of `service` is on, by slot name (`st.1`).
fn slot_nodes(d: &Daemon, service: &str) -> std::collections::BTreeMap<String, String> {
    d.rows(&["service", "ps", service])
        .into_iter()
        .filter(|r| {
            r["DesiredState"] == "Running"
                && r["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
        })
        .map(|r| {
            (
                r["Name"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("\\_ ")
                    .to_string(),
                r["Node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Stateful slots: a slot whose volume is its own (`data-{{.Task.Slot}}`)
/// comes back to the node that holds that volume when it is updated, and
/// keeps its data there; only when that node is lost does it move, and
/// `service ps` shows where to. Two slots on three nodes: without the
/// preference a replaced slot would go to the empty third node.
#[test]
fn a_slot_stays_with_its_volume_until_its_node_is_lost() {
    let mut nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "st",
        "--replicas",
        "2",
        "--driver",
        "process",
        "--mount",
        "type=volume,source=data-{{.Task.Slot}},target=/data",
        "/bin/sh",
        "-c",
        "n=$(cat /data/n 2>/dev/null || echo 0); echo $((n+1)) > /data/n; exec sleep 100019",
    ]);
    wait_for("two slots running", LONG, || slot_nodes(m, "st").len() == 2);
    let before = slot_nodes(m, "st");
    // The nodes of the slots get more tasks than the third: a replaced slot
    // placed by load alone would go to the third.
    let free = ["manager-1", "worker-1", "worker-2"]
        .into_iter()
        .find(|h| !before.values().any(|v| v == h))
        .expect("a node without a slot");
    let constraint = format!("node.hostname!={free}");
    m.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "filler",
        "--replicas",
        "4",
        "--constraint",
        &constraint,
        "--driver",
        "process",
        "/bin/sleep",
        "100020",
    ]);
    wait_for("the filler running", LONG, || running(m, "filler") == 4);
    // `cluster` names its nodes manager-1, then worker-1 and worker-2.
    let index = |host: &str| match host {
        "manager-1" => 0,
        "worker-1" => 1,
        "worker-2" => 2,
        other => panic!("no node {other}"),
    };
    let count = |host: &str, slot: &str| {
        let d = &nodes[index(host)];
        std::fs::read_to_string(d.data_dir().join(format!("volumes/data-{slot}/_data/n")))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    for round in 2..=3 {
        m.ok(&["service", "update", "-d", "--force", "st"]);
        wait_for("the slots replaced", LONG, || {
            before.iter().all(|(name, host)| {
                count(host, name.trim_start_matches("st.")) == round.to_string()
            })
        });
        wait_for("both running again", LONG, || {
            slot_nodes(m, "st").len() == 2
        });
        assert_eq!(slot_nodes(m, "st"), before, "a slot left its volume's node");
    }

    // Its node lost, a worker's slot moves, and says where.
    let (slot, host) = before
        .iter()
        .find(|(_, h)| h.starts_with("worker"))
        .map(|(s, h)| (s.clone(), h.clone()))
        .expect("a slot on a worker");
    let i = index(&host);
    nodes[i].kill9();
    let m = &nodes[0];
    let moved = std::time::Instant::now();
    while slot_nodes(m, "st").get(&slot).is_none_or(|h| *h == host) {
        assert!(
            moved.elapsed() < LONG,
            "the slot did not move: {}\n{}",
            m.ok(&["service", "ps", "st"]),
            m.ok(&["node", "ls"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--stop-signal`: a process task is asked to stop with that signal (its
/// program traps it and says so); a signal that does not exist is refused.
#[test]
fn a_process_task_is_stopped_with_its_stop_signal() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "sig",
        "--driver",
        "process",
        "--stop-signal",
        "SIGUSR1",
        "/bin/sh",
        "-c",
        "trap 'echo stopped by USR1; exit 0' USR1; echo up; while true; do sleep 0.1; done",
    ]);
    wait_for("the task up", LONG, || logs(&d, "sig").contains("up"));
    let pretty = d.ok(&["service", "inspect", "sig"]);
    assert!(pretty.contains("\"StopSignal\": \"SIGUSR1\""), "{pretty}");
    d.ok(&["service", "update", "-d", "--force", "sig"]);
    wait_for("the old task stopped by its signal", LONG, || {
        logs(&d, "sig").contains("stopped by USR1")
    });
    let err = d.fails(&[
        "service",
        "create",
        "-d",
        "--name",
        "badsig",
        "--driver",
        "process",
        "--stop-signal",
        "SIGNOPE",
        "/bin/sleep",
        "100",
    ]);
    assert!(err.contains("invalid signal: SIGNOPE"), "{err}");
}
