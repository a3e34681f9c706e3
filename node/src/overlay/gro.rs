//! Receive offload for the overlay's TUN: consecutive TCP segments of one
//! flow that arrive together are written into the TUN as one large packet
//! (a `virtio_net_hdr` saying "TCP, segment size N, checksum to complete"),
//! the way a NIC's GRO hands them to the kernel. The kernel then routes,
//! filters and delivers one packet where it would have handled dozens:
//! per-packet work in the kernel was most of the receiving node's time.
//!
//! Only what the kernel's own GRO would merge is merged: IPv4 without
//! options or fragments, TCP with only ACK (PSH on the last), the same
//! addresses, ports, TOS, TTL, DF, acknowledgement, window and options,
//! contiguous sequence numbers, no segment larger than the first. Every
//! segment has already passed the receiver's checks one by one; merging
//! changes nothing about which packets are delivered, only how many
//! writes it takes. The TCP checksum is left for the kernel to complete
//! (`NEEDS_CSUM`, as for a packet from a local socket): the bytes were
//! authenticated end to end by the connection's AEAD.

/// `struct virtio_net_hdr` (without `num_buffers`), as the TUN expects
/// before every packet when opened with `IFF_VNET_HDR`.
pub const VNET_HDR_LEN: usize = 10;
/// The header of a packet that needs nothing done.
pub const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const IP_HDR: usize = 20;
const MAX_PACKET: usize = 65535;

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// A TCP segment that may join others.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// IP plus TCP header.
    hdr_len: usize,
    seq: u32,
    flags: u8,
}

impl Segment {
    fn payload(&self, p: &[u8]) -> usize {
        p.len() - self.hdr_len
    }
}

/// `p` (a whole IPv4 packet, lengths already checked) as a mergeable
/// segment, or `None`.
fn segment(p: &[u8]) -> Option<Segment> {
    if p.len() < IP_HDR + 20 || p[0] != 0x45 || p[9] != 6 {
        return None;
    }
    // More fragments, or a fragment offset.
    if p[6] & 0x20 != 0 || (u16::from(p[6] & 0x1f) << 8 | u16::from(p[7])) != 0 {
        return None;
    }
    let t = &p[IP_HDR..];
    let doff = usize::from(t[12] >> 4) * 4;
    let flags = t[13];
    if doff < 20 || IP_HDR + doff >= p.len() || flags & !(ACK | PSH) != 0 || flags & ACK == 0 {
        return None;
    }
    Some(Segment {
        hdr_len: IP_HDR + doff,
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags,
    })
}

/// Whether `q` continues the flow whose first segment's headers are `g`.
fn same_flow(g: &[u8], q: &[u8], hdr_len: usize) -> bool {
    let t = IP_HDR;
    // version/IHL and TOS; DF/fragment; TTL and protocol; addresses.
    g[0..2] == q[0..2]
        && g[6..10] == q[6..10]
        && g[12..20] == q[12..20]
        // ports; acknowledgement; data offset; window; urgent pointer; options.
        && g[t..t + 4] == q[t..t + 4]
        && g[t + 8..t + 13] == q[t + 8..t + 13]
        && g[t + 14..t + 16] == q[t + 14..t + 16]
        && g[t + 18..hdr_len] == q[t + 18..hdr_len]
}

/// The group being built: the packets of one run, kept as they came and
/// written with one gather write behind a rewritten header (no copy of
/// the payloads in userspace).
#[derive(Default)]
pub struct Coalescer {
    segs: Vec<bytes::Bytes>,
    seg: Option<Segment>,
    /// The merged packet's IP total length so far.
    total: usize,
    /// `virtio_net_hdr` + the merged packet's IP and TCP headers.
    hdr: Vec<u8>,
    next_seq: u32,
    gso_size: usize,
    /// A PSH segment joined.
    psh: bool,
    /// A short or PSH segment ended the group.
    closed: bool,
    /// Packets written merged, and writes they took (for the counters).
    pub merged: u64,
    pub writes: u64,
}

