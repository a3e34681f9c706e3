//! A task's own root filesystem, as a plan of steps (pure, so it is tested
//! as data) that `child` carries out in the task's new mount namespace,
//! between fork and exec:
//!
//! - a tmpfs (the task's scratch, in memory, gone with the namespace) holds
//!   the overlay's upper and work dirs; the overlay's lower is the host's
//!   root filesystem, read-only (only that filesystem: other host mounts,
//!   `/proc`, `/sys`, `/dev`, tmpfs mounts, are not part of it);
//! - a fresh `/proc` (the task's pid namespace), a `/dev` with docker's
//!   default devices only (bound from the host's), `devpts`, `/dev/shm`,
//!   `/dev/mqueue`, a read-only `/sys`, and a fresh `/run`;
//! - docker's masked and read-only paths of `/proc` and `/sys`;
//! - the node's data dir and control socket hidden;
//! - the directories and files that secrets, configs and the working
//!   directory need, made in the upper layer (never on the host);
//! - with `--read-only`, the root made read-only once that is done.
//!
//! Then the child `pivot_root`s into it. Every writable filesystem in the
//! task's view is `nodev`: a device node the task makes (it keeps
//! CAP_MKNOD, as in docker) cannot be opened; only the bound default devices
//! can.

/// One thing the child does; paths are absolute, in the host's view, under
/// the task's scratch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mount(2)`; empty strings are passed as NULL.
    Mount {
        source: String,
        target: String,
        fstype: String,
        flags: u64,
        data: String,
    },
    /// `mkdir`; an existing one is fine.
    Mkdir(String),
    /// Makes an empty file to mount over (a symlink there is replaced).
    Touch(String),
    Symlink {
        target: String,
        link: String,
    },
    /// Binds `/dev/null` over a file, or a read-only empty tmpfs over a
    /// directory; a missing path is left alone.
    Mask(String),
    /// Binds a path onto itself read-only; a missing path is left alone.
    ReadOnly(String),
}

/// What the root is built from.
#[derive(Debug, Clone)]
pub struct RootSpec<'a> {
    /// A directory on the host where the task's scratch tmpfs is mounted
    /// (in the task's mount namespace only).
    pub scratch: &'a str,
    /// Host paths the task must not see (the data dir, the control socket).
    pub hidden: &'a [String],
    /// Targets of files mounted into the task (secrets and configs).
    pub file_targets: &'a [String],
    /// The working directory, made if missing (empty: `/`).
    pub workdir: &'a str,
    pub read_only: bool,
    /// The task's bind, volume and tmpfs mounts, in the spec's order.
    pub mounts: &'a [MountPlan],
}

/// One of a task's mounts, resolved on the node: a bind's or volume's host
/// directory or file, or a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// The host path bound (`None`: a tmpfs).
    pub source: Option<String>,
    /// Whether the source is a directory (else a file is bound).
    pub source_is_dir: bool,
    /// Absolute, in the task's view.
    pub target: String,
    pub read_only: bool,
    /// Submounts of the source are bound too (docker's default).
    pub recursive: bool,
    /// `MS_PRIVATE`, `MS_SHARED` or `MS_SLAVE`, with `MS_REC` for the r- kinds.
    pub propagation: u64,
    /// A tmpfs's `size=` and `mode=` (0: none given).
    pub tmpfs_size: u64,
    pub tmpfs_mode: u32,
    /// Hidden paths of the host under the source, relative to it: masked
    /// at the target as they are in the root.
    pub masks: Vec<String>,
}

