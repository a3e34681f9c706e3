//! Overlay networks as cluster objects, end to end against a real daemon:
//! `network create|ls|inspect|rm|prune` in docker's words, the addresses and
//! VIPs a service's tasks get, `--network-add/-rm`, `--endpoint-mode` and
//! the default address pool. (Traffic across nodes: cli/tests/overlay.rs.)

mod common;

use common::{wait_for, Daemon, LONG};
use serde_json::Value;

fn init(d: &Daemon, extra: &[&str]) {
    let mut args = vec!["swarm", "init"];
    args.extend_from_slice(extra);
    d.ok(&args);
}

fn inspect(d: &Daemon, what: &str, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&[what, "inspect", name])).expect("json");
    v[0].clone()
}

/// The addresses the service's tasks meant to run hold.
fn task_addrs(d: &Daemon, service: &str) -> Vec<String> {
    d.tasks(service)
        .iter()
        .filter(|t| t["DesiredState"] == "running" || t["Status"]["State"] == "running")
        .flat_map(|t| {
            t["NetworksAttachments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|a| a["Addresses"].as_array().cloned().unwrap_or_default())
        })
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[test]
fn networks_are_created_listed_inspected_and_removed_as_docker_does() {
    let d = Daemon::start(&[]);
    init(
        &d,
        &[
            "--default-addr-pool",
            "10.210.0.0/16",
            "--default-addr-pool-mask-length",
            "26",
        ],
    );
    let ls = d.ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID"), "{ls}");
    assert!(
        ls.contains("ingress") && ls.contains("overlay") && ls.contains("swarm"),
        "{ls}"
    );
    let ingress = inspect(&d, "network", "ingress");
    assert_eq!(ingress["Ingress"], true);
    assert_eq!(
        ingress["IPAM"]["Config"][0]["Subnet"], "10.210.0.0/26",
        "{ingress}"
    );

    let id = d.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.0.9.0/24",
        "--attachable",
        "-l",
        "team=a",
        "myoverlay",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 25, "{id}");
    let n = inspect(&d, "network", "myoverlay");
    assert_eq!(n["Id"], id);
    assert_eq!(n["Driver"], "overlay");
    assert_eq!(n["Scope"], "swarm");
    assert_eq!(n["Attachable"], true);
    assert_eq!(n["Labels"]["team"], "a");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.0.9.1");
    // Without --subnet: the next /26 of the pool.
    d.ok(&["network", "create", "auto"]);
    let auto = inspect(&d, "network", "auto");
    assert_eq!(
        auto["IPAM"]["Config"][0]["Subnet"], "10.210.0.64/26",
        "{auto}"
    );
    assert_eq!(
        d.ok(&["network", "ls", "-q", "-f", "name=myover"]).trim(),
        &id[..12]
    );
    let names = d.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "-f",
        "driver=overlay",
    ]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["auto", "ingress", "myoverlay"]
    );

    // Bad input: docker's words, nothing changed.
    let before = d.ok(&["network", "ls", "-q"]);
    let e = d.fails(&["network", "create", "--subnet", "10.0.9.128/25", "clash"]);
    assert!(
        e.contains("Pool overlaps with other one on this address space"),
        "{e}"
    );
    let e = d.fails(&["network", "create", "--subnet", "10.0.9.0/33", "bad"]);
    assert!(e.contains("invalid CIDR address: 10.0.9.0/33"), "{e}");
    let e = d.fails(&["network", "create", "--subnet", "10.0.10.5/24", "bad"]);
    assert!(e.contains("it should be 10.0.10.0/24"), "{e}");
    let e = d.fails(&[
        "network",
        "create",
        "--subnet",
        "10.0.11.0/24",
        "--gateway",
        "10.0.12.1",
        "bad",
    ]);
    assert!(e.contains("invalid gateway 10.0.12.1"), "{e}");
    let e = d.fails(&["network", "create", "myoverlay"]);
    assert!(
        e.contains("network with name myoverlay already exists"),
        "{e}"
    );
    let e = d.fails(&["network", "create", "-d", "macvlan", "other"]);
    assert!(e.contains("not supported"), "{e}");
    let e = d.fails(&["network", "create", "bad name"]);
    assert!(e.contains("invalid name"), "{e}");
    assert_eq!(d.ok(&["network", "ls", "-q"]), before);

    let e = d.fails(&["network", "rm", "ingress"]);
    assert!(
        e.contains("pre-defined network and cannot be removed"),
        "{e}"
    );
    let e = d.fails(&["network", "inspect", "nosuch"]);
    assert!(e.contains("no such network: nosuch"), "{e}");
    let e = d.fails(&["network", "rm", "nosuch"]);
    assert!(e.contains("network nosuch not found"), "{e}");

    // In use: refused while a service names it.
    d.create_echo("web", "1", &["--network", "myoverlay"], &[]);
    let e = d.fails(&["network", "rm", "myoverlay"]);
    assert!(
        e.contains(&format!("network {id} is in use by service")),
        "{e}"
    );
    // prune takes only what no one uses.
    let pruned = d.ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains("auto") && !pruned.contains("myoverlay"),
        "{pruned}"
    );
    d.ok(&["service", "rm", "web"]);
    wait_for("myoverlay removable", LONG, || {
        d.shoal(&["network", "rm", "myoverlay"]).status.success()
    });
    assert!(!d.ok(&["network", "ls"]).contains("myoverlay"));
}

