//! Conntrack entries over ctnetlink: `flush` removes the flows a VIP's
//! DNAT sent to a backend that left (`conntrack -D --orig-dst VIP
//! --reply-src BACKEND`): a dump of the IPv4 table, filtered here, then one
//! delete per entry found, by its original tuple. TCP connections the
//! backend has answered stay: a backend leaves a VIP when it starts to
//! drain, and its established connections must keep their NAT until they
//! end (deleted, the next packet is DNATed afresh to another backend, and
//! the draining one's answer reaches the client from its own address,
//! which the client drops). UDP flows, and TCP connections not yet
//! answered (a SYN sent to a dead backend, sent again), go: their next
//! packet picks a serving backend.

use std::net::Ipv4Addr;

use super::{attrs, begin_msg, finish_msg, put_attr, Nl, NlError};
use super::{NLA_F_NESTED, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
/// `IPS_SEEN_REPLY`: packets have gone both ways.
const IPS_SEEN_REPLY: u32 = 1 << 1;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const AF_INET: u8 = libc::AF_INET as u8;
/// Entries one flush removes at most (the rest expire on their own).
pub const MAX_FLUSH: usize = 65_536;
/// Deletes sent before their answers are read.
const DELETE_WINDOW: usize = 64;

fn nfgen(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&[AF_INET, 0, 0, 0]);
}