/// Where the coalescer's writes go: one packet as the slices to gather,
/// the first being its `virtio_net_hdr`.
pub trait Write: FnMut(&[&[u8]]) {}
impl<F: FnMut(&[&[u8]])> Write for F {}

impl Coalescer {
    /// Adds one packet (already checked): merges it into the open group, or
    /// writes the group out and starts a new one.
    pub fn push(&mut self, p: bytes::Bytes, write: &mut impl Write) {
        let Some(s) = segment(&p) else {
            self.flush(write);
            self.out(write, &[&PLAIN, &p]);
            return;
        };
        if self.joins(&p, &s) {
            let len = s.payload(&p);
            self.total += len;
            self.next_seq = self.next_seq.wrapping_add(len as u32);
            if s.flags & PSH != 0 {
                self.psh = true;
                self.closed = true;
            }
            if len < self.gso_size {
                self.closed = true;
            }
            self.segs.push(p);
            return;
        }
        self.flush(write);
        if s.payload(&p) == 0 || s.flags & PSH != 0 {
            // Nothing can follow it: no group.
            self.out(write, &[&PLAIN, &p]);
            return;
        }
        self.next_seq = s.seq.wrapping_add(s.payload(&p) as u32);
        self.gso_size = s.payload(&p);
        self.total = p.len();
        self.seg = Some(s);
        self.segs.push(p);
        self.closed = false;
        self.psh = false;
    }

    fn joins(&self, p: &[u8], s: &Segment) -> bool {
        let (Some(g), Some(gs)) = (self.segs.first(), self.seg.as_ref()) else {
            return false;
        };
        let len = s.payload(p);
        !self.closed
            && len > 0
            && len <= self.gso_size
            && s.hdr_len == gs.hdr_len
            && s.seq == self.next_seq
            && self.total + len <= MAX_PACKET
            && self.segs.len() < MAX_SEGMENTS
            && same_flow(g, p, s.hdr_len)
    }

    /// Writes the open group, if any.
    pub fn flush(&mut self, write: &mut impl Write) {
        let Some(s) = self.seg.take() else {
            return;
        };
        let segs = std::mem::take(&mut self.segs);
        if segs.len() == 1 {
            self.out(write, &[&PLAIN, &segs[0]]);
            self.segs = segs;
            self.segs.clear();
            return;
        }
        let mut hdr = std::mem::take(&mut self.hdr);
        hdr.clear();
        hdr.extend_from_slice(&PLAIN);
        hdr.extend_from_slice(&segs[0][..s.hdr_len]);
        if self.psh {
            hdr[VNET_HDR_LEN + IP_HDR + 13] |= PSH;
        }
        finish(&mut hdr, self.total, self.gso_size);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(segs.len() + 2);
        parts.extend([&hdr[..VNET_HDR_LEN], &hdr[VNET_HDR_LEN..]]);
        parts.extend(segs.iter().map(|p| &p[s.hdr_len..]));
        self.merged += segs.len() as u64;
        self.out(write, &parts);
        drop(parts);
        self.hdr = hdr;
        self.segs = segs;
        self.segs.clear();
    }

    fn out(&mut self, write: &mut impl Write, parts: &[&[u8]]) {
        self.writes += 1;
        write(parts);
    }
}

/// At most this many packets in one merged write (the kernel's GRO stops
/// at 64 too).
const MAX_SEGMENTS: usize = 64;

