//! Per-task log files: one line per output line, `<RFC 3339 time> <stream> <text>`.

use std::path::{Path, PathBuf};

pub fn log_path(dir: &Path, task_id: &str) -> PathBuf {
    dir.join(format!("{task_id}.log"))
}

pub fn format_line(stream: &str, text: &str) -> String {
    format!(
        "{} {stream} {text}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
}

/// One parsed log line.
pub struct LogLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub text: &'a str,
}

pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(LogLine {
        timestamp,
        stream,
        text,
    })
}
