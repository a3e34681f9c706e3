//! The keeper: the first process of every task and of every health check,
//! a program of its own, never a copy of the daemon.
//!
//! A keeper is the daemon's own binary (`/proc/self/exe`: the binary it
//! was started from, even if the file was replaced since) run as `shoal
//! task-keeper`, with an empty environment. A task's keeper is forked by
//! the launcher (see `launcher`: that exec, done once per daemon); a
//! health check's is started directly (`Keeper::start`, `posix_spawn`,
//! which copies neither the daemon's memory nor its page tables). Either
//! way the daemon sends it an `Order`: the job (`child::Launch` or
//! `child::Join`), the program to exec with its arguments and environment,
//! and the descriptors the job names beside it (`SCM_RIGHTS`). The keeper
//! does the job (see `child`), and the last of its processes execs the
//! program. Whatever fails on the way is reported on a socket as an
//! `errno`; when the program was exec'd the daemon reads end-of-file
//! instead (every other holder closes the socket first), as std's `spawn`
//! learns it through its close-on-exec pipe.
//!
//! Why not `fork` with `pre_exec`, as before: a fork costs what the daemon
//! weighs. At thousands of tasks it copied and freed hundreds of megabytes
//! of page tables per start, closed tens of thousands of descriptors one
//! by one, and left every keeper and init sharing the daemon's pages, so
//! the kernel walked thousands of mappings for each of them; task starts
//! slowed to a few a second and the daemon's own threads stalled in page
//! faults behind the forks (issue 30, docs/benchmarks.md).

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::{Deserialize, Serialize};

use crate::confine::child;

/// The argument that makes the shoal binary a keeper (the first thing the
/// CLI's `main` looks at).
pub const ARG: &str = "task-keeper";

/// The daemon's own binary, as the spawned process sees it before its exec.
const EXE: &str = "/proc/self/exe";

/// The largest order a keeper takes. A task's secret and config files
/// travel in it (docker bounds each at 500 KB); an order this large is a
/// bug, refused before anything starts.
const MAX_ORDER: usize = 64 << 20;

/// The most descriptors an order carries (a health check's five
/// namespaces; a task's report socket, two streams and network namespace).
const MAX_FDS: usize = 8;

/// How long a keeper may take to build a task and exec its program: a
/// keeper stuck in the kernel must not hold a start (and the thread making
/// it) for ever; the task fails and is started again.
const VERDICT_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The keeper's exit code when it got no order it could read.
pub(super) const NO_ORDER: i32 = 125;

/// The exit code of a keeper, init or task that could not go on (the
/// daemon learns why from the report).
pub(super) const FAILED: i32 = 127;

/// What the keeper's processes do before the program is exec'd.
#[derive(Serialize, Deserialize)]
pub enum Job {
    /// Start a task (`child::launch`).
    Launch(child::Launch),
    /// Run a health check inside a task (`child::join`).
    Join(child::Join),
}

impl Job {
    /// The descriptors the job names, in the order they travel.
    fn fds(&self) -> Vec<RawFd> {
        match self {
            Job::Launch(l) => l.netns.into_iter().collect(),
            Job::Join(j) => j.namespaces.iter().map(|(fd, _)| *fd).collect(),
        }
    }

    /// Names the descriptors received instead of the daemon's.
    fn adopt(&mut self, received: &[RawFd]) -> io::Result<()> {
        if received.len() != self.fds().len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the order names {} descriptors, {} came with it",
                    self.fds().len(),
                    received.len()
                ),
            ));
        }
        let mut received = received.iter();
        let slots: Vec<&mut RawFd> = match self {
            Job::Launch(l) => l.netns.iter_mut().collect(),
            Job::Join(j) => j.namespaces.iter_mut().map(|(fd, _)| fd).collect(),
        };
        for (slot, fd) in slots.into_iter().zip(&mut received) {
            *slot = *fd;
        }
        Ok(())
    }
}

/// What the daemon sends a keeper.
#[derive(Serialize, Deserialize)]
pub struct Order {
    job: Job,
    /// Looked up in the `PATH` of `env` when it has no `/`, in the task's root.
    program: CString,
    args: Vec<CString>,
    /// `NAME=value`: the program's environment, and only the program's.
    env: Vec<CString>,
    /// The daemon's pid: the keeper dies with it, and starts nothing if it
    /// is gone already.
    parent: u32,
}

fn invalid(what: &str, s: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} {s:?} holds a NUL byte"),
    )
}

