//! The launcher: one process per daemon that forks the task keepers.
//!
//! A keeper exec'd from the daemon's binary costs what the loader makes
//! of that binary: its relocated read-only data (`GNU_RELRO`, 1.7 MB in a
//! debug build) is written once by the dynamic loader in every process
//! that execs it, so thousands of keepers held thousands of private
//! copies. The launcher is that exec, done once: `shoal task-keeper
//! launcher`, started like a keeper (`posix_spawn`, an empty environment),
//! then for each task it reads an `Order` on its stdin (with the report
//! socket, the task's stdout and stderr, and the job's descriptors beside
//! it), forks a keeper (which shares the launcher's pages, the relocated
//! ones included, since neither writes them again) and answers with the
//! keeper's pid. The fork copies the page tables of a process of a few
//! megabytes, not of the daemon.
//!
//! The keeper is forked with `CLONE_PARENT`: its parent is the daemon, as
//! if the daemon had started it, so the daemon waits for it (through a
//! pidfd, `Launched::wait`), and it dies with the daemon
//! (`PR_SET_PDEATHSIG`), whatever becomes of the launcher. A launcher that
//! dies is started again at the next task.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::keeper::{self, Keeper, Order};

/// How long the launcher may take to answer an order.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The second argument that makes `shoal task-keeper` the launcher.
pub const ARG: &str = "launcher";

/// The launcher as the daemon holds it: started at the first task, again
/// after it died.
#[derive(Default)]
pub struct Launcher {
    running: std::sync::Mutex<Option<Running>>,
}

struct Running {
    socket: UnixStream,
    process: std::process::Child,
}

impl Running {
    /// Starts the launcher. The calling thread must live as long as the
    /// daemon (the parent-death signal of the launcher and of every keeper
    /// it forks follows it).
    fn start() -> io::Result<Running> {
        // Its stderr is the daemon's: what it cannot do shows in the log.
        let (process, socket) = keeper::spawn(&[ARG], Stdio::inherit())?;
        Ok(Running { socket, process })
    }

    /// Sends one order, reads the pid of the keeper forked for it.
    fn ask(&mut self, body: &[u8], fds: &[RawFd]) -> Asked {
        if let Err(e) = keeper::send_framed(&self.socket, body, fds) {
            return Asked::NotSent(e);
        }
        let mut answer = [0u8; 4];
        // A fork answers at once; a launcher silent this long is stuck,
        // and replaced.
        if let Err(e) = self.socket.set_read_timeout(Some(ANSWER_WITHIN)) {
            return Asked::Lost(e);
        }
        match self.socket.read_exact(&mut answer) {
            Ok(()) => Asked::Answer(i32::from_le_bytes(answer)),
            Err(e) => Asked::Lost(e),
        }
    }
}

/// What became of an order.
enum Asked {
    /// A pid, or a negated `errno`.
    Answer(i32),
    /// The launcher was gone before it had the order: nothing was forked.
    NotSent(io::Error),
    /// The launcher went away after it had the order: a keeper may exist
    /// (its cgroup, which the caller removes, ends it).
    Lost(io::Error),
}

/// A keeper the launcher forked: the daemon's child.
pub struct Launched {
    pub pid: u32,
    pidfd: OwnedFd,
}

/// How a keeper ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

