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

/// Raises this process's limit on open files: as root, soft and hard to
/// the kernel's most (`fs.nr_open`, as dockerd's unit sets
/// `LimitNOFILE=infinity`), otherwise the soft limit to the hard one. Each
/// process task holds four (its pidfd, two output pipes, its log): a
/// node of 5,000 tasks hit a hard limit of 20,000 and refused starts with
/// "Too many open files" (issue 30). The published ports' caps are a share
/// of it, and the rest is the reserve the control API, Raft and the drivers keep.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return;
        }
    };
    let most = if nix::unistd::geteuid().is_root() {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(hard, |nr_open| nr_open.max(hard))
    } else {
        hard
    };
    if soft >= most {
        return;
    }
    // Root without CAP_SYS_RESOURCE (some containers and VMs) may not
    // raise the hard limit: the soft one still goes up to it.
    let raised = setrlimit(Resource::RLIMIT_NOFILE, most, most.max(hard))
        .map(|()| most)
        .or_else(|e| {
            if soft < hard {
                setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map(|()| hard)
            } else {
                Err(e)
            }
        });
    match raised {
        Ok(to) => tracing::info!(from = soft, to, "raised the open-files limit"),
        Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
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
    rt.worker_part.process.hide(&socket);
    let (api_failed, api_error) = tokio::sync::oneshot::channel();
    {
        let rt2 = rt.clone();
        let socket = socket.clone();
        rt.serve(async move {
            if let Err(e) = crate::api::serve(rt2, &socket).await {
                let _ = api_failed.send(e);
            }
        });
    }
    tracing::info!(socket = %socket.display(), "API listening");
    // Bound before the daemon says it is up, so a taken port is an error
    // at start, not a log line later.
    if let Some(addr) = metrics {
        let serving = crate::metrics::serve(rt.clone(), addr)
            .await
            .map_err(|e| DaemonError::Metrics(addr.addr(), e))?;
        rt.serve(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let result = tokio::select! {
        // The API task ends only on an error (it sends it) or a panic.
        r = api_error => match r {
            Ok(e) => Err(DaemonError::Socket(socket.clone(), e)),
            Err(_) => Ok(()),
        },
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    tracing::info!("daemon shutting down");
    rt.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    result
}
