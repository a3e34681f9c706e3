//! Raft snapshots larger than one transport frame cross in chunks: the
//! sender cuts the encoded Raft message into `CHUNK`-byte pieces, the
//! receiver puts them back together (they may arrive in any order) and
//! steps Raft with the whole message. A peer has at most one snapshot in
//! reassembly, of at most `MAX_CHUNKS` chunks: what a peer sends bounds
//! what it costs. The QUIC transport (node/) and the harness's in-memory
//! network both carry snapshots this way; how a chunk travels is theirs.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The bytes of one chunk (a quarter of the transport's 16 MiB frame).
pub const CHUNK: usize = 4 << 20;
/// The most chunks a snapshot may have: 1 GiB.
pub const MAX_CHUNKS: u32 = 256;

/// One piece of a snapshot: chunk `index` of `total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub index: u32,
    pub total: u32,
    pub data: &'a [u8],
}

/// `msg` (an encoded Raft message) as its chunks, or `None` when it is too
/// large even for chunks.
pub fn split(msg: &[u8]) -> Option<Vec<Piece<'_>>> {
    let total = u32::try_from(msg.len().div_ceil(CHUNK)).ok()?;
    if total > MAX_CHUNKS {
        return None;
    }
    Some(
        msg.chunks(CHUNK)
            .enumerate()
            .map(|(i, data)| Piece {
                index: i as u32,
                total,
                data,
            })
            .collect(),
    )
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("a chunk of an older snapshot than the one in progress")]
    Stale,
    #[error("a snapshot chunk that does not fit the snapshot in progress")]
    Mismatch,
    #[error("a snapshot chunk larger than a chunk, or a snapshot of too many")]
    TooLarge,
}

/// How long an unfinished snapshot holds its place against an older one
/// (a sender that restarted numbers its snapshots from 0 again).
const STALE_AFTER: Duration = Duration::from_secs(30);

struct Partial {
    snapshot: u64,
    started: Instant,
    slots: Vec<Option<Vec<u8>>>,
    have: u32,
}

/// Snapshots being put back together, one per peer.
#[derive(Default)]
pub struct Reassembly(Mutex<HashMap<u64, Partial>>);

impl Reassembly {
    /// Takes chunk `index` of `total` of the peer's snapshot `snapshot`;
    /// the whole message once every chunk is in. A newer snapshot (a
    /// greater number, or any once the one in progress is old) replaces
    /// the one in progress; Raft sends a snapshot again if it was lost.
    pub fn add(
        &self,
        from: u64,
        snapshot: u64,
        index: u32,
        total: u32,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, ChunkError> {
        if data.len() > CHUNK || total == 0 || total > MAX_CHUNKS || index >= total {
            return Err(ChunkError::TooLarge);
        }
        let mut all = self.0.lock();
        let replace = match all.get(&from) {
            None => true,
            Some(p) if p.snapshot == snapshot => false,
            Some(p) if snapshot > p.snapshot || p.started.elapsed() > STALE_AFTER => true,
            Some(_) => return Err(ChunkError::Stale),
        };
        if replace {
            all.insert(
                from,
                Partial {
                    snapshot,
                    started: Instant::now(),
                    slots: vec![None; total as usize],
                    have: 0,
                },
            );
        }
        let Some(p) = all.get_mut(&from) else {
            return Err(ChunkError::Mismatch);
        };
        if p.slots.len() != total as usize {
            all.remove(&from);
            return Err(ChunkError::Mismatch);
        }
        let slot = &mut p.slots[index as usize];
        if slot.is_none() {
            *slot = Some(data);
            p.have += 1;
        }
        if (p.have as usize) < p.slots.len() {
            return Ok(None);
        }
        let Some(p) = all.remove(&from) else {
            return Err(ChunkError::Mismatch);
        };
        Ok(Some(p.slots.into_iter().flatten().flatten().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(msg: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        split(msg)
            .expect("splits")
            .into_iter()
            .map(|p| (p.index, p.total, p.data.to_vec()))
            .collect()
    }

    #[test]
    fn chunks_in_any_order_make_the_message_again() {
        let msg: Vec<u8> = (0..(2 * CHUNK + 5)).map(|i| (i % 251) as u8).collect();
        let mut chunks = parts(&msg);
        assert_eq!(chunks.len(), 3);
        chunks.swap(0, 2);
        let r = Reassembly::default();
        let mut out = None;
        for (i, t, d) in chunks {
            assert!(out.is_none());
            out = r.add(7, 1, i, t, d).expect("fits");
        }
        assert_eq!(out, Some(msg));
    }

    #[test]
    fn a_newer_snapshot_replaces_an_older_and_bad_chunks_are_refused() {
        let msg = vec![1u8; CHUNK + 1];
        let chunks = parts(&msg);
        let r = Reassembly::default();
        assert_eq!(r.add(7, 2, 1, 2, chunks[1].2.clone()), Ok(None));
        // A duplicate counts once.
        assert_eq!(r.add(7, 2, 1, 2, chunks[1].2.clone()), Ok(None));
        // A newer snapshot takes over; the older one's chunks are stale.
        assert_eq!(r.add(7, 3, 0, 2, chunks[0].2.clone()), Ok(None));
        assert_eq!(
            r.add(7, 2, 0, 2, chunks[0].2.clone()),
            Err(ChunkError::Stale)
        );
        assert_eq!(r.add(7, 3, 1, 3, vec![0]), Err(ChunkError::Mismatch));
        assert_eq!(
            r.add(7, 4, 0, MAX_CHUNKS + 1, vec![0]),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(
            r.add(7, 4, 0, 2, vec![0; CHUNK + 1]),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(r.add(7, 4, 2, 2, vec![0]), Err(ChunkError::TooLarge));
        // Another peer's snapshot is its own.
        assert_eq!(r.add(8, 1, 0, 1, vec![9]), Ok(Some(vec![9])));
    }

    #[test]
    fn too_large_for_chunks_is_not_split() {
        // Checked by arithmetic, not by allocating a gigabyte.
        assert!(CHUNK as u64 * u64::from(MAX_CHUNKS) == 1 << 30);
        assert!(split(&[]).is_some_and(|c| c.is_empty()));
    }
}
