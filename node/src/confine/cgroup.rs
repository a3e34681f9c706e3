//! A cgroup per task, on cgroup v2 when the node has it with the memory,
//! pids and cpu controllers, else on the v1 hierarchies of those
//! controllers (and the freezer's, to stop a task's processes before they
//! are killed). Every task's processes are in its cgroup, so that stopping
//! it, removing it, and reaping what a daemon killed with `kill -9` left,
//! reach all of them.
//!
//! Layout: `<hierarchy>/shoal/<tag>/<task id>`, `tag` naming this data dir
//! (so that two daemons on one host never touch each other's tasks).
//!
//! Blocking (file writes, and waits while a cgroup empties): call it from the
//! starter threads or a blocking task, never from an actor handler.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfineError;

/// The parent of every shoal cgroup in a hierarchy.
const PARENT: &str = "shoal";

/// Which cgroup interface this node offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy mounted here, with memory, pids and cpu.
    V2(PathBuf),
    /// One mount per controller (`None`: not mounted).
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        freezer: Option<PathBuf>,
    },
}

/// The limits a task's cgroup enforces (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    pub pids: u64,
}

/// CFS period, as docker uses (100 ms).
const CPU_PERIOD_US: u64 = 100_000;

impl Hierarchy {
    /// Finds the hierarchy from this process's mount table.
    /// Finds the hierarchy from this process's mount table. A daemon
    /// started by `ip netns exec` has a fresh `/sys` without the cgroup
    /// mounts: then it mounts the hierarchies the kernel has (from
    /// `/proc/cgroups`) under `mount_dir`, in its own mount namespace (the
    /// same hierarchies, reached by another path).
    pub fn detect(mount_dir: &Path) -> Option<Hierarchy> {
        let read = |dir: &Path| {
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default()
        };
        let own = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(h) = Self::from_mountinfo(&own, read) {
            return Some(h);
        }
        let table = std::fs::read_to_string("/proc/cgroups").ok()?;
        for (name, options) in Self::v1_hierarchies(&table) {
            let dir = mount_dir.join(&name);
            let (Ok(()), Ok(target), Ok(data)) = (
                std::fs::create_dir_all(&dir),
                CString::new(dir.into_os_string().into_vec()),
                CString::new(options),
            ) else {
                continue;
            };
            // SAFETY: C strings that outlive the call.
            let rc = unsafe {
                libc::mount(
                    c"cgroup".as_ptr(),
                    target.as_ptr(),
                    c"cgroup".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    data.as_ptr().cast(),
                )
            };
            if rc != 0 {
                tracing::warn!(hierarchy = %name, error = %std::io::Error::last_os_error(), "cannot mount a cgroup hierarchy");
            }
        }
        let own = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_mountinfo(&own, read)
    }

