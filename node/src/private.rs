//! The data directory is the node's alone: state, Raft log, certificates,
//! the CA key, task logs. It is created 0700 and every file in it is 0600,
//! whatever the umask the daemon was started with; modes found wider at
//! start are repaired (and said so in the log).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Makes every file this process creates from now on private to its owner.
/// Task processes set their own umask back (see the process driver).
pub fn restrict_umask() {
    // SAFETY: umask only swaps the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Directories of the data dir whose content is the tasks' (volumes): the
/// directory itself is private, what is inside keeps the modes its tasks
/// gave it.
pub const TASK_DATA: &[&str] = &["volumes"];

/// Creates `dir` if needed, then sets it and everything under it to the
/// private modes (but the content of `TASK_DATA`). Returns the paths whose
/// mode had to change. Symbolic links are not followed and sockets keep
/// their modes.
pub fn secure_tree(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let task_data: Vec<PathBuf> = TASK_DATA.iter().map(|d| dir.join(d)).collect();
    std::fs::create_dir_all(dir)?;
    let mut repaired = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let want = if kind.is_dir() {
            DIR_MODE
        } else if kind.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o777 != want {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))?;
            repaired.push(path.clone());
        }
        if kind.is_dir() && !task_data.contains(&path) {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_modes_are_repaired_and_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("logs")).expect("mkdir");
        std::fs::write(data.join("logs/a.log"), b"x").expect("write");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(
            data.join("logs/a.log"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let repaired = secure_tree(&data).expect("secure");
        assert!(repaired.contains(&data));
        assert!(repaired.contains(&data.join("logs/a.log")));
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("logs")), 0o700);
        assert_eq!(mode(&data.join("logs/a.log")), 0o600);
        assert!(secure_tree(&data).expect("again").is_empty());
    }
}
