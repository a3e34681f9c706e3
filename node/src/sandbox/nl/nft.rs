//! nftables set elements over nfnetlink, in one transaction per call: the
//! sandbox adds and removes the (port, address) bindings of task ports as
//! tasks come and go, and nothing else of its tables changes that often.
//! Whole tables (the node's, the overlay's) are still loaded with one
//! `nft -f` each, a transaction of its own (`ip::nft`).
//!
//! The encoding is nf_tables' (`include/uapi/linux/netfilter/nf_tables.h`):
//! a batch (`NFNL_MSG_BATCH_BEGIN` ... `END`) of `NFT_MSG_NEWSETELEM`/
//! `DELSETELEM` messages, each naming a table and set and carrying one
//! element's key as `NFTA_DATA_VALUE`. A key is the set's fields one after
//! another, each padded to 4 bytes (`ifname` is 16 bytes, `ipv4_addr` 4).

use std::net::Ipv4Addr;

use super::{begin_msg, begin_nested, end_nested, finish_msg, put_attr, Nl, NlError};
use super::{NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};

pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_BRIDGE: u8 = 7;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const IFNAMSIZ: usize = 16;
/// Elements one call may carry: far more than a task ever has.
pub const MAX_ELEMENTS: usize = 256;

/// Add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Delete,
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub op: Op,
    pub set: &'static str,
    pub key: Vec<u8>,
}

/// The key of an `ifname` field.
pub fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = vec![0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    k[..n].copy_from_slice(&name.as_bytes()[..n]);
    k
}

/// The key of an `ifname . ipv4_addr` field.
pub fn ifname_addr_key(name: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut k = ifname_key(name);
    k.extend_from_slice(&addr.octets());
    k
}

fn nfgen(buf: &mut Vec<u8>, family: u8, res_id: u16) {
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The batch for `elements` of `table` (family `family`), starting at
/// sequence number `seq`: begin, one message an element, end.
pub fn encode(family: u8, table: &str, elements: &[Element], seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + elements.len() * 96);
    let at = begin_msg(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq);
    nfgen(&mut buf, 0, NFNL_SUBSYS_NFTABLES);
    finish_msg(&mut buf, at);
    for (i, e) in elements.iter().enumerate() {
        let (kind, flags) = match e.op {
            Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
            Op::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        let s = seq.wrapping_add(1 + i as u32);
        let at = begin_msg(&mut buf, (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, s);
        nfgen(&mut buf, family, 0);
        put_attr(&mut buf, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        put_attr(&mut buf, NFTA_SET_ELEM_LIST_SET, &cstr(e.set));
        let list = begin_nested(&mut buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        let elem = begin_nested(&mut buf, NFTA_LIST_ELEM);
        let key = begin_nested(&mut buf, NFTA_SET_ELEM_KEY);
        put_attr(&mut buf, NFTA_DATA_VALUE, &e.key);
        end_nested(&mut buf, key);
        end_nested(&mut buf, elem);
        end_nested(&mut buf, list);
        finish_msg(&mut buf, at);
    }
    let s = seq.wrapping_add(1 + elements.len() as u32);
    let at = begin_msg(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, s);
    nfgen(&mut buf, 0, NFNL_SUBSYS_NFTABLES);
    finish_msg(&mut buf, at);
    buf
}

/// An nfnetlink socket for set elements.
pub struct Nft(Nl);

impl Nft {
    pub fn open() -> Result<Nft, NlError> {
        Nl::open(netlink_sys::protocols::NETLINK_NETFILTER)
            .map(Nft)
            .map_err(|e| NlError::new("cannot open an nfnetlink socket", e))
    }

    /// Applies `elements` to `table` as one transaction: all or none. The
    /// kernel answers each element's message; the first error is returned.
    pub fn apply(&mut self, family: u8, table: &str, elements: &[Element]) -> Result<(), NlError> {
        if elements.is_empty() {
            return Ok(());
        }
        let op = format!("cannot change the sets of nftables table {table}");
        if elements.len() > MAX_ELEMENTS {
            return Err(NlError::new(
                op,
                std::io::Error::from_raw_os_error(libc::E2BIG),
            ));
        }
        let n = elements.len() as u32;
        let seq = self.0.next_seq();
        for _ in 0..n + 1 {
            self.0.next_seq();
        }
        let buf = encode(family, table, elements, seq);
        let (first, last) = (seq.wrapping_add(1), seq.wrapping_add(n));
        let mut left = n;
        let mut first_err = None;
        let got = self.0.send(&buf).and_then(|()| {
            self.0.recv_until(seq..=seq.wrapping_add(n + 1), |m| {
                if m.kind != NLMSG_ERROR {
                    return Ok(false);
                }
                let code = super::error_code(m.payload)?;
                if m.seq < first || m.seq > last {
                    // The batch itself was refused.
                    return Err(std::io::Error::from_raw_os_error(-code.min(-1)));
                }
                if code != 0 && first_err.is_none() {
                    first_err = Some(std::io::Error::from_raw_os_error(-code));
                }
                left -= 1;
                Ok(left == 0)
            })
        });
        got.map_err(|e| NlError::new(&op, e))?;
        match first_err {
            Some(e) => Err(NlError::new(op, e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{attrs, split};
    use super::*;

    #[test]
    fn a_batch_is_begin_one_message_an_element_and_end_with_the_keys_in_place() {
        let els = [
            Element {
                op: Op::Add,
                set: "ports",
                key: ifname_key("shvabcdef123456"),
            },
            Element {
                op: Op::Delete,
                set: "bound",
                key: ifname_addr_key("shvx", Ipv4Addr::new(10, 201, 0, 7)),
            },
        ];
        let buf = encode(NFPROTO_BRIDGE, "shoalbr_t", &els, 40);
        let msgs = split(&buf).expect("parses");
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[0].kind, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[0].payload, &[0, 0, 0, 10]);
        assert_eq!(msgs[1].kind, (10 << 8) | NFT_MSG_NEWSETELEM);
        assert_eq!(msgs[2].kind, (10 << 8) | NFT_MSG_DELSETELEM);
        assert_eq!(msgs[3].kind, NFNL_MSG_BATCH_END);
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![40, 41, 42, 43]
        );
        assert_eq!(msgs[1].flags & NLM_F_CREATE, NLM_F_CREATE);
        // nfgenmsg: the family, then the attributes.
        assert_eq!(msgs[2].payload[0], NFPROTO_BRIDGE);
        let a: Vec<_> = attrs(&msgs[2].payload[4..]).collect();
        assert_eq!(a[0], (NFTA_SET_ELEM_LIST_TABLE, &b"shoalbr_t\0"[..]));
        assert_eq!(a[1], (NFTA_SET_ELEM_LIST_SET, &b"bound\0"[..]));
        let elem = attrs(a[2].1).next().expect("an element").1;
        let key = attrs(elem).next().expect("a key").1;
        let value = attrs(key).next().expect("a value");
        assert_eq!(value.0, NFTA_DATA_VALUE);
        assert_eq!(value.1.len(), 20);
        assert_eq!(&value.1[..4], b"shvx");
        assert_eq!(&value.1[16..], &[10, 201, 0, 7]);
    }

    #[test]
    fn an_interface_name_key_is_sixteen_bytes_and_keeps_its_terminator() {
        assert_eq!(ifname_key("a").len(), 16);
        let long = ifname_key("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(long.len(), 16);
        assert_eq!(long[15], 0);
    }
}
