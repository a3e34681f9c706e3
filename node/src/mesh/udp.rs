//! UDP through the mesh: each client address is a flow, sent to one task
//! (picked like a TCP connection) until it has been idle for `IDLE` or the
//! registry evicts it (`limits.rs`: flows are capped per client address,
//! per port and per node). A flow to a task of another node rides a tunnel
//! stream, each datagram framed with its length.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::mesh::limits::Admitted;

/// A flow with no datagram either way for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(30);
/// The largest datagram relayed.
pub const MAX_DATAGRAM: usize = 65_507;
/// Datagrams queued for one flow before new ones are dropped (UDP may drop).
const QUEUE: usize = 256;

/// Writes one datagram on a tunnel stream.
pub async fn write_datagram<W: AsyncWrite + Unpin>(w: &mut W, d: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(d.len()).map_err(|_| std::io::Error::other("datagram too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(d).await?;
    w.flush().await
}

/// Reads one datagram from a tunnel stream; `None` at its end.
pub async fn read_datagram<R: AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await.ok()?;
    let mut d = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut d).await.ok()?;
    Some(d)
}

/// Relays datagrams between a tunnel stream and a task's UDP socket (the
/// far end of a remote flow), until it is idle for `IDLE`, either side
/// ends, or it is evicted.
pub async fn relay_tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    task: UdpSocket,
    admitted: &Admitted,
) {
    let (mut r, mut w) = tokio::io::split(stream);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            d = read_datagram(&mut r) => match d {
                Some(d) => { admitted.touch(); let _ = task.send(&d).await; }
                None => return,
            },
            n = task.recv(&mut buf) => match n {
                Ok(n) => {
                    admitted.touch();
                    if write_datagram(&mut w, &buf[..n]).await.is_err() { return }
                }
                Err(_) => return,
            },
            () = admitted.idle_for(IDLE) => return,
            () = admitted.evicted() => return,
        }
    }
}

/// One published UDP port's flows.
#[derive(Default)]
pub struct Flows(Mutex<BTreeMap<SocketAddr, mpsc::Sender<Vec<u8>>>>);

impl Flows {
    /// Hands the datagram to the client's flow; false if there is none (or
    /// it has ended), and one must be started.
    pub fn send(&self, client: SocketAddr, d: &[u8]) -> bool {
        let mut flows = self.0.lock();
        match flows.get(&client) {
            Some(tx) if !tx.is_closed() => {
                let _ = tx.try_send(d.to_vec());
                true
            }
            Some(_) => {
                flows.remove(&client);
                false
            }
            None => false,
        }
    }

    /// A new flow for `client`: datagrams from the client arrive on the receiver.
    pub fn start(&self, client: SocketAddr, first: Vec<u8>) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(first);
        self.0.lock().insert(client, tx);
        rx
    }

    pub fn end(&self, client: SocketAddr) {
        self.0.lock().remove(&client);
    }
}

/// Relays a flow: datagrams from the client (`from_client`) go to
/// `upstream`, what comes back goes to the client through `listener`.
pub async fn relay_flow<S: AsyncRead + AsyncWrite + Unpin>(
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    upstream: Upstream<S>,
    admitted: &Admitted,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    match upstream {
        Upstream::Local(task) => loop {
            tokio::select! {
                d = from_client.recv() => match d {
                    Some(d) => { admitted.touch(); let _ = task.send(&d).await; }
                    None => return,
                },
                n = task.recv(&mut buf) => match n {
                    Ok(n) => { admitted.touch(); let _ = listener.send_to(&buf[..n], client).await; }
                    Err(_) => return,
                },
                () = admitted.idle_for(IDLE) => return,
                () = admitted.evicted() => return,
            }
        },
        Upstream::Tunnel(stream) => {
            let (mut r, mut w) = tokio::io::split(stream);
            loop {
                tokio::select! {
                    d = from_client.recv() => match d {
                        Some(d) => {
                            admitted.touch();
                            if write_datagram(&mut w, &d).await.is_err() { return }
                        }
                        None => return,
                    },
                    d = read_datagram(&mut r) => match d {
                        Some(d) => { admitted.touch(); let _ = listener.send_to(&d, client).await; }
                        None => return,
                    },
                    () = admitted.idle_for(IDLE) => return,
                    () = admitted.evicted() => return,
                }
            }
        }
    }
}

/// Where a flow's datagrams go: a socket connected to this node's task, or
/// a tunnel to the task's node.
pub enum Upstream<S> {
    Local(UdpSocket),
    Tunnel(S),
}
