//! Confinement of process tasks, as a Docker container is confined by
//! default: own pid, mount, UTS and IPC namespaces (and the network one of
//! `sandbox`), an own root filesystem (an overlay of the host's root),
//! docker's default capabilities, `no_new_privs`, a seccomp filter with
//! docker's default profile's effect, and a cgroup per task with its limits.
//! docs/confinement.md says what a task can and cannot see and do.
//!
//! Split as youki's libcontainer splits it: plans as data (`caps`,
//! `seccomp`, `rootfs`: pure, tested as data), the child side (`child`:
//! syscalls only, in the task's keeper) and the cgroup files (`cgroup`).
//! The process driver asks `Confiner` for a task's `child::Launch` and
//! hands it to a keeper (`keeper`: a program of its own, not a fork of the
//! daemon), which runs `child::launch` and execs the task's program.

pub mod caps;
pub mod cgroup;
pub mod child;
mod error;
pub mod keeper;
pub mod launcher;
mod options;
pub mod rootfs;
pub mod seccomp;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::Digest;
use shoal_core::model::secret::TaskFile;
use shoal_core::model::Task;

pub use error::ConfineError;

use crate::confine::cgroup::{Cgroups, Hierarchy, Limits, TaskCgroup};
use crate::confine::child::{CStep, Privileges};

/// Where each task's scratch tmpfs is mounted (in its own mount namespace):
/// a directory of the data dir, empty on the host.
const SCRATCH: &str = "confine";

/// Where a daemon whose mount namespace has no cgroup mounts mounts them.
const CGROUP_MOUNTS: &str = "cgroup";

/// One file a data dir's tag, holding the pid of its daemon: the cgroups of
/// a daemon that is gone are removed by the next one to start on this host.
const OWNERS: &str = "/run/shoal-confine";
const OWNERS_LOCK: &str = "/run/shoal-confine.lock";

/// An exclusive `flock` on a host-wide file, released when dropped; `None`
/// if the file cannot be opened (then nothing is serialised).
struct HostLock(#[allow(dead_code)] Option<std::fs::File>);

impl HostLock {
    fn take(path: &Path) -> HostLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ok();
        if let Some(f) = &file {
            // SAFETY: flock on a descriptor we own; released when it closes.
            unsafe {
                libc::flock(std::os::fd::AsRawFd::as_raw_fd(f), libc::LOCK_EX);
            }
        }
        HostLock(file)
    }
}

/// What this node can and cannot do to confine a task, for `node inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Abilities {
    /// What works, in words (`namespaces`, `overlay root`, `seccomp`, the cgroup version).
    pub can: Vec<String>,
    /// What does not, and why.
    pub cannot: Vec<String>,
}

/// What the kernel and the daemon's privileges allow, found once at start.
fn probe(hierarchy: Option<&Hierarchy>) -> Abilities {
    let mut a = Abilities::default();
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        a.can
            .push("namespaces (pid, mount, uts, ipc, network)".into());
    } else {
        a.cannot.push(format!(
            "namespaces, mounts and cgroups need root: the daemon runs as uid {uid}"
        ));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        a.can.push("overlay root (overlayfs in the kernel)".into());
    } else {
        a.cannot
            .push("overlay root: the kernel has no overlay filesystem".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        a.can.push("seccomp".into());
    } else {
        a.cannot.push("seccomp: the kernel has no seccomp".into());
    }
    match hierarchy {
        Some(h) => a.can.push(format!("cgroup {}", h.describe())),
        None => a
            .cannot
            .push("cgroups: no cgroup v2 with memory, pids and cpu, nor v1 hierarchies".into()),
    }
    a
}

/// What confines this node's process tasks.
pub struct Confiner {
    cgroups: Cgroups,
    /// `<data dir>/confine`.
    scratch: String,
    /// Host paths no task may see: the data dir, and the control socket
    /// (`hide`).
    hidden: Mutex<Vec<String>>,
    last_cap: u32,
    abilities: Abilities,
}

