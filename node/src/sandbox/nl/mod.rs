//! The sandbox's kernel calls over netlink, without `ip`, `nft` or
//! `conntrack` processes: `route.rs` links, addresses and routes
//! (rtnetlink through `netlink-packet-route`), `netns.rs` named network
//! namespaces, `nft.rs` nftables set elements in one batch per call,
//! `conntrack.rs` the flush of a VIP's entries to a backend that left.
//!
//! Blocking, like the rest of the sandbox: a socket answers on the thread
//! that asks (the process driver's starter threads, blocking tasks). A
//! socket belongs to the network namespace of the thread that opened it,
//! so one inside a task's namespace is opened on a short-lived thread of
//! its own that enters the namespace and then ends (`netns::socket_in`).
//!
//! The kernel's answers are parsed, never trusted for sizes: a reply that
//! does not parse is an error, and a receive waits at most `RECV_TIMEOUT`.

pub mod conntrack;
pub mod netns;
pub mod nft;
pub mod route;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};

/// The longest a request waits for the kernel's answer.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// One receive's buffer: the kernel's dumps come in datagrams of at most a
/// page or two; 64 KiB holds any of them.
const RECV_BUF: usize = 64 * 1024;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

thread_local! {
    /// Each thread's rtnetlink and nfnetlink sockets in the host's
    /// namespace (the threads that use them never change namespace).
    static HOST: std::cell::RefCell<(Option<route::Route>, Option<nft::Nft>)> =
        const { std::cell::RefCell::new((None, None)) };
}

/// Runs `f` with this thread's rtnetlink socket in the host's namespace,
/// opened on first use (a fresh one if `f` asks again from inside).
pub fn host<T>(f: impl FnOnce(&mut route::Route) -> Result<T, NlError>) -> Result<T, NlError> {
    HOST.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let r = match &mut slot.0 {
                Some(r) => r,
                empty => empty.insert(route::Route::open()?),
            };
            f(r)
        }
        Err(_) => f(&mut route::Route::open()?),
    })
}

/// `host`'s nfnetlink twin.
pub fn host_nft<T>(f: impl FnOnce(&mut nft::Nft) -> Result<T, NlError>) -> Result<T, NlError> {
    HOST.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let n = match &mut slot.1 {
                Some(n) => n,
                empty => empty.insert(nft::Nft::open()?),
            };
            f(n)
        }
        Err(_) => f(&mut nft::Nft::open()?),
    })
}

/// A netlink error: what was asked, and the kernel's errno (or a reply
/// that did not parse).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct NlError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl NlError {
    pub fn new(op: impl Into<String>, source: io::Error) -> NlError {
        NlError {
            op: op.into(),
            source,
        }
    }

    /// The error says the thing to remove was not there.
    pub fn is_missing(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }

    /// The error says the thing to make is there already.
    pub fn is_exists(&self) -> bool {
        self.source.raw_os_error() == Some(libc::EEXIST)
    }
}

/// One netlink socket of a protocol, in the namespace it was opened in.
pub struct Nl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink reply: {what}"),
    )
}

/// One message of a datagram: (type, flags, seq, payload after the header).
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub whole: &'a [u8],
}

