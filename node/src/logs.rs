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

/// Up to `max` bytes of a task's log from `offset` (empty if there is none).
pub async fn read_from(dir: &Path, task_id: &str, offset: u64, max: usize) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut f) = tokio::fs::File::open(log_path(dir, task_id)).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max as u64).read_to_end(&mut buf).await;
    buf
}
