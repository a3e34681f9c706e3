//! A task's secret and config files, in its own mount namespace and root
//! (see `confine`): a private tmpfs at `/run/secrets` holding the secrets,
//! and config files (and secrets with an absolute target elsewhere)
//! bind-mounted read-only onto their targets from a tmpfs of their own. All
//! of it lives in memory and in the task's mount namespace only: it is gone
//! when the task's last process is. The targets' directories and files are
//! made in the task's own root (its overlay's upper layer), never on the host.
//!
//! `prepare` runs before the fork (it allocates); `mount` runs in the child
//! between fork and exec and makes only syscalls.

use std::ffi::CString;
use std::sync::Arc;

use shoal_core::model::secret::TaskFile;

/// The directory the secrets tmpfs is mounted on.
pub const SECRETS_DIR: &str = "/run/secrets";

/// One file, with every string it needs made before the fork.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    /// Where it is written: a name in the tmpfs mounted at `SECRETS_DIR`.
    written: CString,
    /// Where it is bind-mounted (`None`: it stays where it is written).
    target: Option<CString>,
    data: Arc<Vec<u8>>,
    uid: u32,
    gid: u32,
    mode: u32,
}

/// What `mount` does in the child.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    dir: CString,
    tmpfs: CString,
    options: CString,
    /// Bind-mounted files, written into a first tmpfs which is then detached.
    staged: Vec<Entry>,
    /// Files that stay in the tmpfs at `/run/secrets`.
    direct: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("invalid file path {0:?}")]
    Path(String),
}

fn cstring(s: &str) -> Result<CString, FilesError> {
    CString::new(s).map_err(|_| FilesError::Path(s.to_string()))
}

/// The targets `mount` needs to exist in the task's root (besides
/// `SECRETS_DIR`): files mounted outside it.
pub fn targets(files: &[TaskFile]) -> Vec<String> {
    files
        .iter()
        .filter(|f| direct_name(&f.path).is_none())
        .map(|f| f.path.clone())
        .collect()
}

/// The name of a file that lives in the secrets tmpfs itself.
fn direct_name(path: &str) -> Option<&str> {
    path.strip_prefix(SECRETS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The files of a task, ready for `mount`; `None` if it has none. `root`:
/// the task's root directory in the view of the process that mounts them.
pub fn prepare(files: &[TaskFile], root: &str) -> Result<Option<Prepared>, FilesError> {
    if files.is_empty() {
        return Ok(None);
    }
    // A target is absolute and never climbs out of the task's root.
    if let Some(bad) = files
        .iter()
        .find(|f| !f.path.starts_with('/') || f.path.split('/').any(|p| p == ".."))
    {
        return Err(FilesError::Path(bad.path.clone()));
    }
    let mut staged = Vec::new();
    let mut direct = Vec::new();
    let mut total = 0usize;
    for (i, f) in files.iter().enumerate() {
        total += f.data.len();
        match direct_name(&f.path) {
            Some(name) => direct.push(Entry {
                written: cstring(&format!("{root}{SECRETS_DIR}/{name}"))?,
                target: None,
                data: f.data.clone(),
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            }),
            None => staged.push(Entry {
                written: cstring(&format!("{root}{SECRETS_DIR}/.staged-{i}"))?,
                target: Some(cstring(&format!("{root}{}", f.path))?),
                data: f.data.clone(),
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            }),
        }
    }
    // Room for every file and some: a task cannot fill the node's memory
    // through it (the tmpfs is read-only once written anyway).
    let size = total + 64 * 1024;
    Ok(Some(Prepared {
        dir: cstring(&format!("{root}{SECRETS_DIR}"))?,
        tmpfs: cstring("tmpfs")?,
        options: cstring(&format!("mode=0755,size={size}"))?,
        staged,
        direct,
    }))
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// # Safety
/// Only syscalls on memory prepared before the fork: safe in `pre_exec`.
unsafe fn write_file(e: &Entry) -> std::io::Result<()> {
    // SAFETY: the path is a valid C string; the buffer outlives the calls.
    unsafe {
        let fd = libc::open(
            e.written.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut done = 0usize;
        while done < e.data.len() {
            let n = libc::write(fd, e.data[done..].as_ptr().cast(), e.data.len() - done);
            if n < 0 {
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(err);
            }
            done += n as usize;
        }
        let r =
            check(libc::fchown(fd, e.uid, e.gid)).and_then(|()| check(libc::fchmod(fd, e.mode)));
        libc::close(fd);
        r
    }
}

/// # Safety
/// Only syscalls: safe in `pre_exec`.
unsafe fn mount_tmpfs(p: &Prepared) -> std::io::Result<()> {
    // SAFETY: valid C strings prepared before the fork.
    unsafe {
        check(libc::mount(
            p.tmpfs.as_ptr(),
            p.dir.as_ptr(),
            p.tmpfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            p.options.as_ptr().cast(),
        ))
    }
}

/// Mounts the task's files, in the task's private mount namespace, once
/// its root has the targets (`targets`) and `SECRETS_DIR`.
///
/// # Safety
/// Only syscalls on memory prepared before the fork: safe in `pre_exec`.
pub unsafe fn mount(p: &Prepared) -> std::io::Result<()> {
    // SAFETY: syscalls only, on C strings and buffers made before the fork.
    unsafe {
        if !p.staged.is_empty() {
            mount_tmpfs(p)?;
            for e in &p.staged {
                write_file(e)?;
                if let Some(target) = &e.target {
                    check(libc::mount(
                        e.written.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            // The binds keep their files; the staging tmpfs leaves the view.
            check(libc::umount2(p.dir.as_ptr(), libc::MNT_DETACH))?;
        }
        if !p.direct.is_empty() {
            mount_tmpfs(p)?;
            for e in &p.direct {
                write_file(e)?;
            }
            check(libc::mount(
                p.tmpfs.as_ptr(),
                p.dir.as_ptr(),
                p.tmpfs.as_ptr(),
                libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                p.options.as_ptr().cast(),
            ))?;
        }
    }
    Ok(())
}
