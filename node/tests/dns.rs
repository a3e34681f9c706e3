//! The embedded DNS server over real sockets: a table pushed through a
//! `NetworkWatch`, queries from a task's address over UDP and TCP, a change
//! of the table in the next answer, forwarding to a fake upstream.
//!
//! Everything lives on loopback addresses of this namespace (all of
//! 127.0.0.0/8 is local, so "task" and "gateway" addresses need no
//! interface), on ports picked at random: no root, nothing left behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use shoal_actors::session::NetworkSink;
use shoal_core::model::network::{EndpointMode, Subnet};
use shoal_core::rules::network::{NetworkInfo, NetworkTable, ServiceNames, ServiceNet, TaskAddr};
use shoal_node::dns::{DnsConfig, DnsCounts, DnsServer, OutcomeLabel};
use shoal_node::overlay::NetworkWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

const NODE: &str = "node-a";
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn network(id: &str, second: u8) -> NetworkInfo {
    NetworkInfo {
        id: id.into(),
        name: format!("net-{id}"),
        subnet: Subnet {
            addr: Ipv4Addr::new(127, second, 0, 0),
            prefix: 24,
        },
        gateway: Ipv4Addr::new(127, second, 0, 1),
        internal: false,
        encrypted: true,
        attachable: false,
        ingress: false,
    }
}

fn task(net: &str, addr: Ipv4Addr, id: &str, svc: &str, serving: bool) -> TaskAddr {
    TaskAddr {
        network_id: net.into(),
        addr,
        task_id: id.into(),
        service_id: svc.into(),
        node_id: NODE.into(),
        node_addr: "127.0.0.1:2377".into(),
        serving,
    }
}

fn service(id: &str, mode: EndpointMode, net: &str, vip: Option<Ipv4Addr>) -> ServiceNames {
    ServiceNames {
        service_id: id.into(),
        name: id.into(),
        mode,
        networks: vec![ServiceNet {
            network_id: net.into(),
            vip,
            aliases: vec![format!("{id}-alias")],
        }],
    }
}

/// `client` and two `server` tasks (vip .2) and two `rr` tasks (dnsrr) on
/// network 127.<second>.0.0/24.
fn table(second: u8) -> NetworkTable {
    let a = |d: u8| Ipv4Addr::new(127, second, 0, d);
    NetworkTable {
        networks: vec![network("n", second)],
        tasks: vec![
            task("n", a(10), "c1", "client", true),
            task("n", a(20), "s1", "server", true),
            task("n", a(21), "s2", "server", true),
            task("n", a(30), "r1", "rr", true),
            task("n", a(31), "r2", "rr", true),
        ],
        blocks: vec![],
        services: vec![
            service("client", EndpointMode::Vip, "n", Some(a(3))),
            service("server", EndpointMode::Vip, "n", Some(a(2))),
            service("rr", EndpointMode::Dnsrr, "n", None),
        ],
    }
}

/// A port free on `ip` for both UDP and TCP, as far as we can tell.
async fn free_port(ip: Ipv4Addr) -> u16 {
    loop {
        let udp = UdpSocket::bind((ip, 0)).await.expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// Answers every query with `EXTERNAL` (A) after `delay`, on UDP.
async fn fake_upstream(ip: Ipv4Addr, delay: Duration) -> SocketAddr {
    let sock = UdpSocket::bind((ip, 0)).await.expect("bind upstream");
    let addr = sock.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new(
                q.metadata.id,
                hickory_server::proto::op::MessageType::Response,
                q.metadata.op_code,
            );
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            for query in &q.queries {
                r.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::from(EXTERNAL),
                    ));
                }
            }
            // (A zero sleep still waits for the timer's next 1 ms tick.)
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m.set_edns(Edns::new());
    m.to_vec().expect("encode")
}

