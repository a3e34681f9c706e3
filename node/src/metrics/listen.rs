//! The `--metrics-addr` listener: `GET /metrics` over plain HTTP on TCP.
//!
//! Loopback only unless the operator says otherwise (`--metrics-allow-remote`):
//! the series name no secret, but they tell anyone who can reach them how
//! busy the swarm is and which ports it publishes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Format;
use crate::runtime::Runtime;

/// Where the metrics are served: checked once, when the daemon starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(SocketAddr);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsAddrError {
    #[error("--metrics-addr {0} is not a loopback address; pass --metrics-allow-remote to serve metrics beyond this host")]
    NotLoopback(SocketAddr),
}

impl MetricsAddr {
    /// `addr`, if it is a loopback address or `allow_remote` is set.
    pub fn new(addr: SocketAddr, allow_remote: bool) -> Result<Self, MetricsAddrError> {
        if !allow_remote && !addr.ip().is_loopback() {
            return Err(MetricsAddrError::NotLoopback(addr));
        }
        Ok(MetricsAddr(addr))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

/// The OpenMetrics text format prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus's classic text format, for every other scraper (curl, promtool).
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(rt): State<Arc<Runtime>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (format, content_type) = if wants_openmetrics {
        (Format::OpenMetrics, OPENMETRICS)
    } else {
        (Format::Classic, CLASSIC)
    };
    match rt.metrics.scrape(&rt, format).await {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds the address (an error if it cannot) and serves until the
/// runtime stops.
pub async fn serve(
    rt: Arc<Runtime>,
    addr: MetricsAddr,
) -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr.addr()).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let app = Router::new().route("/metrics", get(metrics)).with_state(rt);
    Ok(async move { axum::serve(listener, app).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_address_needs_the_operators_word() {
        let remote: SocketAddr = "0.0.0.0:9323".parse().expect("addr");
        assert_eq!(
            MetricsAddr::new(remote, false),
            Err(MetricsAddrError::NotLoopback(remote))
        );
        assert!(MetricsAddr::new(remote, true).is_ok());
        let local: SocketAddr = "127.0.0.1:9323".parse().expect("addr");
        assert!(MetricsAddr::new(local, false).is_ok());
        let local6: SocketAddr = "[::1]:9323".parse().expect("addr");
        assert!(MetricsAddr::new(local6, false).is_ok());
    }
}
