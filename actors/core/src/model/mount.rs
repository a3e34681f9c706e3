//! A task's mounts (docker's `Mount`): what a spec holds, and the rules a
//! spec's mounts must keep, checked with dockerd's words before anything is
//! proposed. Whether a bind source exists is a question for the node that
//! runs the task, not for the spec.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Mounts of one task.
pub const MAX_MOUNTS: usize = 128;
/// A mount's source or target, and a volume label's or option's key or value.
pub const MAX_PATH: usize = 4096;
/// Labels and driver options of one volume mount.
pub const MAX_VOLUME_OPTIONS: usize = 64;
/// A tmpfs mount's size: what a memory size may be.
pub const MAX_TMPFS_BYTES: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A path of the node, seen at the target.
    Bind,
    /// A volume of the node (named, or anonymous when the source is empty).
    Volume,
    /// A tmpfs of the task's own, gone with it.
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }

    pub fn parse(s: &str) -> Option<MountKind> {
        match s {
            "bind" => Some(MountKind::Bind),
            "volume" => Some(MountKind::Volume),
            "tmpfs" => Some(MountKind::Tmpfs),
            _ => None,
        }
    }
}

/// How mounts below a bind mount propagate (`bind-propagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    #[default]
    RPrivate,
    Private,
    RShared,
    Shared,
    RSlave,
    Slave,
}

