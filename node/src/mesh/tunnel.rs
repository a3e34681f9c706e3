//! A proxied connection between nodes: one QUIC stream on the mesh
//! connection (mutual TLS, so encrypted on the wire), opened with a header
//! naming the task and port; the far node dials its own task and answers
//! one status byte before the bytes flow.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_core::codec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::transport::frame::{read_frame, write_frame};
use crate::transport::Transport;

/// The largest header a tunnel may open with.
const MAX_HEADER: usize = 4096;
const OK: u8 = 0;
const REFUSED: u8 = 1;

/// How long a dial to a task may take before the next backend is tried.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub task_id: String,
    pub port: u16,
    /// The client's address, and the address it connected to, at the ingress node.
    pub client: SocketAddr,
    pub dest: SocketAddr,
    /// Tell the task who the client is, in this PROXY protocol version.
    pub proxy: Option<shoal_core::model::port::ProxyProtocol>,
    /// TCP: the stream is the connection. UDP: it carries framed datagrams.
    pub protocol: shoal_core::model::port::Protocol,
}

/// Both directions of a tunnel, as one stream.
pub type Tunnel = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::TransportError),
    #[error("frame: {0}")]
    Frame(#[from] crate::transport::frame::FrameError),
    #[error("codec: {0}")]
    Codec(#[from] shoal_core::codec::CodecError),
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("the task's node refused the tunnel")]
    Refused,
}

/// Opens a tunnel to `task_id`'s `port` on the node at `addr`.
pub async fn open(
    transport: &Transport,
    addr: SocketAddr,
    header: &Header,
) -> Result<Tunnel, TunnelError> {
    let (mut send, mut recv) = transport.open_tunnel(addr).await?;
    write_frame(&mut send, &codec::encode(header)?).await?;
    let mut status = [0u8; 1];
    recv.read_exact(&mut status)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if status[0] != OK {
        return Err(TunnelError::Refused);
    }
    Ok(tokio::io::join(recv, send))
}

/// The far end's first step: the tunnel's header (`None`: malformed).
pub async fn read_header(recv: &mut quinn::RecvStream) -> Option<Header> {
    let bytes = read_frame(recv, MAX_HEADER).await.ok()?;
    codec::decode::<Header>(&bytes).ok()
}

/// The far end could not reach the task: the opener tries another.
pub async fn refuse(mut send: quinn::SendStream) {
    let _ = send.write_all(&[REFUSED]).await;
    let _ = send.finish();
}

/// The far end reached the task: the bytes may flow.
pub async fn accept(mut send: quinn::SendStream, recv: quinn::RecvStream) -> Option<Tunnel> {
    send.write_all(&[OK]).await.ok()?;
    Some(tokio::io::join(recv, send))
}

/// Joins an accepted tunnel and a connection to the task until both close,
/// nothing moves for `idle`, or the registry evicts it.
pub async fn splice(
    mut tunnel: Tunnel,
    mut task: TcpStream,
    admitted: &crate::mesh::limits::Admitted,
    idle: Duration,
) {
    crate::mesh::relay::relay(&mut tunnel, &mut task, admitted, idle).await;
    let _ = tunnel.shutdown().await;
}
