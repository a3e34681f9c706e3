//! What a task's keeper does before the program is exec'd: only
//! syscalls, on memory made before the first `clone` (no allocation, no
//! locks), so that the processes it clones can run it.
//!
//! A task is three processes:
//! - the *keeper*, the daemon's child (the process the daemon waits for), a
//!   program of its own (see `keeper`), in the host's pid namespace: it
//!   joins the task's cgroup and network namespace, makes the new pid,
//!   mount, UTS and IPC namespaces with `clone`, then only waits for the
//!   init and exits as it did;
//! - the *init*, pid 1 of the new pid namespace: it builds the task's root
//!   (see `rootfs`), `pivot_root`s into it, sets the hostname, forks the
//!   task, then reaps orphans until the task exits, and exits with its
//!   status (its death ends every process left in the namespace);
//! - the *task* (pid 2): drops to its user, capabilities and seccomp
//!   filter and returns, so that the program is exec'd.
//!
//! Each of them dies with its parent (`PR_SET_PDEATHSIG`), so a daemon
//! killed with `kill -9` takes every task's processes with it; its cgroup
//! catches anything else (see `cgroup`). A health check joins the task's
//! namespaces and cgroup (`join`) the same way.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use crate::confine::rootfs::Step;
use crate::sandbox::files;

/// A `rootfs::Step` with its strings made C strings.
#[derive(Serialize, Deserialize)]
pub enum CStep {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    Mkdir(CString),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Mask(CString),
    ReadOnly(CString),
}

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?}")))
}

fn c_opt(s: &str) -> io::Result<Option<CString>> {
    if s.is_empty() {
        Ok(None)
    } else {
        c(s).map(Some)
    }
}

impl CStep {
    pub fn from(step: &Step) -> io::Result<CStep> {
        Ok(match step {
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => CStep::Mount {
                source: c_opt(source)?,
                target: c(target)?,
                fstype: c_opt(fstype)?,
                flags: *flags as libc::c_ulong,
                data: c_opt(data)?,
            },
            Step::Mkdir(p) => CStep::Mkdir(c(p)?),
            Step::Touch(p) => CStep::Touch(c(p)?),
            Step::Symlink { target, link } => CStep::Symlink {
                target: c(target)?,
                link: c(link)?,
            },
            Step::Mask(p) => CStep::Mask(c(p)?),
            Step::ReadOnly(p) => CStep::ReadOnly(c(p)?),
        })
    }
}

/// Who the task's processes run as, and what they may do.
#[derive(Serialize, Deserialize)]
pub struct Privileges {
    /// uid, gid and supplementary groups (`None`: root, group 0 only).
    pub ids: Option<(u32, u32, Vec<u32>)>,
    /// The capability mask (see `caps`); applies to a root task only.
    pub capabilities: u64,
    /// The highest capability number this kernel has.
    pub last_cap: u32,
    /// Installed in order (empty: `seccomp=unconfined`).
    #[serde(with = "wire::filters")]
    pub seccomp: Vec<BpfProgram>,
    /// The working directory in the task's root.
    pub workdir: CString,
    /// `setrlimit` arguments (`--ulimit`), set before the ids change.
    #[serde(with = "wire::rlimits")]
    pub rlimits: Vec<(u32, libc::rlimit)>,
    /// The standard streams are a terminal (`--tty`): the process leads a
    /// session of its own with it as the controlling terminal.
    pub tty: bool,
}

/// Everything a task's keeper, init and task do. The daemon sends it to
/// the keeper (`keeper`); descriptors travel beside it.
#[derive(Serialize, Deserialize)]
pub struct Launch {
    /// The task's network namespace (a descriptor the keeper received).
    pub netns: Option<RawFd>,
    /// `cgroup.procs` files to write `0` to.
    pub cgroup: Vec<CString>,
    pub steps: Vec<CStep>,
    /// The task's root (before `pivot_root`).
    pub root: CString,
    pub hostname: CString,
    pub files: Option<files::Prepared>,
    /// `/proc/sys` files and values (`--sysctl`), written by the init in
    /// the task's namespaces before its root is built.
    pub sysctls: Vec<(CString, CString)>,
    pub privileges: Privileges,
    /// The nice value the program runs at, set last before it drops its
    /// privileges: the thread that starts a task runs below the daemon
    /// (`driver::process`), and so do the keeper and the init while they
    /// build the task (thousands of starts must not take the CPU from the
    /// daemon), but the program must not inherit that.
    pub nice: Option<libc::c_int>,
}

