//! The node's own volumes, which process tasks mount: a directory each,
//! `<data-dir>/volumes/<name>/_data` (docker's layout), with what it was
//! made with in `<name>/volume.json`. A named volume outlives its tasks, as
//! docker's `local` volumes do; a task's anonymous volumes
//! (`anon-<task id>-<n>`) go when the task is removed. The docker driver's
//! volumes are its engine's. Blocking (file system): called off the
//! runtime's threads.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Entries a new volume copies from what its target held (docker copies
/// the image's files); past it the copy stops, and the volume says so in
/// the daemon's log.
const MAX_SEED_ENTRIES: usize = 10_000;

/// What a volume was made with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMeta {
    pub created_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
}

/// One volume as `volume ls` and `volume inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub mountpoint: PathBuf,
    pub meta: VolumeMeta,
}

pub struct Volumes {
    dir: PathBuf,
    /// The tasks of this daemon that mount each volume (by name).
    users: parking_lot::Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>,
}

/// dockerd's rule for a `local` volume's name, in its words.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name.len() >= 2
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ))
    }
}

impl Volumes {
    pub fn new(dir: PathBuf) -> Volumes {
        Volumes {
            dir,
            users: Default::default(),
        }
    }

    /// Notes that `task_id` mounts `name` (it cannot be removed meanwhile).
    pub fn acquire(&self, name: &str, task_id: &str) {
        self.users
            .lock()
            .entry(name.to_string())
            .or_default()
            .insert(task_id.to_string());
    }

    /// Notes that `task_id` mounts nothing any more.
    pub fn release(&self, task_id: &str) {
        let mut users = self.users.lock();
        users.retain(|_, tasks| {
            tasks.remove(task_id);
            !tasks.is_empty()
        });
    }

    /// The tasks that mount `name`.
    pub fn users_of(&self, name: &str) -> Vec<String> {
        self.users
            .lock()
            .get(name)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes a volume (`volume create`); an existing one is kept as it is.
    pub fn create(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<Volume, String> {
        self.ensure(name, labels, None)?;
        self.get(name)
            .ok_or_else(|| format!("volume {name} was made but cannot be read"))
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The name of a task's `n`th anonymous volume.
    pub fn anonymous(task_id: &str, n: usize) -> String {
        format!("anon-{task_id}-{n}")
    }

    /// The volume's data directory, made now if the volume does not exist
    /// yet: with `labels`, and (unless `seed` is `None`) a copy of what the
    /// directory `seed` of the host holds, its owner and its mode.
    pub fn ensure(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        seed: Option<&Path>,
    ) -> Result<PathBuf, String> {
        check_name(name)?;
        let home = self.home(name);
        let data = home.join("_data");
        if data.is_dir() {
            return Ok(data);
        }
        let fail = |e: io::Error| format!("cannot make volume {name}: {e}");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::private::DIR_MODE)
            .create(&home)
            .map_err(fail)?;
        let meta = VolumeMeta {
            created_at: shoal_actors::world::now(),
            labels: labels.clone(),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| fail(io::Error::other(e)))?;
        std::fs::write(home.join("volume.json"), json).map_err(fail)?;
        std::fs::set_permissions(
            home.join("volume.json"),
            std::fs::Permissions::from_mode(crate::private::FILE_MODE),
        )
        .map_err(fail)?;
        // Made under a temporary name and renamed: a volume whose copy
        // broke off (the daemon died) is not taken for a finished one.
        let partial = home.join("_data.partial");
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir(&partial).map_err(fail)?;
        // docker's mode for a new volume (the daemon's umask would make it
        // private); a seed gives its own.
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
        if let Some(seed) = seed.filter(|s| s.is_dir()) {
            let mut left = MAX_SEED_ENTRIES;
            copy_tree(seed, &partial, &mut left).map_err(fail)?;
            if left == 0 {
                tracing::warn!(volume = name, seed = %seed.display(), "a new volume copied only the first {MAX_SEED_ENTRIES} entries of its target");
            }
        }
        std::fs::rename(&partial, &data).map_err(fail)?;
        Ok(data)
    }

    /// Every volume of the node, by name.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, name: &str) -> Option<Volume> {
        check_name(name).ok()?;
        let home = self.home(name);
        let mountpoint = home.join("_data");
        if !mountpoint.is_dir() {
            return None;
        }
        let meta = std::fs::read(home.join("volume.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(VolumeMeta {
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                labels: BTreeMap::new(),
            });
        Some(Volume {
            name: name.to_string(),
            mountpoint,
            meta,
        })
    }

    /// Removes a volume no task mounts (else the tasks that do), holding
    /// the users' lock so that no task takes it meanwhile.
    pub fn remove_unused(&self, name: &str) -> Result<(), Result<Vec<String>, io::Error>> {
        let users = self.users.lock();
        if let Some(tasks) = users.get(name).filter(|t| !t.is_empty()) {
            return Err(Ok(tasks.iter().cloned().collect()));
        }
        self.remove(name).map_err(Err)
    }

    /// Removes a volume and its data.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        if check_name(name).is_err() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such volume"));
        }
        std::fs::remove_dir_all(self.home(name))
    }

    /// Removes the anonymous volumes of a task, and forgets that it used any.
    pub fn remove_anonymous(&self, task_id: &str) {
        self.release(task_id);
        let prefix = format!("anon-{task_id}-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot remove a task's anonymous volume");
                }
            }
        }
    }

    /// The bytes a volume's files take.
    pub fn size(&self, v: &Volume) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        walk(&v.mountpoint)
    }
}

/// Copies `from`'s entries into `to` (which exists), with their owners and
/// modes, `to` taking `from`'s; at most `left` entries.
fn copy_tree(from: &Path, to: &Path, left: &mut usize) -> io::Result<()> {
    let meta = std::fs::metadata(from)?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    for e in std::fs::read_dir(from)? {
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type()?;
        if t.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst, left)?;
        } else if t.is_file() {
            std::fs::copy(&src, &dst)?;
            let m = e.metadata()?;
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        }
        // Devices, sockets and fifos are not copied.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(check_name("data-1").is_ok());
        assert!(check_name("a").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("..").is_err());
    }

    #[test]
    fn a_new_volume_copies_its_seed_once() {
        let root = tempfile::tempdir().expect("tmp");
        let seed = root.path().join("seed");
        std::fs::create_dir_all(seed.join("sub")).expect("seed");
        std::fs::write(seed.join("sub/f"), b"hello").expect("seed file");
        let vols = Volumes::new(root.path().join("volumes"));
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let data = vols.ensure("db", &labels, Some(&seed)).expect("made");
        assert_eq!(std::fs::read(data.join("sub/f")).expect("copied"), b"hello");
        std::fs::write(data.join("sub/f"), b"changed").expect("write");
        let again = vols
            .ensure("db", &BTreeMap::new(), Some(&seed))
            .expect("kept");
        assert_eq!(
            std::fs::read(again.join("sub/f")).expect("kept"),
            b"changed"
        );
        let listed = vols.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].meta.labels, labels);
        vols.remove("db").expect("removed");
        assert!(vols.list().is_empty());
    }
}