/// Splits a datagram into its messages; a length that does not fit is an error.
pub fn split(mut data: &[u8]) -> io::Result<Vec<Msg<'_>>> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return Err(malformed("message length"));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let flags = u16::from_ne_bytes([data[6], data[7]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        out.push(Msg {
            kind,
            flags,
            seq,
            payload: &data[16..len],
            whole: &data[..len],
        });
        let next = (len + 3) & !3;
        data = data.get(next..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The errno of an `NLMSG_ERROR` payload (0: an acknowledgement).
pub fn error_code(payload: &[u8]) -> io::Result<i32> {
    let b = payload.get(..4).ok_or_else(|| malformed("error message"))?;
    Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

impl Nl {
    /// A socket of `protocol` (`netlink_sys::protocols::NETLINK_*`) in the
    /// calling thread's network namespace.
    pub fn open(protocol: isize) -> io::Result<Nl> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval it reads and a descriptor we own.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Nl {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one or more messages already encoded (sequence numbers in them).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let n = self.sock.send(bytes, 0)?;
        if n != bytes.len() {
            return Err(io::Error::other("short netlink send"));
        }
        Ok(())
    }

    /// Receives datagrams and hands each message whose sequence number is
    /// in `seqs` to `each`, until `each` says it is done (`Ok(true)`).
    pub fn recv_until(
        &mut self,
        seqs: std::ops::RangeInclusive<u32>,
        mut each: impl FnMut(&Msg<'_>) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            if n > self.buf.len() {
                return Err(malformed("datagram larger than the buffer"));
            }
            for m in split(&self.buf)? {
                if !seqs.contains(&m.seq) {
                    continue;
                }
                if each(&m)? {
                    return Ok(());
                }
            }
        }
    }

    /// Waits for the acknowledgements of `count` requests sent with
    /// `NLM_F_ACK` under the sequence numbers `first..first+count`; the
    /// first error among them is returned (each is read either way).
    pub fn acks(&mut self, first: u32, count: u32) -> io::Result<()> {
        if count == 0 {
            return Ok(());
        }
        let last = first.wrapping_add(count - 1);
        let mut left = count;
        let mut first_err: Option<io::Error> = None;
        self.recv_until(first..=last, |m| {
            if m.kind == NLMSG_ERROR {
                let code = error_code(m.payload)?;
                if code != 0 && first_err.is_none() {
                    first_err = Some(io::Error::from_raw_os_error(-code));
                }
                left -= 1;
            }
            Ok(left == 0)
        })?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Appends a netlink attribute (type, value), padded to 4 bytes.
pub fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    pad(buf);
}

/// Starts a nested attribute; `end_nested` writes its length.
pub fn begin_nested(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

pub fn end_nested(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_TYPE_MASK: u16 = 0x3fff;

fn pad(buf: &mut Vec<u8>) {
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

/// Iterates over the attributes of `data`: (type without flags, value).
/// Stops at the first one whose length does not fit.
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = data.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// A message header: (length filled by `finish`), type, flags, sequence.
pub fn begin_msg(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    at
}

pub fn finish_msg(buf: &mut Vec<u8>, at: usize) {
    pad(buf);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_splits_into_its_messages_and_a_bad_length_is_refused() {
        let mut b = Vec::new();
        let at = begin_msg(&mut b, NLMSG_ERROR, 0, 7);
        b.extend_from_slice(&(-19i32).to_ne_bytes());
        finish_msg(&mut b, at);
        let at = begin_msg(&mut b, NLMSG_DONE, NLM_F_MULTI, 8);
        finish_msg(&mut b, at);
        let msgs = split(&b).expect("parses");
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].kind, msgs[0].seq), (NLMSG_ERROR, 7));
        assert_eq!(error_code(msgs[0].payload).expect("code"), -19);
        assert_eq!(msgs[1].kind, NLMSG_DONE);
        let mut bad = b.clone();
        bad[0] = 200;
        assert!(split(&bad).is_err());
        bad[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(split(&bad).is_err());
        assert!(error_code(&[1, 2]).is_err());
    }

    #[test]
    fn attributes_nest_pad_and_read_back_and_a_short_one_ends_the_walk() {
        let mut b = Vec::new();
        let n = begin_nested(&mut b, 3);
        put_attr(&mut b, 1, b"abc");
        put_attr(&mut b, 2, &[9; 4]);
        end_nested(&mut b, n);
        let outer: Vec<_> = attrs(&b).collect();
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, 3);
        let inner: Vec<_> = attrs(outer[0].1).collect();
        assert_eq!(inner, vec![(1, &b"abc"[..]), (2, &[9u8; 4][..])]);
        let mut cut = b.clone();
        cut[0] = 255;
        assert_eq!(attrs(&cut).count(), 0);
    }
}