/// Everything a health check's keeper and check do.
#[derive(Serialize, Deserialize)]
pub struct Join {
    pub cgroup: Vec<CString>,
    /// Descriptors of the task's namespaces, with their types, in the order
    /// they are entered (the mount namespace last).
    pub namespaces: Vec<(RawFd, libc::c_int)>,
    pub privileges: Privileges,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn null_or(p: &Option<CString>) -> *const libc::c_char {
    p.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

/// # Safety
/// Syscalls only.
unsafe fn mount(
    source: *const libc::c_char,
    target: *const libc::c_char,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
) -> io::Result<()> {
    // SAFETY: NUL-terminated strings or NULL, made before the fork.
    check(unsafe { libc::mount(source, target, fstype, flags, data.cast()) })
}

/// # Safety
/// Syscalls only.
unsafe fn run(step: &CStep) -> io::Result<()> {
    // SAFETY: syscalls on C strings made before the fork.
    unsafe {
        match step {
            CStep::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => mount(
                null_or(source),
                target.as_ptr(),
                null_or(fstype),
                *flags,
                null_or(data),
            ),
            CStep::Mkdir(p) => {
                if libc::mkdir(p.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            CStep::Touch(p) => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(p.as_ptr(), &mut st) == 0
                    && st.st_mode & libc::S_IFMT == libc::S_IFLNK
                {
                    check(libc::unlink(p.as_ptr()))?;
                }
                let fd = libc::open(
                    p.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            }
            CStep::Symlink { target, link } => {
                if libc::symlink(target.as_ptr(), link.as_ptr()) == 0 || errno() == libc::EEXIST {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            CStep::Mask(p) => {
                let null = c"/dev/null";
                match mount(
                    null.as_ptr(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => mount(
                        c"tmpfs".as_ptr(),
                        p.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"mode=000".as_ptr(),
                    ),
                    Err(e) => Err(e),
                }
            }
            CStep::ReadOnly(p) => {
                match mount(
                    p.as_ptr(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                    r => r?,
                }
                mount(
                    std::ptr::null(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            }
        }
    }
}

/// Writes `value` to the existing file `path`.
///
/// # Safety
/// Syscalls only.
unsafe fn write_file(path: &CString, value: &CString) -> io::Result<()> {
    // SAFETY: C strings made before the fork.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = value.as_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 || n as usize != bytes.len() {
            return Err(err);
        }
    }
    Ok(())
}

/// Writes `0` to each `cgroup.procs`: moves the caller into the cgroup.
///
/// # Safety
/// Syscalls only.
unsafe fn join_cgroup(procs: &[CString]) -> io::Result<()> {
    for p in procs {
        // SAFETY: a C string made before the fork; a static buffer.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// # Safety
/// Syscalls only.
unsafe fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })
}

/// `clone` as `fork` does, with `flags` (namespaces) added.
///
/// # Safety
/// Syscalls only; the child must only make syscalls until it execs.
unsafe fn clone(flags: libc::c_int) -> io::Result<libc::pid_t> {
    // SAFETY: no new stack: the child runs on a copy of the caller's, as
    // after fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid as libc::pid_t)
    }
}

/// Closes every descriptor: the waiting processes hold none (the socket on
/// which the daemon learns that the exec happened must be closed by all
/// but the process that execs; see `keeper`).
///
/// # Safety
/// Syscalls only.
unsafe fn close_all() {
    // SAFETY: close_range on every descriptor of this process.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
    }
}

/// Gives back the memory a waiting process no longer needs: unmaps every
/// private anonymous writable mapping of 64 KiB or more (the heap that
/// held the keeper's order, the task's secret files among it, and large
/// allocations) but the one this thread's stack (and, with glibc, its
/// thread control block and TLS) is in. A node of thousands of tasks has
/// two waiters each (issue 30). What waits needs nothing of it: syscalls
/// on its stack only.
/// Best effort: without `/proc` (a masked one in the task's root) nothing
/// is given back. Reads `/proc/self/maps` into a buffer on the stack.
///
/// # Safety
/// Syscalls only; afterwards this process must touch no memory but its
/// stack (and this thread's TLS).
unsafe fn give_back_memory() {
    const MIN: usize = 64 << 10;
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    // SAFETY: open/read/close on a descriptor of our own into a stack
    // buffer; munmap of mappings this process has, none holding `sp`
    // (the kernel goes on reading the list after the last address read).
    unsafe {
        let fd = libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return;
        }
        let mut buf = [0u8; 8192];
        let mut have = 0usize;
        loop {
            let n = libc::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have);
            if n <= 0 {
                break;
            }
            have += n as usize;
            let mut start = 0;
            while let Some(end) = buf[start..have].iter().position(|b| *b == b'\n') {
                let line = &buf[start..start + end];
                if let Some((lo, hi)) = droppable(line) {
                    if !(lo..hi).contains(&sp) && hi - lo >= MIN {
                        libc::munmap(lo as *mut libc::c_void, hi - lo);
                    }
                }
                start += end + 1;
            }
            if start == 0 && have == buf.len() {
                // A line longer than the buffer: give up rather than guess.
                break;
            }
            buf.copy_within(start..have, 0);
            have -= start;
        }
        libc::close(fd);
    }
}

/// The range of a `/proc/self/maps` line that is private, anonymous and
/// writable (`rw-p`, inode 0, no name or `[heap]`).
fn droppable(line: &[u8]) -> Option<(usize, usize)> {
    let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let name = fields.next().unwrap_or(b"");
    if perms != b"rw-p" || inode != b"0" || !(name.is_empty() || name == b"[heap]") {
        return None;
    }
    let dash = range.iter().position(|b| *b == b'-')?;
    let hex = |s: &[u8]| -> Option<usize> {
        let mut v = 0usize;
        for b in s {
            let d = (*b as char).to_digit(16)? as usize;
            v = v.checked_mul(16)?.checked_add(d)?;
        }
        Some(v)
    };
    let (lo, hi) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    (lo < hi).then_some((lo, hi))
}

/// Waits for `child` and exits as it did: its code, or 128 + the signal
/// that killed it (the keeper re-raises the signal instead). Never returns.
///
/// # Safety
/// Syscalls only.
unsafe fn wait_and_exit(child: libc::pid_t, reap_all: bool, reraise: bool) -> ! {
    // SAFETY: syscalls on this process's own children and signals.
    unsafe {
        close_all();
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        give_back_memory();
        let mut status = 0;
        loop {
            let waited = if reap_all { -1 } else { child };
            let r = libc::waitpid(waited, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = if libc::WIFSIGNALED(status) {
            libc::WTERMSIG(status)
        } else {
            libc::SIGKILL
        };
        if reraise {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        libc::_exit(128 + sig)
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops to the task's user, capabilities and seccomp filter (the last
/// thing before exec), in its working directory.
///
/// # Safety
/// Syscalls only.
unsafe fn drop_privileges(p: &Privileges) -> io::Result<()> {
    // SAFETY: syscalls with integer arguments and buffers made before the fork.
    unsafe {
        check(libc::chdir(p.workdir.as_ptr()))?;
        if p.tty {
            // A session of its own, with the terminal on its stdout.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            check(libc::ioctl(1, libc::TIOCSCTTY, 0))?;
        }
        // Before the ids change: raising a hard limit needs root.
        for (resource, limit) in &p.rlimits {
            check(libc::setrlimit(*resource as _, limit))?;
        }
        for cap in 0..=p.last_cap.min(63) {
            if p.capabilities & (1u64 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && errno() != libc::EINVAL
            {
                return Err(io::Error::last_os_error());
            }
        }
        // Ambient capabilities would survive the exec of a non-root user.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let root_groups = [0 as libc::gid_t];
        let (uid, gid, groups): (u32, u32, &[u32]) = match &p.ids {
            Some((uid, gid, groups)) => (*uid, *gid, groups),
            None => (0, 0, &root_groups),
        };
        // Groups first, while this process may still change them.
        check(libc::setgroups(groups.len(), groups.as_ptr()))?;
        check(libc::setgid(gid))?;
        check(libc::setuid(uid))?;
        // A non-root user lost its permitted set with setuid; root keeps
        // only the task's set, none inheritable (as docker since 23.0).
        let set = if uid == 0 { p.capabilities } else { 0 };
        let data = [
            CapData {
                effective: set as u32,
                permitted: set as u32,
                inheritable: 0,
            },
            CapData {
                effective: (set >> 32) as u32,
                permitted: (set >> 32) as u32,
                inheritable: 0,
            },
        ];
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // After the ids change: changing them clears the parent-death signal.
        die_with_parent()?;
        // The daemon keeps a private umask for its data dir; a task gets the usual one.
        libc::umask(0o022);
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        for program in &p.seccomp {
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Seccomp(e) | seccompiler::Error::Prctl(e) => e,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
    }
    Ok(())
}

/// The keeper's job for a task (`keeper::main` calls it). Returns (in the
/// task) when the program is to be exec'd; the keeper and the init never
/// return.
///
/// # Safety
/// The calling process must be single-threaded (the keeper), and `l`'s
/// descriptors its own.
pub unsafe fn launch(l: &Launch) -> io::Result<()> {
    // SAFETY: syscalls on descriptors and C strings made before the fork.
    unsafe {
        if let Some(fd) = l.netns {
            check(libc::setns(fd, libc::CLONE_NEWNET))?;
        }
        join_cgroup(&l.cgroup)?;
        die_with_parent()?;
        let init = clone(
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
        )?;
        if init > 0 {
            wait_and_exit(init, false, true);
        }
        // The init: pid 1 of the task's namespace, named so in its `ps`.
        libc::prctl(libc::PR_SET_NAME, c"shoal-init".as_ptr());
        die_with_parent()?;
        // The daemon's private umask would make the root's directories
        // (the overlay's root takes its upper dir's mode) its own only.
        libc::umask(0);
        mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )?;
        // The host's /proc is still mounted here, and its /proc/sys acts
        // on the caller's namespaces: the task's network and IPC ones.
        for (path, value) in &l.sysctls {
            write_file(path, value)?;
        }
        for step in &l.steps {
            run(step)?;
        }
        if let Some(files) = &l.files {
            files::mount(files)?;
        }
        check(libc::chdir(l.root.as_ptr()))?;
        let dot = c".";
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The host's root, stacked on the new one by pivot_root, goes.
        check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))?;
        let name = l.hostname.as_bytes();
        check(libc::sethostname(name.as_ptr().cast(), name.len()))?;
        let task = clone(0)?;
        if task > 0 {
            wait_and_exit(task, true, false);
        }
        // The keeper and the init did their work below the daemon's
        // priority (the task's start, as the starter threads); the program
        // runs at the daemon's, set while this process may still raise it.
        if let Some(nice) = l.nice {
            // `which` is c_uint in glibc's prototype, c_int in musl's.
            #[allow(clippy::useless_conversion)]
            check(libc::setpriority(
                libc::PRIO_PROCESS.try_into().unwrap_or_default(),
                0,
                nice,
            ))?;
        }
        drop_privileges(&l.privileges)
    }
}

/// A health check's keeper: joins the task's cgroup and namespaces, then
/// forks the check (in the task's pid namespace) and waits for it.
///
/// # Safety
/// The calling process must be single-threaded (the keeper), and `j`'s
/// descriptors its own.
pub unsafe fn join(j: &Join) -> io::Result<()> {
    // SAFETY: syscalls on descriptors and C strings made before the fork.
    unsafe {
        join_cgroup(&j.cgroup)?;
        for (fd, kind) in &j.namespaces {
            check(libc::setns(*fd, *kind))?;
        }
        die_with_parent()?;
        let check_pid = clone(0)?;
        if check_pid > 0 {
            wait_and_exit(check_pid, false, true);
        }
        drop_privileges(&j.privileges)
    }
}

/// The fields that have no serde form of their own, as plain numbers.
mod wire {
    pub mod filters {
        use seccompiler::{sock_filter, BpfProgram};
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        type Plain = Vec<Vec<(u16, u8, u8, u32)>>;

        pub fn serialize<S: Serializer>(p: &[BpfProgram], s: S) -> Result<S::Ok, S::Error> {
            p.iter()
                .map(|f| f.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
                .collect::<Plain>()
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BpfProgram>, D::Error> {
            Ok(Plain::deserialize(d)?
                .into_iter()
                .map(|f| {
                    f.into_iter()
                        .map(|(code, jt, jf, k)| sock_filter { code, jt, jf, k })
                        .collect()
                })
                .collect())
        }
    }

    pub mod rlimits {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        type Plain = Vec<(u32, u64, u64)>;

        pub fn serialize<S: Serializer>(
            r: &[(u32, libc::rlimit)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            r.iter()
                .map(|(res, l)| (*res, l.rlim_cur, l.rlim_max))
                .collect::<Plain>()
                .serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(u32, libc::rlimit)>, D::Error> {
            Ok(Plain::deserialize(d)?
                .into_iter()
                .map(|(res, rlim_cur, rlim_max)| (res, libc::rlimit { rlim_cur, rlim_max }))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::droppable;

    #[test]
    fn only_private_anonymous_writable_mappings_are_given_back() {
        let line = |s: &str| droppable(s.as_bytes());
        assert_eq!(
            line("7f0000000000-7f0000200000 rw-p 00000000 00:00 0 "),
            Some((0x7f00_0000_0000, 0x7f00_0020_0000))
        );
        assert_eq!(
            line("55d0a000-55d0c000 rw-p 00000000 00:00 0                          [heap]"),
            Some((0x55d0_a000, 0x55d0_c000))
        );
        for kept in [
            "7ffd0000-7ffd2000 rw-p 00000000 00:00 0                          [stack]",
            "7f00-7f10 r--p 00000000 00:00 0 ",
            "7f00-7f10 ---p 00000000 00:00 0 ",
            "7f00-7f10 rw-s 00000000 00:05 123 /dev/zero",
            "5600-5610 rw-p 0001a000 fd:01 4242 /usr/bin/shoal",
            "7f10-7f00 rw-p 00000000 00:00 0 ",
            "zz-7f00 rw-p 00000000 00:00 0 ",
            "garbage",
        ] {
            assert_eq!(line(kept), None, "{kept}");
        }
    }
}