async fn ask_udp(from: Ipv4Addr, server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind((from, 0)).await.expect("bind client");
    sock.send_to(&query(name, qtype), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("decode answer")
}

async fn ask_tcp(from: Ipv4Addr, server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind((from, 0).into()).expect("bind");
    let mut s = sock.connect(server).await.expect("connect");
    let q = query(name, qtype);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.expect("write");
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len))
        .await
        .expect("an answer")
        .expect("read");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.expect("read");
    Message::from_vec(&buf).expect("decode answer")
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data.ip_addr() {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        })
        .collect()
}

struct Setup {
    watch: NetworkWatch,
    server: DnsServer,
    gateway: SocketAddr,
    second: u8,
}

impl Setup {
    async fn new(second: u8, upstreams: Vec<SocketAddr>, timeout: Duration) -> Setup {
        Self::counted(second, upstreams, timeout, DnsCounts::default()).await
    }

    async fn counted(
        second: u8,
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        counts: DnsCounts,
    ) -> Setup {
        let watch = NetworkWatch::default();
        watch.update(Arc::new(table(second)));
        let gw = Ipv4Addr::new(127, second, 0, 1);
        let port = free_port(gw).await;
        let mut config = DnsConfig::new(Some(NODE.into()));
        config.port = port;
        config.upstreams = Some(upstreams);
        config.forward_timeout = timeout;
        config.counts = counts;
        let server = DnsServer::start(config, watch.subscribe()).await;
        let gateway = SocketAddr::from((gw, port));
        server
            .bound()
            .wait_for(|b| b.contains(&gateway))
            .await
            .expect("the server listens on the gateway");
        Setup {
            watch,
            server,
            gateway,
            second,
        }
    }

    fn addr(&self, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.second, 0, d)
    }
}

#[tokio::test]
async fn dns_answers_service_names_from_the_table_and_follows_it() {
    let upstream = fake_upstream(ip("127.78.0.1"), Duration::ZERO).await;
    let s = Setup::new(77, vec![upstream], Duration::from_secs(5)).await;
    let client = s.addr(10);

    let m = ask_udp(client, s.gateway, "server", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![s.addr(2)]);
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    let m = ask_udp(client, s.gateway, "SERVER-alias.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![s.addr(2)]);
    let m = ask_udp(client, s.gateway, "tasks.server", RecordType::A).await;
    assert_eq!(a_records(&m), vec![s.addr(20), s.addr(21)]);
    let m = ask_udp(client, s.gateway, "server", RecordType::AAAA).await;
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // dnsrr: both tasks, the first one changing from answer to answer.
    let first = a_records(&ask_udp(client, s.gateway, "rr", RecordType::A).await);
    let second = a_records(&ask_udp(client, s.gateway, "rr", RecordType::A).await);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], second[0]);

    // Over TCP too.
    let m = ask_tcp(client, s.gateway, "tasks.server", RecordType::A).await;
    assert_eq!(a_records(&m), vec![s.addr(20), s.addr(21)]);

    // A third server task, the rr tasks gone: the next answers say so.
    let mut t = table(s.second);
    t.tasks.push(task("n", s.addr(22), "s3", "server", true));
    t.tasks.retain(|x| x.service_id != "rr");
    t.services[1].networks[0].vip = Some(s.addr(4));
    s.watch.update(Arc::new(t.clone()));
    let m = ask_udp(client, s.gateway, "tasks.server", RecordType::A).await;
    assert_eq!(a_records(&m), vec![s.addr(20), s.addr(21), s.addr(22)]);
    assert_eq!(
        a_records(&ask_udp(client, s.gateway, "server", RecordType::A).await),
        vec![s.addr(4)]
    );
    let m = ask_udp(client, s.gateway, "rr", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // Garbage does not hurt the server.
    let junk = UdpSocket::bind((client, 0)).await.expect("bind");
    for bytes in [&b"\x00"[..], &[0xff; 40], &[0u8; 5000][..]] {
        let _ = junk.send_to(bytes, s.gateway).await;
    }
    assert_eq!(
        a_records(&ask_udp(client, s.gateway, "server", RecordType::A).await),
        vec![s.addr(4)]
    );

    // The network goes away: so does the listener.
    t.networks.clear();
    s.watch.update(Arc::new(t));
    s.server
        .bound()
        .wait_for(|b| b.is_empty())
        .await
        .expect("the listener closes");
    s.server.stop();
}