    /// The v1 hierarchies holding memory, pids, cpu or freezer, from
    /// `/proc/cgroups`: a directory name and the mount options (every
    /// controller of that hierarchy, comma-separated).
    fn v1_hierarchies(table: &str) -> Vec<(String, String)> {
        let mut by_id: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let [name, id, _, "1"] = cols.as_slice() {
                if let Ok(id) = id.parse::<u32>() {
                    if id > 0 {
                        by_id.entry(id).or_default().push(name.to_string());
                    }
                }
            }
        }
        by_id
            .into_values()
            .filter(|c| {
                c.iter()
                    .any(|n| ["memory", "pids", "cpu", "freezer"].contains(&n.as_str()))
            })
            .map(|c| (c.join("_"), c.join(",")))
            .collect()
    }

    /// Pure part of `detect`: `controllers` reads a v2 mount's controller list.
    fn from_mountinfo(table: &str, controllers: impl Fn(&Path) -> String) -> Option<Hierarchy> {
        let mut v1 = (None, None, None, None);
        for line in table.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split_whitespace().nth(4) else {
                continue;
            };
            let mut right = right.split_whitespace();
            let fstype = right.next().unwrap_or_default();
            let options = right.nth(1).unwrap_or_default();
            let point = PathBuf::from(mount_point);
            match fstype {
                "cgroup2" => {
                    let have = controllers(&point);
                    let have: Vec<&str> = have.split_whitespace().collect();
                    if ["memory", "pids", "cpu"].iter().all(|c| have.contains(c)) {
                        return Some(Hierarchy::V2(point));
                    }
                }
                "cgroup" => {
                    let opts: Vec<&str> = options.split(',').collect();
                    if opts.contains(&"memory") {
                        v1.0 = Some(point.clone());
                    }
                    if opts.contains(&"pids") {
                        v1.1 = Some(point.clone());
                    }
                    if opts.contains(&"cpu") {
                        v1.2 = Some(point.clone());
                    }
                    if opts.contains(&"freezer") {
                        v1.3 = Some(point);
                    }
                }
                _ => {}
            }
        }
        let (memory, pids, cpu, freezer) = v1;
        (memory.is_some() || pids.is_some() || freezer.is_some()).then_some(Hierarchy::V1 {
            memory,
            pids,
            cpu,
            freezer,
        })
    }

    /// What `node inspect` shows: `v2`, or `v1` with the controllers found.
    pub fn describe(&self) -> String {
        match self {
            Hierarchy::V2(_) => "v2 (memory, pids, cpu)".into(),
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => {
                let have: Vec<&str> = [
                    ("memory", memory),
                    ("pids", pids),
                    ("cpu", cpu),
                    ("freezer", freezer),
                ]
                .into_iter()
                .filter(|(_, p)| p.is_some())
                .map(|(n, _)| n)
                .collect();
                format!("v1 ({})", have.join(", "))
            }
        }
    }

    /// The limits this node cannot enforce, as the flags that ask for them.
    pub fn missing(&self, limits: &Limits) -> Vec<&'static str> {
        let Hierarchy::V1 {
            memory, pids, cpu, ..
        } = self
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if limits.memory_bytes > 0 && memory.is_none() {
            out.push("--limit-memory (no memory cgroup)");
        }
        if limits.nano_cpus > 0 && cpu.is_none() {
            out.push("--limit-cpu (no cpu cgroup)");
        }
        if limits.pids > 0 && pids.is_none() {
            out.push("--limit-pids (no pids cgroup)");
        }
        out
    }

    /// The directories of one group (`rel` under each hierarchy this uses).
    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match self {
            Hierarchy::V2(root) => vec![root.join(rel)],
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => {
                let mut out: Vec<PathBuf> = Vec::new();
                for root in [memory, pids, cpu, freezer].into_iter().flatten() {
                    let dir = root.join(rel);
                    // cpu and cpuacct (say) may share one mount.
                    if !out.contains(&dir) {
                        out.push(dir);
                    }
                }
                out
            }
        }
    }
}

/// This node's tasks' cgroups.
#[derive(Debug)]
pub struct Cgroups {
    hierarchy: Hierarchy,
    /// `shoal/<tag>`.
    group: PathBuf,
}

/// One task's cgroup, made before its process starts.
#[derive(Debug, Clone)]
pub struct TaskCgroup {
    hierarchy: Hierarchy,
    rel: PathBuf,
    /// The `cgroup.procs` files the child writes `0` to (joins), made
    /// before the fork.
    pub procs: Vec<CString>,
}

fn write(path: &Path, value: &str) -> Result<(), ConfineError> {
    std::fs::write(path, value).map_err(|e| ConfineError::Cgroup(path.to_path_buf(), e))
}

fn mkdir(path: &Path) -> Result<(), ConfineError> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(ConfineError::Cgroup(path.to_path_buf(), e))
        }
        _ => Ok(()),
    }
}

