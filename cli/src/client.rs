//! The control-API client: HTTP/1.1 over the daemon's Unix socket, on
//! docker's versioned paths (`/v1.41/...`), answers read into the Engine
//! API's types (`shoal_node::api::wire`) where a command reads fields.
//!
//! Why not `bollard::Docker` (docs/api.md, "shoal's CLI"): its
//! `create_service`/`inspect_service` take and return bollard's
//! `ServiceSpec`/`Service`, which have no `TaskTemplate.Driver` (nor
//! `PreviousSpec`, `Balance`, ...): shoal's CLI would drop them. It also
//! speaks API 1.53 unless it negotiates first (shoal serves 1.41), and has
//! no call for shoal's own routes (`/debug`, chaos).

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use shoal_node::api::version::API_VERSION;

pub struct Client {
    socket: PathBuf,
    host: String,
}

/// An error the daemon answered with: shown as docker shows it.
#[derive(Debug)]
pub struct DaemonError {
    pub status: u16,
    pub message: String,
}

impl DaemonError {
    /// The daemon knows no such object (404).
    pub fn is_not_found(e: &anyhow::Error) -> bool {
        e.downcast_ref::<DaemonError>()
            .is_some_and(|d| d.status == 404)
    }
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

impl Client {
    /// `host` is `unix:///path/to.sock` (or a bare path).
    pub fn new(host: &str) -> anyhow::Result<Self> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if path.is_empty() || host.contains("://") && !host.starts_with("unix://") {
            return Err(anyhow!(
                "invalid host {host:?}: only unix:///path/to/socket is supported"
            ));
        }
        Ok(Client {
            socket: PathBuf::from(path),
            host: format!("unix://{path}"),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Response<Incoming>> {
        let bytes = match &body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        // What the daemon would refuse unread (and the refusal would come as
        // a broken pipe mid-write): said here, in words.
        if bytes.len() > shoal_node::api::server::MAX_BODY_BYTES {
            anyhow::bail!(
                "request body too large: {} bytes (the daemon takes at most {} bytes)",
                bytes.len(),
                shoal_node::api::server::MAX_BODY_BYTES
            );
        }
        self.send_bytes(method, path, bytes, "application/json", &[])
            .await
    }

    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        bytes: Bytes,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|_| {
                anyhow!(
                    "Cannot connect to the shoal daemon at {}. Is the daemon running?",
                    self.host
                )
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(versioned(path))
            .header("Host", "shoal")
            .header("Content-Type", content_type)
            .header(
                "Accept",
                "application/vnd.docker.multiplexed-stream, application/json",
            );
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        sender
            .send_request(req.body(Full::new(bytes))?)
            .await
            .context("request to the daemon")
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body).await?;
        let bytes = answer(resp).await?;
        Ok(if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        })
    }

    /// `method path` with raw bytes (a swarm backup) both ways.
    pub async fn exchange_bytes(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Bytes> {
        let resp = self
            .send_bytes(method, path, body, "application/octet-stream", headers)
            .await?;
        answer(resp).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.json(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.json(Method::DELETE, path, None).await
    }

    /// `POST path` with an empty object: an action its query says all of
    /// (`/swarm/leave?force=true`).
    pub async fn post_empty(&self, path: &str) -> anyhow::Result<Value> {
        self.post(path, Value::Object(serde_json::Map::new())).await
    }

    /// `GET path`, the answer read as `T` (one of the Engine API's types).
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        typed(path, self.get(path).await?)
    }

    /// `POST path` with `body` (one of the Engine API's types), the answer
    /// read as `T`.
    pub async fn post_as<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body).context("encoding the request")?;
        typed(path, self.post(path, body).await?)
    }

    /// Streams a log response as it arrives: docker's multiplexed stream,
    /// each frame's payload to stdout or stderr as its header says.
    pub async fn stream_logs(&self, path: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let resp = self.send(Method::GET, path, None).await?;
        let mut body = streamed_body(resp).await?;
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some((stream, payload, used)) = split_frame(&pending) {
                if stream == 2 {
                    err.write_all(payload)?;
                    err.flush()?;
                } else {
                    out.write_all(payload)?;
                    out.flush()?;
                }
                pending.drain(..used);
            }
        }
        Ok(())
    }
}

impl Client {
    /// Streams a response of JSON lines, each complete line to `on_line`.
    pub async fn stream_lines(
        &self,
        path: &str,
        mut on_line: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let resp = self.send(Method::GET, path, None).await?;
        let mut body = streamed_body(resp).await?;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                on_line(String::from_utf8_lossy(&line).trim_end())?;
            }
        }
        Ok(())
    }
}

/// `path` under docker's version prefix, as the docker CLI sends it: the
/// version shoal serves (`/v1.41/services`).
fn versioned(path: &str) -> String {
    format!("/v{API_VERSION}{path}")
}

/// An answer read as the Engine API type `T`.
fn typed<T: DeserializeOwned>(path: &str, v: Value) -> anyhow::Result<T> {
    serde_json::from_value(v).with_context(|| format!("the daemon's answer to {path}"))
}

/// The body of a streamed answer, or the daemon's error.
async fn streamed_body(resp: Response<Incoming>) -> anyhow::Result<Incoming> {
    let status = resp.status();
    let body = resp.into_body();
    if status.is_success() {
        return Ok(body);
    }
    let bytes = body.collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("request failed")
        .to_string();
    Err(DaemonError {
        status: status.as_u16(),
        message,
    }
    .into())
}

/// One frame of docker's multiplexed stream: `[stream, 0, 0, 0, size (u32
/// big endian)]` then `size` bytes. `None` until the whole frame is there.
fn split_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = buf.get(..8)?;
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let payload = buf.get(8..8 + size)?;
    Some((header[0], payload, 8 + size))
}

/// Percent-encodes a path segment or query value.
/// The body of a successful answer; the daemon's message otherwise.
async fn answer(resp: Response<Incoming>) -> anyhow::Result<Bytes> {
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status.is_success() {
        return Ok(bytes);
    }
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    Err(DaemonError {
        status: status.as_u16(),
        message,
    }
    .into())
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