#[tokio::test]
async fn dns_forwards_what_is_not_ours() {
    let upstream = fake_upstream(ip("127.78.0.2"), Duration::ZERO).await;
    let counts = DnsCounts::default();
    let s = Setup::counted(79, vec![upstream], Duration::from_secs(5), counts.clone()).await;

    // An outside name from a task; one of our names from an unknown address.
    let m = ask_udp(s.addr(10), s.gateway, "example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![EXTERNAL]);
    let m = ask_udp(s.addr(99), s.gateway, "server", RecordType::A).await;
    assert_eq!(a_records(&m), vec![EXTERNAL]);
    // The answer carries the client's id, whatever id went upstream.
    let sock = UdpSocket::bind((s.addr(10), 0)).await.expect("bind");
    let q = query("example.org", RecordType::A);
    sock.send_to(&q, s.gateway).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).await.expect("recv");
    assert_eq!(buf[..2], q[..2]);
    assert_eq!(
        a_records(&Message::from_vec(&buf[..n]).expect("decode")),
        vec![EXTERNAL]
    );
    // Three queries, all relayed and answered (`--metrics-addr` serves these).
    assert_eq!(counts.queries.get(), 3);
    assert_eq!(counts.forwarded.get(), 3);
    let forwarded = counts.answers.get_or_create(&OutcomeLabel {
        outcome: "forwarded",
    });
    assert_eq!(forwarded.get(), 3);
}

#[tokio::test]
async fn dns_servfails_without_an_upstream_that_answers() {
    // An upstream that never answers in time, then none at all.
    let slow = fake_upstream(ip("127.78.0.3"), Duration::from_secs(30)).await;
    let s = Setup::new(81, vec![slow], Duration::from_millis(100)).await;
    let m = ask_udp(s.addr(10), s.gateway, "example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // Local names do not depend on upstreams.
    assert_eq!(
        a_records(&ask_udp(s.addr(10), s.gateway, "server", RecordType::A).await),
        vec![s.addr(2)]
    );

    let none = Setup::new(82, vec![], Duration::from_millis(100)).await;
    let m = ask_udp(none.addr(10), none.gateway, "example.com", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

/// Answer latency, one query at a time from a task's address: a local name
/// and a forwarded one (against a fake upstream on loopback). Prints
/// p50/p99; measures, asserts nothing about time. Run it with
/// `cargo test --release -p shoal-node --test dns -- --ignored --nocapture dns_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn dns_latency() {
    let upstream = fake_upstream(ip("127.78.0.4"), Duration::ZERO).await;
    let s = Setup::new(83, vec![upstream], Duration::from_secs(5)).await;
    let sock = UdpSocket::bind((s.addr(10), 0)).await.expect("bind");
    sock.connect(s.gateway).await.expect("connect");
    let mut buf = vec![0u8; 4096];
    for (label, name, n) in [
        ("local", "server", 20_000),
        ("forwarded", "example.com", 5_000),
    ] {
        let q = query(name, RecordType::A);
        let mut times = Vec::with_capacity(n);
        for i in 0..n + 500 {
            let t = std::time::Instant::now();
            sock.send(&q).await.expect("send");
            let got = sock.recv(&mut buf).await.expect("recv");
            let elapsed = t.elapsed();
            assert!(got > 12);
            if i >= 500 {
                times.push(elapsed);
            }
        }
        times.sort();
        let p = |f: f64| times[((times.len() as f64 * f) as usize).min(times.len() - 1)];
        println!(
            "dns {label}: {n} queries, p50 {:?}, p99 {:?}, max {:?}",
            p(0.50),
            p(0.99),
            times[times.len() - 1]
        );
    }
}