/// The tag of a data dir's cgroups: the first 12 hex digits of the SHA-256
/// of its path.
fn tag(data_dir: &Path) -> String {
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl Confiner {
    /// Sets confinement up for the daemon of `data_dir` (reaping the
    /// cgroups a previous daemon of it left), or says what this node cannot
    /// do.
    pub fn open(data_dir: &Path) -> Result<Arc<Confiner>, Abilities> {
        let hierarchy = Hierarchy::detect(&data_dir.join(CGROUP_MOUNTS));
        let mut abilities = probe(hierarchy.as_ref());
        if !abilities.cannot.is_empty() {
            return Err(abilities);
        }
        let Some(hierarchy) = hierarchy else {
            return Err(abilities);
        };
        let data_dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let scratch = data_dir.join(SCRATCH);
        let tag = tag(&data_dir);
        let owners = Path::new(OWNERS);
        // One daemon at a time takes its groups back and sweeps those of
        // daemons that are gone, so that none sweeps another's while that
        // one is starting (its owner file still naming its dead predecessor).
        let lock = HostLock::take(Path::new(OWNERS_LOCK));
        let made = std::fs::create_dir_all(&scratch)
            .map_err(|e| ConfineError::Io(scratch.clone(), e))
            .and_then(|()| Cgroups::open(hierarchy, &tag))
            .and_then(|cgroups| {
                cgroups.sweep_dead_owners(owners, &tag);
                std::fs::create_dir_all(owners)
                    .and_then(|()| {
                        let owner = format!("{} {}", std::process::id(), data_dir.display());
                        std::fs::write(owners.join(&tag), owner)
                    })
                    .map_err(|e| ConfineError::Io(owners.to_path_buf(), e))?;
                Ok(cgroups)
            });
        drop(lock);
        let cgroups = match made {
            Ok(c) => c,
            Err(e) => {
                abilities.cannot.push(e.to_string());
                return Err(abilities);
            }
        };
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(Arc::new(Confiner {
            cgroups,
            scratch: scratch.to_string_lossy().into_owned(),
            hidden: Mutex::new(vec![data_dir.to_string_lossy().into_owned()]),
            last_cap,
            abilities,
        }))
    }

    /// Kills and removes every task cgroup of this daemon, and its group
    /// (the daemon is leaving). Blocking.
    pub fn close(&self) {
        self.cgroups.reap();
        self.cgroups.remove_group();
        let _ = std::fs::remove_file(Path::new(OWNERS).join(self.cgroups.tag()));
    }

    pub fn abilities(&self) -> &Abilities {
        &self.abilities
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        self.cgroups.hierarchy()
    }

    /// Whether `path` of the host is (under) a path kept out of tasks' view.
    pub fn hides(&self, path: &Path) -> bool {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let path = path.to_string_lossy();
        self.hidden
            .lock()
            .iter()
            .any(|h| path.starts_with(&format!("{h}/")) || *h == path)
    }

    /// The hidden paths under the host directory `source`, relative to it
    /// (`/certs` for the data dir's certificates under a bind of its parent):
    /// a bind of `source` masks them at its target too.
    pub fn hidden_under(&self, source: &Path) -> Vec<String> {
        let source = source
            .canonicalize()
            .unwrap_or_else(|_| source.to_path_buf());
        let source = source.to_string_lossy();
        let base = source.trim_end_matches('/');
        self.hidden
            .lock()
            .iter()
            .filter_map(|h| h.strip_prefix(base))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(str::to_string)
            .collect()
    }

    /// Keeps `path` (the control socket, say) out of every task's view.
    pub fn hide(&self, path: &Path) {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let path = path.to_string_lossy().into_owned();
        let mut hidden = self.hidden.lock();
        if !hidden
            .iter()
            .any(|h| path.starts_with(&format!("{h}/")) || *h == path)
        {
            hidden.push(path);
        }
    }

    /// The task's hostname: its `--hostname`, or its id's first 12
    /// characters (as a container's).
    pub fn hostname(task: &Task) -> String {
        match task.spec.isolation.hostname.as_str() {
            "" => task.id.chars().take(12).collect(),
            h => h.to_string(),
        }
    }

    /// The limits a task asks for.
    pub fn limits(task: &Task) -> Limits {
        let r = &task.spec.resources;
        Limits {
            memory_bytes: r.limit_memory_bytes,
            nano_cpus: r.limit_nano_cpus,
            pids: r.limit_pids,
        }
    }

    /// The task's capability mask and seccomp filters.
    fn privileges(
        &self,
        task: &Task,
        ids: Option<(u32, u32, Vec<u32>)>,
    ) -> Result<Privileges, ConfineError> {
        let iso = &task.spec.isolation;
        let capabilities = caps::effective(&iso.cap_add, &iso.cap_drop)?;
        let seccomp = if iso.seccomp_unconfined {
            Vec::new()
        } else {
            seccomp::filters(capabilities)?
        };
        let workdir = match task.spec.workdir.as_str() {
            "" => "/",
            w => w,
        };
        Ok(Privileges {
            ids,
            capabilities,
            last_cap: self.last_cap,
            seccomp,
            workdir: cstring(workdir)?,
            rlimits: options::rlimits(&task.spec.options.ulimits)?,
            tty: task.spec.options.tty,
        })
    }

    /// Everything the child needs to start `task` confined, made now
    /// (before the fork), with its cgroup. Blocking (cgroup files).
    pub fn prepare(
        &self,
        task: &Task,
        files: &[TaskFile],
        mounts: &[rootfs::MountPlan],
        netns: Option<i32>,
        ids: Option<(u32, u32, Vec<u32>)>,
    ) -> Result<(child::Launch, TaskCgroup), ConfineError> {
        let spec = &task.spec;
        if !spec.workdir.is_empty() && !spec.workdir.starts_with('/') {
            return Err(ConfineError::Rejected(format!(
                "the working directory {:?} is not an absolute path",
                spec.workdir
            )));
        }
        let privileges = self.privileges(task, ids)?;
        let hidden = self.hidden.lock().clone();
        let targets = crate::sandbox::files::targets(files);
        let steps = rootfs::plan(&rootfs::RootSpec {
            scratch: &self.scratch,
            hidden: &hidden,
            file_targets: &targets,
            workdir: &spec.workdir,
            read_only: spec.isolation.read_only,
            mounts,
        });
        let steps = steps
            .iter()
            .map(CStep::from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfineError::Rejected(format!("invalid path in the task's spec: {e}")))?;
        let root = rootfs::root_of(&self.scratch);
        let prepared_files = crate::sandbox::files::prepare(files, &root)
            .map_err(|e| ConfineError::Rejected(e.to_string()))?;
        let hostname = Self::hostname(task);
        let cgroup = self.cgroups.create(&task.id, &Self::limits(task))?;
        let launch = child::Launch {
            netns,
            cgroup: cgroup.procs.clone(),
            steps,
            root: cstring(&root)?,
            hostname: cstring(&hostname)?,
            files: prepared_files,
            sysctls: options::sysctls(&spec.options)?,
            privileges,
            nice: None,
        };
        Ok((launch, cgroup))
    }

    /// What a health check needs to run inside the task whose program has
    /// host pid `pid`: its namespaces' descriptors (kept open in the
    /// returned files), its cgroup, its user and privileges.
    pub fn join(
        &self,
        task: &Task,
        pid: u32,
        cgroup: &TaskCgroup,
        ids: Option<(u32, u32, Vec<u32>)>,
    ) -> Result<(child::Join, Vec<std::fs::File>), ConfineError> {
        let mut files = Vec::new();
        let mut namespaces = Vec::new();
        for (name, kind) in [
            ("net", libc::CLONE_NEWNET),
            ("ipc", libc::CLONE_NEWIPC),
            ("uts", libc::CLONE_NEWUTS),
            ("pid", libc::CLONE_NEWPID),
            ("mnt", libc::CLONE_NEWNS),
        ] {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let f = std::fs::File::open(&path).map_err(|e| ConfineError::Io(path, e))?;
            namespaces.push((std::os::fd::AsRawFd::as_raw_fd(&f), kind));
            files.push(f);
        }
        let privileges = Privileges {
            // A check's output is a pipe to the daemon, never a terminal.
            tty: false,
            ..self.privileges(task, ids)?
        };
        Ok((
            child::Join {
                cgroup: cgroup.procs.clone(),
                namespaces,
                privileges,
            },
            files,
        ))
    }
}

fn cstring(s: &str) -> Result<CString, ConfineError> {
    CString::new(s).map_err(|_| ConfineError::Path(s.to_string()))
}