/// `path` with `.` and `..` resolved by name, never above `/`: a target
/// cannot name a place outside the task's root.
pub fn lexical(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The steps of the task's mounts: the target made in the root's upper
/// layer, the mount, its propagation, and a remount that makes it `nodev`
/// and `nosuid` (every writable filesystem in the task's view is `nodev`)
/// and read-only when asked.
fn mount_steps(root: &str, m: &MountPlan, steps: &mut Vec<Step>) {
    let target = lexical(&m.target);
    let at = format!("{root}{target}");
    match &m.source {
        Some(source) => {
            if m.source_is_dir {
                mkdir_all(root, &target, steps);
            } else {
                if let Some((parent, _)) = target.rsplit_once('/') {
                    mkdir_all(root, parent, steps);
                }
                steps.push(Step::Touch(at.clone()));
            }
            let rec = if m.recursive { libc::MS_REC } else { 0 };
            steps.push(mount(source, at.clone(), "", libc::MS_BIND | rec, ""));
            steps.push(mount("", at.clone(), "", m.propagation, ""));
            let ro = if m.read_only { libc::MS_RDONLY } else { 0 };
            steps.push(mount(
                "",
                at.clone(),
                "",
                libc::MS_REMOUNT | libc::MS_BIND | NOSUID | NODEV | ro,
                "",
            ));
            steps.extend(m.masks.iter().map(|rel| Step::Mask(format!("{at}{rel}"))));
        }
        None => {
            mkdir_all(root, &target, steps);
            let mut data = Vec::new();
            if m.tmpfs_size != 0 {
                data.push(format!("size={}", m.tmpfs_size));
            }
            if m.tmpfs_mode != 0 {
                data.push(format!("mode={:o}", m.tmpfs_mode));
            }
            let ro = if m.read_only { libc::MS_RDONLY } else { 0 };
            steps.push(mount(
                "tmpfs",
                at,
                "tmpfs",
                NOSUID | NODEV | ro,
                &data.join(","),
            ));
        }
    }
}

/// The devices docker gives a container by default.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// docker's masked paths (moby `oci/defaults.go`).
const MASKED: [&str; 13] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/sysrq-trigger",
];

/// docker's read-only paths.
const READ_ONLY: [&str; 4] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];

const NOSUID: u64 = libc::MS_NOSUID;
const NODEV: u64 = libc::MS_NODEV;
const NOEXEC: u64 = libc::MS_NOEXEC;

fn mount(source: &str, target: String, fstype: &str, flags: u64, data: &str) -> Step {
    Step::Mount {
        source: source.into(),
        target,
        fstype: fstype.into(),
        flags,
        data: data.into(),
    }
}

/// Every ancestor of `path` under `root` (root excluded), then `path`.
fn mkdir_all(root: &str, path: &str, out: &mut Vec<Step>) {
    let mut at = root.to_string();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        at.push('/');
        at.push_str(part);
        let step = Step::Mkdir(at.clone());
        if !out.contains(&step) {
            out.push(step);
        }
    }
}

/// The task's root directory in the host's view, before `pivot_root`.
pub fn root_of(scratch: &str) -> String {
    format!("{scratch}/root")
}

