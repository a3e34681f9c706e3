//! The control API's HTTP server: hyper's HTTP/1.1 connection driver with the
//! limits a local socket still needs (see docs/api.md, "Connection limits").
//!
//! * The request head must arrive within `header_timeout` (hyper closes the
//!   connection otherwise).
//! * The request body must arrive within `body_timeout` of the head, and may
//!   be at most [`MAX_BODY_BYTES`] long (`POST /swarm/restore`, whose body
//!   is a backup file: `crate::backup::MAX_BYTES`).
//! * At most `max_connections` connections are served at once. At the cap, a
//!   new connection evicts the one that has waited longest without sending a
//!   complete request head, so half-sent requests cannot lock clients out. If
//!   every connection has a request in flight (for example `service logs
//!   --follow` streams), new connections wait in the listen backlog.
//! * One request per connection (no keep-alive): a connection is either
//!   waiting for its head, under the header timeout, or serving its request.
//!
//! There is no timeout on a whole request: log streams last as long as the
//! client wants them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, Semaphore};

/// Largest request body the API accepts: service specs are a few KiB, but
/// a config of the largest size (1,000 KiB) is 1.3 MiB once base64 in JSON.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The server's limits. Defaults: 10 s for the head, 10 s for the body, 512
/// connections. Tests shorten them through hidden environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

impl Limits {
    /// The defaults, overridden by `SHOAL_API_HEADER_TIMEOUT_MS`,
    /// `SHOAL_API_BODY_TIMEOUT_MS` and `SHOAL_API_MAX_CONNECTIONS` (positive
    /// integers; anything else is ignored with a warning).
    pub fn from_env() -> Self {
        let d = Limits::default();
        let ms =
            |name: &str, default: Duration| env_number(name).map_or(default, Duration::from_millis);
        Limits {
            header_timeout: ms("SHOAL_API_HEADER_TIMEOUT_MS", d.header_timeout),
            body_timeout: ms("SHOAL_API_BODY_TIMEOUT_MS", d.body_timeout),
            max_connections: env_number("SHOAL_API_MAX_CONNECTIONS")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(d.max_connections),
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            tracing::warn!(%name, value = %v, "ignoring: not a positive integer");
            None
        }
    }
}

/// Binds the control socket so that it is never reachable by other users:
/// it is created inside a fresh directory only this process can enter, gets
/// its final owner and mode there, and is then renamed into place. The mode
/// is 0660 with group `shoal` if that group exists (as docker's root:docker),
/// else 0600, whatever the umask.
///
/// (Not a temporary umask: the umask is per process, and task processes the
/// daemon forks meanwhile would inherit it.)
pub async fn bind(socket: &Path) -> io::Result<UnixListener> {
    let socket = socket.to_path_buf();
    let std_listener = tokio::task::spawn_blocking(move || bind_private(&socket))
        .await
        .map_err(io::Error::other)??;
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener)
}

fn bind_private(socket: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let parent = match socket.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let private = parent.join(format!(".shoal-{:08x}", rand::random::<u32>()));
    std::fs::create_dir(&private)?;
    let result = (|| {
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let staged = private.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        secure(&staged)?;
        std::fs::rename(&staged, socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Group `shoal` and 0660 if the group exists and can be given, else 0600.
fn secure(path: &Path) -> io::Result<()> {
    let mode = match nix::unistd::Group::from_name("shoal") {
        Ok(Some(group)) => match nix::unistd::chown(path, None, Some(group.gid)) {
            Ok(()) => 0o660,
            Err(e) => {
                tracing::warn!(error = %e, "cannot give the control socket to group shoal; only this user can use it");
                0o600
            }
        },
        Ok(None) => 0o600,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up group shoal; only this user can use the control socket");
            0o600
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Connections that have not sent a complete request head yet, oldest first.
#[derive(Default)]
struct Waiting {
    next: u64,
    conns: BTreeMap<u64, oneshot::Sender<()>>,
}

/// Serves `app` on `listener` until accepting fails for good.
pub async fn serve(listener: UnixListener, app: Router, limits: Limits) -> io::Result<()> {
    let app = app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    tracing::debug!(?limits, "control API limits");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "control API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some((_, evict)) = waiting.lock().conns.pop_first() {
                    let _ = evict.send(());
                }
                match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                }
            }
        };
        let (evict_tx, evict_rx) = oneshot::channel();
        let id = {
            let mut w = waiting.lock();
            let id = w.next;
            w.next += 1;
            w.conns.insert(id, evict_tx);
            id
        };
        let service = {
            let waiting = waiting.clone();
            let inner = TowerToHyperService::new(app.clone());
            let body_timeout = limits.body_timeout;
            hyper::service::service_fn(move |req: Request<Incoming>| {
                // The head is complete: this connection is no longer evictable.
                waiting.lock().conns.remove(&id);
                hyper::service::Service::call(
                    &inner,
                    req.map(|b| DeadlineBody::new(b, body_timeout)),
                )
            })
        };
        let http = http.clone();
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "control API connection ended");
                    }
                }
                Ok(()) = evict_rx => {
                    tracing::debug!("control API connection evicted: no request head while at the connection cap");
                }
            }
            waiting.lock().conns.remove(&id);
        });
    }
}

/// The request body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

/// A request body that fails once `timeout` has passed since the head arrived.
struct DeadlineBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout(this.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_stalls_fails_after_the_timeout() {
        let (mut tx, body) = channel();
        let mut body = DeadlineBody::new(body, Duration::from_millis(50));
        tx.send(Bytes::from_static(b"{")).await;
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(matches!(first, Some(Ok(_))));
        let second = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let err = match second {
            Some(Err(e)) => e,
            _ => panic!("expected the body to time out"),
        };
        assert!(err.is::<BodyTimeout>(), "{err}");
        drop(tx);
    }

    /// A minimal streaming body: frames sent on a channel.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    struct Sender(tokio::sync::mpsc::Sender<Bytes>);

    impl Sender {
        async fn send(&mut self, b: Bytes) {
            let _ = self.0.send(b).await;
        }
    }

    fn channel() -> (Sender, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (Sender(tx), ChannelBody(rx))
    }

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[test]
    fn limits_default_to_ten_seconds_and_512_connections() {
        let d = Limits::default();
        assert_eq!(d.header_timeout, Duration::from_secs(10));
        assert_eq!(d.body_timeout, Duration::from_secs(10));
        assert_eq!(d.max_connections, 512);
    }
}
