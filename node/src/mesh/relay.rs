//! Moving a proxied TCP connection's bytes both ways, until both ends close,
//! nothing moved for the port's idle timeout, or the registry evicts it to
//! make room (`limits.rs`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::mesh::limits::Admitted;

/// A stream whose reads mark its connection active.
struct Tracked<'a, S> {
    inner: S,
    admitted: &'a Admitted,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.admitted.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Joins `client` and `upstream` until both close, `idle` passes with no
/// byte either way, or the connection is evicted.
pub async fn relay<A, B>(client: A, upstream: B, admitted: &Admitted, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Tracked {
        inner: client,
        admitted,
    };
    let mut upstream = Tracked {
        inner: upstream,
        admitted,
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        () = admitted.idle_for(idle) => {
            tracing::debug!(idle_secs = idle.as_secs(), "closed an idle proxied connection");
        }
        () = admitted.evicted() => {
            tracing::debug!("closed a proxied connection to make room for a new one");
        }
    }
}