/// Fills in the header of a merged packet (`hdr`: virtio header, IP and TCP
/// headers; `total`: the IP length with every payload): lengths, IP
/// checksum, the TCP pseudo-header sum for the kernel to complete, and the
/// GSO fields.
fn finish(hdr: &mut [u8], total: usize, gso_size: usize) {
    let (vnet, p) = hdr.split_at_mut(VNET_HDR_LEN);
    let hdr_len = p.len();
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[10..12].fill(0);
    let sum = checksum(&p[..IP_HDR]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp_len = (total - IP_HDR) as u32;
    let mut pseudo = 6 + tcp_len;
    for w in p[12..20].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while pseudo > 0xffff {
        pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    }
    p[IP_HDR + 16..IP_HDR + 18].copy_from_slice(&(pseudo as u16).to_be_bytes());
    vnet[0] = NEEDS_CSUM;
    vnet[1] = GSO_TCPV4;
    // Legacy virtio headers are in the host's byte order.
    vnet[2..4].copy_from_slice(&(hdr_len as u16).to_ne_bytes());
    vnet[4..6].copy_from_slice(&(gso_size as u16).to_ne_bytes());
    vnet[6..8].copy_from_slice(&(IP_HDR as u16).to_ne_bytes());
    vnet[8..10].copy_from_slice(&16u16.to_ne_bytes());
}

/// What the TUN put before a packet it gave us, for a packet to be sent
/// as it is: `Ok(true)` (its checksum completed here if the kernel left
/// that to us), `Ok(false)` for a TCP packet the kernel left for us to
/// segment (`segment_tso`), `Err(())` for anything else.
pub fn prepare_read(vnet: &[u8], p: &mut [u8]) -> Result<bool, ()> {
    if vnet.len() < VNET_HDR_LEN {
        return Err(());
    }
    match vnet[1] {
        GSO_NONE => {}
        GSO_TCPV4 => return Ok(false),
        _ => return Err(()),
    }
    if vnet[0] & NEEDS_CSUM != 0 {
        let start = usize::from(u16::from_ne_bytes([vnet[6], vnet[7]]));
        let off = usize::from(u16::from_ne_bytes([vnet[8], vnet[9]]));
        if start >= p.len() || start + off + 2 > p.len() {
            return Err(());
        }
        // The field holds the pseudo-header sum: complete over the rest.
        let sum = fold(sum32(&p[start..]));
        p[start + off..start + off + 2].copy_from_slice(&(!sum).to_be_bytes());
    }
    Ok(true)
}

const FIN: u8 = 0x01;
const CWR: u8 = 0x80;

/// Splits a TCP packet the kernel handed over whole (TSO: up to 64 KiB,
/// `gso_size` in the header) into the segments it stands for, each with
/// its own length, IP id, sequence number, flags (FIN and PSH on the last
/// only, CWR on the first only) and checksums, as the kernel's GSO would.
pub fn segment_tso(vnet: &[u8], p: &[u8], out: &mut Vec<bytes::Bytes>) -> Result<(), ()> {
    if vnet.len() < VNET_HDR_LEN || p.len() < IP_HDR + 20 || p[0] >> 4 != 4 || p[9] != 6 {
        return Err(());
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    // A whole packet (the buffer holds the largest the TUN gives, 64 KiB).
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < IP_HDR || ihl + 20 > p.len() || total != p.len() {
        return Err(());
    }
    let doff = usize::from(p[ihl + 12] >> 4) * 4;
    let hdr = ihl + doff;
    let gso = usize::from(u16::from_ne_bytes([vnet[4], vnet[5]]));
    if doff < 20 || hdr > p.len() || gso == 0 {
        return Err(());
    }
    let seq0 = u32::from_be_bytes([p[ihl + 4], p[ihl + 5], p[ihl + 6], p[ihl + 7]]);
    let id0 = u16::from_be_bytes([p[4], p[5]]);
    let flags0 = p[ihl + 13];
    let payload = &p[hdr..];
    let n = payload.len().div_ceil(gso).max(1);
    let mut pseudo = 6u32;
    for w in p[12..20].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    let chunks: Box<dyn Iterator<Item = &[u8]>> = if payload.is_empty() {
        Box::new(std::iter::once(payload))
    } else {
        Box::new(payload.chunks(gso))
    };
    for (i, chunk) in chunks.enumerate() {
        let mut s = bytes::BytesMut::with_capacity(hdr + chunk.len());
        s.extend_from_slice(&p[..hdr]);
        s.extend_from_slice(chunk);
        let total = s.len() as u16;
        s[2..4].copy_from_slice(&total.to_be_bytes());
        s[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
        s[10..12].fill(0);
        let ip_sum = !fold(sum32(&s[..ihl]));
        s[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let seq = seq0.wrapping_add((i * gso) as u32);
        s[ihl + 4..ihl + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags0;
        if i + 1 < n {
            f &= !(FIN | PSH);
        }
        if i > 0 {
            f &= !CWR;
        }
        s[ihl + 13] = f;
        s[ihl + 16..ihl + 18].fill(0);
        let tcp_len = (s.len() - ihl) as u32;
        let sum = !fold(pseudo + tcp_len + sum32(&s[ihl..]));
        s[ihl + 16..ihl + 18].copy_from_slice(&sum.to_be_bytes());
        out.push(s.freeze());
    }
    Ok(())
}

/// The one's-complement sum of `b` as big-endian 16-bit words, not yet
/// folded to 16 bits (four bytes at a time).
fn sum32(b: &[u8]) -> u32 {
    let mut acc = 0u64;
    let mut words = b.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    let acc = acc as u32;
    (acc >> 16) + (acc & 0xffff)
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The internet checksum (RFC 1071) of `b`: an IPv4 header's, here.
pub(crate) fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for ch in b.chunks(2) {
        let w = u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(seq: u32, payload: usize, flags: u8) -> bytes::Bytes {
        let len = 20 + 32 + payload;
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 4, 2]);
        p[16..20].copy_from_slice(&[10, 0, 4, 3]);
        let t = &mut p[20..];
        t[0..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        for (i, b) in t[32..].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        bytes::Bytes::from(p)
    }

    fn run(packets: Vec<bytes::Bytes>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        let mut w = |parts: &[&[u8]]| {
            let rest: Vec<u8> = parts[1..].concat();
            out.push((parts[0].to_vec(), rest))
        };
        for p in packets {
            c.push(p, &mut w);
        }
        c.flush(&mut w);
        out
    }

    #[test]
    fn contiguous_segments_become_one_gso_packet() {
        let out = run(vec![
            tcp(1000, 100, ACK),
            tcp(1100, 100, ACK),
            tcp(1200, 60, ACK | PSH),
            tcp(1260, 100, ACK),
        ]);
        assert_eq!(out.len(), 2);
        let (h, p) = &out[0];
        assert_eq!(h[0], NEEDS_CSUM);
        assert_eq!(h[1], GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([h[4], h[5]]), 100);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(p.len(), 52 + 260);
        assert_eq!(p[33] & PSH, PSH);
        assert_eq!(checksum(&p[..20]), 0);
        // The payload is the three payloads in order.
        let want: Vec<u8> = [tcp(1000, 100, ACK), tcp(1100, 100, ACK), tcp(1200, 60, ACK)]
            .iter()
            .flat_map(|s| s[52..].to_vec())
            .collect();
        assert_eq!(&p[52..], &want[..]);
        // The last one, alone, goes as it came.
        assert_eq!(out[1].0, PLAIN.to_vec());
        assert_eq!(out[1].1, tcp(1260, 100, ACK).to_vec());
    }

    #[test]
    fn gaps_other_flows_and_control_segments_are_not_merged() {
        let mut other = tcp(1100, 100, ACK).to_vec();
        other[19] = 9;
        let out = run(vec![
            tcp(1000, 100, ACK),
            tcp(1200, 100, ACK),
            bytes::Bytes::from(other),
            tcp(1300, 0, ACK),
            tcp(1300, 100, ACK | 0x01),
            bytes::Bytes::from_static(&[0x45, 0, 0, 20]),
        ]);
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|(h, _)| h == &PLAIN.to_vec()));
    }

    #[test]
    fn a_longer_segment_than_the_first_starts_a_new_group() {
        let out = run(vec![tcp(0, 50, ACK), tcp(50, 100, ACK), tcp(150, 100, ACK)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, PLAIN.to_vec());
        assert_eq!(out[1].0[1], GSO_TCPV4);
    }

    #[test]
    fn groups_stop_below_64_kib() {
        let packets: Vec<_> = (0..100).map(|i| tcp(i * 1356, 1356, ACK)).collect();
        let out = run(packets);
        assert!(out.iter().all(|(_, p)| p.len() <= MAX_PACKET));
        let payload: usize = out.iter().map(|(_, p)| p.len() - 52).sum();
        assert_eq!(payload, 100 * 1356);
        // And at 64 packets, however small.
        let small: Vec<_> = (0..100).map(|i| tcp(i * 10, 10, ACK)).collect();
        let out = run(small);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.len(), 52 + 640);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[0].1[2], out[0].1[3]])),
            52 + 640
        );
    }

    #[test]
    fn a_partial_checksum_is_completed_before_sending() {
        let mut p = tcp(5, 10, ACK).to_vec();
        // What the kernel leaves: the pseudo-header's sum in the field.
        let mut pseudo = 6 + (p.len() - 20) as u32;
        for w in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        p[36..38].copy_from_slice(&fold(pseudo).to_be_bytes());
        let mut vnet = PLAIN;
        vnet[0] = NEEDS_CSUM;
        vnet[6..8].copy_from_slice(&20u16.to_ne_bytes());
        vnet[8..10].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(prepare_read(&vnet, &mut p), Ok(true));
        assert_eq!(tcp_sum(&p), 0xffff);
        let mut gso = PLAIN;
        gso[1] = GSO_TCPV4;
        assert_eq!(prepare_read(&gso, &mut p), Ok(false));
        gso[1] = 3;
        assert!(prepare_read(&gso, &mut p).is_err());
        vnet[6..8].copy_from_slice(&4000u16.to_ne_bytes());
        assert!(prepare_read(&vnet, &mut p).is_err());
    }

    /// The sum over pseudo-header and segment: 0xffff when the checksum is right.
    fn tcp_sum(p: &[u8]) -> u16 {
        let mut s = 6 + (p.len() - 20) as u32;
        for w in p[12..20].chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        fold(s + sum32(&p[20..]))
    }

    #[test]
    fn tso_packets_are_cut_into_segments_and_merge_back() {
        // One 64 KiB-style packet of 5 segments of 100 bytes and a 30-byte tail.
        let big = {
            let mut p = tcp(1000, 530, ACK | PSH | FIN).to_vec();
            p[4..6].copy_from_slice(&77u16.to_be_bytes());
            p
        };
        let mut vnet = PLAIN;
        vnet[0] = NEEDS_CSUM;
        vnet[1] = GSO_TCPV4;
        vnet[4..6].copy_from_slice(&100u16.to_ne_bytes());
        let mut segs = Vec::new();
        segment_tso(&vnet, &big, &mut segs).unwrap();
        assert_eq!(segs.len(), 6);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 77 + i as u16);
            assert_eq!(checksum(&s[..20]), 0);
            assert_eq!(tcp_sum(s), 0xffff, "segment {i}");
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + 100 * i as u32);
            let last = i == 5;
            assert_eq!(s[33] & (PSH | FIN) != 0, last);
            assert_eq!(s.len(), 52 + if last { 30 } else { 100 });
        }
        // The receiver's coalescer stops at the FIN: the first five merge.
        let out = run(segs);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.len(), 52 + 500);
        assert_eq!(&out[0].1[52..], &big[52..552]);
        // Junk is refused, never a panic.
        for n in 0..big.len() {
            assert!(segment_tso(&vnet, &big[..n], &mut Vec::new()).is_err());
        }
        let mut zero = vnet;
        zero[4..6].fill(0);
        assert!(segment_tso(&zero, &big, &mut Vec::new()).is_err());
    }
}
