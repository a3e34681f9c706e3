//! docker's container options (`--entrypoint`, `--tty`, `--init`,
//! `--group`, `--sysctl`, `--ulimit`, `--dns*`, `--host`,
//! `--generic-resource`) against real daemons, each observed from inside
//! the task, for the process driver and the docker driver; refusals in
//! docker's words, with nothing written.

mod common;

use common::images::{engine, Cleanup};
use common::{running, wait_for, Daemon, LONG};

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What a task prints about itself, one `key value` line each, then DONE.
const PROBE: &str = r#"if [ -t 1 ]; then t=yes; else t=no; fi
echo "tty $t"
echo "groups $(id -G)"
echo "somaxconn $(cat /proc/sys/net/core/somaxconn)"
echo "shmmni $(cat /proc/sys/kernel/shmmni)"
echo "nofile $(ulimit -Sn):$(ulimit -Hn)"
echo "resolv $(cat /etc/resolv.conf | tr '\n' ' ')"
echo "hosts $(grep -E 'db|cache' /etc/hosts | tr '\n\t' '  ')"
echo "hostname $(hostname)"
echo "tier $TIER"
echo "fromfile $FROM_FILE"
echo DONE
exec sleep 100000"#;

/// The service's log once it holds DONE as often as `n`.
fn probed(d: &Daemon, service: &str, n: usize) -> String {
    let mut out = String::new();
    wait_for(&format!("{service} to report"), LONG, || {
        out = d.ok(&["service", "logs", "--raw", service]);
        out.matches("DONE").count() >= n
    });
    out
}

