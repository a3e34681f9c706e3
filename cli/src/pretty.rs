//! `--pretty` for `service inspect` and `node inspect`: docker's human layout
//! of the inspect JSON.

use std::fmt::Write as _;

use serde_json::Value;

use crate::output::{capitalize, s, u};

/// `n` in `units` of `base` with Go's `%.4g` (go-units' `CustomSize`).
fn go_units(n: u64, base: f64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        v.log10().floor() as usize + 1
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut text = format!("{v:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", units[i])
}

/// go-units' BytesSize: 64MiB, 1.5GiB.
pub fn bytes_size(n: u64) -> String {
    go_units(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// go-units' HumanSize: 1.5kB, 2MB.
pub fn human_size(n: u64) -> String {
    go_units(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

fn cpus(nano: u64) -> String {
    let text = format!("{:.3}", nano as f64 / 1e9);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn labels(out: &mut String, v: &Value, bullet: &str) {
    let Some(map) = v.as_object().filter(|m| !m.is_empty()) else {
        return;
    };
    out.push_str("Labels:\n");
    for (k, val) in map {
        let val = val.as_str().unwrap_or("");
        if val.is_empty() {
            let _ = writeln!(out, " {bullet}{k}");
        } else {
            let _ = writeln!(out, " {bullet}{k}={val}");
        }
    }
}

fn words(v: &Value) -> Option<String> {
    let list = v.as_array().filter(|a| !a.is_empty())?;
    Some(
        list.iter()
            .map(|x| format!("{} ", x.as_str().unwrap_or("")))
            .collect(),
    )
}

/// One service, as `docker service inspect --pretty` prints it.
pub fn service(svc: &Value) -> String {
    let spec = &svc["Spec"];
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    let mut out = String::new();
    let _ = writeln!(out, "\nID:\t\t{}", s(svc, "/ID"));
    let _ = writeln!(out, "Name:\t\t{}", s(spec, "/Name"));
    labels(&mut out, &spec["Labels"], "");
    if spec.pointer("/Mode/Global").is_some() {
        out.push_str("Service Mode:\tGlobal\n");
    } else {
        out.push_str("Service Mode:\tReplicated\n");
        let _ = writeln!(out, " Replicas:\t{}", u(spec, "/Mode/Replicated/Replicas"));
    }
    for line in crate::commands::pretty_update::update_status_lines(svc) {
        let _ = writeln!(out, "{line}");
    }
    let policy = &spec["TaskTemplate"]["RestartPolicy"];
    if policy.is_object() {
        out.push_str("RestartPolicy:\n");
        let _ = writeln!(out, " Condition:\t{}", s(policy, "/Condition"));
        let _ = writeln!(
            out,
            " Delay:\t\t{}",
            crate::output::go_duration(u(policy, "/Delay"))
        );
        let _ = writeln!(out, " MaxAttempts:\t{}", u(policy, "/MaxAttempts"));
        let window = u(policy, "/Window");
        if window > 0 {
            let _ = writeln!(out, " Window:\t{}", crate::output::go_duration(window));
        }
    }
    out.push_str("Placement:\n");
    let placement = &spec["TaskTemplate"]["Placement"];
    let constraints: Vec<&str> = placement["Constraints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !constraints.is_empty() {
        let _ = writeln!(out, " Constraints:\t[{}]", constraints.join(" "));
    }
    let prefs: Vec<String> = placement["Preferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("Spread={}", s(p, "/Spread/SpreadDescriptor")))
        .collect();
    if !prefs.is_empty() {
        let _ = writeln!(out, " Preferences:\t[{}]", prefs.join(" "));
    }
    let max = u(placement, "/MaxReplicas");
    if max > 0 {
        let _ = writeln!(out, " Max Replicas Per Node:\t{max}");
    }
    for line in crate::commands::pretty_update::update_config_lines(spec) {
        let _ = writeln!(out, "{line}");
    }
    out.push_str("ContainerSpec:\n");
    let _ = writeln!(out, " Image:\t\t{}", s(container, "/Image"));
    if let Some(args) = words(&container["Args"]) {
        let _ = writeln!(out, " Args:\t\t{args}");
    }
    if let Some(env) = words(&container["Env"]) {
        let _ = writeln!(out, " Env:\t\t{env}");
    }
    let dir = s(container, "/Dir");
    if !dir.is_empty() {
        let _ = writeln!(out, " Dir:\t\t{dir}");
    }
    if let Some(init) = container["Init"].as_bool() {
        let _ = writeln!(out, " Init:\t\t{init}");
    }
    let user = s(container, "/User");
    if !user.is_empty() {
        let _ = writeln!(out, " User: {user}");
    }
    if let Some(map) = container["Sysctls"].as_object().filter(|m| !m.is_empty()) {
        out.push_str("SysCtls:\n");
        for (k, v) in map {
            match v.as_str().filter(|v| !v.is_empty()) {
                Some(v) => {
                    let _ = writeln!(out, " {k}: {v}");
                }
                None => {
                    let _ = writeln!(out, " {k}");
                }
            }
        }
    }
    if let Some(list) = container["Ulimits"].as_array().filter(|l| !l.is_empty()) {
        out.push_str("Ulimits:\n");
        for u in list {
            let (soft, hard) = (
                u["Soft"].as_i64().unwrap_or(0),
                u["Hard"].as_i64().unwrap_or(0),
            );
            let _ = writeln!(out, " {}: {soft}:{hard}", s(u, "/Name"));
        }
    }
    if let Some(list) = container["Mounts"].as_array().filter(|l| !l.is_empty()) {
        out.push_str("Mounts:\n");
        for m in list {
            let _ = writeln!(out, " Target:\t{}", s(m, "/Target"));
            let _ = writeln!(out, "  Source:\t{}", s(m, "/Source"));
            let read_only = m["ReadOnly"].as_bool().unwrap_or(false);
            let _ = writeln!(out, "  ReadOnly:\t{read_only}");
            let _ = writeln!(out, "  Type:\t\t{}", s(m, "/Type"));
        }
    }
    // docker's Secrets and Configs blocks: target, then source.
    for (title, key, source) in [
        ("Secrets", "Secrets", "SecretName"),
        ("Configs", "Configs", "ConfigName"),
    ] {
        if let Some(list) = container[key].as_array().filter(|l| !l.is_empty()) {
            let _ = writeln!(out, " {title}:");
            for r in list {
                let _ = writeln!(out, "  Target:\t{}", s(r, "/File/Name"));
                let _ = writeln!(out, "   Source:\t{}", s(r, &format!("/{source}")));
            }
        }
    }
    let resources = &spec["TaskTemplate"]["Resources"];
    let section = |name: &str| {
        let cpu = u(resources, &format!("/{name}/NanoCPUs"));
        let memory = u(resources, &format!("/{name}/MemoryBytes"));
        let mut text = String::new();
        if cpu > 0 || memory > 0 {
            let _ = writeln!(text, " {name}:");
            if cpu > 0 {
                let _ = writeln!(text, "  CPU:\t\t{}", cpus(cpu));
            }
            if memory > 0 {
                let _ = writeln!(text, "  Memory:\t{}", bytes_size(memory));
            }
        }
        text
    };
    let (reservations, limits) = (section("Reservations"), section("Limits"));
    if !reservations.is_empty() || !limits.is_empty() {
        out.push_str("Resources:\n");
        out.push_str(&reservations);
        out.push_str(&limits);
    }
    let _ = writeln!(out, "Driver:\t\t{}", s(spec, "/TaskTemplate/Driver"));
    let mode = match s(spec, "/EndpointSpec/Mode") {
        "" => "vip",
        m => m,
    };
    let _ = writeln!(out, "Endpoint Mode:\t{mode}");
    out
}

/// One node, as `docker node inspect --pretty` prints it.
pub fn node(n: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ID:\t\t\t{}", s(n, "/ID"));
    labels(&mut out, &n["Spec"]["Labels"], "- ");
    let _ = writeln!(
        out,
        "Hostname:              \t{}",
        s(n, "/Description/Hostname")
    );
    let joined = s(n, "/CreatedAt")
        .parse::<chrono::DateTime<chrono::Utc>>()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.9f +0000 utc").to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "Joined at:             \t{joined}");
    out.push_str("Status:\n");
    let _ = writeln!(out, " State:\t\t\t{}", capitalize(s(n, "/Status/State")));
    let message = s(n, "/Status/Message");
    if !message.is_empty() {
        let _ = writeln!(out, " Message:              \t{message}");
    }
    let _ = writeln!(
        out,
        " Availability:         \t{}",
        capitalize(s(n, "/Spec/Availability"))
    );
    let addr = s(n, "/Status/Addr");
    if !addr.is_empty() {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let _ = writeln!(out, " Address:\t\t{host}");
    }
    if let Some(m) = n.get("ManagerStatus").filter(|m| m.is_object()) {
        out.push_str("Manager Status:\n");
        let _ = writeln!(out, " Address:\t\t{}", s(m, "/Addr"));
        let _ = writeln!(
            out,
            " Raft Status:\t\t{}",
            capitalize(s(m, "/Reachability"))
        );
        let leader = if m["Leader"].as_bool() == Some(true) {
            "Yes"
        } else {
            "No"
        };
        let _ = writeln!(out, " Leader:\t\t{leader}");
    }
    out.push_str("Platform:\n");
    let _ = writeln!(
        out,
        " Operating System:\t{}",
        s(n, "/Description/Platform/OS")
    );
    let _ = writeln!(
        out,
        " Architecture:\t\t{}",
        s(n, "/Description/Platform/Architecture")
    );
    out.push_str("Resources:\n");
    let _ = writeln!(
        out,
        " CPUs:\t\t\t{}",
        u(n, "/Description/Resources/NanoCPUs") / 1_000_000_000
    );
    let _ = writeln!(
        out,
        " Memory:\t\t{}",
        bytes_size(u(n, "/Description/Resources/MemoryBytes"))
    );
    if let Some(drivers) = n
        .pointer("/Description/Engine/Drivers")
        .and_then(Value::as_array)
    {
        out.push_str("Drivers:\n");
        for d in drivers {
            let _ = writeln!(out, " {}:\t\t{}", s(d, "/Name"), s(d, "/Version"));
        }
    }
    let _ = writeln!(
        out,
        "Engine Version:\t\t{}",
        s(n, "/Description/Engine/EngineVersion")
    );
    out
}

#[cfg(test)]
mod tests {
    use crate::pretty::{bytes_size, human_size};

    #[test]
    fn sizes_as_go_units_prints_them() {
        assert_eq!(bytes_size(64 << 20), "64MiB");
        assert_eq!(bytes_size(1536 << 20), "1.5GiB");
        assert_eq!(bytes_size(100), "100B");
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
    }
}
