//! DNS over TCP with bounds hickory's own listener lacks: at most
//! `max_conns` connections (a further one is closed at once), an idle
//! timeout between queries and on each read and write, a query size limit,
//! and the connection closed on the first malformed message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::MessageType;
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::handler::{Handler, MAX_QUERY};

/// Keeps the encoded answer for the connection to write: the handler does
/// no IO of its own.
#[derive(Clone, Default)]
pub struct Capture(Arc<parking_lot::Mutex<Option<Vec<u8>>>>);

impl Capture {
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock() = Some(bytes);
        Ok(info)
    }
}

pub async fn serve(listener: TcpListener, handler: Handler, max_conns: usize, idle: Duration) {
    let permits = Arc::new(Semaphore::new(max_conns.max(1)));
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::debug!(error = %e, "dns: tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        conns.spawn(async move {
            let _permit = permit;
            connection(stream, peer, handler, idle).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: Handler, idle: Duration) {
    let _ = stream.set_nodelay(true);
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if !(12..=MAX_QUERY).contains(&n) {
            return;
        }
        let mut buf = vec![0u8; n];
        if !matches!(
            tokio::time::timeout(idle, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Ok(request) = Request::from_bytes(buf, peer, Protocol::Tcp) else {
            return;
        };
        if request.metadata.message_type == MessageType::Response {
            return;
        }
        let capture = Capture::default();
        handler
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let Some(answer) = capture.take() else {
            continue;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        if !matches!(
            tokio::time::timeout(idle, stream.write_all(&framed)).await,
            Ok(Ok(_))
        ) {
            return;
        }
    }
}
