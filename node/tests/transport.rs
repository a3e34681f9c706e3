//! The QUIC transport between two endpoints on loopback: mutual TLS against
//! the cluster CA, requests and one-way messages, and peers that misbehave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use shoal_actors::driver::BoxFuture;
use shoal_core::model::NodeRole;
use shoal_node::ca::RootCa;
use shoal_node::transport::tls::TlsIdentity;
use shoal_node::transport::{Inbound, InboundError, PeerId, Transport, TransportConfig};

/// Echoes requests; records messages; calls anything starting with "bad"
/// malformed; refuses the node named in `removed`.
#[derive(Default)]
struct Echo {
    messages: Mutex<Vec<(String, Vec<u8>)>>,
    removed: Option<&'static str>,
}

impl Inbound for Echo {
    fn admits(&self, peer: &PeerId) -> Result<(), &'static str> {
        match self.removed == Some(peer.node_id.as_str()) {
            true => Err("node removed from the swarm"),
            false => Ok(()),
        }
    }

    fn message(&self, peer: &PeerId, bytes: Vec<u8>) -> Result<(), InboundError> {
        if bytes.starts_with(b"bad") {
            return Err(InboundError::Refused("undecodable"));
        }
        self.messages.lock().push((peer.node_id.clone(), bytes));
        Ok(())
    }

    fn request(
        &self,
        peer: Option<&PeerId>,
        bytes: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, InboundError>> {
        let who = peer.map_or("anonymous", |p| p.node_id.as_str());
        let answer = if bytes.starts_with(b"bad") {
            Err(InboundError::Refused("undecodable"))
        } else {
            Ok([who.as_bytes(), b":", &bytes].concat())
        };
        Box::pin(async move { answer })
    }
}

fn identity(ca: &RootCa, node: &str) -> TlsIdentity {
    let cert = ca
        .issue(
            "cluster-1",
            node,
            NodeRole::Manager,
            7,
            Duration::from_secs(3600),
        )
        .expect("issue");
    TlsIdentity {
        ca_pem: ca.cert_pem.clone(),
        chain_pem: cert.cert_pem,
        key_pem: cert.key_pem,
    }
}

fn bind(ip: &str, id: &TlsIdentity, inbound: Arc<Echo>) -> Arc<Transport> {
    let addr: SocketAddr = format!("{ip}:0").parse().expect("addr");
    Transport::bind(addr, id, TransportConfig::default(), inbound).expect("bind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requests_and_messages() {
    let ca = RootCa::generate().expect("ca");
    let a_in = Arc::new(Echo::default());
    let b_in = Arc::new(Echo::default());
    let a = bind("127.0.0.2", &identity(&ca, "node-a"), a_in.clone());
    let b = bind("127.0.0.3", &identity(&ca, "node-b"), b_in.clone());
    let b_addr = b.local_addr().expect("addr");

    // The server learns who called from the client's certificate.
    let answer = a.request(b_addr, b"ping").await.expect("request");
    assert_eq!(answer, b"node-a:ping");
    a.send(b_addr, b"hello").await.expect("send");
    for _ in 0..100 {
        if !b_in.messages.lock().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        b_in.messages.lock().as_slice(),
        &[("node-a".to_string(), b"hello".to_vec())]
    );
    let back = b
        .request(a.local_addr().expect("addr"), b"pong")
        .await
        .expect("request back");
    assert_eq!(back, b"node-b:pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let ca = RootCa::generate().expect("ca");
    let other = RootCa::generate().expect("other ca");
    let server = bind(
        "127.0.0.2",
        &identity(&ca, "node-a"),
        Arc::new(Echo::default()),
    );
    // Trusts the right CA, but presents a certificate the server's CA never signed.
    let mut stranger = identity(&other, "intruder");
    stranger.ca_pem = ca.cert_pem.clone();
    let client = bind("127.0.0.3", &stranger, Arc::new(Echo::default()));
    let result = client
        .request(server.local_addr().expect("addr"), b"let me in")
        .await;
    assert!(
        result.is_err(),
        "a foreign certificate must be refused: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_refused() {
    let ca = RootCa::generate().expect("ca");
    let server = bind(
        "127.0.0.2",
        &identity(&ca, "node-a"),
        Arc::new(Echo {
            removed: Some("node-gone"),
            ..Echo::default()
        }),
    );
    let client = bind(
        "127.0.0.3",
        &identity(&ca, "node-gone"),
        Arc::new(Echo::default()),
    );
    let result = client
        .request(server.local_addr().expect("addr"), b"hi")
        .await;
    assert!(
        result.is_err(),
        "a removed node's certificate must be refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_close_the_connection_not_the_node() {
    let ca = RootCa::generate().expect("ca");
    let server_in = Arc::new(Echo::default());
    let server = bind("127.0.0.2", &identity(&ca, "node-a"), server_in.clone());
    let addr = server.local_addr().expect("addr");
    let peer = bind(
        "127.0.0.3",
        &identity(&ca, "node-b"),
        Arc::new(Echo::default()),
    );

    // An undecodable message: that connection is closed ...
    let conn = peer.connect(addr).await.expect("connect");
    peer.send(addr, b"bad bytes").await.expect("send");
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed");
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );

    // ... and so is one announcing a 4 GiB frame.
    let conn = peer.connect(addr).await.expect("reconnect");
    let mut s = conn.open_uni().await.expect("stream");
    s.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    s.write_all(b"not really four gigabytes")
        .await
        .expect("write");
    let _ = s.finish();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed");
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );

    // A truncated request, then a malformed one: closed again.
    let conn = peer.connect(addr).await.expect("reconnect");
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
    let _ = send.finish();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed");
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );

    // The node is fine: the next connection works.
    assert_eq!(
        peer.request(addr, b"still there?").await.expect("request"),
        b"node-b:still there?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_checks_the_ca_against_the_token_digest() {
    let ca = RootCa::generate().expect("ca");
    let server = bind(
        "127.0.0.2",
        &identity(&ca, "node-a"),
        Arc::new(Echo::default()),
    );
    let addr = server.local_addr().expect("addr");
    let bind_any: SocketAddr = "127.0.0.3:0".parse().expect("addr");
    // The right digest: one request, answered without a client certificate.
    let answer = shoal_node::transport::anonymous_request(bind_any, addr, &ca.digest(), b"join me")
        .await
        .expect("join request");
    assert_eq!(answer, b"anonymous:join me");
    // Another CA's digest: nothing is sent.
    let other = RootCa::generate().expect("other ca");
    let refused =
        shoal_node::transport::anonymous_request(bind_any, addr, &other.digest(), b"join me").await;
    let err = refused
        .expect_err("a CA that does not match the token must be refused")
        .to_string();
    assert!(err.contains("does not match the join token"), "{err}");
}