impl Order {
    /// Refuses strings a program cannot be given (a NUL byte).
    pub fn new(
        job: Job,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> io::Result<Order> {
        let c = |what: &str, s: String| CString::new(s.clone()).map_err(|_| invalid(what, &s));
        Ok(Order {
            job,
            program: c("the program", program.to_string())?,
            args: args
                .iter()
                .map(|a| c("the argument", a.clone()))
                .collect::<io::Result<_>>()?,
            env: env
                .iter()
                .map(|(k, v)| c("the environment variable", format!("{k}={v}")))
                .collect::<io::Result<_>>()?,
            parent: std::process::id(),
        })
    }
}

/// A keeper that was started and waits for its order.
pub struct Keeper {
    socket: UnixStream,
}

impl Keeper {
    /// Starts a keeper whose output goes nowhere (a health check's: only
    /// its exit status counts).
    pub fn start() -> io::Result<(std::process::Child, Keeper)> {
        let (child, socket) = spawn(&[], Stdio::null())?;
        Ok((child, Keeper { socket }))
    }

    /// Sends the order and waits until the program was exec'd (`Ok`) or
    /// the keeper reports why it could not be (its `errno`). Blocking.
    pub fn hand_over(self, order: &Order) -> io::Result<()> {
        send_framed(&self.socket, &encode(order)?, &order.job.fds())?;
        self.verdict()
    }

    /// Waits until the program was exec'd (`Ok`: end-of-file) or the
    /// keeper's processes report why it could not be (an `errno`), at most
    /// `VERDICT_WITHIN` (then `TimedOut`: the caller kills the keeper).
    /// Blocking.
    pub fn verdict(self) -> io::Result<()> {
        self.socket.set_read_timeout(Some(VERDICT_WITHIN))?;
        let mut verdict = [0u8; 4];
        let mut got = 0;
        while got < verdict.len() {
            match (&self.socket).read(&mut verdict[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the task's keeper did not start it within {VERDICT_WITHIN:?}"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        match got {
            0 => Ok(()),
            4 => Err(io::Error::from_raw_os_error(i32::from_le_bytes(verdict))),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the task's keeper ended in the middle of its report",
            )),
        }
    }

    /// A keeper whose report comes on `socket` (started by the launcher).
    pub(super) fn reporting_on(socket: UnixStream) -> Keeper {
        Keeper { socket }
    }
}

/// Starts the daemon's binary as `shoal task-keeper ARGS..` with
/// `posix_spawn`: an empty environment, its own process group, stdout to
/// `/dev/null`, `stderr` as given, and on its stdin one end of a socket
/// pair, whose other end is returned. The daemon's copy of the process's
/// end is closed on return, so that a report read on the socket ends when
/// the process and what it forks let go.
pub(super) fn spawn(args: &[&str], stderr: Stdio) -> io::Result<(std::process::Child, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let child = std::process::Command::new(EXE)
        .arg(ARG)
        .args(args)
        .env_clear()
        .stdin(OwnedFd::from(theirs))
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()?;
    Ok((child, ours))
}

/// The order as it travels, refused if larger than a keeper takes.
pub(super) fn encode(order: &Order) -> io::Result<Vec<u8>> {
    let body = bincode::serde::encode_to_vec(order, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if body.len() > MAX_ORDER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the task's spec takes {} bytes to send to its keeper, more than {MAX_ORDER}",
                body.len()
            ),
        ));
    }
    Ok(body)
}

/// The order `body` holds, pointed at the descriptors `fds` received.
pub(super) fn decode(body: &[u8], fds: &[RawFd]) -> io::Result<Order> {
    let (mut order, _): (Order, usize) = bincode::serde::decode_from_slice(
        body,
        bincode::config::standard().with_limit::<MAX_ORDER>(),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    order.job.adopt(fds)?;
    Ok(order)
}

impl Order {
    /// The descriptors the order's job names, in the order they travel.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.job.fds()
    }
}

/// Sends `body` with its length before it, and `fds` beside it.
pub(super) fn send_framed(socket: &UnixStream, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut message = Vec::with_capacity(4 + body.len());
    message.extend_from_slice(&(body.len() as u32).to_le_bytes());
    message.extend_from_slice(body);
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<UnixAddr>(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            &[IoSlice::new(&message)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut socket = socket;
    socket.write_all(&message[sent..])
}

/// Reads one message `send_framed` sent on `fd`, with the descriptors
/// that came with it (close-on-exec); `None` at end-of-file before it.
pub(super) fn recv_framed(fd: RawFd) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut head = [0u8; 4];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (mut got, fds) = {
        let mut iov = [IoSliceMut::new(&mut head)];
        let msg = loop {
            match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(r) = c {
                // SAFETY: descriptors the kernel just gave this process.
                fds.extend(r.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {MAX_FDS} descriptors came with the order"),
            ));
        }
        (msg.bytes, fds)
    };
    if got == 0 {
        return Ok(None);
    }
    // SAFETY: `fd` stays open; ManuallyDrop keeps it so.
    let mut stream = std::mem::ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(fd) });
    while got < head.len() {
        let n = stream.read(&mut head[got..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the order was cut short",
            ));
        }
        got += n;
    }
    let len = u32::from_le_bytes(head) as usize;
    if len > MAX_ORDER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an order of {len} bytes, more than {MAX_ORDER}"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Some((body, fds)))
}

