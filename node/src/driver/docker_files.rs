//! The docker driver's secret and config files: as dockerd does for Swarm,
//! a per-task tmpfs on the host (`<data-dir>/secrets/<task id>`, 0700),
//! each file bind-mounted read-only into the container at its target. The
//! tmpfs is unmounted and its directory removed with the task, and swept at
//! start (what a killed daemon left). Blocking: call from the blocking pool.

use std::path::{Path, PathBuf};

use shoal_core::model::secret::TaskFile;

/// `<data-dir>/secrets`, beside `<data-dir>/logs`.
pub fn root(log_dir: &Path) -> PathBuf {
    log_dir.parent().unwrap_or(log_dir).join("secrets")
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn cpath(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Mounts a tmpfs at `dir`, writes the files into it; returns the binds
/// (`source:target:ro`) for the container.
pub fn mount(dir: &Path, files: &[TaskFile]) -> std::io::Result<Vec<String>> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let total: usize = files.iter().map(|f| f.data.len()).sum();
    let options = std::ffi::CString::new(format!("mode=0700,size={}", total + 64 * 1024))
        .map_err(std::io::Error::other)?;
    let target = cpath(dir)?;
    // SAFETY: valid C strings for the duration of the call.
    check(unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            options.as_ptr().cast(),
        )
    })?;
    let mut binds = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let path = dir.join(format!("{i}"));
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        out.write_all(&f.data)?;
        std::os::unix::fs::fchown(&out, Some(f.uid), Some(f.gid))?;
        out.set_permissions(std::fs::Permissions::from_mode(f.mode))?;
        binds.push(format!("{}:{}:ro", path.display(), f.path));
    }
    Ok(binds)
}

/// Unmounts a task's tmpfs and removes its directory.
pub fn unmount(dir: &Path) {
    if let Ok(c) = cpath(dir) {
        // SAFETY: a valid C string.
        let _ = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes what a killed daemon left under `root`, except `keep`.
pub fn sweep(root: &Path, keep: &std::collections::HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            unmount(&e.path());
        }
    }
}