/// The steps that build the root (in order).
pub fn plan(spec: &RootSpec) -> Vec<Step> {
    let s = spec.scratch;
    let root = root_of(s);
    let r = |p: &str| format!("{root}{p}");
    let mut steps = vec![
        mount("tmpfs", s.into(), "tmpfs", NOSUID | NODEV, "mode=0700"),
        Step::Mkdir(format!("{s}/upper")),
        Step::Mkdir(format!("{s}/work")),
        Step::Mkdir(root.clone()),
        mount(
            "overlay",
            root.clone(),
            "overlay",
            NODEV,
            &format!("lowerdir=/,upperdir={s}/upper,workdir={s}/work"),
        ),
        Step::Mkdir(r("/proc")),
        mount("proc", r("/proc"), "proc", NOSUID | NODEV | NOEXEC, ""),
        Step::Mkdir(r("/dev")),
        mount(
            "tmpfs",
            r("/dev"),
            "tmpfs",
            NOSUID | NODEV,
            "mode=755,size=65536k",
        ),
    ];
    for dev in DEVICES {
        steps.push(Step::Touch(r(&format!("/dev/{dev}"))));
        steps.push(mount(
            &format!("/dev/{dev}"),
            r(&format!("/dev/{dev}")),
            "",
            libc::MS_BIND,
            "",
        ));
    }
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ] {
        steps.push(Step::Symlink {
            target: target.into(),
            link: r(link),
        });
    }
    steps.extend([
        Step::Mkdir(r("/dev/pts")),
        mount(
            "devpts",
            r("/dev/pts"),
            "devpts",
            NOSUID | NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        ),
        Step::Mkdir(r("/dev/shm")),
        mount(
            "shm",
            r("/dev/shm"),
            "tmpfs",
            NOSUID | NODEV | NOEXEC,
            "mode=1777,size=65536k",
        ),
        Step::Mkdir(r("/dev/mqueue")),
        mount(
            "mqueue",
            r("/dev/mqueue"),
            "mqueue",
            NOSUID | NODEV | NOEXEC,
            "",
        ),
        Step::Mkdir(r("/sys")),
        mount(
            "sysfs",
            r("/sys"),
            "sysfs",
            NOSUID | NODEV | NOEXEC | libc::MS_RDONLY,
            "",
        ),
        Step::Mkdir(r("/run")),
        mount("tmpfs", r("/run"), "tmpfs", NOSUID | NODEV, "mode=755"),
    ]);
    steps.extend(MASKED.iter().map(|p| Step::Mask(r(p))));
    steps.extend(READ_ONLY.iter().map(|p| Step::ReadOnly(r(p))));
    steps.extend(spec.hidden.iter().map(|p| Step::Mask(r(p))));
    for target in spec.file_targets {
        if let Some((parent, _)) = target.rsplit_once('/') {
            mkdir_all(&root, parent, &mut steps);
        }
        steps.push(Step::Touch(r(target)));
    }
    mkdir_all(&root, "/run/secrets", &mut steps);
    mkdir_all(&root, spec.workdir, &mut steps);
    for m in spec.mounts {
        mount_steps(&root, m, &mut steps);
    }
    if spec.read_only {
        steps.push(mount(
            "",
            root.clone(),
            "",
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | NODEV,
            "",
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use crate::confine::rootfs::{plan, RootSpec, Step};

    fn spec<'a>(hidden: &'a [String], files: &'a [String], read_only: bool) -> RootSpec<'a> {
        RootSpec {
            scratch: "/d/confine",
            hidden,
            file_targets: files,
            workdir: "/srv/app",
            read_only,
            mounts: &[],
        }
    }

    #[test]
    fn the_root_is_an_overlay_of_the_host_root_with_fresh_proc_dev_and_run() {
        let steps = plan(&spec(&[], &[], false));
        let targets: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount { target, fstype, .. } if !fstype.is_empty() => Some(target.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            targets,
            vec![
                "/d/confine",
                "/d/confine/root",
                "/d/confine/root/proc",
                "/d/confine/root/dev",
                "/d/confine/root/dev/pts",
                "/d/confine/root/dev/shm",
                "/d/confine/root/dev/mqueue",
                "/d/confine/root/sys",
                "/d/confine/root/run",
            ]
        );
        assert!(steps.contains(&Step::Mask("/d/confine/root/proc/kcore".into())));
        assert!(steps.contains(&Step::Mkdir("/d/confine/root/srv/app".into())));
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::Mount { flags, .. } if flags & libc::MS_REMOUNT != 0)));
    }

    #[test]
    fn hidden_paths_are_masked_and_file_targets_made_in_the_upper_layer() {
        let hidden = vec!["/var/lib/shoal".to_string()];
        let files = vec!["/etc/docker/registry/config.yml".to_string()];
        let steps = plan(&spec(&hidden, &files, true));
        assert!(steps.contains(&Step::Mask("/d/confine/root/var/lib/shoal".into())));
        let made = |p: &str| steps.iter().position(|s| *s == Step::Mkdir(p.into()));
        let (etc, docker, registry) = (
            made("/d/confine/root/etc"),
            made("/d/confine/root/etc/docker"),
            made("/d/confine/root/etc/docker/registry"),
        );
        assert!(etc < docker && docker < registry && etc.is_some());
        let touched = steps.iter().position(|s| {
            *s == Step::Touch("/d/confine/root/etc/docker/registry/config.yml".into())
        });
        assert!(touched > registry);
        // Read-only last, once everything is made.
        assert!(matches!(
            steps.last(),
            Some(Step::Mount { flags, .. }) if flags & libc::MS_RDONLY != 0 && flags & libc::MS_REMOUNT != 0
        ));
    }
}
