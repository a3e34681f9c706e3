//! One request of the traffic load, over TCP or UDP, and the names the
//! load's parts share: the nodes it goes through and the overlay client
//! service it is sent from. A leaf: the published-port load (`traffic`),
//! the overlay probe (`overlay`) and the workload's specs (`workload`)
//! import it, and it imports none of them.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::scenario::Proto;

/// Nodes whose published ports take traffic, kept current by the runner:
/// a node leaves before it is killed, stopped or paused and comes back
/// once it answers again.
pub type LiveNodes = Arc<Mutex<Vec<(String, IpAddr)>>>;

/// The harness's client service on the traffic's overlay network.
pub const CLIENT: &str = "chaos-overlay-client";

/// A UDP request not answered within this is sent again, from a new port.
pub const UDP_RETRY: Duration = Duration::from_secs(1);

/// One datagram and its answer.
fn udp_once(to: SocketAddr, timeout: Duration, bind: IpAddr) -> Result<(), String> {
    let s = UdpSocket::bind((bind, 0)).map_err(|e| format!("bind: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
    s.send_to(b"traffic", to)
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, _)) if n > 0 => Ok(()),
        Ok(_) => Err("an empty answer".into()),
        Err(e) => Err(format!("no answer: {e}")),
    }
}

/// One request: how many tries it took (UDP is sent again when no answer
/// comes), or why it failed.
pub fn request(proto: Proto, to: SocketAddr, timeout: Duration) -> Result<u32, String> {
    request_from(
        proto,
        to,
        timeout,
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    )
}

/// [`request`], its UDP datagrams sent from `bind`.
pub fn request_from(
    proto: Proto,
    to: SocketAddr,
    timeout: Duration,
    bind: IpAddr,
) -> Result<u32, String> {
    match proto {
        Proto::Tcp => {
            let mut s =
                TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect: {e}"))?;
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(|e| format!("send: {e}"))?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)
                .map_err(|e| format!("answer: {e}"))?;
            if out.starts_with(b"HTTP/1.0 200") {
                Ok(1)
            } else if out.is_empty() {
                Err("closed without an answer".into())
            } else {
                let head = String::from_utf8_lossy(&out[..out.len().min(40)]).into_owned();
                Err(format!("answered {head:?}"))
            }
        }
        Proto::Udp => {
            // Like a DNS resolver: one datagram, sent again from a new
            // source port (a new flow) if no answer came within a second,
            // until `timeout` has passed.
            let began = std::time::Instant::now();
            let mut tries = 0;
            let mut last = String::new();
            while began.elapsed() < timeout {
                tries += 1;
                let left = timeout.saturating_sub(began.elapsed());
                match udp_once(to, left.min(UDP_RETRY), bind) {
                    Ok(()) => return Ok(tries),
                    Err(e) => last = e,
                }
            }
            Err(format!("{last} ({tries} tries)"))
        }
    }
}
