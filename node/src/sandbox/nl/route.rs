//! Links, addresses and routes through rtnetlink: what `ip link`, `ip addr`
//! and `ip route` asked of the kernel, one message each, acknowledged.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Nl, NlError, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP};
use super::{NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST};

/// An rtnetlink socket, in the namespace it was opened in.
pub struct Route(Nl);

/// A route to add or remove (IPv4, main table).
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub via: Option<Ipv4Addr>,
    pub dev: Option<u32>,
    pub src: Option<Ipv4Addr>,
    /// The gateway is on the link whatever the link's addresses say.
    pub onlink: bool,
    /// `scope link` (a device route) rather than universe.
    pub link_scope: bool,
}

impl RouteSpec {
    pub fn to(dst: Ipv4Addr, prefix: u8) -> RouteSpec {
        RouteSpec {
            dst,
            prefix,
            via: None,
            dev: None,
            src: None,
            onlink: false,
            link_scope: false,
        }
    }
}

fn by_name(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

fn up(m: &mut LinkMessage) {
    m.header.flags |= LinkFlags::Up;
    m.header.change_mask |= LinkFlags::Up;
}

impl Route {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Route, NlError> {
        Nl::open(netlink_sys::protocols::NETLINK_ROUTE)
            .map(Route)
            .map_err(|e| NlError::new("cannot open a netlink socket", e))
    }

    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16) -> (u32, Vec<u8>) {
        let seq = self.0.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        (seq, buf)
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        let (seq, buf) = self.encode(msg, NLM_F_REQUEST | NLM_F_ACK | flags);
        self.0
            .send(&buf)
            .and_then(|()| self.0.acks(seq, 1))
            .map_err(|e| NlError::new(op, e))
    }

    /// Sends a request and collects the messages of its answer (one, or a dump's).
    fn fetch(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let (seq, buf) = self.encode(msg, NLM_F_REQUEST | flags);
        let dump = flags & NLM_F_DUMP != 0;
        let mut out = Vec::new();
        let got = self.0.send(&buf).and_then(|()| {
            self.0.recv_until(seq..=seq, |m| {
                match m.kind {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        let code = super::error_code(m.payload)?;
                        if code != 0 {
                            return Err(std::io::Error::from_raw_os_error(-code));
                        }
                        return Ok(true);
                    }
                    _ => {}
                }
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(m.whole).map_err(|e| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                    })?;
                if let NetlinkPayload::InnerMessage(inner) = parsed.payload {
                    out.push(inner);
                }
                Ok(!dump)
            })
        });
        got.map_err(|e| NlError::new(op, e))?;
        Ok(out)
    }

    /// The index of the link `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NlError> {
        let op = format!("cannot find link {name}");
        let got = self.fetch(&op, RouteNetlinkMessage::GetLink(by_name(name)), 0)?;
        match got.first() {
            Some(RouteNetlinkMessage::NewLink(l)) => Ok(l.header.index),
            _ => Err(NlError::new(
                op,
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )),
        }
    }

    /// Whether the link `name` exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, NlError> {
        match self.link_index(name) {
            Ok(_) => Ok(true),
            Err(e) if e.is_missing() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every link: (index, name).
    pub fn links(&mut self) -> Result<Vec<(u32, String)>, NlError> {
        let got = self.fetch(
            "cannot list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(got
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    Some((l.header.index, name))
                }
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 address: (link index, address).
    pub fn ipv4_addrs(&mut self) -> Result<Vec<(u32, Ipv4Addr)>, NlError> {
        let mut ask = AddressMessage::default();
        ask.header.family = AddressFamily::Inet;
        let got = self.fetch(
            "cannot list addresses",
            RouteNetlinkMessage::GetAddress(ask),
            NLM_F_DUMP,
        )?;
        Ok(got
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let addr = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(std::net::IpAddr::V4(v))
                        | AddressAttribute::Address(std::net::IpAddr::V4(v)) => Some(*v),
                        _ => None,
                    })?;
                    Some((a.header.index, addr))
                }
                _ => None,
            })
            .collect())
    }

    /// `ip link add NAME type bridge address MAC` (down, with `mtu` if
    /// given), MAC a random locally administered address of its own. A
    /// bridge without one takes the lowest address of its ports and changes
    /// it when that port leaves: the tasks behind it, whose ARP entry for
    /// the gateway (the bridge's address) still holds the old one, then
    /// send to a port that is gone until the entry expires (found by the
    /// chaos harness: a roll that moved a node's last replica away cut that
    /// node's other tasks off their embedded DNS for the rest of the run).
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<(), NlError> {
        self.add_link(name, InfoKind::Bridge, mtu)
    }

    fn add_link(&mut self, name: &str, kind: InfoKind, mtu: Option<u32>) -> Result<(), NlError> {
        let mut m = by_name(name);
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        // An address of its own (see `add_bridge`).
        m.attributes
            .push(LinkAttribute::Address(bridge_mac().to_vec()));
        let what = kind.to_string();
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
        self.request(
            &format!("cannot make {what} {name}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// A veth pair: `host` here, up (a port of `master`, if given), `peer`
    /// made down directly in the namespace `peer_ns` (a descriptor of it),
    /// so the peer's name only has to be free there. (The kernel cannot
    /// bring the peer up as it makes the pair: it has no peer yet.)
    pub fn add_veth(
        &mut self,
        host: &str,
        master: Option<u32>,
        peer: &str,
        peer_ns: RawFd,
        mtu: Option<u32>,
    ) -> Result<(), NlError> {
        self.add_veth_with(host, master, peer, peer_ns, mtu, None)
    }

    /// `add_veth`, with the two ends' MAC addresses if given (host's, peer's).
    pub fn add_veth_with(
        &mut self,
        host: &str,
        master: Option<u32>,
        peer: &str,
        peer_ns: RawFd,
        mtu: Option<u32>,
        macs: Option<([u8; 6], [u8; 6])>,
    ) -> Result<(), NlError> {
        let mut p = by_name(peer);
        p.attributes.push(LinkAttribute::NetNsFd(peer_ns));
        let mut m = by_name(host);
        up(&mut m);
        if let Some((h, t)) = macs {
            m.attributes.push(LinkAttribute::Address(h.to_vec()));
            p.attributes.push(LinkAttribute::Address(t.to_vec()));
        }
        if let Some(mtu) = mtu {
            p.attributes.push(LinkAttribute::Mtu(mtu));
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            &format!("cannot make veth {host}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `ip link set NAME type bridge_slave isolated on`: the port reaches
    /// the bridge's non-isolated ports (its own address) and no isolated one.
    pub fn set_isolated(&mut self, name: &str) -> Result<(), NlError> {
        let mut m = by_name(name);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                true,
            )])),
        ]));
        self.request(
            &format!("cannot isolate port {name}"),
            RouteNetlinkMessage::NewLink(m),
            0,
        )
    }

    /// `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), NlError> {
        let mut m = by_name(name);
        up(&mut m);
        self.request(
            &format!("cannot bring {name} up"),
            RouteNetlinkMessage::NewLink(m),
            0,
        )
    }

    /// `ip link set NAME mtu MTU txqueuelen QLEN up`.
    pub fn set_up_with(&mut self, name: &str, mtu: u32, qlen: u32) -> Result<(), NlError> {
        let mut m = by_name(name);
        up(&mut m);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::TxQueueLen(qlen));
        self.request(
            &format!("cannot bring {name} up"),
            RouteNetlinkMessage::NewLink(m),
            0,
        )
    }

    /// `ip link del NAME`.
    pub fn del_link(&mut self, name: &str) -> Result<(), NlError> {
        self.request(
            &format!("cannot remove link {name}"),
            RouteNetlinkMessage::DelLink(by_name(name)),
            0,
        )
    }

    /// `ip link del NAME`, nothing said if it is not there.
    pub fn del_link_if_any(&mut self, name: &str) -> Result<(), NlError> {
        match self.del_link(name) {
            Err(e) if e.is_missing() => Ok(()),
            r => r,
        }
    }

    /// `ip addr add ADDR/PREFIX dev INDEX`.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NlError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        self.request(
            &format!("cannot add address {addr}/{prefix}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `ip addr del ADDR/PREFIX dev INDEX`, nothing said if it is not there.
    pub fn del_addr_if_any(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NlError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        match self.request(
            &format!("cannot remove address {addr}/{prefix}"),
            RouteNetlinkMessage::DelAddress(m),
            0,
        ) {
            Err(e) if e.is_missing() => Ok(()),
            r => r,
        }
    }

    /// `ip neigh replace ADDR lladdr MAC dev INDEX nud permanent`: the
    /// link-layer address of `addr` on the link, never asked by ARP.
    pub fn set_neighbour(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), NlError> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.request(
            &format!("cannot set the neighbour {addr}"),
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn route_msg(r: &RouteSpec, delete: bool) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = r.prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        if delete {
            m.header.scope = RouteScope::NoWhere;
        } else {
            m.header.protocol = RouteProtocol::Boot;
            m.header.kind = RouteType::Unicast;
            m.header.scope = if r.link_scope {
                RouteScope::Link
            } else {
                RouteScope::Universe
            };
        }
        if r.onlink {
            m.header.flags |= RouteFlags::Onlink;
        }
        if r.prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(r.dst)));
        }
        if let Some(gw) = r.via {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(dev) = r.dev {
            m.attributes.push(RouteAttribute::Oif(dev));
        }
        if let Some(src) = r.src {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
        }
        m
    }

    /// `ip route add` (or `replace`).
    pub fn add_route(&mut self, r: &RouteSpec, replace: bool) -> Result<(), NlError> {
        let flags = if replace {
            NLM_F_CREATE | NLM_F_REPLACE
        } else {
            NLM_F_CREATE | NLM_F_EXCL
        };
        self.request(
            &format!("cannot add a route to {}/{}", r.dst, r.prefix),
            RouteNetlinkMessage::NewRoute(Self::route_msg(r, false)),
            flags,
        )
    }

    /// `ip route del`, nothing said if it is not there.
    pub fn del_route_if_any(&mut self, r: &RouteSpec) -> Result<(), NlError> {
        match self.request(
            &format!("cannot remove the route to {}/{}", r.dst, r.prefix),
            RouteNetlinkMessage::DelRoute(Self::route_msg(r, true)),
            0,
        ) {
            Err(e) if e.is_missing() => Ok(()),
            r => r,
        }
    }
}

/// A random unicast, locally administered MAC address.
pub fn bridge_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}
