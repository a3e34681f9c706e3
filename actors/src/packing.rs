//! Packing writes that wait at the same moment into one: the queue in front
//! of the Raft actor (many proposals, one entry) and in front of a
//! follower's forwarding (many writes, one request to the leader).
//!
//! No timer: a write that finds nobody sending is sent at once, alone; the
//! writes that arrive while a pack is on its way wait for it and leave
//! together as the next pack. So a single client waits exactly as long as
//! it would without packing, and under load the packs grow with the load.

use std::collections::VecDeque;

use parking_lot::Mutex;

use shoal_core::codec;

use shoal_core::codec::CodecError;
use shoal_core::command::{Command, Proposal};

/// Writes queued in units (writes that must go in the same pack: a batch a
/// follower forwarded, say, which is never split), taken in packs bounded
/// by a count of writes and a sum of their sizes, by at most `max_senders`
/// senders at a time.
pub struct PackQueue<T> {
    inner: Mutex<Queued<T>>,
    max_items: usize,
    max_bytes: usize,
    max_senders: usize,
}

struct Queued<T> {
    units: VecDeque<(Vec<T>, usize)>,
    senders: usize,
}

impl<T> PackQueue<T> {
    pub fn new(max_items: usize, max_bytes: usize, max_senders: usize) -> Self {
        PackQueue {
            inner: Mutex::new(Queued {
                units: VecDeque::new(),
                senders: 0,
            }),
            max_items,
            max_bytes,
            max_senders: max_senders.max(1),
        }
    }

    /// Queues writes that go together (`bytes` is their size). True when
    /// the caller must start a sender: it then calls `take` until `None`.
    pub fn push(&self, items: Vec<T>, bytes: usize) -> bool {
        if items.is_empty() {
            return false;
        }
        let mut q = self.inner.lock();
        q.units.push_back((items, bytes));
        if q.senders < self.max_senders {
            q.senders += 1;
            true
        } else {
            false
        }
    }

    /// The next pack: whole units in the order they came, as many as fit in
    /// both bounds (the first one always, however large). `None` when
    /// nothing waits: the sender that asked is done (under the same lock as
    /// `push`, so no write is left waiting without a sender).
    pub fn take(&self) -> Option<Vec<T>> {
        let mut q = self.inner.lock();
        let Some((mut pack, mut bytes)) = q.units.pop_front() else {
            q.senders = q.senders.saturating_sub(1);
            return None;
        };
        while let Some((next, size)) = q.units.front() {
            if pack.len() + next.len() > self.max_items
                || bytes.saturating_add(*size) > self.max_bytes
            {
                break;
            }
            bytes += size;
            if let Some((next, _)) = q.units.pop_front() {
                pack.extend(next);
            }
        }
        Some(pack)
    }

    /// Writes waiting (not yet taken by a sender).
    pub fn waiting(&self) -> usize {
        self.inner.lock().units.iter().map(|(u, _)| u.len()).sum()
    }
}

