//! Per-task log files: one line per output line, `<RFC 3339 time> <stream> <text>`.

use std::path::{Path, PathBuf};

/// The log file of `task_id`; `None` unless the id has the id alphabet and
/// length, so no id (`../x`) can name a file outside `dir`.
pub fn log_path(dir: &Path, task_id: &str) -> Option<PathBuf> {
    shoal_core::model::is_valid_id(task_id).then(|| dir.join(format!("{task_id}.log")))
}

pub fn format_line(stream: &str, text: &str) -> String {
    format!(
        "{} {stream} {text}\n",
        shoal_actors::world::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
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
    let Some(path) = log_path(dir, task_id) else {
        return Vec::new();
    };
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max as u64).read_to_end(&mut buf).await;
    buf
}

/// Opens (creating) a task's log for appending, readable by the owner only.
pub async fn open_for_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_ids_name_a_log() {
        let dir = Path::new("/data/logs");
        assert!(log_path(dir, "../../../outside").is_none());
        assert!(log_path(dir, "abcdefghijklmnopqrstuvwx/").is_none());
        assert!(log_path(dir, "").is_none());
        let id = shoal_actors::world::new_id();
        assert_eq!(log_path(dir, &id), Some(dir.join(format!("{id}.log"))));
    }
}
