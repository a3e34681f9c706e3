//! shoal-chaos: seeded fault scenarios against a real shoal cluster, a
//! recorded history of what happened, and checkers that judge it.
//!
//! Injection ([`runner`], [`cluster`]) writes a [`history::Journal`];
//! judging ([`checkers`], [`report`], [`svg`]) only reads one.

pub mod api;
pub mod checkers;
pub mod cluster;
pub mod dns_wire;
pub mod flood;
pub mod fuzzing;
pub mod history;
pub mod linearizable;
pub mod netns;
pub mod observe;
pub mod overlay;
pub mod probe;
pub mod register;
pub mod report;
pub mod requests;
pub mod runner;
pub mod scenario;
pub mod svg;
pub mod teardown;
pub mod traffic;
pub mod workload;

/// Scenarios that ship with the harness: (name, TOML). Every file under
/// chaos/scenarios is one (`tests/scenarios.rs` fails if they differ).
pub const SHIPPED: &[(&str, &str)] = &[
    ("smoke", include_str!("../scenarios/smoke.toml")),
    (
        "leader-kill-loop",
        include_str!("../scenarios/leader-kill-loop.toml"),
    ),
    ("worker-loss", include_str!("../scenarios/worker-loss.toml")),
    (
        "worker-loss-rebalance",
        include_str!("../scenarios/worker-loss-rebalance.toml"),
    ),
    ("actor-kills", include_str!("../scenarios/actor-kills.toml")),
    ("partitions", include_str!("../scenarios/partitions.toml")),
    (
        "rolling-restart",
        include_str!("../scenarios/rolling-restart.toml"),
    ),
    (
        "rolling-upgrade",
        include_str!("../scenarios/rolling-upgrade.toml"),
    ),
    (
        "many-tasks-leader-kill",
        include_str!("../scenarios/many-tasks-leader-kill.toml"),
    ),
    (
        "update-leader-kill",
        include_str!("../scenarios/update-leader-kill.toml"),
    ),
    (
        "snapshot-catch-up",
        include_str!("../scenarios/snapshot-catch-up.toml"),
    ),
    (
        "mesh-rolling-update",
        include_str!("../scenarios/mesh-rolling-update.toml"),
    ),
    (
        "hostile-workload",
        include_str!("../scenarios/hostile-workload.toml"),
    ),
    ("full-disk", include_str!("../scenarios/full-disk.toml")),
    ("slow-disk", include_str!("../scenarios/slow-disk.toml")),
    (
        "register-leader-faults",
        include_str!("../scenarios/register-leader-faults.toml"),
    ),
    ("clock-skew", include_str!("../scenarios/clock-skew.toml")),
    (
        "overlay-rolling-update",
        include_str!("../scenarios/overlay-rolling-update.toml"),
    ),
];

/// A shipped scenario's text, by name.
pub fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
