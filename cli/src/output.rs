//! Tables, `--format`, and docker's human durations.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// `-q` and `--format`, as every docker `ls` takes them.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table, json, or a template like '{{.Name}}'
    #[arg(long)]
    pub format: Option<String>,
}

/// One row: (json key, value) pairs in column order.
pub type Row = Vec<(&'static str, String)>;

/// Prints rows as docker does: a table (headers from `headers`), `json` (one
/// object a line), or a template with `{{.Key}}` placeholders.
pub fn print_rows(rows: &[Row], headers: &[&str], format: Option<&str>) {
    match format {
        None | Some("table") => print_table(rows, headers),
        Some("json") => {
            for r in rows {
                let obj: Map<String, Value> = r
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                    .collect();
                println!("{}", Value::Object(obj));
            }
        }
        Some(tpl) => {
            let tpl = tpl.strip_prefix("table ").unwrap_or(tpl);
            for r in rows {
                let mut line = tpl.replace("\\t", "\t");
                for (k, v) in r {
                    line = line.replace(&format!("{{{{.{k}}}}}"), v);
                }
                println!("{line}");
            }
        }
    }
}

fn print_table(rows: &[Row], headers: &[&str]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, (_, v)) in r.iter().enumerate().take(headers.len()) {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(
            r.iter()
                .take(headers.len())
                .map(|(_, v)| v.as_str())
                .collect(),
        );
    }
}

pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// go-units' HumanDuration, as docker prints "Running 5 seconds ago".
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let mins = secs / 60;
    let hours = mins / 60;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

pub fn ago(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) else {
        return String::new();
    };
    format!("{} ago", human_duration((Utc::now() - t).num_seconds()))
}

pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn u(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

/// Parses docker's durations: "10s", "1m30s", "250ms", "1h", "0".
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid duration {text:?}: use a number with a unit, like 300ms, 5s, 1m30s or 2h")
    };
    if text == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_docker() {
        assert_eq!(parse_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
    }
}