/// One Raft entry's data for these encoded proposals (`Proposal` each): the
/// proposal itself when there is one, else a `Command::Packed` of all of
/// them, built from their encodings (each write is applied and answered
/// alone; see `Command::Packed`).
pub fn pack_proposals(proposals: &[&[u8]]) -> Result<Vec<u8>, CodecError> {
    if let [one] = proposals {
        return Ok(one.to_vec());
    }
    let empty = codec::encode(&Proposal {
        id: 0,
        command: Command::Packed(Vec::new()),
    })?;
    codec::splice_seq(&empty, proposals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(id: u128, n: usize) -> Proposal {
        Proposal {
            id,
            command: Command::DeleteTasks((0..n).map(|i| format!("t{i}")).collect()),
        }
    }

    #[test]
    fn a_packed_entry_is_what_serde_encodes_for_the_packed_command() {
        for count in [2usize, 3, 250, 251, 300, 70_000] {
            let all: Vec<Proposal> = (0..count)
                .map(|i| proposal(u128::MAX / (i as u128 + 1), i % 3))
                .collect();
            let parts: Vec<Vec<u8>> = all.iter().map(|p| codec::encode(p).unwrap()).collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let packed = pack_proposals(&refs).unwrap();
            let expected = codec::encode(&Proposal {
                id: 0,
                command: Command::Packed(all.clone()),
            })
            .unwrap();
            assert_eq!(packed, expected, "{count} proposals");
            let back: Proposal = codec::decode(&packed).unwrap();
            assert_eq!(back.writes().len(), count);
            assert_eq!(back.into_commands()[1], all[1].command);
        }
    }

    #[test]
    fn one_proposal_is_its_own_entry() {
        let p = proposal(7, 2);
        let bytes = codec::encode(&p).unwrap();
        assert_eq!(pack_proposals(&[&bytes]).unwrap(), bytes);
    }

    #[test]
    fn splicing_needs_a_value_that_ends_with_an_empty_sequence() {
        assert!(codec::splice_seq(&[], &[b"x"]).is_err());
        assert!(codec::splice_seq(&[1, 2], &[b"x"]).is_err());
    }

    #[test]
    fn the_first_write_starts_a_sender_and_later_ones_wait_for_it() {
        let q = PackQueue::new(10, 1000, 1);
        assert!(q.push(vec![1], 1), "nobody sends: start");
        assert!(!q.push(vec![2], 1), "a sender runs");
        assert!(!q.push(vec![3], 1));
        assert_eq!(q.take(), Some(vec![1, 2, 3]));
        assert_eq!(q.take(), None, "done: the sender stops");
        assert!(q.push(vec![4], 1), "and the next write starts one");
    }

    #[test]
    fn packs_stay_within_the_count_and_the_bytes() {
        let q = PackQueue::new(3, 100, 1);
        assert!(q.push(vec![0], 10));
        for i in 1..8 {
            q.push(vec![i], 10);
        }
        assert_eq!(q.take(), Some(vec![0, 1, 2]), "three at most");
        q.push(vec![8], 90);
        assert_eq!(q.take(), Some(vec![3, 4, 5]));
        assert_eq!(q.take(), Some(vec![6, 7]), "8 would pass 100 bytes");
        assert_eq!(q.take(), Some(vec![8]));
        q.push(vec![9], 500);
        assert_eq!(q.take(), Some(vec![9]), "a write past the bytes goes alone");
        assert_eq!(q.take(), None);
    }

    #[test]
    fn a_unit_is_never_split() {
        let q = PackQueue::new(4, 1000, 1);
        assert!(q.push(vec![1, 2], 2));
        q.push(vec![3, 4, 5], 3);
        q.push(vec![6], 1);
        assert_eq!(q.take(), Some(vec![1, 2]), "3, 4, 5 would make five");
        assert_eq!(q.take(), Some(vec![3, 4, 5, 6]));
        q.push(vec![1, 2, 3, 4, 5, 6], 6);
        assert_eq!(
            q.take(),
            Some(vec![1, 2, 3, 4, 5, 6]),
            "a unit past the count goes whole, alone"
        );
        assert_eq!(q.take(), None);
    }

    #[test]
    fn at_most_max_senders_run() {
        let q = PackQueue::new(10, 1000, 2);
        assert!(q.push(vec![1], 1));
        assert!(q.push(vec![2], 1), "a second sender may start");
        assert!(!q.push(vec![3], 1), "not a third");
        assert_eq!(q.waiting(), 3);
        assert_eq!(q.take(), Some(vec![1, 2, 3]));
        assert_eq!(q.take(), None, "one sender done");
        assert!(q.push(vec![4], 1), "one left: another may start");
        assert!(!q.push(vec![5], 1), "two run");
        assert_eq!(q.take(), Some(vec![4, 5]));
        assert_eq!(q.take(), None);
        assert_eq!(q.take(), None, "both done");
        assert!(q.push(vec![6], 1));
    }
}