/// An address of a tuple's `CTA_TUPLE_IP`.
fn tuple_addr(tuple: &[u8], which: u16) -> Option<Ipv4Addr> {
    let ip = attrs(tuple).find(|(k, _)| *k == CTA_TUPLE_IP)?.1;
    let v = attrs(ip).find(|(k, _)| *k == which)?.1;
    let b: [u8; 4] = v.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// What to delete of one dumped entry (its attributes after the nfgenmsg):
/// the original tuple and zone, if the entry went to `vip` and was answered
/// by `backend`, unless it is a TCP connection that backend has answered.
pub fn matches(
    entry: &[u8],
    vip: Ipv4Addr,
    backend: Ipv4Addr,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut orig = None;
    let mut reply = None;
    let mut zone = None;
    let mut status = None;
    for (k, v) in attrs(entry) {
        match k {
            CTA_TUPLE_ORIG => orig = Some(v),
            CTA_TUPLE_REPLY => reply = Some(v),
            CTA_ZONE => zone = Some(v.to_vec()),
            CTA_STATUS => status = v.try_into().ok().map(u32::from_be_bytes),
            _ => {}
        }
    }
    let (orig, reply) = (orig?, reply?);
    let proto = attrs(orig)
        .find(|(k, _)| *k == CTA_TUPLE_PROTO)
        .and_then(|(_, p)| attrs(p).find(|(k, _)| *k == CTA_PROTO_NUM))
        .and_then(|(_, n)| n.first().copied());
    let answered_tcp =
        proto == Some(libc::IPPROTO_TCP as u8) && status.is_some_and(|s| s & IPS_SEEN_REPLY != 0);
    (!answered_tcp
        && tuple_addr(orig, CTA_IP_V4_DST)? == vip
        && tuple_addr(reply, CTA_IP_V4_SRC)? == backend)
        .then(|| (orig.to_vec(), zone))
}

/// A delete of the entry with original tuple `orig` (and `zone`).
pub fn encode_delete(orig: &[u8], zone: Option<&[u8]>, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(orig.len() + 40);
    let at = begin_msg(
        &mut buf,
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    );
    nfgen(&mut buf);
    put_attr(&mut buf, CTA_TUPLE_ORIG | NLA_F_NESTED, orig);
    if let Some(z) = zone {
        put_attr(&mut buf, CTA_ZONE, z);
    }
    finish_msg(&mut buf, at);
    buf
}

/// Removes the entries to `vip` answered by `backend`; how many went.
pub fn flush(vip: Ipv4Addr, backend: Ipv4Addr) -> Result<usize, NlError> {
    let op = format!("cannot flush the conntrack entries of {vip} to {backend}");
    let err = |e| NlError::new(&op, e);
    let mut nl = Nl::open(netlink_sys::protocols::NETLINK_NETFILTER).map_err(err)?;
    let seq = nl.next_seq();
    let mut ask = Vec::new();
    let at = begin_msg(
        &mut ask,
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    );
    nfgen(&mut ask);
    finish_msg(&mut ask, at);
    nl.send(&ask).map_err(err)?;
    let mut found = Vec::new();
    nl.recv_until(seq..=seq, |m| {
        match m.kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = super::error_code(m.payload)?;
                return if code == 0 {
                    Ok(true)
                } else {
                    Err(std::io::Error::from_raw_os_error(-code))
                };
            }
            k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {}
            _ => return Ok(false),
        }
        if found.len() < MAX_FLUSH {
            if let Some(hit) = m.payload.get(4..).and_then(|e| matches(e, vip, backend)) {
                found.push(hit);
            }
        }
        Ok(false)
    })
    .map_err(err)?;
    let total = found.len();
    for chunk in found.chunks(DELETE_WINDOW) {
        let first = nl.next_seq();
        let mut buf = Vec::new();
        for (i, (orig, zone)) in chunk.iter().enumerate() {
            if i > 0 {
                nl.next_seq();
            }
            buf.extend(encode_delete(
                orig,
                zone.as_deref(),
                first.wrapping_add(i as u32),
            ));
        }
        nl.send(&buf).map_err(err)?;
        match nl.acks(first, chunk.len() as u32) {
            // An entry that ended meanwhile is not an error.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => r.map_err(err)?,
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::{begin_nested, end_nested, split};
    use super::*;

    fn tuple(buf: &mut Vec<u8>, kind: u16, src: [u8; 4], dst: [u8; 4]) {
        tuple_proto(buf, kind, src, dst, None);
    }

    fn tuple_proto(buf: &mut Vec<u8>, kind: u16, src: [u8; 4], dst: [u8; 4], proto: Option<u8>) {
        let t = begin_nested(buf, kind);
        let ip = begin_nested(buf, CTA_TUPLE_IP);
        put_attr(buf, CTA_IP_V4_SRC, &src);
        put_attr(buf, CTA_IP_V4_DST, &dst);
        end_nested(buf, ip);
        if let Some(p) = proto {
            let pr = begin_nested(buf, CTA_TUPLE_PROTO);
            put_attr(buf, CTA_PROTO_NUM, &[p]);
            end_nested(buf, pr);
        }
        end_nested(buf, t);
    }

    /// A draining backend keeps its answered TCP connections; its UDP
    /// flows and unanswered TCP connections go.
    #[test]
    fn answered_tcp_connections_are_kept_and_the_rest_picked() {
        let (vip, backend) = (Ipv4Addr::new(10, 80, 0, 2), Ipv4Addr::new(10, 80, 0, 9));
        let entry = |proto: u8, status: u32| {
            let mut e = Vec::new();
            tuple_proto(
                &mut e,
                CTA_TUPLE_ORIG,
                [10, 0, 0, 5],
                [10, 80, 0, 2],
                Some(proto),
            );
            tuple_proto(
                &mut e,
                CTA_TUPLE_REPLY,
                [10, 80, 0, 9],
                [10, 0, 0, 5],
                Some(proto),
            );
            put_attr(&mut e, CTA_STATUS, &status.to_be_bytes());
            e
        };
        let (tcp, udp) = (libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8);
        assert!(matches(&entry(tcp, IPS_SEEN_REPLY | 0x8), vip, backend).is_none());
        assert!(
            matches(&entry(tcp, 0x8), vip, backend).is_some(),
            "a SYN never answered"
        );
        assert!(matches(&entry(udp, IPS_SEEN_REPLY), vip, backend).is_some());
    }

    #[test]
    fn an_entry_to_the_vip_answered_by_the_backend_is_picked_and_no_other() {
        let mut e = Vec::new();
        tuple(&mut e, CTA_TUPLE_ORIG, [10, 0, 0, 5], [10, 80, 0, 2]);
        tuple(&mut e, CTA_TUPLE_REPLY, [10, 80, 0, 9], [10, 0, 0, 5]);
        let (vip, backend) = (Ipv4Addr::new(10, 80, 0, 2), Ipv4Addr::new(10, 80, 0, 9));
        let (orig, zone) = matches(&e, vip, backend).expect("matches");
        assert!(zone.is_none());
        assert_eq!(tuple_addr(&orig, CTA_IP_V4_DST), Some(vip));
        assert!(matches(&e, vip, Ipv4Addr::new(10, 80, 0, 8)).is_none());
        assert!(matches(&e, backend, backend).is_none());
        // Truncated or missing pieces match nothing and panic nowhere.
        for cut in 0..e.len() {
            let _ = matches(&e[..cut], vip, backend);
        }
        let del = encode_delete(&orig, None, 9);
        let m = split(&del).expect("parses");
        assert_eq!(m[0].kind, (1 << 8) | IPCTNL_MSG_CT_DELETE);
        let a: Vec<_> = attrs(&m[0].payload[4..]).collect();
        assert_eq!(a[0].0, CTA_TUPLE_ORIG);
        assert_eq!(a[0].1, &orig[..]);
    }
}
