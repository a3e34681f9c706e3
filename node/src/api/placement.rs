//! A service's `Placement` and `Mode: {Global: {}}` in the Engine API's JSON.

use serde_json::Value;

use super::wire;
use shoal_actors::constraints::Placement;

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

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| format!("{what} must be a list of strings")),
    }
}

/// `TaskTemplate.Placement`, checked by `constraints::check` with the rest of the spec.
pub fn parse(tt: &Value) -> Result<Placement, String> {
    let Some(p) = tt.get("Placement").filter(|p| !p.is_null()) else {
        return Ok(Placement::default());
    };
    let constraints = strings(p.get("Constraints"), "Placement.Constraints")?;
    let mut preferences = Vec::new();
    if let Some(list) = p.get("Preferences").filter(|l| !l.is_null()) {
        let list = list
            .as_array()
            .ok_or("Placement.Preferences must be a list")?;
        for pref in list {
            let descriptor = pref
                .pointer("/Spread/SpreadDescriptor")
                .and_then(Value::as_str)
                .ok_or(
                    "a placement preference must be {\"Spread\": {\"SpreadDescriptor\": ...}}",
                )?;
            preferences.push(format!("spread={descriptor}"));
        }
    }
    let max_replicas = match p.get("MaxReplicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or("Placement.MaxReplicas must be a non-negative integer")?,
    };
    Ok(Placement {
        constraints,
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
        let p = super::parse(&tt).unwrap_or_default();
        assert_eq!(p.preferences, ["spread=node.labels.zone"]);
        assert_eq!(p.max_replicas, 2);
        assert_eq!(json!(super::spec(&p)), tt["Placement"]);
    }
}
