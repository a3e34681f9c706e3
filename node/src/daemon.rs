//! `shoal daemon`: one node in the foreground until SIGINT or SIGTERM.

use std::path::PathBuf;

use crate::runtime::{NodeConfig, NodeError, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot serve the control API on {0}: {1}")]
    Socket(PathBuf, std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve metrics on {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
}

/// Raises this process's soft limit on open files to its hard limit (as
/// dockerd does): the published ports' caps are a share of it, and the
/// rest is the reserve the control API, Raft and the drivers keep.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

pub async fn run(
    config: NodeConfig,
    socket: PathBuf,
    metrics: Option<crate::metrics::MetricsAddr>,
) -> Result<(), DaemonError> {
    crate::private::restrict_umask();
    raise_nofile();
    let rt = Runtime::start(config).await?;
    // No task may see (and call) the control socket.
    rt.process.hide(&socket);
    let api = {
        let rt = rt.clone();
        let socket = socket.clone();
        tokio::spawn(async move { crate::api::serve(rt, &socket).await })
    };
    tracing::info!(socket = %socket.display(), "API listening");
    // Bound before the daemon says it is up, so a taken port is an error
    // at start, not a log line later.
    let metrics = match metrics {
        Some(addr) => {
            let serving = crate::metrics::serve(rt.clone(), addr)
                .await
                .map_err(|e| DaemonError::Metrics(addr.addr(), e))?;
            Some(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }))
        }
        None => None,
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let result = tokio::select! {
        r = api => match r {
            Ok(Err(e)) => Err(DaemonError::Socket(socket.clone(), e)),
            _ => Ok(()),
        },
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    tracing::info!("daemon shutting down");
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    rt.mesh.clear();
    rt.stop_dns();
    if let Some(sb) = rt.process.sandbox() {
        let _ = tokio::task::spawn_blocking(move || sb.close()).await;
    }
    let process = rt.process.clone();
    let _ = tokio::task::spawn_blocking(move || process.close()).await;
    let _ = rt.db.flush_async().await;
    let _ = std::fs::remove_file(&socket);
    result
}
