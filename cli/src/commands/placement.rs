//! The placement flags of `service create` (`--mode`, `--constraint`,
//! `--placement-pref`, `--replicas-max-per-node`) and of `service update`
//! (their `-add`/`-rm` forms), applied to a typed spec.

use std::collections::HashMap;

use clap::Args;
use shoal_node::api::wire::{
    self, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
};

#[derive(Args)]
pub struct CreateFlags {
    /// Service mode ("replicated", "global", "replicated-job", "global-job")
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global", "replicated-job", "global-job"])]
    pub mode: String,
    /// Number of job tasks to run concurrently (default equal to --replicas)
    #[arg(long)]
    max_concurrent: Option<u64>,
    /// Placement constraints
    #[arg(long = "constraint")]
    constraint: Vec<String>,
    /// Add a placement preference
    #[arg(long = "placement-pref")]
    placement_pref: Vec<String>,
    /// Maximum number of tasks per node (default 0 = unlimited)
    #[arg(long, default_value_t = 0)]
    replicas_max_per_node: u64,
}

#[derive(Args)]
pub struct UpdateFlags {
    /// Add or update a placement constraint
    #[arg(long)]
    constraint_add: Vec<String>,
    /// Remove a constraint
    #[arg(long)]
    constraint_rm: Vec<String>,
    /// Add a placement preference
    #[arg(long)]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference
    #[arg(long)]
    placement_pref_rm: Vec<String>,
    /// Maximum number of tasks per node (0 = unlimited)
    #[arg(long)]
    replicas_max_per_node: Option<u64>,
}

/// `spread=node.labels.zone` → the Engine API's preference object.
fn preference(pref: &str) -> TaskSpecPlacementPreferences {
    let descriptor = pref.split_once('=').map_or(pref, |(_, d)| d);
    TaskSpecPlacementPreferences {
        spread: Some(TaskSpecPlacementSpread {
            spread_descriptor: Some(descriptor.to_string()),
        }),
    }
}

fn descriptor(p: &TaskSpecPlacementPreferences) -> &str {
    p.spread
        .as_ref()
        .and_then(|s| s.spread_descriptor.as_deref())
        .unwrap_or_default()
}

/// `Mode` of a replicated service with `n` replicas.
pub fn replicated(n: u64) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(wire::int(n)),
        }),
        ..Default::default()
    }
}

impl CreateFlags {
    /// `Mode`, with `replicas` for the replicated modes.
    pub fn mode(&self, replicas: u64) -> anyhow::Result<ServiceSpecMode> {
        if self.max_concurrent.is_some() && self.mode != "replicated-job" {
            return Err(anyhow::anyhow!(
                "max-concurrent can only be used with replicated-job mode"
            ));
        }
        Ok(match self.mode.as_str() {
            "global" => ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
            "global-job" => ServiceSpecMode {
                global_job: Some(HashMap::new()),
                ..Default::default()
            },
            "replicated-job" => ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(wire::int(self.max_concurrent.unwrap_or(replicas))),
                    total_completions: Some(wire::int(replicas)),
                }),
                ..Default::default()
            },
            _ => replicated(replicas),
        })
    }

    /// `TaskTemplate.Placement` (the daemon checks the expressions).
    pub fn placement(&self) -> TaskSpecPlacement {
        TaskSpecPlacement {
            constraints: Some(self.constraint.clone()),
            preferences: Some(self.placement_pref.iter().map(|p| preference(p)).collect()),
            max_replicas: Some(wire::int(self.replicas_max_per_node)),
            platforms: None,
        }
    }
}

impl UpdateFlags {
    pub fn apply(&self, task_template: &mut wire::TaskSpec) {
        let placement = task_template
            .docker
            .placement
            .get_or_insert_with(Default::default);
        let mut constraints = placement.constraints.take().unwrap_or_default();
        // docker: removals first, then additions not already there.
        constraints.retain(|c| !self.constraint_rm.contains(c));
        for c in &self.constraint_add {
            if !constraints.contains(c) {
                constraints.push(c.clone());
            }
        }
        let mut prefs = placement.preferences.take().unwrap_or_default();
        let rm: Vec<TaskSpecPlacementPreferences> = self
            .placement_pref_rm
            .iter()
            .map(|p| preference(p))
            .collect();
        prefs.retain(|p| !rm.iter().any(|r| descriptor(r) == descriptor(p)));
        prefs.extend(self.placement_pref_add.iter().map(|p| preference(p)));
        placement.constraints = Some(constraints);
        placement.preferences = Some(prefs);
        if let Some(n) = self.replicas_max_per_node {
            placement.max_replicas = Some(wire::int(n));
        }
    }
}
