//! The placement flags of `service create` (`--mode`, `--constraint`,
//! `--placement-pref`, `--replicas-max-per-node`) and of `service update`
//! (their `-add`/`-rm` forms), applied to a spec's JSON.

use clap::Args;
use serde_json::{json, Value};

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
fn preference(pref: &str) -> Value {
    let descriptor = pref.split_once('=').map_or(pref, |(_, d)| d);
    json!({ "Spread": { "SpreadDescriptor": descriptor } })
}

fn descriptor(p: &Value) -> String {
    p.pointer("/Spread/SpreadDescriptor")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl CreateFlags {
    /// `Mode`, with `replicas` for the replicated modes.
    pub fn mode(&self, replicas: u64) -> anyhow::Result<Value> {
        if self.max_concurrent.is_some() && self.mode != "replicated-job" {
            return Err(anyhow::anyhow!(
                "max-concurrent can only be used with replicated-job mode"
            ));
        }
        Ok(match self.mode.as_str() {
            "global" => json!({ "Global": {} }),
            "global-job" => json!({ "GlobalJob": {} }),
            "replicated-job" => json!({ "ReplicatedJob": {
                "MaxConcurrent": self.max_concurrent.unwrap_or(replicas),
                "TotalCompletions": replicas,
            } }),
            _ => json!({ "Replicated": { "Replicas": replicas } }),
        })
    }

    /// `TaskTemplate.Placement` (the daemon checks the expressions).
    pub fn placement(&self) -> Value {
        json!({
            "Constraints": self.constraint,
            "Preferences": self.placement_pref.iter().map(|p| preference(p)).collect::<Vec<_>>(),
            "MaxReplicas": self.replicas_max_per_node,
        })
    }
}

impl UpdateFlags {
    pub fn apply(&self, task_template: &mut Value) {
        let placement = &mut task_template["Placement"];
        if !placement.is_object() {
            *placement = json!({});
        }
        let mut constraints: Vec<String> = placement["Constraints"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // docker: removals first, then additions not already there.
        constraints.retain(|c| !self.constraint_rm.contains(c));
        for c in &self.constraint_add {
            if !constraints.contains(c) {
                constraints.push(c.clone());
            }
        }
        let mut prefs: Vec<Value> = placement["Preferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rm: Vec<String> = self
            .placement_pref_rm
            .iter()
            .map(|p| descriptor(&preference(p)))
            .collect();
        prefs.retain(|p| !rm.contains(&descriptor(p)));
        prefs.extend(self.placement_pref_add.iter().map(|p| preference(p)));
        placement["Constraints"] = json!(constraints);
        placement["Preferences"] = json!(prefs);
        if let Some(n) = self.replicas_max_per_node {
            placement["MaxReplicas"] = json!(n);
        }
    }
}
