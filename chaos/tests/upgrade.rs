//! End to end, a short rolling upgrade (docs/upgrades.md): three managers
//! and two workers start as the previous build (`[cluster] max_format = 1`,
//! the daemon's `--max-format`), then each is restarted on its data dir as
//! the next, managers first, under a write load and with a service rolled
//! while both builds run. The run must pass: no acknowledged write lost,
//! replicas back, and the cluster version at 1 until the last node is
//! upgraded and 2 after (`format-rises-last`). The longer scenario is
//! `chaos/scenarios/rolling-upgrade.toml` (docs/chaos.md).

mod common;

use shoal_chaos::history::Outcome;

const SCENARIO: &str = r#"
name = "short-upgrade"
description = "every node upgraded in turn, briefly"
settle = "45s"

[cluster]
managers = 3
workers = 2
max_format = 1

[[service]]
name = "web"
replicas = 3

[[hypothesis]]
probe = "one-leader"

[[hypothesis]]
probe = "running"
service = "web"

[load]
rate = 5
services = 1

[[method]]
at = "1s"
action = "upgrade"
target = "manager-2"

[[method]]
at = "3s"
action = "roll"
service = "web"

[[method]]
at = "4s"
action = "upgrade"
target = "manager-3"

[[method]]
at = "7s"
action = "upgrade"
target = "manager-1"

[[method]]
at = "10s"
action = "upgrade"
target = "worker-1"

[[method]]
at = "12s"
action = "upgrade"
target = "worker-2"
"#;

#[test]
fn a_rolling_upgrade_loses_no_write_and_raises_the_cluster_version_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::run_scenario(dir.path(), "short-upgrade", SCENARIO, "5");
    assert!(run.out.status.success(), "{}", run.show);
    let j = run.journal.as_ref().expect("journal");
    let upgraded = j
        .faults
        .iter()
        .filter(|f| f.action == "upgrade" && f.ok)
        .count();
    assert_eq!(upgraded, 5, "{:?}", j.faults);
    let formats: Vec<u64> = j.observations.iter().filter_map(|o| o.format).collect();
    assert_eq!(formats.first(), Some(&1), "the swarm started at format 1");
    assert_eq!(formats.last(), Some(&2), "and ended at 2");
    assert!(
        j.ops.iter().any(|o| o.outcome == Outcome::Ok),
        "writes were acknowledged"
    );
    for checker in [
        "format-rises-last",
        "acknowledged-writes",
        "replicas-recover",
    ] {
        assert!(
            common::passed(&run, checker),
            "{checker} judged: {}",
            run.show
        );
    }
}