/// The value of `key` in the newest report of a log.
fn value_of(log: &str, key: &str) -> String {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key} ")))
        .next_back()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn sysctl_on_host(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

const OPTIONS: &[&str] = &[
    "--tty",
    "--init",
    "--group",
    "29",
    "--group",
    "4242",
    "--sysctl",
    "net.core.somaxconn=517",
    "--sysctl",
    "kernel.shmmni=1031",
    "--ulimit",
    "nofile=123:456",
    "--dns",
    "10.9.9.9",
    "--dns-search",
    "example.org",
    "--dns-option",
    "ndots:3",
    "--host",
    "db:10.0.0.9",
    "--hostname",
    "probe-{{.Task.Slot}}",
];

/// Checks a report against `OPTIONS`.
fn assert_options(log: &str, embedded_dns: bool) {
    assert_eq!(value_of(log, "tty"), "yes", "{log}");
    let groups = value_of(log, "groups");
    assert!(
        groups.split(' ').any(|g| g == "29") && groups.split(' ').any(|g| g == "4242"),
        "{groups}"
    );
    assert_eq!(value_of(log, "somaxconn"), "517", "{log}");
    assert_eq!(value_of(log, "shmmni"), "1031", "{log}");
    assert_eq!(value_of(log, "nofile"), "123:456", "{log}");
    let resolv = value_of(log, "resolv");
    assert!(resolv.contains("nameserver 10.9.9.9"), "{resolv}");
    assert!(resolv.contains("search example.org"), "{resolv}");
    assert!(resolv.contains("ndots:3"), "{resolv}");
    if embedded_dns {
        // The embedded DNS server first, the task's own after it.
        let first = resolv.split("nameserver ").nth(1).unwrap_or_default();
        assert!(!first.starts_with("10.9.9.9"), "{resolv}");
    }
    assert!(value_of(log, "hosts").contains("10.0.0.9 db"), "{log}");
    assert_eq!(value_of(log, "hostname"), "probe-1", "{log}");
}

#[test]
fn a_process_task_runs_with_dockers_container_options() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (somaxconn, shmmni) = (
        sysctl_on_host("net.core.somaxconn"),
        sysctl_on_host("kernel.shmmni"),
    );
    let hosts_before = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    // The entrypoint replaces the program IMAGE names (/bin/false never runs).
    let mut args = vec![
        "service",
        "create",
        "-d",
        "--driver",
        "process",
        "--name",
        "probe",
        "--entrypoint",
        "/bin/sh -c",
    ];
    args.extend_from_slice(OPTIONS);
    // A group by name, looked up in the node's group file.
    args.extend(["--group", "users"]);
    // docker's --env-file: comments and blank lines skipped.
    let env_file = d.dir.path().join("env");
    std::fs::write(&env_file, "# settings\n\nFROM_FILE=yes\n").expect("env file");
    let env_file = env_file.to_str().expect("path").to_string();
    args.extend(["--env-file", env_file.as_str()]);
    // The service's labels reach its templates.
    args.extend([
        "--label",
        "tier=web",
        "--env",
        r#"TIER={{index .Service.Labels "tier"}}"#,
    ]);
    args.extend(["/bin/false", PROBE]);
    d.ok(&args);
    let log = probed(&d, "probe", 1);
    assert_options(&log, false);
    assert_eq!(value_of(&log, "tier"), "web", "{log}");
    assert_eq!(value_of(&log, "fromfile"), "yes", "{log}");
    assert!(
        value_of(&log, "groups").split(' ').any(|g| g == "100"),
        "{log}"
    );
    // Nothing of it reached the host.
    assert_eq!(sysctl_on_host("net.core.somaxconn"), somaxconn);
    assert_eq!(sysctl_on_host("kernel.shmmni"), shmmni);
    assert_eq!(
        std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        hosts_before
    );
    // inspect shows them in the Engine API's shape, --pretty as docker does.
    let spec = d.ok(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec}}",
        "probe",
    ]);
    let c: serde_json::Value = serde_json::from_str(spec.trim()).expect("json");
    assert_eq!(c["Command"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["TTY"], true);
    assert_eq!(c["Init"], true);
    assert_eq!(c["Hosts"], serde_json::json!(["10.0.0.9 db"]));
    assert_eq!(
        c["DNSConfig"]["Nameservers"],
        serde_json::json!(["10.9.9.9"])
    );
    assert_eq!(
        c["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 123, "Hard": 456}])
    );
    let pretty = d.ok(&["service", "inspect", "--pretty", "probe"]);
    assert!(pretty.contains("Ulimits:\n nofile: 123:456"), "{pretty}");
    assert!(pretty.contains(" net.core.somaxconn: 517"), "{pretty}");
    // Each list edits as docker's -add/-rm flags do.
    d.ok(&[
        "service",
        "update",
        "-d",
        "--ulimit-add",
        "nofile=200:300",
        "--host-rm",
        "db",
        "--host-add",
        "cache:10.0.0.7",
        "--dns-rm",
        "10.9.9.9",
        "--sysctl-add",
        "net.core.somaxconn=600",
        "--tty=false",
        "probe",
    ]);
    let log = probed(&d, "probe", 2);
    assert_eq!(value_of(&log, "nofile"), "200:300", "{log}");
    assert_eq!(value_of(&log, "somaxconn"), "600", "{log}");
    assert_eq!(value_of(&log, "tty"), "no", "{log}");
    let hosts = value_of(&log, "hosts");
    assert!(
        hosts.contains("10.0.0.7 cache") && !hosts.contains("db"),
        "{hosts}"
    );
    assert!(!value_of(&log, "resolv").contains("10.9.9.9"), "{log}");
    // What the process driver cannot do is refused, nothing changed.
    let err = d.fails(&["service", "update", "-d", "--init=false", "probe"]);
    assert!(
        err.contains("a process task always runs under an init"),
        "{err}"
    );
    d.ok(&["service", "rm", "probe"]);
}

#[test]
fn bad_container_options_are_refused_in_dockers_words() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    for (flags, words) in [
        (
            &["--sysctl", "kernel.panic=1"][..],
            "sysctl 'kernel.panic' is not allowed",
        ),
        (&["--ulimit", "bogus=1"][..], "invalid ulimit type: bogus"),
        (
            &["--ulimit", "nofile=10:5"][..],
            "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
        ),
        (&["--dns", "nope"][..], "nope is not an ip address"),
        (&["--host", "nothing"][..], "expected HOST:IP"),
        (
            &["--network", "host", "--sysctl", "net.core.somaxconn=1"][..],
            "not allowed with the host network namespace",
        ),
        (
            &["--generic-resource", "gpu=GPU-1"][..],
            "a task reserves a count of a kind, not a named unit",
        ),
        (&["--entrypoint", "./relative"][..], "invalid executable"),
    ] {
        let mut args = vec![
            "service", "create", "-d", "--driver", "process", "--name", "bad",
        ];
        args.extend_from_slice(flags);
        args.push("/bin/sleep");
        let err = d.fails(&args);
        assert!(err.contains(words), "{flags:?}: {err}");
    }
    // Through the API too: the same rules, the same words.
    let body = r#"{"Name":"bad","TaskTemplate":{"Driver":"process","ContainerSpec":{"Image":"/bin/sleep","Sysctls":{"vm.swappiness":"1"}}}}"#;
    let (status, answer) = d
        .api("POST", "/services/create", Some(body))
        .expect("an answer");
    assert_eq!(status, 400, "{answer}");
    assert!(answer
        .to_string()
        .contains("sysctl 'vm.swappiness' is not allowed"));
    // The attack: a line break smuggling a nameserver (or a hosts line) into
    // the files a task's node writes for it.
    for (field, value) in [
        (
            "DNSConfig",
            r#"{"Search":["corp\nnameserver 203.0.113.66"]}"#,
        ),
        ("Hosts", r#"["10.0.0.9 db\n203.0.113.66 bank.example"]"#),
        ("Sysctls", r#"{"net.core.somaxconn":"1\n2"}"#),
    ] {
        let body = format!(
            r#"{{"Name":"bad","TaskTemplate":{{"Driver":"process","ContainerSpec":{{"Image":"/bin/sleep","{field}":{value}}}}}}}"#
        );
        let (status, answer) = d
            .api("POST", "/services/create", Some(&body))
            .expect("an answer");
        assert_eq!(status, 400, "{field}: {answer}");
    }
    assert_eq!(d.ok(&["service", "ls", "-q"]).trim(), "");
}

#[test]
fn generic_resources_are_counted_against_what_a_node_declares() {
    let d = Daemon::start(&[
        "--node-generic-resource",
        "gpu=GPU-a",
        "--node-generic-resource",
        "gpu=GPU-b",
    ]);
    d.ok(&["swarm", "init"]);
    let declared = d.ok(&[
        "node",
        "inspect",
        "--format",
        "{{json .Description.Resources.GenericResources}}",
        "self",
    ]);
    assert!(
        declared.contains(r#""NamedResourceSpec":{"Kind":"gpu","Value":"GPU-a"}"#),
        "{declared}"
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
        "gpu",
        "--replicas",
        "3",
        "--generic-resource",
        "gpu=1",
        "/bin/sleep",
        "100000",
    ]);
    wait_for("two tasks running", LONG, || running(&d, "gpu") == 2);
    let mut ps = String::new();
    wait_for("the third pending with the reason", LONG, || {
        ps = d.ok(&["service", "ps", "--no-trunc", "gpu"]);
        ps.contains("insufficient resources on 1 node")
    });
    // Freeing a unit lets the pending task start.
    d.ok(&["service", "scale", "-d", "gpu=2"]);
    d.ok(&[
        "service",
        "update",
        "-d",
        "--generic-resource-rm",
        "gpu",
        "--replicas",
        "4",
        "gpu",
    ]);
    wait_for("four tasks running without the reservation", LONG, || {
        running(&d, "gpu") == 4
    });
    d.ok(&["service", "rm", "gpu"]);
}

#[test]
fn a_docker_task_runs_with_dockers_container_options() {
    let Some(docker) = engine() else {
        return;
    };
    let image = common::images::build_busybox(&docker);
    // The engine's containers go, pass or fail (what an earlier run left too).
    drop(Cleanup(
        docker.clone(),
        vec!["dprobe", "dprobe-net", "dsig"],
    ));
    let _cleanup = Cleanup(docker.clone(), vec!["dprobe", "dprobe-net", "dsig"]);
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    // `service create -d --entrypoint "/bin/sh -c" OPTIONS… FLAGS… IMAGE PROBE`.
    let create = |flags: &[&str]| {
        let mut args = vec!["service", "create", "-d", "--entrypoint", "/bin/sh -c"];
        args.extend_from_slice(flags);
        args.extend_from_slice(OPTIONS);
        args.extend([image.as_str(), PROBE]);
        d.ok(&args);
    };
    create(&["--name", "dprobe"]);
    let log = probed(&d, "dprobe", 1);
    assert_options(&log, false);
    // On an overlay network the task shares its sandbox container's
    // namespace: the resolver, hosts and net.* sysctls are set there, the
    // embedded DNS server first.
    d.ok(&["network", "create", "-d", "overlay", "optsnet"]);
    create(&["--name", "dprobe-net", "--network", "optsnet"]);
    let log = probed(&d, "dprobe-net", 1);
    assert_options(&log, true);
    // The stop signal reaches the program: a forced update stops the task with it.
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "dsig",
        "--stop-signal",
        "USR1",
        "--entrypoint",
        "/bin/sh -c",
        image.as_str(),
        "trap 'echo got-usr1; exit 0' USR1; echo READY; while :; do sleep 1; done",
    ]);
    wait_for("dsig ready", LONG, || {
        d.ok(&["service", "logs", "--raw", "dsig"])
            .contains("READY")
    });
    d.ok(&["service", "update", "-d", "--force", "dsig"]);
    wait_for("the old task told to stop with SIGUSR1", LONG, || {
        d.ok(&["service", "logs", "--raw", "dsig"])
            .contains("got-usr1")
    });
    d.ok(&["service", "rm", "dprobe", "dprobe-net", "dsig"]);
    wait_for("the services' containers gone", LONG, || {
        common::images::containers(&docker, "dprobe").is_empty()
            && common::images::containers(&docker, "dprobe-net").is_empty()
            && common::images::containers(&docker, "dsig").is_empty()
    });
    d.ok(&["network", "rm", "optsnet"]);
}