/// The keeper's `main` (`shoal task-keeper`). Never returns: the keeper
/// and the init wait for their child and exit as it did; the last process
/// becomes the program.
pub fn main() -> ! {
    default_signals();
    // Named for `ps` (else `exe`, after `/proc/self/exe`).
    // SAFETY: naming this thread with a static C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"shoal-keeper".as_ptr()) };
    let (order, report) = match receive() {
        Ok(r) => r,
        Err(e) => {
            // The daemon, if it is the one waiting, learns why too.
            send_errno(0, &e);
            let _ = writeln!(
                io::stderr(),
                "shoal {ARG}: {e} (the daemon starts a keeper for each task, with its order on stdin)"
            );
            std::process::exit(NO_ORDER);
        }
    };
    let e = run(&order);
    send_errno(report, &e);
    // SAFETY: _exit ends this process without running anything of it.
    unsafe { libc::_exit(FAILED) }
}

/// Sets back to the default what the program must not inherit ignored (an
/// ignored signal stays ignored across exec): SIGPIPE, which Rust's
/// runtime ignores, and the two signals glibc keeps for itself (32 and
/// 33), which its `posix_spawn` ignores in the child; as std's fork-based
/// `spawn` left them. What the daemon was started with ignoring stays
/// ignored, as it did then.
pub(super) fn default_signals() {
    /// The kernel's `struct sigaction` (glibc's `sigaction` refuses 32 and 33).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in [libc::SIGPIPE, 32, 33] {
        // SAFETY: rt_sigaction with a valid struct and no old one.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Reads the order from stdin, then makes stdin `/dev/null` (what the
/// program gets) and keeps the socket, close-on-exec, for the report.
fn receive() -> io::Result<(Order, RawFd)> {
    let (body, fds) = recv_framed(0)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no order came"))?;
    let raw: Vec<RawFd> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let order = decode(&body, &raw)?;
    drop(body);
    // The descriptors live as long as this process (until the exec, for
    // the program's process: they are close-on-exec).
    std::mem::forget(fds);
    // SAFETY: fcntl on this process's stdin.
    let report = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if report < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open, dup2 and close on this process's descriptors.
    unsafe { null_stdin() }?;
    Ok((order, report))
}

/// Makes `/dev/null` this process's stdin.
///
/// # Safety
/// Syscalls only.
pub(super) unsafe fn null_stdin() -> io::Result<()> {
    // SAFETY: open, dup2 and close on this process's descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::close(null);
    }
    Ok(())
}

/// Does the job; in the process that is to become the program, execs it.
/// Returns only what went wrong.
pub(super) fn run(order: &Order) -> io::Error {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return io::Error::last_os_error();
    }
    if std::os::unix::process::parent_id() != order.parent {
        return io::Error::new(io::ErrorKind::NotConnected, "the daemon is gone");
    }
    // SAFETY: the job's descriptors are this process's (received above);
    // `child` makes only syscalls.
    let done = unsafe {
        match &order.job {
            Job::Launch(l) => child::launch(l),
            Job::Join(j) => child::join(j),
        }
    };
    match done {
        Ok(()) => exec(&order.program, &order.args, &order.env),
        Err(e) => e,
    }
}

