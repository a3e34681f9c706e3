//! The hickory request handler: one query in, one answer out, from the
//! latest index (rebuilt here if the table moved since) or from an upstream.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use parking_lot::RwLock;
use shoal_core::rules::network::NetworkTable;
use tokio::sync::watch;

use super::forward::{Forwarder, Question};
use super::index::{Answer, Index, MAX_NAME};

/// Largest query accepted, over UDP or TCP; a real query is far smaller.
pub const MAX_QUERY: usize = 4096;
/// Largest UDP answer we will send, whatever the client's EDNS says.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// What every listener of the server shares.
pub struct Shared {
    tables: watch::Receiver<Arc<NetworkTable>>,
    node: Option<String>,
    index: RwLock<Arc<Index>>,
    forwarder: Forwarder,
    port: u16,
    counts: super::DnsCounts,
}

impl Shared {
    pub fn new(
        tables: watch::Receiver<Arc<NetworkTable>>,
        node: Option<String>,
        forwarder: Forwarder,
        port: u16,
        counts: super::DnsCounts,
    ) -> Shared {
        let index = Index::build(tables.borrow().clone(), node.as_deref());
        Shared {
            tables,
            node,
            index: RwLock::new(Arc::new(index)),
            forwarder,
            port,
            counts,
        }
    }

    /// The index of the table as it is now: answers follow the watch at
    /// once, whoever (the follower or a query) notices the change first.
    pub fn index(&self) -> Arc<Index> {
        let table = self.tables.borrow().clone();
        {
            let ix = self.index.read();
            if Arc::ptr_eq(&ix.source, &table) {
                return ix.clone();
            }
        }
        let mut ix = self.index.write();
        if !Arc::ptr_eq(&ix.source, &table) {
            *ix = Arc::new(Index::build(table, self.node.as_deref()));
        }
        ix.clone()
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }
}

/// The hickory handler; cheap to clone.
#[derive(Clone)]
pub struct Handler(pub Arc<Shared>);

/// A response that was not sent (the query is dropped).
fn dropped(id: u16) -> ResponseInfo {
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// The query's name as dotted text in `buf` (no trailing dot), `None` if a
/// label holds a dot itself (never one of our names).
fn dotted<'a>(
    name: &hickory_server::proto::rr::Name,
    buf: &'a mut [u8; MAX_NAME],
) -> Option<&'a [u8]> {
    let mut n = 0;
    for (i, label) in name.iter().enumerate() {
        if label.contains(&b'.') {
            return None;
        }
        let sep = usize::from(i > 0);
        let end = n + sep + label.len();
        let out = buf.get_mut(n..end)?;
        if sep == 1 {
            out[0] = b'.';
        }
        out[sep..].copy_from_slice(label);
        n = end;
    }
    Some(&buf[..n])
}

impl Handler {
    async fn answer<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let meta = &request.metadata;
        let id = meta.id;
        let counts = &self.0.counts;
        counts.queries.inc();
        if request.as_slice().len() > MAX_QUERY || meta.message_type != MessageType::Query {
            counts.answered("refused");
            return dropped(id);
        }
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            r.set_dnssec_ok(e.flags().dnssec_ok);
            r
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut reply = Metadata::response_from_request(meta);
        reply.recursion_available = true;
        if meta.op_code != OpCode::Query {
            counts.answered("refused");
            reply.response_code = ResponseCode::NotImp;
            return send(&mut response, builder.build_no_records(reply), id).await;
        }
        let Ok(info) = request.request_info() else {
            counts.answered("refused");
            reply.response_code = ResponseCode::FormErr;
            return send(&mut response, builder.build_no_records(reply), id).await;
        };
        let query = info.query.original();
        let qtype = query.query_type();
        let local = if query.query_class() == DNSClass::IN {
            let mut buf = [0u8; MAX_NAME];
            match dotted(query.name(), &mut buf) {
                Some(name) => self.0.index().lookup(
                    request.src().ip(),
                    name,
                    matches!(qtype, RecordType::A | RecordType::ANY),
                ),
                None => Answer::Forward,
            }
        } else {
            Answer::Forward
        };
        match local {
            Answer::Addrs(list) => {
                let records: Vec<Record> = list
                    .into_iter()
                    .map(|a| Record::from_rdata(query.name().clone(), 0, RData::A(A(a))))
                    .collect();
                counts.answered("local");
                let msg = builder.build(reply, &records, [], [], []);
                send(&mut response, msg, id).await
            }
            Answer::NoData => {
                counts.answered("nodata");
                send(&mut response, builder.build_no_records(reply), id).await
            }
            Answer::NxDomain => {
                counts.answered("nxdomain");
                reply.response_code = ResponseCode::NXDomain;
                send(&mut response, builder.build_no_records(reply), id).await
            }
            Answer::Forward => {
                let ix = self.0.index();
                let port = self.0.port;
                let own = |up: SocketAddr| {
                    up.port() == port
                        && matches!(up.ip(), std::net::IpAddr::V4(ip) if is_ours(ix.gateways(), ip))
                };
                let q = Question {
                    name: query.name(),
                    qtype,
                };
                let tcp = request.protocol() == Protocol::Tcp;
                counts.forwarded.inc();
                match self
                    .0
                    .forwarder
                    .forward(request.as_slice(), q, tcp, own)
                    .await
                {
                    Ok(msg) => {
                        counts.answered("forwarded");
                        let mut m = msg.metadata;
                        m.id = id;
                        m.message_type = MessageType::Response;
                        m.recursion_desired = meta.recursion_desired;
                        let out =
                            builder.build(m, &msg.answers, &msg.authorities, [], &msg.additionals);
                        send(&mut response, out, id).await
                    }
                    Err(e) => {
                        tracing::debug!(name = %query.name(), error = %e, "dns: not forwarded");
                        counts.answered("servfail");
                        reply.response_code = ResponseCode::ServFail;
                        send(&mut response, builder.build_no_records(reply), id).await
                    }
                }
            }
        }
    }
}

fn is_ours(gateways: &[Ipv4Addr], ip: Ipv4Addr) -> bool {
    gateways.binary_search(&ip).is_ok()
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    id: u16,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "dns: answer not sent");
            dropped(id)
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.answer(request, response_handle).await
    }
}
