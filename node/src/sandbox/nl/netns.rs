//! Named network namespaces, as `ip netns` makes them: a namespace is kept
//! alive by a bind mount of its `/proc/.../ns/net` on `/run/netns/NAME`
//! (a shared mount, so other mount namespaces see it), which the process
//! driver opens for the child to enter and the health check joins.
//!
//! Entering a namespace changes the calling thread, so it is done on a
//! thread made for it, which ends right after: the starter threads and the
//! blocking pool never change namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::route::Route;
use super::NlError;

pub const NETNS_DIR: &str = "/run/netns";

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes `/run/netns` and a shared mount of it (once per boot: a second
/// call finds it shared already), as `ip netns add` does.
pub fn prepare_dir() -> Result<(), NlError> {
    let dir = Path::new(NETNS_DIR);
    let err = |e| NlError::new(format!("cannot prepare {NETNS_DIR}"), e);
    std::fs::create_dir_all(dir).map_err(err)?;
    let c = cpath(dir).map_err(err)?;
    let shared = |c: &CString| {
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        check(unsafe {
            libc::mount(
                c"none".as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        })
    };
    match shared(&c) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it on itself, then share it.
            // SAFETY: as above.
            check(unsafe {
                libc::mount(
                    c.as_ptr(),
                    c.as_ptr(),
                    c"none".as_ptr(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            })
            .and_then(|()| shared(&c))
            .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// The path of the namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Binds the namespace at `/proc/...` path `from` on a fresh `/run/netns/NAME`.
fn bind(from: &CString, to: &Path) -> io::Result<()> {
    let c = cpath(to)?;
    // SAFETY: open(2) of a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0,
        )
    };
    check(fd)?;
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let mounted = check(unsafe {
        libc::mount(
            from.as_ptr(),
            c.as_ptr(),
            c"none".as_ptr(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    });
    if mounted.is_err() {
        let _ = std::fs::remove_file(to);
    }
    mounted
}

/// Runs `f` on a thread of its own, joined; a panic there is an error here.
fn on_thread<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, NlError> + Send + 'static,
) -> Result<T, NlError> {
    std::thread::Builder::new()
        .name("shoal-netns".into())
        .spawn(f)
        .map_err(|e| NlError::new(format!("cannot start a thread to {what}"), e))?
        .join()
        .unwrap_or_else(|_| Err(NlError::new(what, io::Error::other("the thread panicked"))))
}

/// Makes the namespace `name` (`ip netns add`) and returns a netlink
/// socket inside it.
pub fn create(name: &str) -> Result<Route, NlError> {
    let to = path(name);
    let op = format!("cannot make network namespace {name}");
    on_thread(&op.clone(), move || {
        // SAFETY: unshare(2) of this thread's network namespace only.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|e| NlError::new(&op, e))?;
        bind(&CString::from(c"/proc/thread-self/ns/net"), &to).map_err(|e| NlError::new(&op, e))?;
        Route::open()
    })
}

/// Names the network namespace of process `pid` `name` (`ip netns attach`).
pub fn attach(name: &str, pid: u32) -> Result<(), NlError> {
    let from = CString::new(format!("/proc/{pid}/ns/net"))
        .map_err(|_| NlError::new("bad pid", io::Error::from_raw_os_error(libc::EINVAL)))?;
    bind(&from, &path(name))
        .map_err(|e| NlError::new(format!("cannot name the namespace of process {pid}"), e))
}

/// A netlink socket inside the namespace `name`.
pub fn socket_in(name: &str) -> Result<Route, NlError> {
    let p = path(name);
    let op = format!("cannot enter network namespace {name}");
    on_thread(&op.clone(), move || {
        let ns = std::fs::File::open(&p).map_err(|e| NlError::new(&op, e))?;
        // SAFETY: setns(2) of this thread into a namespace we hold open.
        check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })
            .map_err(|e| NlError::new(&op, e))?;
        Route::open()
    })
}

/// Removes the name of the namespace (`ip netns del`); the namespace goes
/// once nothing else holds it. Nothing said if it was not there.
pub fn delete(name: &str) -> Result<(), NlError> {
    let p = path(name);
    let err = |e| NlError::new(format!("cannot remove network namespace {name}"), e);
    let c = cpath(&p).map_err(err)?;
    // SAFETY: umount2(2) of a NUL-terminated path.
    if let Err(e) = check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }) {
        // EINVAL: not a mount point (a file a failed add left).
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(err(e));
        }
    }
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err(e)),
        _ => Ok(()),
    }
}

/// The names under `/run/netns`.
pub fn names() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
