//! docker CLI parity as data: one row per case — where the command runs, its
//! arguments, and the exit status, stdout and stderr docker's CLI would give
//! (regexes; "" means "not checked"). Adding a case is adding a line.
//!
//! The daemons are real processes: a manager and two workers (one joined
//! with `--availability drain` and its own addresses), plus a fresh daemon
//! for each row that needs a node outside any swarm or a new swarm.

mod common;

use std::time::Duration;

use common::{cluster, echo_bin, pids_with, running, wait_for, Daemon, LONG};
use regex::Regex;

/// Where a row runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum On {
    /// The manager of the shared swarm (services `web` and `once`).
    M,
    /// A worker of that swarm.
    W,
    /// A new daemon that is in no swarm.
    F,
    /// A new daemon that has just run `swarm init`.
    I,
}
use On::{F, I, M, W};

/// `{echo}` is the workload program; `{port}` a free UDP port on 127.0.0.1.
type Case = (On, &'static [&'static str], i32, &'static str, &'static str);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // 1. Addresses.
    (F, &["swarm", "init", "--listen-addr", "127.0.0.1:{port}", "--advertise-addr", "127.0.0.1:{port}"], 0, r"shoal swarm join --token SWMTKN-1-\S+ 127\.0\.0\.1:{port}\n", ""),
    (F, &["swarm", "init", "--listen-addr", "127.0.0.1:{port}", "--advertise-addr", "lo"], 0, r"shoal swarm join --token SWMTKN-1-\S+ 127\.0\.0\.1:{port}\n", ""),
    (F, &["swarm", "init", "--advertise-addr", "0.0.0.0"], 1, r"^$", r"advertise address must be a non-zero IP address or network interface \(with optional port number\)"),
    (F, &["swarm", "init", "--listen-addr", "no-such-if0"], 1, r"^$", r"listen address must be an IP address or network interface \(with optional port number\)"),
    (M, &["node", "ls", "-f", "name=worker-2", "--format", "{{.Availability}}"], 0, r"^Drain\n$", r"^$"),
    (M, &["node", "inspect", "--format", "{{.Status.Addr}}", "worker-2"], 0, r"^127\.0\.0\.4:\d+\n$", r"^$"),
    (M, &["swarm", "join-token", "worker"], 0, r"shoal swarm join --token SWMTKN-1-\S+ 127\.0\.0\.2:\d+\n", r"^$"),
    // 2. Go templates.
    (M, &["service", "ls", "--format", "{{.Name}}"], 0, r"^once\nweb\n$", r"^$"),
    (M, &["service", "ls", "--format", r"table {{.Name}}\t{{.Replicas}}"], 0, r"^NAME +REPLICAS\nonce +0/1\nweb +2/2\n$", r"^$"),
    (M, &["service", "ls", "--format", "{{json .}}"], 0, r#"\{"ID":"[a-z0-9]{12}","Image":"[^"]+","Mode":"replicated","Name":"web","Ports":"","Replicas":"2/2"\}"#, r"^$"),
    (M, &["service", "ls", "--format", "json"], 0, r#"(?m)^\{.*"Name":"once".*\}$"#, r"^$"),
    (M, &["service", "ls", "--format", "{{.Nope}}"], 1, r"^$", r#"template parsing error: template: :1:2: executing "" at <\.Nope>: map has no entry for key "Nope""#),
    (M, &["service", "ls", "--format", "{{.Name"], 1, r"^$", r"template parsing error: template: "),
    (M, &["service", "inspect", "--format", "{{.Spec.Name}}", "web"], 0, r"^web\n$", r"^$"),
    (M, &["service", "inspect", "--format", "{{.Endpoint.VirtualIPs}}", "web"], 0, r"^\[\]\n$", r"^$"),
    (M, &["service", "inspect", "--format", "{{.Spec.Nope}}", "web"], 1, r"^$", r#"at <\.Spec\.Nope>: map has no entry for key "Nope""#),
    (M, &["service", "inspect", "--format", r#"{{upper .Spec.Name}} {{join .Spec.TaskTemplate.ContainerSpec.Args ","}} {{.Spec.Labels}}"#, "web"], 0, r"^WEB --print,hi map\[tier:front\]\n$", r"^$"),
    (M, &["service", "inspect", "--format", r#"{{title "a b"}}|{{lower "AB"}}|{{split "a:b" ":"}}|{{pad "x" 1 1}}|{{truncate "abcdef" 3}}|{{println "p"}}"#, "web"], 0, r"^A B\|ab\|\[a b\]\| x \|abc\|p\n\n$", r"^$"),
    (M, &["service", "inspect", "--format", "{{json .Spec.Mode}}", "web"], 0, r#"^\{"Replicated":\{"Replicas":2\}\}\n$"#, r"^$"),
    (M, &["node", "ls", "--format", "{{.Hostname}} {{.Self}}"], 0, r"^manager-1 true\nworker-1 false\nworker-2 false\n$", r"^$"),
    (M, &["node", "inspect", "--format", "{{.Description.Hostname}} {{.Spec.Role}}", "self"], 0, r"^manager-1 manager\n$", r"^$"),
    (M, &["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"], 0, r"^active true\n$", r"^$"),
    (M, &["inspect", "--format", "{{.Spec.Name}}", "web"], 0, r"^web\n$", r"^$"),
    (M, &["inspect", "nothing-here"], 1, r"^\[\]\n$", r"^Error: No such object: nothing-here\n$"),
    // 3. --pretty.
    (M, &["service", "inspect", "--pretty", "web"], 0, r"^\nID:\t\t[a-z0-9]{25}\nName:\t\tweb\nLabels:\n tier=front\nService Mode:\tReplicated\n Replicas:\t2\n(.|\n)*ContainerSpec:\n Image:\t\t\S+shoal-echo\n Args:\t\t--print hi \n", r"^$"),
    (M, &["node", "inspect", "--pretty", "self"], 0, r"^ID:\t\t\t[a-z0-9]{25}\nHostname:\s+manager-1\nJoined at:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+0000 utc\nStatus:\n State:\t\t\tReady\n Availability:\s+Active\n Address:\t\t127\.0\.0\.2\nManager Status:\n Address:\t\t127\.0\.0\.2:\d+\n Raft Status:\t\tReachable\n Leader:\t\tYes\n", r"^$"),
    // 4. Filters.
    (M, &["node", "ls", "-f", "role=manager", "--format", "{{.Hostname}}"], 0, r"^manager-1\n$", r"^$"),
    (M, &["node", "ls", "-f", "role=worker", "--format", "{{.Hostname}}"], 0, r"^worker-1\nworker-2\n$", r"^$"),
    (M, &["node", "ls", "-f", "role=worker", "-f", "name=worker-1", "--format", "{{.Hostname}}"], 0, r"^worker-1\n$", r"^$"),
    (M, &["node", "ls", "-f", "name=manager", "-f", "name=worker-2", "--format", "{{.Hostname}}"], 0, r"^manager-1\nworker-2\n$", r"^$"),
    (M, &["node", "ls", "-f", "label=zone=a", "--format", "{{.Hostname}}"], 0, r"^worker-1\n$", r"^$"),
    (M, &["node", "ls", "-f", "node.label=zone", "--format", "{{.Hostname}}"], 0, r"^worker-1\n$", r"^$"),
    (M, &["node", "ls", "-f", "membership=accepted", "-q"], 0, r"^([a-z0-9]{25}\n){3}$", r"^$"),
    (M, &["node", "ls", "-f", "role=foo"], 1, r"^$", r"^Error: Invalid filter 'role=foo'\n$"),
    (M, &["node", "ls", "-f", "bogus=1"], 1, r"^$", r"^Error: Invalid filter 'bogus'\n$"),
    (M, &["node", "ls", "-f", "nonsense"], 1, r"^$", r"^Error: bad format of filter \(expected name=value\)\n$"),
    (M, &["service", "ls", "-f", "name=we", "--format", "{{.Name}}"], 0, r"^web\n$", r"^$"),
    (M, &["service", "ls", "-f", "name=web", "-f", "name=once", "--format", "{{.Name}}"], 0, r"^once\nweb\n$", r"^$"),
    (M, &["service", "ls", "-f", "label=tier=front", "--format", "{{.Name}}"], 0, r"^web\n$", r"^$"),
    (M, &["service", "ls", "-f", "label=tier", "-f", "name=once", "--format", "{{.Name}}"], 0, r"^$", r"^$"),
    (M, &["service", "ls", "-f", "mode=replicated", "-q"], 0, r"^([a-z0-9]{12}\n){2}$", r"^$"),
    (M, &["service", "ls", "-f", "mode=global", "-q"], 0, r"^$", r"^$"),
    (M, &["service", "ls", "-f", "mode=sometimes"], 1, r"^$", r"Invalid filter 'mode=sometimes'"),
    (M, &["service", "ps", "-f", "desired-state=running", "--format", "{{.Name}} {{.DesiredState}}", "web"], 0, r"^web\.1 Running\nweb\.2 Running\n$", r"^$"),
    (M, &["service", "ps", "-f", "desired-state=shutdown", "--format", "{{.Name}}", "web"], 0, r"^$", r"^$"),
    (M, &["service", "ps", "-f", "name=web.2", "--format", "{{.Name}}", "web"], 0, r"^web\.2\n$", r"^$"),
    (M, &["service", "ps", "-f", "node=no-such-node", "-q", "web"], 0, r"^$", r"^$"),
    (M, &["node", "ps", "-f", "desired-state=running", "--format", "{{.Name}} {{.DesiredState}}", "manager-1", "worker-1"], 0, r"^(web\.[12] Running\n){2}$", r"^$"),
    (M, &["node", "ps", "--format", "{{.Name}}", "worker-2"], 0, r"^$", r"^$"),
    (M, &["node", "ps", "-f", "name=once", "--format", "{{.Name}} {{.DesiredState}}", "manager-1", "worker-1"], 0, r"^once\.1 Shutdown\n$", r"^$"),
    (M, &["node", "ps", "worker-2", "nope"], 1, r"^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR +PORTS\n$", r"^Error: no such node: nope\n$"),
    // 5. Output conventions.
    (M, &["service", "ls", "-q"], 0, r"^[a-z0-9]{12}\n[a-z0-9]{12}\n$", r"^$"),
    (M, &["service", "ps", "-q", "web"], 0, r"^[a-z0-9]{25}\n[a-z0-9]{25}\n$", r"^$"),
    (M, &["node", "ls", "--format", "json"], 0, r#"(?m)^\{.*"Hostname":"manager-1".*"Self":true,"#, r"^$"),
    (M, &["node", "ls", "--format", "json"], 0, r#"(?m)^\{.*"Hostname":"worker-1".*"Self":false,"#, r"^$"),
    (M, &["service", "ps", "once"], 0, r#"once\.1 +no-such-program-here +\S+ +Shutdown +Rejected .* ago +"executable file not found: no…"\n$"#, r"^$"),
    (M, &["service", "ps", "--no-trunc", "once"], 0, r#"^ID +NAME(.|\n)*[a-z0-9]{25} +once\.1 .*"executable file not found: no-such-program-here: No such file or directory \(os error 2\)"\n$"#, r"^$"),
    (M, &["service", "ps", "--format", "{{.Name}}", "web", "nope"], 1, r"^web\.1\nweb\.2\n$", r"^Error: no such service: nope\n$"),
    (M, &["service", "inspect", "nope"], 1, r"^\[\]\n$", r"^Error: no such service: nope\n$"),
    (M, &["service", "inspect", "--format", "{{.Spec.Name}}", "nope", "web"], 1, r"^web\n$", r"^Error: no such service: nope\n$"),
    (M, &["node", "inspect", "--format", "{{.ID}}", "no-such-node"], 1, r"^$", r"^Error: no such node: no-such-node\n$"),
    (I, &["service", "create", "--name", "conv", "--driver", "process", "{echo}"], 0, r"^[a-z0-9]{25}\noverall progress: (.|\n)*verify: Waiting \d seconds to verify that tasks are stable\.\.\.\n(.|\n)*verify: Service conv converged\n$", r"^$"),
    (I, &["service", "create", "--name", "never", "--driver", "process", "--restart-condition", "none", "no-such-program-here"], 1, r"1/1: executable file not found", r"^Error: service never cannot converge: every task has finished and its restart policy \(condition none\) starts no new one\n$"),
    // 8. A task whose restart policy gave up.
    (M, &["service", "ps", "--format", "{{.DesiredState}} {{.CurrentState}}", "once"], 0, r"^Shutdown Rejected .* ago\n$", r"^$"),
    // 6. Exit codes and messages.
    (M, &["service", "create", "--replicas", "abc", "x"], 125, r"^$", r#"^invalid argument "abc" for "--replicas" flag: strconv\.ParseUint: parsing "abc": invalid syntax\nSee 'shoal service create --help'\.\n$"#),
    (M, &["service", "create", "--restart-delay", "soon", "x"], 125, r"^$", r#"^invalid argument "soon" for "--restart-delay" flag: "#),
    (M, &["service", "create", "--driver", "process", "./no/such/program"], 125, r"^$", r#"^invalid executable "\./no/such/program": no such file /\S+/no/such/program\nSee 'shoal service create --help'\.\n$"#),
    (M, &["service", "create", "--driver", "process", "--container-label", "a=b", "/bin/true"], 1, r"^$", r"the process driver cannot honour --container-label"),
    (M, &["service", "ls", "--bogus"], 125, r"^$", r"^unknown flag: --bogus\nSee 'shoal service ls --help'\.\n$"),
    (M, &["service", "ls", "-z"], 125, r"^$", r"^unknown shorthand flag: 'z' in -z\nSee 'shoal service ls --help'\.\n$"),
    (M, &["node", "ls", "--format"], 125, r"^$", r"^flag needs an argument: --format\nSee 'shoal node ls --help'\.\n$"),
    (M, &["service", "ps"], 1, r"^$", r#"^"shoal service ps" requires at least 1 argument\.\nSee 'shoal service ps --help'\.\n\nUsage:  shoal service ps \[OPTIONS\] <SERVICES>\.\.\.\n"#),
    (M, &["service", "create", "--label", "=x", "x"], 125, r"^$", r#"^invalid label "=x": expected KEY=VALUE\nSee 'shoal service create --help'\.\n$"#),
    (M, &[], 0, r"Usage: shoal \[OPTIONS\] \[COMMAND\]", r"^$"),
    (M, &["service"], 0, r"Usage: shoal service <COMMAND>", r"^$"),
    (M, &["swarm", "join-token", "foo"], 1, r"^$", r"^Error: unknown role foo\n$"),
    (M, &["node", "update", "--availability", "bogus", "worker-1"], 1, r"^$", r#"^Error: invalid Availability: "bogus"\n$"#),
    (M, &["node", "update", "--label-rm", "nothere", "worker-1"], 1, r"^$", r"^Error: key nothere doesn't exist in node's labels\n$"),
    (W, &["service", "ls"], 1, r"^$", r"^Error response from daemon: This node is not a swarm manager\. Worker nodes can't be used to view or modify cluster state\. Please run this command on a manager node or promote the current node to a manager\.\n$"),
    (W, &["node", "ls"], 1, r"^$", r"Worker nodes can't be used to view or modify cluster state"),
    (F, &["service", "ls"], 1, r"^$", r#"^Error response from daemon: This node is not a swarm manager\. Use "shoal swarm init" or "shoal swarm join" to connect this node to swarm and try again\.\n$"#),
    // 9. Completion, version, logs flags.
    (M, &["completion", "bash"], 0, r"_shoal\(\)", r"^$"),
    (M, &["completion", "zsh"], 0, r"^#compdef shoal", r"^$"),
    (M, &["completion", "fish"], 0, r"complete -c shoal", r"^$"),
    (M, &["completion", "tcsh"], 125, r"^$", r#"^invalid argument "tcsh" for "<SHELL>" flag: expected one of bash, elvish, fish, powershell, zsh\n"#),
    (M, &["-v"], 0, r"^shoal version \d+\.\d+\.\d+\n$", r"^$"),
    (M, &["--version"], 0, r"^shoal version \d+\.\d+\.\d+\n$", r"^$"),
    (M, &["service", "logs", "--tail", "1", "web"], 0, r"^(web\.[12]\.[a-z0-9]{12}@(manager|worker)-1    \| hi\n){2}$", r"^$"),
    (M, &["service", "logs", "--tail", "1", "--no-task-ids", "web"], 0, r"^(web\.[12]@(manager|worker)-1    \| hi\n){2}$", r"^$"),
    (M, &["service", "logs", "--tail", "1", "--no-trunc", "web"], 0, r"^(web\.[12]\.[a-z0-9]{25}@(manager|worker)-1    \| hi\n){2}$", r"^$"),
    (M, &["service", "logs", "--tail", "1", "--raw", "web"], 0, r"^hi\nhi\n$", r"^$"),
    (M, &["service", "logs", "--tail", "1", "--raw", "-t", "web"], 0, r"^(\d{4}-\d\d-\d\dT\S+Z hi\n){2}$", r"^$"),
    (M, &["service", "logs", "--since", "2999-01-01T00:00:00Z", "web"], 0, r"^$", r"^$"),
    (M, &["service", "logs", "--since", "1h", "--raw", "--tail", "1", "web"], 0, r"^hi\nhi\n$", r"^$"),
    (M, &["service", "logs", "--since", "soon", "web"], 1, r"^$", r#"^Error: invalid value for "since": "soon""#),
];

/// The shared swarm the M and W rows run against.
struct Swarm {
    nodes: Vec<Daemon>,
}

fn swarm() -> Swarm {
    let mut nodes = cluster(1, 1, &[]);
    // A worker that joins with its own addresses, drained.
    let drained = Daemon::start_on("127.0.0.4", "worker-2", &[]);
    let token = nodes[0]
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let out = drained.ok(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--listen-addr",
        &drained.listen,
        "--advertise-addr",
        &drained.listen,
        "--availability",
        "drain",
        &nodes[0].listen,
    ]);
    assert!(out.contains("joined a swarm as a worker"), "{out}");
    nodes.push(drained);
    let manager = &nodes[0];
    wait_for("three ready nodes", LONG, || {
        let rows = manager.rows(&["node", "ls"]);
        rows.len() == 3 && rows.iter().all(|r| r["Status"] == "Ready")
    });
    manager.ok(&["node", "update", "--label-add", "zone=a", "worker-1"]);
    manager.create_echo("web", "2", &["--label", "tier=front"], &["--print", "hi"]);
    manager.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "once",
        "--driver",
        "process",
        "--restart-condition",
        "none",
        "no-such-program-here",
    ]);
    wait_for("web running and logging", LONG, || {
        running(manager, "web") == 2
            && manager
                .ok(&["service", "logs", "--raw", "web"])
                .lines()
                .filter(|l| *l == "hi")
                .count()
                == 2
    });
    wait_for("once given up", LONG, || {
        manager
            .rows(&["service", "ps", "once"])
            .first()
            .is_some_and(|r| r["DesiredState"] == "Shutdown")
    });
    Swarm { nodes }
}

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

#[test]
fn docker_cli_conformance_table() {
    let swarm = swarm();
    let echo = echo_bin();
    let mut failures = Vec::new();
    for (i, (on, args, code, want_out, want_err)) in CASES.iter().enumerate() {
        let port = free_port().to_string();
        let fill = |s: &str| {
            s.replace("{echo}", echo.to_str().unwrap_or_default())
                .replace("{port}", &port)
        };
        let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fresh;
        let daemon = match on {
            M => &swarm.nodes[0],
            W => &swarm.nodes[1],
            F | I => {
                fresh = Daemon::start(&[]);
                if *on == I {
                    fresh.ok(&["swarm", "init"]);
                }
                &fresh
            }
        };
        let output = daemon.shoal(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let status = output.status.code().unwrap_or(-1);
        let matches = |pattern: &str, text: &str| {
            pattern.is_empty()
                || Regex::new(&fill(pattern))
                    .expect("a valid pattern")
                    .is_match(text)
        };
        if status != *code || !matches(want_out, &stdout) || !matches(want_err, &stderr) {
            failures.push(format!(
                "case {i} ({on:?}) shoal {args:?}\n  want status {code}, stdout /{want_out}/, stderr /{want_err}/\n  got  status {status}\n  stdout: {stdout:?}\n  stderr: {stderr:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from docker:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Item 7: the process driver runs a task in its working directory, as its
/// user with only that user's groups, and keeps stdout and stderr apart.
#[test]
fn process_tasks_get_their_workdir_user_groups_and_two_streams() {
    let mut d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    // A sleep this test alone runs, to find its process by.
    let sleep = format!("1000.{}", std::process::id());
    let script = format!("pwd; id -u; id -G; echo to-stderr >&2; echo done; exec sleep {sleep}");
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "who",
        "--driver",
        "process",
        "-w",
        "/tmp",
        "-u",
        "4242:4343",
        "/bin/sh",
        "-c",
        &script,
    ]);
    wait_for("the task's output", LONG, || {
        d.ok(&["service", "logs", "--raw", "who"]).contains("done")
    });
    let out = d.shoal(&["service", "logs", "--raw", "who"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/tmp\n4242\n4343\ndone\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    assert_eq!(pids_with(&sleep).len(), 1);
    // A user that does not exist is the task's error, in docker's words.
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "ghost",
        "--driver",
        "process",
        "--restart-condition",
        "none",
        "-u",
        "no-such-user-here",
        "/bin/true",
    ]);
    wait_for("ghost rejected", LONG, || {
        d.rows(&["service", "ps", "--no-trunc", "ghost"])
            .first()
            .and_then(|r| r["Error"].as_str().map(str::to_string))
            .is_some_and(|e| {
                e.contains(
                    "unable to find user no-such-user-here: no matching entries in passwd file",
                )
            })
    });
    // A task running as another user still dies with its daemon.
    d.kill9();
    wait_for("the task to die with the daemon", LONG, || {
        pids_with(&sleep).is_empty()
    });
}

/// Item 7: a relative executable names a file under the directory the CLI
/// runs in, made absolute when the service is created.
#[test]
fn a_relative_executable_is_resolved_against_the_clis_directory() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let echo = echo_bin();
    let dir = echo.parent().expect("a directory");
    let out = std::process::Command::new(common::shoal_bin())
        .args([
            "service",
            "create",
            "--name",
            "rel",
            "--driver",
            "process",
            "./shoal-echo",
            "--print",
            "hi",
        ])
        .current_dir(dir)
        .env("SHOAL_HOST", &d.host)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shoal");
    assert!(out.status.success(), "{out:?}");
    let image = d.ok(&[
        "service",
        "inspect",
        "--format",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        "rel",
    ]);
    assert_eq!(image.trim(), echo.to_str().expect("path"));
    assert_eq!(running(&d, "rel"), 1);
}

/// Item 1: the addresses `swarm init` chose survive a restart of the daemon.
#[test]
fn init_addresses_survive_a_restart() {
    let mut d = Daemon::start(&[]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = d.ok(&[
        "swarm",
        "init",
        "--listen-addr",
        &addr,
        "--advertise-addr",
        &addr,
    ]);
    assert!(out.contains(&format!(" {addr}\n")), "{out}");
    d.kill9_and_restart();
    wait_for("the node ready again", Duration::from_secs(30), || {
        d.shoal(&["node", "ls"]).status.success()
    });
    let info = d.ok(&["info", "--format", "{{.Swarm.NodeAddr}}"]);
    assert_eq!(info.trim(), addr);
}

/// Item 1: a node listening on 0.0.0.0 that joins with nothing to advertise
/// advertises the address it reaches the manager from, never 0.0.0.0.
#[test]
fn a_join_on_an_unspecified_address_advertises_its_route_to_the_manager() {
    let manager = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    manager.ok(&["swarm", "init"]);
    let token = manager
        .ok(&["swarm", "join-token", "-q", "worker"])
        .trim()
        .to_string();
    let worker = Daemon::start_on("0.0.0.0", "worker-1", &[]);
    let port = worker
        .listen
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    worker.ok(&["swarm", "join", "--token", &token, &manager.listen]);
    let addr = manager.ok(&[
        "node",
        "inspect",
        "--format",
        "{{.Status.Addr}}",
        "worker-1",
    ]);
    let addr = addr.trim();
    assert!(
        addr.starts_with("127.") && addr.ends_with(&format!(":{port}")),
        "{addr}"
    );
    wait_for("the worker ready", LONG, || {
        manager
            .rows(&["node", "ls"])
            .iter()
            .any(|r| r["Hostname"] == "worker-1" && r["Status"] == "Ready")
    });
}
