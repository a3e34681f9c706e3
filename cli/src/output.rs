//! Tables, `--format`, and docker's human durations.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::template::{Format, TemplateError};

/// `-q`, `--format` and `-f/--filter`, as every docker `ls` takes them.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table, json, or a Go template like '{{.Name}}'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
}

/// A command that printed its own errors and ends with this exit status.
#[derive(Debug)]
pub struct Failed(pub u8);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Failed {}

/// A value `service create` cannot use: docker's status 125.
#[derive(Debug)]
pub struct InvalidValue(pub String);

impl std::fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// Prints a JSON value through `--format` as `inspect` does: indented JSON
/// by default, or the template applied to each element.
pub fn print_inspect(items: &[Value], format: Option<&str>) -> Result<(), TemplateError> {
    match Format::parse(format)? {
        Format::Table | Format::Json => {
            let text = serde_json::to_string_pretty(&Value::Array(items.to_vec()))
                .unwrap_or_else(|_| "[]".into());
            println!("{text}");
        }
        Format::Template { template, .. } => {
            for item in items {
                println!("{}", template.render(item)?);
            }
        }
    }
    Ok(())
}

/// One row: (json key, value) pairs in column order.
pub type Row = Vec<(&'static str, Value)>;

/// A cell as a table shows it.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn row_object(r: &Row) -> Value {
    let obj: Map<String, Value> = r.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Value::Object(obj)
}

/// Prints rows as docker does: a table (headers from `headers`, one per
/// leading column), `json` (one object a line), or a Go template, where
/// `table ...` adds the header row and aligns the columns.
pub fn print_rows(
    rows: &[Row],
    headers: &[&str],
    format: Option<&str>,
) -> Result<(), TemplateError> {
    match Format::parse(format)? {
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().take(headers.len()).map(|(_, v)| cell(v)).collect())
                .collect();
            print_table(headers.iter().map(|h| h.to_string()).collect(), cells);
        }
        Format::Json => {
            for r in rows {
                println!("{}", row_object(r));
            }
        }
        Format::Template { table, template } => {
            let mut lines = Vec::with_capacity(rows.len());
            for r in rows {
                lines.push(template.render(&row_object(r))?);
            }
            if table {
                // The header row: the same template over each column's header.
                let names: Map<String, Value> = rows
                    .first()
                    .map(|r| r.iter().map(|(k, _)| *k).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let header = headers
                            .get(i)
                            .map_or_else(|| k.to_uppercase(), |h| h.to_string());
                        (k.to_string(), Value::String(header))
                    })
                    .collect();
                let header = if names.is_empty() {
                    template.render(&header_guess(headers)).unwrap_or_default()
                } else {
                    template.render(&Value::Object(names))?
                };
                let split = |l: &str| l.split('\t').map(str::to_string).collect::<Vec<_>>();
                print_table(split(&header), lines.iter().map(|l| split(l)).collect());
            } else {
                for l in lines {
                    println!("{l}");
                }
            }
        }
    }
    Ok(())
}

/// Without rows, headers keyed by their own words (`NAME` for `.Name`).
fn header_guess(headers: &[&str]) -> Value {
    let obj: Map<String, Value> = headers
        .iter()
        .map(|h| {
            let key: String = h
                .split(' ')
                .map(|w| capitalize(&w.to_lowercase()))
                .collect::<String>()
                .replace("Id", "ID");
            (key, Value::String(h.to_string()))
        })
        .collect();
    Value::Object(obj)
}

/// Columns padded to their widest cell plus three spaces, at least ten wide, as
/// docker's tabwriter (minwidth 10, padding 3).
fn print_table(headers: Vec<String>, rows: Vec<Vec<String>>) {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([headers.len()])
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for r in rows.iter().chain([&headers]) {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                // Go's tabwriter as docker sets it up: padding 3, and no
                // cell narrower than 10.
                s.push_str(&format!("{:<w$}", c, w = (widths[i] + 3).max(10)));
            }
        }
        println!("{}", s.trim_end());
    };
    line(&headers);
    for r in &rows {
        line(r);
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

/// Go's Duration.String: 5s, 1m30s, 250ms, 0s.
pub fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", trim_float(n as f64 / 1e3)),
            n => format!("{}ms", trim_float(n as f64 / 1e6)),
        };
    }
    let secs = ns as f64 / 1e9;
    let hours = (secs / 3600.0).floor();
    let mins = ((secs - hours * 3600.0) / 60.0).floor();
    let rest = secs - hours * 3600.0 - mins * 60.0;
    let mut out = String::new();
    if hours > 0.0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0.0 || mins > 0.0 {
        out.push_str(&format!("{mins}m"));
    }
    out.push_str(&format!("{}s", trim_float(rest)));
    out
}

fn trim_float(x: f64) -> String {
    let text = format!("{x:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// "3 minutes ago" for one of the Engine API's timestamps ("" without one).
pub fn ago_at(ts: Option<&str>) -> String {
    let Some(t) = ts.and_then(|s| s.parse::<DateTime<Utc>>().ok()) else {
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
    fn go_durations() {
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(61), "About a minute");
    }
}