impl Cgroups {
    /// Makes `shoal/<tag>` in the hierarchy, after removing every task
    /// cgroup a previous daemon of this data dir left (killing what still
    /// runs in them).
    pub fn open(hierarchy: Hierarchy, tag: &str) -> Result<Cgroups, ConfineError> {
        let group = Path::new(PARENT).join(tag);
        if let Hierarchy::V2(root) = &hierarchy {
            // Controllers reach a group only through its parents' subtree_control.
            mkdir(&root.join(PARENT))?;
            write(&root.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
            write(
                &root.join(PARENT).join("cgroup.subtree_control"),
                "+memory +pids +cpu",
            )?;
        }
        for dir in hierarchy.dirs(Path::new(PARENT)) {
            mkdir(&dir)?;
        }
        for dir in hierarchy.dirs(&group) {
            mkdir(&dir)?;
        }
        if let Hierarchy::V2(root) = &hierarchy {
            write(
                &root.join(&group).join("cgroup.subtree_control"),
                "+memory +pids +cpu",
            )?;
        }
        let cgroups = Cgroups { hierarchy, group };
        cgroups.reap();
        Ok(cgroups)
    }

    /// Removes the groups of daemons that are gone (their data dir may be
    /// gone too), as the sandbox sweeps their namespaces: each daemon
    /// leaves its pid in `owners/<tag>`.
    pub fn sweep_dead_owners(&self, owners: &Path, own: &str) {
        let Ok(dir) = std::fs::read_dir(owners) else {
            return;
        };
        for e in dir.flatten() {
            let tag = e.file_name().to_string_lossy().into_owned();
            if tag == own || tag.contains('/') || tag.starts_with('.') {
                continue;
            }
            let pid: Option<i32> = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            // SAFETY: signal 0 only checks that the process exists.
            let alive = pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
            if alive {
                continue;
            }
            tracing::info!(%tag, "removing the task cgroups of a daemon that is gone");
            let gone = Cgroups {
                hierarchy: self.hierarchy.clone(),
                group: Path::new(PARENT).join(&tag),
            };
            gone.reap();
            gone.remove_group();
            let _ = std::fs::remove_file(e.path());
        }
    }

    /// This data dir's tag.
    pub fn tag(&self) -> String {
        self.group
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Removes `shoal/<tag>` (once its task groups are gone).
    pub fn remove_group(&self) {
        for d in self.hierarchy.dirs(&self.group) {
            let _ = std::fs::remove_dir(d);
        }
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Kills and removes every task cgroup of this data dir.
    pub fn reap(&self) {
        let mut tasks: Vec<String> = Vec::new();
        for dir in self.hierarchy.dirs(&self.group) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !tasks.contains(&name) {
                        tasks.push(name);
                    }
                }
            }
        }
        for task in tasks {
            tracing::info!(%task, "removing a task cgroup a previous daemon left");
            self.task(&task).remove();
        }
    }

    fn task(&self, task_id: &str) -> TaskCgroup {
        let rel = self.group.join(task_id);
        let procs = self
            .hierarchy
            .dirs(&rel)
            .iter()
            .filter_map(|d| CString::new(d.join("cgroup.procs").into_os_string().into_vec()).ok())
            .collect();
        TaskCgroup {
            hierarchy: self.hierarchy.clone(),
            rel,
            procs,
        }
    }

    /// Makes the task's cgroup with its limits (a leftover of the same
    /// task, from an earlier try, goes first).
    pub fn create(&self, task_id: &str, limits: &Limits) -> Result<TaskCgroup, ConfineError> {
        if task_id.is_empty() || task_id.contains('/') || task_id.starts_with('.') {
            return Err(ConfineError::Rejected(format!(
                "invalid task id {task_id:?}"
            )));
        }
        let missing = self.hierarchy.missing(limits);
        if let Some(what) = missing.first() {
            return Err(ConfineError::Unsupported((*what).to_string()));
        }
        let cg = self.task(task_id);
        cg.remove();
        for dir in self.hierarchy.dirs(&cg.rel) {
            // The group too, should something have removed it.
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| ConfineError::Cgroup(parent.to_path_buf(), e))?;
            }
            mkdir(&dir)?;
        }
        let made = cg.limit(limits);
        if made.is_err() {
            cg.remove();
        }
        made.map(|()| cg)
    }
}

use std::os::unix::ffi::OsStringExt;

