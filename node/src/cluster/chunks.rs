//! Raft snapshots larger than one transport frame (16 MiB) cross as
//! `OneWay::RaftChunk`s, each sent as its own one-way message on the
//! snapshot's own streams, so appends and heartbeats never wait behind
//! them. Cutting and putting back together is `shoal_actors::raft::chunks`
//! (the harness's in-memory network uses it too); this wraps its pieces in
//! the wire's message.

pub use shoal_actors::raft::chunks::{Reassembly, CHUNK};

use super::wire::OneWay;

/// `msg` (an encoded Raft message) as the chunks of snapshot `id`, or
/// `None` when it is too large even for chunks.
pub fn split(from: u64, from_addr: &str, id: u64, msg: &[u8]) -> Option<Vec<OneWay>> {
    let pieces = shoal_actors::raft::chunks::split(msg)?;
    Some(
        pieces
            .into_iter()
            .map(|p| OneWay::RaftChunk {
                from,
                from_addr: from_addr.to_string(),
                snapshot: id,
                index: p.index,
                total: p.total,
                data: p.data.to_vec(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_becomes_numbered_chunks_of_the_wire() {
        let msg = vec![3u8; CHUNK + 1];
        let chunks = split(7, "a:1", 9, &msg).expect("splits");
        let r = Reassembly::default();
        let mut whole = None;
        for c in chunks.into_iter().rev() {
            let OneWay::RaftChunk {
                from,
                from_addr,
                snapshot,
                index,
                total,
                data,
            } = c
            else {
                panic!("split makes chunks");
            };
            assert_eq!(
                (from, from_addr.as_str(), snapshot, total),
                (7, "a:1", 9, 2)
            );
            whole = r.add(from, snapshot, index, total, data).expect("fits");
        }
        assert_eq!(whole, Some(msg));
    }
}
