//! A hostile client of a published port (the `flood` action): until it is
//! stopped, it holds idle TCP connections to the port and sends UDP
//! datagrams to it, each from a new source port of 64 loopback source
//! addresses (127.3.0.x), so that every datagram is a new flow for the
//! node's proxy. The TCP connections come from 127.3.0.x too, so the
//! harness's own probes (from 127.0.0.1) are another client.

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Datagrams sent per round (a round every `PAUSE`): about 2,000 a second.
const DATAGRAMS_PER_ROUND: u32 = 100;
/// New TCP connections tried per round, until `connections` are held.
const CONNECTS_PER_ROUND: usize = 20;
const PAUSE: Duration = Duration::from_millis(50);

/// What a flood did by the time it stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub datagrams: u64,
    /// TCP connections still open when it stopped.
    pub held: usize,
    /// TCP connections the node closed (or refused) while it ran.
    pub closed: u64,
}

/// A running flood; `stop` ends it and says what it did.
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Tally>>,
}

impl Flood {
    /// Floods `ip`'s published `port` (TCP and UDP) with `connections` idle
    /// TCP connections and a stream of new UDP flows.
    pub fn start(ip: IpAddr, port: u16, connections: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(SocketAddr::new(ip, port), connections, &flag));
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> Tally {
        self.halt()
    }

    fn halt(&mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A TCP connection from `src` (any port) to `to`, or an error within 500 ms.
fn connect_from(src: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_millis(500))?;
    Ok(s.into())
}

fn run(to: SocketAddr, connections: usize, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut held: Vec<TcpStream> = Vec::new();
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..DATAGRAMS_PER_ROUND {
            n = n.wrapping_add(1);
            let src = std::net::Ipv4Addr::new(127, 3, 0, 1 + (n % 64) as u8);
            if let Ok(s) = UdpSocket::bind((src, 0)) {
                if s.send_to(b"flood", to).is_ok() {
                    tally.datagrams += 1;
                }
            }
        }
        // Connections the node closed are counted and dropped.
        let before = held.len();
        held.retain(|s| {
            let mut b = [0u8; 1];
            matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        tally.closed += (before - held.len()) as u64;
        for _ in 0..CONNECTS_PER_ROUND.min(connections.saturating_sub(held.len())) {
            n = n.wrapping_add(1);
            let src = std::net::Ipv4Addr::new(127, 3, 0, 1 + (n % 64) as u8);
            match connect_from(src, to) {
                Ok(s) if s.set_nonblocking(true).is_ok() => held.push(s),
                // The node is down or full: try again next round.
                _ => {
                    tally.closed += 1;
                    break;
                }
            }
        }
        std::thread::sleep(PAUSE);
    }
    tally.held = held.len();
    tally
}