impl Propagation {
    pub const ALL: [Propagation; 6] = [
        Propagation::RPrivate,
        Propagation::Private,
        Propagation::RShared,
        Propagation::Shared,
        Propagation::RSlave,
        Propagation::Slave,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::RPrivate => "rprivate",
            Propagation::Private => "private",
            Propagation::RShared => "rshared",
            Propagation::Shared => "shared",
            Propagation::RSlave => "rslave",
            Propagation::Slave => "slave",
        }
    }

    pub fn parse(s: &str) -> Option<Propagation> {
        Propagation::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One mount, as docker's `Mount` says it; the options of the other kinds
/// stay at their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: Option<MountKind>,
    /// A path of the node (bind), a volume's name (volume; empty: a new
    /// anonymous volume for each task), nothing (tmpfs). May hold service
    /// templates (`data-{{.Task.Slot}}`).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// docker's `consistency` (`default`, `consistent`, `cached`,
    /// `delegated`): kept and shown; Linux ignores it, as dockerd does.
    pub consistency: String,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindOptions {
    pub propagation: Option<Propagation>,
    /// Submounts of the source are not mounted (`bind-recursive=disabled`).
    pub non_recursive: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeOptions {
    /// A new volume starts empty instead of with what the target held.
    pub no_copy: bool,
    pub labels: BTreeMap<String, String>,
    /// The volume driver (empty or `local`: the node's own).
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsOptions {
    /// 0: no limit of its own.
    pub size_bytes: u64,
    /// Permission bits (0: the kernel's 1777).
    pub mode: u32,
}

impl Mount {
    pub fn kind_str(&self) -> &'static str {
        self.kind.map_or("", MountKind::as_str)
    }

    /// Whether the volume driver is the node's own (`local`).
    pub fn local_volume(&self) -> bool {
        self.volume
            .as_ref()
            .is_none_or(|v| v.driver.is_empty() || v.driver == "local")
    }
}

/// A mount a spec may not hold, in dockerd's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

fn config(m: &Mount, what: impl std::fmt::Display) -> MountError {
    MountError(format!(
        "invalid mount config for type {:?}: {what}",
        m.kind_str()
    ))
}

/// `p` as dockerd cleans a Linux path (`path.Clean`), enough to compare
/// targets: no empty or `.` parts, no trailing slash.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn check_len(m: &Mount, what: &str, s: &str) -> Result<(), MountError> {
    if s.len() > MAX_PATH {
        return Err(config(
            m,
            format!("field {what} is longer than {MAX_PATH} bytes"),
        ));
    }
    Ok(())
}

fn check_map(m: &Mount, what: &str, map: &BTreeMap<String, String>) -> Result<(), MountError> {
    if map.len() > MAX_VOLUME_OPTIONS {
        return Err(config(
            m,
            format!("more than {MAX_VOLUME_OPTIONS} entries in {what}"),
        ));
    }
    for (k, v) in map {
        check_len(m, what, k)?;
        check_len(m, what, v)?;
    }
    Ok(())
}

/// One mount's rules (dockerd's `validateMountConfig`, less the bind
/// source's existence, which the node that runs the task checks).
pub fn check_one(m: &Mount) -> Result<(), MountError> {
    let Some(kind) = m.kind else {
        return Err(config(m, "mount type unknown"));
    };
    for (what, extra) in [
        ("BindOptions", m.bind.is_some() && kind != MountKind::Bind),
        (
            "VolumeOptions",
            m.volume.is_some() && kind != MountKind::Volume,
        ),
        (
            "TmpfsOptions",
            m.tmpfs.is_some() && kind != MountKind::Tmpfs,
        ),
    ] {
        if extra {
            return Err(config(m, format!("field {what} must not be specified")));
        }
    }
    check_len(m, "Target", &m.target)?;
    check_len(m, "Source", &m.source)?;
    if m.target.is_empty() {
        return Err(config(m, "field Target must not be empty"));
    }
    if clean(&m.target) == "/" && m.target.starts_with('/') {
        return Err(config(m, "invalid specification: destination can't be '/'"));
    }
    if !m.target.starts_with('/') {
        return Err(config(
            m,
            format!(
                "invalid mount path: '{}' mount path must be absolute",
                m.target
            ),
        ));
    }
    if !["", "default", "consistent", "cached", "delegated"].contains(&m.consistency.as_str()) {
        return Err(config(m, format!("invalid consistency: {}", m.consistency)));
    }
    match kind {
        MountKind::Bind => {
            if m.source.is_empty() {
                return Err(config(m, "field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(config(
                    m,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
        }
        MountKind::Volume => {
            if let Some(v) = &m.volume {
                check_len(m, "VolumeOptions.DriverConfig.Name", &v.driver)?;
                check_map(m, "VolumeOptions.Labels", &v.labels)?;
                check_map(m, "VolumeOptions.DriverConfig.Options", &v.driver_options)?;
            }
        }
        MountKind::Tmpfs => {
            if !m.source.is_empty() {
                return Err(config(m, "field Source must not be specified"));
            }
            if let Some(t) = &m.tmpfs {
                if t.mode > 0o7777 {
                    return Err(config(m, format!("invalid tmpfs mode: {:o}", t.mode)));
                }
                if t.size_bytes > MAX_TMPFS_BYTES {
                    return Err(config(m, "invalid tmpfs size"));
                }
            }
        }
    }
    Ok(())
}

/// A spec's mounts: each keeps its rules, and no two share a target
/// (swarmkit's words).
pub fn check(mounts: &[Mount]) -> Result<(), MountError> {
    if mounts.len() > MAX_MOUNTS {
        return Err(MountError(format!(
            "a task may have at most {MAX_MOUNTS} mounts, not {}",
            mounts.len()
        )));
    }
    let mut targets = std::collections::BTreeSet::new();
    for m in mounts {
        check_one(m)?;
        if !targets.insert(clean(&m.target)) {
            return Err(MountError(format!(
                "invalid duplicate mount point: {}",
                m.target
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn mount(kind: MountKind, source: &str, target: &str) -> Mount {
        Mount {
            kind: Some(kind),
            source: source.into(),
            target: target.into(),
            ..Mount::default()
        }
    }

    #[test]
    fn dockerds_rules_in_dockerds_words() {
        let ok = [
            mount(MountKind::Bind, "/srv", "/data"),
            mount(MountKind::Volume, "data-{{.Task.Slot}}", "/var/lib/db"),
            mount(MountKind::Volume, "", "/anon"),
            mount(MountKind::Tmpfs, "", "/scratch"),
        ];
        assert_eq!(check(&ok), Ok(()));
        let bad = |m: Mount| check(&[m]).map_err(|e| e.0).unwrap_err();
        assert_eq!(
            bad(mount(MountKind::Bind, "relative", "/x")),
            "invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute"
        );
        assert_eq!(
            bad(mount(MountKind::Bind, "", "/x")),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            bad(mount(MountKind::Tmpfs, "/x", "/x")),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            bad(mount(MountKind::Volume, "v", "x")),
            "invalid mount config for type \"volume\": invalid mount path: 'x' mount path must be absolute"
        );
        assert_eq!(
            bad(mount(MountKind::Volume, "v", "//")),
            "invalid mount config for type \"volume\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            bad(Mount {
                kind: None,
                ..mount(MountKind::Bind, "/a", "/b")
            }),
            "invalid mount config for type \"\": mount type unknown"
        );
        assert_eq!(
            bad(Mount {
                tmpfs: Some(TmpfsOptions::default()),
                ..mount(MountKind::Bind, "/a", "/b")
            }),
            "invalid mount config for type \"bind\": field TmpfsOptions must not be specified"
        );
        assert_eq!(
            check(&[
                mount(MountKind::Tmpfs, "", "/a/"),
                mount(MountKind::Volume, "v", "/a")
            ])
            .map_err(|e| e.0),
            Err("invalid duplicate mount point: /a".into())
        );
        let many = vec![mount(MountKind::Tmpfs, "", "/a"); MAX_MOUNTS + 1];
        assert!(check(&many).is_err());
    }
}