#[test]
fn a_service_gets_a_vip_its_tasks_addresses_and_keeps_the_vip_across_scale_and_update() {
    let d = Daemon::start(&[]);
    init(&d, &[]);
    d.ok(&["network", "create", "--subnet", "10.0.9.0/24", "front"]);
    d.ok(&["network", "create", "--subnet", "10.0.19.0/24", "back"]);
    d.create_echo(
        "server",
        "2",
        &["--network", "name=front,alias=api,alias=www"],
        &[],
    );
    let svc = inspect(&d, "service", "server");
    let vips = svc["Endpoint"]["VirtualIPs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(vips.len(), 1, "{svc}");
    let vip = vips[0]["Addr"].as_str().unwrap_or("").to_string();
    assert!(vip.starts_with("10.0.9.") && vip.ends_with("/24"), "{vip}");
    let front = inspect(&d, "network", "front");
    assert_eq!(vips[0]["NetworkID"], front["Id"]);
    assert_eq!(
        svc["Spec"]["TaskTemplate"]["Networks"][0]["Aliases"],
        serde_json::json!(["api", "www"])
    );
    let templ = d.ok(&[
        "service",
        "inspect",
        "--format",
        "{{json .Endpoint.VirtualIPs}}",
        "server",
    ]);
    assert!(templ.contains(&vip), "{templ}");
    wait_for("2 addresses", LONG, || task_addrs(&d, "server").len() == 2);
    let addrs = task_addrs(&d, "server");
    assert!(
        addrs.iter().all(|a| a.starts_with("10.0.9.") && *a != vip),
        "{addrs:?}"
    );

    d.ok(&["service", "scale", "-d", "server=4"]);
    wait_for("4 addresses", LONG, || task_addrs(&d, "server").len() == 4);
    let mut addrs = task_addrs(&d, "server");
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    // A second network: a second VIP, the first unchanged.
    d.ok(&["service", "update", "-d", "--network-add", "back", "server"]);
    let svc = inspect(&d, "service", "server");
    let vips: Vec<String> = svc["Endpoint"]["VirtualIPs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["Addr"].as_str().map(str::to_string))
        .collect();
    assert_eq!(vips.len(), 2, "{svc}");
    assert!(
        vips.contains(&vip) && vips.iter().any(|v| v.starts_with("10.0.19.")),
        "{vips:?}"
    );
    let e = d.fails(&["service", "update", "-d", "--network-add", "back", "server"]);
    assert!(e.contains("already attached to network back"), "{e}");
    d.ok(&["service", "update", "-d", "--network-rm", "back", "server"]);
    let svc = inspect(&d, "service", "server");
    assert_eq!(
        svc["Endpoint"]["VirtualIPs"].as_array().map(Vec::len),
        Some(1),
        "{svc}"
    );
    assert_eq!(svc["Endpoint"]["VirtualIPs"][0]["Addr"], vip.as_str());
    // dnsrr: no VIP at all.
    d.ok(&[
        "service",
        "update",
        "-d",
        "--endpoint-mode",
        "dnsrr",
        "server",
    ]);
    let svc = inspect(&d, "service", "server");
    assert_eq!(
        svc["Endpoint"]["VirtualIPs"],
        serde_json::json!([]),
        "{svc}"
    );
    assert_eq!(svc["Spec"]["EndpointSpec"]["Mode"], "dnsrr");

    // Bad references are refused before anything changes.
    let refused: [(&[&str], &str); 4] = [
        (&["--network", "nosuch"], "network nosuch not found"),
        (
            &["--network", "ingress"],
            "cannot be explicitly attached to the ingress network",
        ),
        (&["--network", "alias=a"], "network name is required"),
        (
            &["--endpoint-mode", "dnsrr", "-p", "8080:80"],
            "can't be used with dnsrr mode",
        ),
    ];
    for (flags, message) in refused {
        let mut args = vec!["service", "create", "--name", "x"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--driver", "process", "/bin/true"]);
        let e = d.fails(&args);
        assert!(e.contains(message), "{flags:?}: {e}");
    }
    assert!(d.ok(&["service", "ls", "-q"]).lines().count() == 1);
}
