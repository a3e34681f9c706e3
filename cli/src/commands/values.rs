//! Flag values that `service create` and `service update` (and the stack
//! file's conversion) parse alike: published ports, replicas, CPUs, sizes
//! and labels, with docker's messages. A leaf: it names no command.

use std::collections::BTreeMap;

use crate::output::InvalidValue;

/// A `--publish` value, checked as it is parsed (a bad one is a usage error).
pub fn publish_value(s: &str) -> Result<String, String> {
    crate::publish::parse(s).map(|_| s.to_string())
}

/// Go's strconv.ParseUint message, which docker shows for a bad --replicas.
pub fn replicas(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseUint: parsing {s:?}: {why}")
    })
}

/// "0.5" CPUs -> nano CPUs.
pub fn cpus(s: &str) -> Result<u64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((v * 1e9) as u64),
        _ => Err(format!(
            "invalid CPU value {s:?}: expected a positive number such as 0.5 or 2"
        )),
    }
}

/// "64M", "64mb", "1g", "512k", "1024" -> bytes.
pub fn bytes(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {s:?}: expected a number with an optional unit b, k, m or g (such as 64m)")
    };
    let lower = s.trim().to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

pub fn labels(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            None if !l.is_empty() => Ok((l.clone(), String::new())),
            _ => Err(InvalidValue(format!("invalid label {l:?}: expected KEY=VALUE")).into()),
        })
        .collect()
}
