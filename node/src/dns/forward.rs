//! Forwarding what is not ours to the node's own resolvers: the query's
//! bytes as they came (under a fresh random id), over the protocol the
//! client used, one upstream after another, each with a timeout, at most
//! `in_flight` at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// glibc reads at most three `nameserver` lines; so does docker.
pub const MAX_UPSTREAMS: usize = 3;
/// Largest UDP answer relayed from an upstream.
const MAX_UDP_ANSWER: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("no resolver to forward to")]
    NoUpstream,
    #[error("too many forwarded queries in flight")]
    Busy,
    #[error("no resolver answered")]
    NoAnswer,
}

/// The `nameserver` addresses of a resolv.conf text, port 53, at most
/// `MAX_UPSTREAMS`, in order.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // An IPv6 address may carry a zone (`fe80::1%eth0`): not usable here.
            let ip: IpAddr = words.next()?.parse().ok()?;
            (!ip.is_unspecified()).then_some(SocketAddr::new(ip, 53))
        })
        .take(MAX_UPSTREAMS)
        .collect()
}

#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

/// What the query asked, to check that an answer is to this question.
pub struct Question<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, in_flight: usize, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams,
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            timeout,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Asks the upstreams in turn; the first answer that is neither
    /// SERVFAIL nor REFUSED wins, else the last such answer. `skip` says
    /// which upstreams are this server itself (a loop).
    pub async fn forward(
        &self,
        query: &[u8],
        question: Question<'_>,
        tcp: bool,
        skip: impl Fn(SocketAddr) -> bool,
    ) -> Result<Message, ForwardError> {
        if query.len() < 12 {
            return Err(ForwardError::NoAnswer);
        }
        let usable: Vec<SocketAddr> = self
            .upstreams
            .iter()
            .copied()
            .filter(|u| !skip(*u))
            .collect();
        if usable.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return Err(ForwardError::Busy);
        };
        let mut q = query.to_vec();
        let mut last = None;
        for up in usable {
            let id: u16 = rand::random();
            q[..2].copy_from_slice(&id.to_be_bytes());
            let exchange = async {
                if tcp {
                    via_tcp(up, &q).await
                } else {
                    via_udp(up, &q, id).await
                }
            };
            let bytes = match tokio::time::timeout(self.timeout, exchange).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %up, error = %e, "dns: forwarding failed");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(upstream = %up, "dns: upstream timed out");
                    continue;
                }
            };
            let Some(msg) = check_answer(&bytes, id, &question) else {
                continue;
            };
            match msg.metadata.response_code {
                ResponseCode::ServFail | ResponseCode::Refused => last = Some(msg),
                _ => return Ok(msg),
            }
        }
        last.ok_or(ForwardError::NoAnswer)
    }
}

/// The decoded answer, if it is a response to our id and question.
fn check_answer(bytes: &[u8], id: u16, q: &Question<'_>) -> Option<Message> {
    let msg = Message::from_vec(bytes).ok()?;
    let ours = msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.queries.len() == 1
        && msg.queries[0].query_type() == q.qtype
        && msg.queries[0].name() == q.name;
    ours.then_some(msg)
}

async fn via_udp(up: SocketAddr, q: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the upstream.
    sock.connect(up).await?;
    sock.send(q).await?;
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let n = sock.recv(&mut buf).await?;
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn via_tcp(up: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    let len = u16::try_from(q.len()).map_err(|_| std::io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(q);
    s.write_all(&framed).await?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order_at_most_three() {
        let text = "# generated\nsearch example.com\nnameserver 10.255.255.53\n\
                    nameserver   127.0.0.53 \nnameserver fe80::1%eth0\nnameserver ::1\n\
                    nameserver 0.0.0.0\noptions ndots:2\nnameserver 9.9.9.9\nnameserver 1.1.1.1\n";
        let got: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["10.255.255.53:53", "127.0.0.53:53", "[::1]:53"]);
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("nameserver\nnameserver x.y\n").is_empty());
    }
}
