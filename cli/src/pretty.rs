//! `--pretty` for `node inspect` (`commands/pretty_service.rs` has `service
//! inspect`'s), and go-units' sizes: docker's human layout
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
