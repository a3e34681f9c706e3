//! A process task's mounts, resolved on its node before it starts: a bind's
//! source must exist (dockerd's words when it does not), a volume is the
//! node's own (`volumes`), made now if new; a tmpfs needs nothing. Blocking
//! (file system): called on the starter's thread.

use std::path::Path;

use shoal_core::model::mount::{Mount, MountKind, Propagation};
use shoal_core::model::Task;

use crate::confine::rootfs::{lexical, MountPlan};
use crate::confine::Confiner;
use crate::volumes::Volumes;

fn propagation_flags(p: Propagation) -> u64 {
    match p {
        Propagation::RPrivate => libc::MS_PRIVATE | libc::MS_REC,
        Propagation::Private => libc::MS_PRIVATE,
        Propagation::RShared => libc::MS_SHARED | libc::MS_REC,
        Propagation::Shared => libc::MS_SHARED,
        Propagation::RSlave => libc::MS_SLAVE | libc::MS_REC,
        Propagation::Slave => libc::MS_SLAVE,
    }
}

fn config_error(m: &Mount, what: impl std::fmt::Display) -> String {
    format!("invalid mount config for type {:?}: {what}", m.kind_str())
}

/// The plans of `task`'s mounts (its spec's, with templates expanded by the
/// caller), making its volumes; an error rejects the task.
pub fn resolve(
    volumes: &Volumes,
    confiner: &Confiner,
    task: &Task,
    mounts: &[Mount],
) -> Result<Vec<MountPlan>, String> {
    let mut plans = Vec::with_capacity(mounts.len());
    for (n, m) in mounts.iter().enumerate() {
        let bind = m.bind.clone().unwrap_or_default();
        let mut plan = MountPlan {
            source: None,
            source_is_dir: true,
            target: m.target.clone(),
            read_only: m.read_only,
            recursive: !bind.non_recursive,
            propagation: propagation_flags(bind.propagation.unwrap_or_default()),
            tmpfs_size: 0,
            tmpfs_mode: 0,
            masks: Vec::new(),
        };
        match m.kind {
            Some(MountKind::Bind) => {
                let source = Path::new(&m.source);
                let meta = std::fs::metadata(source).map_err(|_| {
                    config_error(m, format!("bind source path does not exist: {}", m.source))
                })?;
                plan.source_is_dir = meta.is_dir();
                plan.masks = confiner.hidden_under(source);
                plan.source = Some(m.source.clone());
            }
            Some(MountKind::Volume) => {
                let opts = m.volume.clone().unwrap_or_default();
                let name = if m.source.is_empty() {
                    Volumes::anonymous(&task.id, n)
                } else {
                    m.source.clone()
                };
                // docker seeds a new volume with what the image holds at
                // the target; a process task's image is the host's root.
                // Never from what tasks must not see (the data dir), nor
                // from a directory that holds some of it.
                let seed_path = lexical(&m.target);
                let seed = Path::new(&seed_path);
                let hidden = confiner.hides(seed) || !confiner.hidden_under(seed).is_empty();
                let seed = (!opts.no_copy && !hidden).then_some(seed);
                // Taken before it is made: a prune never removes it between.
                volumes.acquire(&name, &task.id);
                let data = volumes.ensure(&name, &opts.labels, seed)?;
                plan.source = Some(data.to_string_lossy().into_owned());
            }
            Some(MountKind::Tmpfs) => {
                let t = m.tmpfs.clone().unwrap_or_default();
                plan.tmpfs_size = t.size_bytes;
                plan.tmpfs_mode = t.mode;
            }
            None => return Err(config_error(m, "mount type unknown")),
        }
        plans.push(plan);
    }
    Ok(plans)
}
