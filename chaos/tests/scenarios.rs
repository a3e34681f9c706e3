//! The scenario parser: every shipped and good file parses; every bad file
//! fails with the line, column and message its `# expect:` line gives.

use std::path::Path;

use shoal_chaos::scenario::{self, Action, Probe, Target};

fn files(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let p = e.path();
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn shipped_scenarios_parse() {
    for (name, text) in shoal_chaos::SHIPPED {
        let sc = scenario::parse(text).unwrap_or_else(|e| panic!("shipped {name}: {e}"));
        assert_eq!(sc.name, *name, "a shipped scenario's name is its list name");
        assert!(!sc.description.is_empty(), "{name} needs a description");
        assert!(!sc.hypothesis.is_empty(), "{name} needs a hypothesis");
        assert!(!sc.method.is_empty(), "{name} needs a method");
    }
}

#[test]
fn every_scenario_file_is_shipped_and_every_shipped_one_is_a_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut shipped: Vec<String> = shoal_chaos::SHIPPED
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    shipped.sort();
    assert_eq!(
        on_disk, shipped,
        "chaos/scenarios and shoal_chaos::SHIPPED (what `shoal-chaos list` shows) differ"
    );
    for (name, text) in shoal_chaos::SHIPPED {
        let file = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("read");
        assert_eq!(file, *text, "{name}: the shipped text is the file's");
    }
}

#[test]
fn good_files_parse() {
    let good = files("tests/data/good");
    assert!(!good.is_empty());
    for (path, text) in good {
        scenario::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn bad_files_fail_where_they_say() {
    let bad = files("tests/data/bad");
    assert!(bad.len() >= 10);
    for (path, text) in bad {
        let err = match scenario::parse(&text) {
            Ok(_) => panic!("{path} parsed, but it should not"),
            Err(e) => e.to_string(),
        };
        let want = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{path} has no '# expect: ' line; it fails with: {err}"));
        assert!(
            err.starts_with(want),
            "{path}:\n  want: {want}\n  got:  {err}"
        );
    }
}

#[test]
fn everything_reads_as_written() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/good/everything.toml");
    let sc = scenario::parse(&std::fs::read_to_string(path).expect("read")).expect("parses");
    assert_eq!(sc.cluster.managers, 3);
    assert_eq!(sc.cluster.workers, 2);
    assert_eq!(sc.settle, std::time::Duration::from_secs(30));
    assert_eq!(
        sc.hypothesis[0].probe,
        Probe::Running {
            service: "web".into(),
            tolerance: 1
        }
    );
    assert!(sc.hypothesis[0].during);
    assert_eq!(
        sc.hypothesis[2].probe,
        Probe::Write {
            within: std::time::Duration::from_millis(1500)
        }
    );
    let load = sc.load.as_ref().expect("load");
    assert_eq!((load.rate, load.services), (2.5, 4));
    // The method runs in time order, whatever order the file lists it in.
    assert!(sc.method.windows(2).all(|w| w[0].at <= w[1].at));
    let kill = sc.method.last().expect("steps");
    assert_eq!(kill.action, Action::Kill(Target::Leader));
    assert_eq!((kill.repeat, kill.every.as_secs()), (3, 10));
    assert_eq!(kill.duration, Some(std::time::Duration::from_secs(5)));
    let start = sc
        .method
        .iter()
        .find(|s| s.action.verb() == "start")
        .expect("start");
    assert_eq!(start.action, Action::Start(Target::Bound("victim".into())));
    let partition = sc
        .method
        .iter()
        .find(|s| s.action.verb() == "partition")
        .expect("partition");
    assert_eq!(
        partition.action,
        Action::Partition(vec![
            vec![Target::Leader, Target::Node("worker-1".into())],
            vec![Target::Rest]
        ])
    );
    assert_eq!(
        partition.line, 77,
        "a step knows the line of its [[method]] header"
    );
    assert_eq!(sc.rollbacks.len(), 2);
}

#[test]
fn traffic_register_and_disk_read_as_written() {
    use shoal_chaos::scenario::{Proto, Register};
    use std::time::Duration;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/good/traffic-register-disk.toml");
    let sc = scenario::parse(&std::fs::read_to_string(path).expect("read")).expect("parses");
    assert_eq!(sc.cluster.disk, Some(32 << 20));
    let t = sc.traffic.as_ref().expect("traffic");
    assert_eq!((t.service.as_str(), t.rate), ("web", 50.0));
    assert_eq!(t.protocols, vec![Proto::Udp]);
    assert_eq!(t.timeout, Duration::from_secs(2));
    assert_eq!(t.max_failed, 3);
    assert_eq!(t.p99_during, None);
    assert_eq!(t.p99_after, Some(Duration::from_millis(40)));
    assert_eq!(
        sc.register,
        Some(Register {
            rate: 5.0,
            clients: 2
        })
    );
    assert_eq!(sc.method[0].action, Action::Fill(Target::RandomManager));
    assert_eq!(
        sc.method[1].action,
        Action::SlowDisk {
            target: Target::Bound("full".into()),
            ms: 150
        }
    );
}

#[test]
fn netns_networks_and_overlay_traffic_read_as_written() {
    use shoal_chaos::scenario::{NetworkSetup, Via};
    let text = shoal_chaos::shipped("overlay-rolling-update").expect("shipped");
    let sc = scenario::parse(text).expect("parses");
    assert!(sc.cluster.netns);
    assert_eq!(
        sc.networks,
        vec![NetworkSetup {
            name: "appnet".into(),
            subnet: Some("10.0.9.0/24".into()),
            encrypted: true,
        }]
    );
    assert_eq!(sc.services[0].networks, vec!["appnet".to_string()]);
    assert_eq!(sc.services[0].publish, None);
    let t = sc.traffic.as_ref().expect("traffic");
    assert_eq!(
        t.via,
        Via::Overlay {
            network: "appnet".into()
        }
    );
    assert_eq!(t.max_failed, 0);
    // Without netns and networks, the defaults: one namespace, no overlay.
    let smoke = scenario::parse(shoal_chaos::shipped("smoke").expect("smoke")).expect("parses");
    assert!(!smoke.cluster.netns && smoke.networks.is_empty());
}
