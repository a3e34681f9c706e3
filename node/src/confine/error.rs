//! Why a task cannot be confined as asked.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error(
        "invalid capability {0:?}: expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
    )]
    UnknownCapability(String),
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
    #[error("cgroup {0}: {1}")]
    Cgroup(PathBuf, #[source] std::io::Error),
    #[error("this node cannot honour {0} (see node inspect)")]
    Unsupported(String),
    #[error("{0}")]
    Rejected(String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("invalid path {0:?}")]
    Path(String),
}
