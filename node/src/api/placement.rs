//! A service's `Placement` and `Mode: {Global: {}}` in the Engine API's JSON.

use super::wire;
use shoal_core::model::placement::Placement;

pub fn spec(p: &Placement) -> wire::TaskSpecPlacement {
    let preferences = p
        .preferences
        .iter()
        .map(|pref| {
            let descriptor = pref.split_once('=').map_or(pref.as_str(), |(_, d)| d);
            wire::TaskSpecPlacementPreferences {
                spread: Some(wire::TaskSpecPlacementSpread {
                    spread_descriptor: Some(descriptor.to_string()),
                }),
            }
        })
        .collect();
    wire::TaskSpecPlacement {
        constraints: Some(p.constraints.clone()),
        preferences: Some(preferences),
        max_replicas: Some(wire::int(p.max_replicas)),
        platforms: None,
    }
}

pub fn parse(p: Option<&wire::TaskSpecPlacement>) -> Result<Placement, String> {
    let Some(p) = p else {
        return Ok(Placement::default());
    };
    let mut preferences = Vec::new();
    for pref in p.preferences.as_deref().unwrap_or_default() {
        let descriptor = pref
            .spread
            .as_ref()
            .and_then(|s| s.spread_descriptor.as_deref())
            .ok_or("a placement preference must be {\"Spread\": {\"SpreadDescriptor\": ...}}")?;
        preferences.push(format!("spread={descriptor}"));
    }
    let max_replicas = match p.max_replicas {
        None => 0,
        Some(n) => {
            u64::try_from(n).map_err(|_| "Placement.MaxReplicas must be a non-negative integer")?
        }
    };
    Ok(Placement {
        constraints: p.constraints.clone().unwrap_or_default(),
        preferences,
        max_replicas,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn placement_round_trips() {
        let tt = json!({"Placement": {
            "Constraints": ["node.role==worker"],
            "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
            "MaxReplicas": 2,
        }});
        let typed: super::wire::TaskSpec = serde_json::from_value(tt.clone()).unwrap_or_default();
        let p = super::parse(typed.docker.placement.as_ref()).unwrap_or_default();
        assert_eq!(p.preferences, ["spread=node.labels.zone"]);
        assert_eq!(p.max_replicas, 2);
        assert_eq!(json!(super::spec(&p)), tt["Placement"]);
    }
}
