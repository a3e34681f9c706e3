//! A small blocking client for a node's control socket. Blocking on purpose:
//! every caller is its own thread, and a paused node must cost a timeout,
//! never a stuck runner.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing was sent: the write certainly did not happen.
    #[error("cannot connect to {0}: {1}")]
    Connect(PathBuf, std::io::Error),
    /// Sent, but no complete answer: the outcome is unknown.
    #[error("no answer from {0}: {1}")]
    NoAnswer(PathBuf, String),
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
}

impl ApiError {
    /// The HTTP status, if the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A definite refusal: the request was understood and did nothing.
    pub fn refused(&self) -> bool {
        matches!(self, ApiError::Connect(..))
            || matches!(self, ApiError::Status { status, .. } if (400..500).contains(status))
    }
}

/// `unix:///path` or a plain path.
pub fn socket_path(host: &str) -> PathBuf {
    PathBuf::from(host.strip_prefix("unix://").unwrap_or(host))
}

/// Connects without blocking: a paused daemon stops accepting, and once its
/// listen backlog is full a blocking connect would wait for ever. This one
/// fails at once instead (nothing was sent, so the write did not happen).
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{self as sock, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = sock::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    sock::connect(fd.as_raw_fd(), &UnixAddr::new(socket)?)?;
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let mut s = connect(socket).map_err(|e| ApiError::Connect(socket.into(), e))?;
    let no_answer = |e: String| ApiError::NoAnswer(socket.into(), e);
    s.set_read_timeout(Some(timeout))
        .map_err(|e| no_answer(e.to_string()))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| no_answer(e.to_string()))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| no_answer(e.to_string()))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| no_answer(e.to_string()))?;
    let resp = String::from_utf8_lossy(&resp);
    let status: u16 = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| no_answer("malformed HTTP response".into()))?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let value: Value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        Err(ApiError::Status { status, message })
    }
}

pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Value, ApiError> {
    request(socket, "GET", path, None, timeout)
}

pub fn post(socket: &Path, path: &str, body: &Value, timeout: Duration) -> Result<Value, ApiError> {
    request(socket, "POST", path, Some(body), timeout)
}