impl Launched {
    /// Waits for the keeper to end, and reaps it.
    pub async fn wait(self) -> io::Result<Ended> {
        // SAFETY: an OwnedFd, moved in: open and the same for the
        // AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(self.pidfd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        loop {
            let mut ready = fd.readable().await?;
            match waitid(
                Id::PIDFd(fd.get_ref().as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Ended::Code(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Ended::Signal(sig as i32)),
                Ok(_) => ready.clear_ready(),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// SIGKILL to the keeper (its init and task follow it).
    pub fn kill(&self) {
        // SAFETY: pidfd_send_signal on a pidfd of ours.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
        }
    }
}

impl Launcher {
    /// Has a keeper forked for `order`, with `stdout` and `stderr` as its
    /// standard streams; returns it with the report to wait on
    /// (`Keeper::verdict`). Blocking; one order at a time.
    pub fn launch(
        &self,
        order: &Order,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
    ) -> io::Result<(Launched, Keeper)> {
        let body = keeper::encode(order)?;
        let (ours, theirs) = UnixStream::pair()?;
        let mut fds = vec![theirs.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        fds.extend(order.fds());
        let mut running = self
            .running
            .lock()
            .map_err(|_| io::Error::other("the launcher's lock is poisoned"))?;
        // A launcher that died since the last task (killed, say) is
        // replaced, and the order sent to the new one.
        let mut tries = 0;
        let pid = loop {
            tries += 1;
            let answer = match running.as_mut() {
                Some(r) => r.ask(&body, &fds),
                None => match Running::start() {
                    Ok(r) => running.insert(r).ask(&body, &fds),
                    Err(e) => return Err(e),
                },
            };
            let failed = match answer {
                Asked::Answer(pid) if pid > 0 => break pid,
                Asked::Answer(errno) => return Err(io::Error::from_raw_os_error(-errno)),
                Asked::NotSent(e) => (e, tries < 2),
                Asked::Lost(e) => (e, false),
            };
            if let Some(mut r) = running.take() {
                let _ = r.process.kill();
                let _ = r.process.wait();
            }
            match failed {
                (e, true) => {
                    tracing::warn!(error = %e, "the task launcher is gone: starting it again")
                }
                (e, false) => return Err(e),
            }
        };
        drop(running);
        // SAFETY: pidfd_open of our own unreaped child: the pid is its.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        if pidfd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: SIGKILL to our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
        // SAFETY: a descriptor pidfd_open just returned.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        Ok((
            Launched {
                pid: pid as u32,
                pidfd,
            },
            Keeper::reporting_on(ours),
        ))
    }
}

/// The launcher's `main` (`shoal task-keeper launcher`: the CLI's `main`
/// hands over to it first): forks a keeper for each order until the daemon
/// closes its socket.
pub fn main() -> ! {
    // SAFETY: prctl with integer arguments and a static C string.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"shoal-launcher".as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let mut control = std::mem::ManuallyDrop::new(
        // SAFETY: stdin, the daemon's socket, open for this process's life.
        unsafe { UnixStream::from_raw_fd(0) },
    );
    loop {
        let (body, fds) = match keeper::recv_framed(0) {
            Ok(Some(m)) => m,
            Ok(None) => std::process::exit(0),
            Err(e) => {
                eprintln!("shoal {} {ARG}: {e}", keeper::ARG);
                std::process::exit(keeper::NO_ORDER);
            }
        };
        let answer = match fork_keeper(&body, &fds) {
            Ok(pid) => pid,
            Err(e) => -e.raw_os_error().unwrap_or(libc::EPROTO),
        };
        // The launcher's copies of the task's descriptors go.
        drop(fds);
        if io::Write::write_all(&mut *control, &answer.to_le_bytes()).is_err() {
            std::process::exit(0);
        }
    }
}

/// Forks the keeper for one order (`fds`: the report socket, stdout,
/// stderr, then the job's). Returns its pid.
fn fork_keeper(body: &[u8], fds: &[OwnedFd]) -> io::Result<i32> {
    if fds.len() < 3 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let order = keeper::decode(body, &raw[3..])?;
    // SAFETY: the launcher is single-threaded: the child may do anything.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid as i32);
    }
    // The keeper.
    keeper::default_signals();
    // SAFETY: naming this process with a static C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"shoal-keeper".as_ptr()) };
    // SAFETY: descriptors of this process.
    let e = match unsafe { take_streams(raw[1], raw[2]) } {
        Ok(()) => keeper::run(&order),
        Err(e) => e,
    };
    keeper::send_errno(raw[0], &e);
    // SAFETY: _exit ends this process without running anything of it.
    unsafe { libc::_exit(keeper::FAILED) }
}

/// The keeper's own process group, the task's streams as its stdout and
/// stderr, `/dev/null` (in place of the launcher's socket) as its stdin.
///
/// # Safety
/// Syscalls on this process's descriptors.
unsafe fn take_streams(stdout: RawFd, stderr: RawFd) -> io::Result<()> {
    // SAFETY: setpgid and dup2 on this process and its descriptors.
    unsafe {
        if libc::setpgid(0, 0) != 0 || libc::dup2(stdout, 1) < 0 || libc::dup2(stderr, 2) < 0 {
            return Err(io::Error::last_os_error());
        }
        keeper::null_stdin()
    }
}
