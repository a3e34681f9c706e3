//! The `UpdateConfig`, `RollbackConfig` and `UpdateStatus` parts of
//! `service inspect --pretty`, in docker's layout (`pretty.rs` calls them).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::output::{ago, go_duration, s, u};

/// `UpdateConfig:` and `RollbackConfig:` blocks of a service's `Spec`.
pub fn update_config_lines(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, title, order) in [
        ("UpdateConfig", "UpdateConfig", "Update order"),
        ("RollbackConfig", "RollbackConfig", "Rollback order"),
    ] {
        let c = &spec[key];
        if !c.is_object() {
            continue;
        }
        out.push(format!("{title}:"));
        out.push(format!(" Parallelism:\t{}", u(c, "/Parallelism")));
        let delay = u(c, "/Delay");
        if delay > 0 {
            out.push(format!(" Delay:\t\t{}", go_duration(delay)));
        }
        out.push(format!(" On failure:\t{}", s(c, "/FailureAction")));
        out.push(format!(
            " Monitoring Period: {}",
            go_duration(u(c, "/Monitor"))
        ));
        let ratio = c["MaxFailureRatio"].as_f64().unwrap_or(0.0);
        out.push(format!(" Max failure ratio: {ratio}"));
        out.push(format!(" {order}:    {}", s(c, "/Order")));
    }
    out
}

/// The `UpdateStatus:` block of a service, if it has one.
pub fn update_status_lines(service: &Value) -> Vec<String> {
    let st = &service["UpdateStatus"];
    if !st.is_object() {
        return Vec::new();
    }
    let mut out = vec![
        "UpdateStatus:".to_string(),
        format!(" State:\t\t{}", s(st, "/State")),
    ];
    if st["StartedAt"].is_string() {
        out.push(format!(" Started:\t{}", ago(&st["StartedAt"])));
    }
    if st["CompletedAt"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .is_some()
    {
        out.push(format!(" Completed:\t{}", ago(&st["CompletedAt"])));
    }
    out.push(format!(" Message:\t{}", s(st, "/Message")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_config_reads_as_docker_prints_it() {
        let spec = json!({"UpdateConfig": {"Parallelism": 2, "Delay": 10_000_000_000u64,
            "FailureAction": "pause", "Monitor": 5_000_000_000u64, "MaxFailureRatio": 0.0,
            "Order": "stop-first"}});
        let lines = update_config_lines(&spec);
        assert_eq!(lines[0], "UpdateConfig:");
        assert_eq!(lines[1], " Parallelism:\t2");
        assert_eq!(lines[2], " Delay:\t\t10s");
        assert_eq!(lines[3], " On failure:\tpause");
        assert_eq!(lines[4], " Monitoring Period: 5s");
        assert_eq!(lines[5], " Max failure ratio: 0");
        assert_eq!(lines[6], " Update order:    stop-first");
    }
}
