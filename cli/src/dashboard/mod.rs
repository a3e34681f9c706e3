//! `shoal dashboard`: a live web page of the swarm, served by this CLI
//! process on 127.0.0.1 with a random token in its URL. The process reads
//! the swarm through the control socket, as every other command does, so
//! only someone who may use that socket can start it; the page reaches the
//! node only through this process, and only for what it shows
//! (docs/observability.md, docs/security.md).
//!
//! `feed.rs` follows the swarm (events, a Raft status read each second,
//! and targeted re-reads); `model.rs` is what it knows and the JSON the
//! page draws; `timeline.rs` the SVG of the last minutes; `server.rs` the
//! token-guarded HTTP server; `assets/` the page (plain HTML, JS and CSS,
//! embedded in the binary).

mod feed;
mod model;
mod server;
mod timeline;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use clap::Args;
use rand::TryRngCore;

#[derive(Args)]
pub struct DashboardArgs {
    /// Port to serve the page on, on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// Bytes of randomness in the token (256 bits).
const TOKEN_BYTES: usize = 32;

/// A token from the operating system's CSPRNG, URL-safe.
fn token() -> anyhow::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the system's random source")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn run(host: &str, args: DashboardArgs) -> anyhow::Result<()> {
    let published = feed::Published::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(feed::run(host.to_string(), published.clone(), ready_tx));
    // The swarm read once before anything is served: a socket that is not
    // a manager's is an error here, not an empty page.
    ready_rx.await.context("the dashboard's reader stopped")??;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let port = listener.local_addr()?.port();
    let token = token()?;
    let mut out = std::io::stdout();
    writeln!(out, "Dashboard: http://127.0.0.1:{port}/{token}/")?;
    writeln!(
        out,
        "The token in this address is the only key to the page: share it only with who may use {host}. Ctrl-C stops the dashboard."
    )?;
    out.flush()?;
    let serving = server::serve(listener, token, host.to_string(), published);
    tokio::select! {
        r = serving => r.context("the dashboard's server stopped"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_and_differ() {
        let a = super::token().expect("token");
        let b = super::token().expect("token");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