impl TaskCgroup {
    fn dir_of(&self, which: Controller) -> Option<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(root) => Some(root.join(&self.rel)),
            Hierarchy::V1 {
                memory,
                pids,
                cpu,
                freezer,
            } => match which {
                Controller::Memory => memory.as_ref(),
                Controller::Pids => pids.as_ref(),
                Controller::Cpu => cpu.as_ref(),
                Controller::Freezer => freezer.as_ref(),
            }
            .map(|root| root.join(&self.rel)),
        }
    }

    fn limit(&self, limits: &Limits) -> Result<(), ConfineError> {
        let v2 = matches!(self.hierarchy, Hierarchy::V2(_));
        if limits.memory_bytes > 0 {
            if let Some(dir) = self.dir_of(Controller::Memory) {
                let bytes = limits.memory_bytes.to_string();
                if v2 {
                    write(&dir.join("memory.max"), &bytes)?;
                    // No swap beyond the limit: the task is killed at it, as
                    // a container on a node without swap is.
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                } else {
                    write(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    let swap = dir.join("memory.memsw.limit_in_bytes");
                    if swap.exists() {
                        write(&swap, &bytes)?;
                    }
                }
            }
        }
        if limits.nano_cpus > 0 {
            if let Some(dir) = self.dir_of(Controller::Cpu) {
                let quota =
                    (limits.nano_cpus.saturating_mul(CPU_PERIOD_US) / 1_000_000_000).max(1000);
                if v2 {
                    write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                } else {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        if limits.pids > 0 {
            if let Some(dir) = self.dir_of(Controller::Pids) {
                write(&dir.join("pids.max"), &limits.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process of the task.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.dir_of(Controller::Memory) else {
            return 0;
        };
        let file = match self.hierarchy {
            Hierarchy::V2(_) => "memory.events",
            Hierarchy::V1 { .. } => "memory.oom_control",
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for dir in self.hierarchy.dirs(&self.rel) {
            for line in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(p) = line.trim().parse::<i32>() {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    /// Kills every process in the cgroup (frozen first where a freezer is,
    /// so that none forks while the others die).
    pub fn kill_all(&self) {
        if let Hierarchy::V2(root) = &self.hierarchy {
            let kill = root.join(&self.rel).join("cgroup.kill");
            if std::fs::write(&kill, "1").is_ok() {
                return;
            }
        }
        let freezer = self
            .dir_of(Controller::Freezer)
            .map(|d| d.join("freezer.state"));
        if let Some(state) = &freezer {
            let _ = std::fs::write(state, "FROZEN");
        }
        for pid in self.pids() {
            // SAFETY: a signal to a process id read from our own cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if let Some(state) = &freezer {
            let _ = std::fs::write(state, "THAWED");
        }
    }

    /// Kills what is left and removes the cgroup. Waits (up to a few
    /// seconds) for the killed processes to leave it: a cgroup with
    /// processes cannot be removed.
    pub fn remove(&self) {
        let dirs = self.hierarchy.dirs(&self.rel);
        if !dirs.iter().any(|d| d.exists()) {
            return;
        }
        for _ in 0..200 {
            if self.pids().is_empty() {
                break;
            }
            self.kill_all();
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a task cgroup");
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Controller {
    Memory,
    Pids,
    Cpu,
    Freezer,
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::confine::cgroup::{Hierarchy, Limits};

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_node_with_an_empty_unified_hierarchy_uses_v1() {
        let h = Hierarchy::from_mountinfo(HYBRID, |_| String::new()).expect("found");
        assert_eq!(
            h,
            Hierarchy::V1 {
                memory: Some(PathBuf::from("/sys/fs/cgroup/memory")),
                pids: Some(PathBuf::from("/sys/fs/cgroup/pids")),
                cpu: Some(PathBuf::from("/sys/fs/cgroup/cpu")),
                freezer: Some(PathBuf::from("/sys/fs/cgroup/freezer")),
            }
        );
        assert!(h
            .missing(&Limits {
                memory_bytes: 1,
                nano_cpus: 1,
                pids: 1
            })
            .is_empty());
    }

    #[test]
    fn a_unified_hierarchy_with_the_controllers_is_preferred() {
        let h = Hierarchy::from_mountinfo(HYBRID, |p: &Path| {
            if p.ends_with("unified") {
                "cpuset cpu io memory pids".into()
            } else {
                String::new()
            }
        })
        .expect("found");
        assert_eq!(h, Hierarchy::V2(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn the_v1_hierarchies_to_mount_come_from_proc_cgroups() {
        let table = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                     cpu\t1\t15\t1\ncpuacct\t1\t8\t1\nmemory\t4\t75\t1\n\
                     net_cls\t0\t8\t1\ndevices\t5\t8\t1\npids\t8\t15\t1\n";
        assert_eq!(
            Hierarchy::v1_hierarchies(table),
            vec![
                ("cpu_cpuacct".to_string(), "cpu,cpuacct".to_string()),
                ("memory".to_string(), "memory".to_string()),
                ("pids".to_string(), "pids".to_string()),
            ]
        );
    }

    #[test]
    fn a_missing_controller_names_the_flag_it_refuses() {
        let h = Hierarchy::V1 {
            memory: None,
            pids: Some(PathBuf::from("/p")),
            cpu: None,
            freezer: None,
        };
        let missing = h.missing(&Limits {
            memory_bytes: 1,
            nano_cpus: 0,
            pids: 5,
        });
        assert_eq!(missing, vec!["--limit-memory (no memory cgroup)"]);
    }
}