/// The search path when the environment has none (glibc's default).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// Execs `program` with `args` and `env`, looking it up in `env`'s `PATH`
/// when it has no `/` (as `execvp`, which would read this process's
/// environment instead). Returns only why it could not.
fn exec(program: &CString, args: &[CString], env: &[CString]) -> io::Error {
    let argv: Vec<*const libc::c_char> = std::iter::once(program.as_ptr())
        .chain(args.iter().map(|a| a.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let execve = |path: &CString| {
        // SAFETY: NUL-terminated strings and NULL-terminated arrays of them
        // that outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    };
    let name = program.as_bytes();
    if name.contains(&b'/') {
        return execve(program);
    }
    let mut denied = false;
    for dir in search_path(env).split(|b| *b == b':') {
        let Some(candidate) = candidate(dir, name) else {
            continue;
        };
        let e = execve(&candidate);
        match e.raw_os_error() {
            Some(libc::EACCES) => denied = true,
            Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            _ => return e,
        }
    }
    io::Error::from_raw_os_error(if denied { libc::EACCES } else { libc::ENOENT })
}

/// The `PATH` of `env`, or the default.
fn search_path(env: &[CString]) -> &[u8] {
    env.iter()
        .rev()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// `dir/name` (an empty `dir` is the working directory, as POSIX says).
fn candidate(dir: &[u8], name: &[u8]) -> Option<CString> {
    let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(dir);
    path.push(b'/');
    path.extend_from_slice(name);
    CString::new(path).ok()
}

/// Writes why to the daemon, if it listens.
pub(super) fn send_errno(fd: RawFd, e: &io::Error) {
    let errno = e.raw_os_error().unwrap_or(libc::EPROTO).to_le_bytes();
    // SAFETY: a write of a stack buffer to a descriptor of this process.
    unsafe {
        libc::send(fd, errno.as_ptr().cast(), errno.len(), libc::MSG_NOSIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(s: &str) -> CString {
        CString::new(s).unwrap_or_default()
    }

    #[test]
    fn the_program_is_looked_up_in_its_own_path() {
        let env = [cs("HOME=/root"), cs("PATH=/opt/bin::/usr/bin")];
        assert_eq!(search_path(&env), b"/opt/bin::/usr/bin");
        assert_eq!(search_path(&[cs("HOME=/")]), DEFAULT_PATH);
        // The last PATH wins, as the environment's last word does.
        let twice = [cs("PATH=/a"), cs("PATH=/b")];
        assert_eq!(search_path(&twice), b"/b");
        assert_eq!(candidate(b"/opt/bin", b"sleep"), Some(cs("/opt/bin/sleep")));
        assert_eq!(candidate(b"", b"sleep"), Some(cs("./sleep")));
    }

    #[test]
    fn an_order_names_its_descriptors_and_takes_the_received_ones() {
        let privileges = || child::Privileges {
            ids: Some((1000, 1000, vec![1000, 27])),
            capabilities: 0xa80425fb,
            last_cap: 40,
            seccomp: Vec::new(),
            workdir: cs("/"),
            rlimits: vec![(
                7,
                libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 4096,
                },
            )],
            tty: false,
        };
        let join = Job::Join(child::Join {
            cgroup: vec![cs("/sys/fs/cgroup/x/cgroup.procs")],
            namespaces: vec![(40, libc::CLONE_NEWNET), (41, libc::CLONE_NEWNS)],
            privileges: privileges(),
        });
        let order = Order::new(
            join,
            "/bin/true",
            &["-x".into()],
            &[("PATH".into(), "/bin".into())],
        )
        .expect("no NUL");
        assert_eq!(order.job.fds(), vec![40, 41]);
        let bytes =
            bincode::serde::encode_to_vec(&order, bincode::config::standard()).expect("encodes");
        let (mut back, _): (Order, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .expect("decodes");
        assert_eq!(back.env, vec![cs("PATH=/bin")]);
        assert!(back.job.adopt(&[7]).is_err(), "one descriptor short");
        back.job.adopt(&[7, 8]).expect("as many as named");
        assert_eq!(back.job.fds(), vec![7, 8]);
        let Job::Join(j) = &back.job else {
            panic!("not a join")
        };
        assert_eq!(j.privileges.rlimits[0].1.rlim_max, 4096);
        assert_eq!(j.privileges.ids, Some((1000, 1000, vec![1000, 27])));
    }

    #[test]
    fn a_nul_byte_in_what_the_program_gets_is_refused() {
        let job = || {
            Job::Launch(child::Launch {
                netns: None,
                cgroup: Vec::new(),
                steps: Vec::new(),
                root: cs("/"),
                hostname: cs("h"),
                files: None,
                sysctls: Vec::new(),
                privileges: child::Privileges {
                    ids: None,
                    capabilities: 0,
                    last_cap: 40,
                    seccomp: Vec::new(),
                    workdir: cs("/"),
                    rlimits: Vec::new(),
                    tty: false,
                },
                nice: None,
            })
        };
        assert!(Order::new(job(), "a\0b", &[], &[]).is_err());
        assert!(Order::new(job(), "a", &["x\0".into()], &[]).is_err());
        assert!(Order::new(job(), "a", &[], &[("K".into(), "v\0".into())]).is_err());
        assert!(Order::new(job(), "a", &[], &[("K".into(), "v".into())]).is_ok());
    }
}
