//! A linearizability checker for one register, in the manner of Knossos
//! and Porcupine: a depth-first search for an order of the operations that
//! respects real time (an operation that completed before another was
//! invoked comes first) and the register's sequential meaning (a read
//! returns the last value written), after Wing & Gong, with Lowe's
//! memoization of (operations linearized, register value) so that a
//! configuration found to be a dead end is not searched twice.
//!
//! Operations whose outcome is unknown (a write that timed out or got a
//! 5xx) may take effect at any time after they were invoked, or never:
//! they have no completion, and the search may leave them out.
//!
//! Local reads, which docs/api.md says are not linearizable, are judged by
//! [`local_reads`]: a weaker model that holds per manager.

use std::collections::{BTreeMap, HashSet};

use crate::history::Millis;

/// An operation on the register. `None` is "no value".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Write(u64),
    Read(Option<u64>),
}

/// An operation and the interval it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub op: RegisterOp,
    pub invoke: Millis,
    /// None: the outcome is unknown (it may take effect after `invoke`, or never).
    pub complete: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// An order exists: the entries in it (indices into the history);
    /// entries of unknown outcome not in it did not take effect, as far as
    /// anything observed.
    Linearizable { order: Vec<usize> },
    /// No order exists. At the deepest point the search reached, `placed`
    /// entries were ordered, the register held `value`, and none of
    /// `stuck` (entries that could have come next) fitted.
    NotLinearizable {
        placed: Vec<usize>,
        value: Option<u64>,
        stuck: Vec<usize>,
    },
    /// The search gave up after visiting this many configurations.
    Undecided { visited: usize },
}

/// Configurations the search visits before it gives up.
pub const BUDGET: usize = 5_000_000;

/// Decides whether `history` is linearizable for a register that starts at `init`.
pub fn check(history: &[Entry], init: Option<u64>) -> Verdict {
    check_with_budget(history, init, BUDGET)
}

pub fn check_with_budget(history: &[Entry], init: Option<u64>, budget: usize) -> Verdict {
    let n = history.len();
    let words = n.div_ceil(64).max(1);
    let required: Vec<usize> = (0..n).filter(|&i| history[i].complete.is_some()).collect();
    let mut done = vec![0u64; words];
    let is_done = |d: &[u64], i: usize| d[i / 64] & (1 << (i % 64)) != 0;
    // Entries that may go next: not done, and invoked no later than every
    // pending entry with a completion completed (equal milliseconds count
    // as concurrent).
    let candidates = |d: &[u64]| -> Vec<usize> {
        let horizon = required
            .iter()
            .filter(|&&i| !is_done(d, i))
            .filter_map(|&i| history[i].complete)
            .min()
            .unwrap_or(Millis::MAX);
        let mut c: Vec<usize> = (0..n)
            .filter(|&i| !is_done(d, i) && history[i].invoke <= horizon)
            .collect();
        // Entries that must complete soonest first: a good order is found early.
        c.sort_by_key(|&i| {
            (
                history[i].complete.unwrap_or(Millis::MAX),
                history[i].invoke,
            )
        });
        c
    };
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // The search stack: per level, the value before it, its candidates and the next to try.
    struct Level {
        value: Option<u64>,
        candidates: Vec<usize>,
        next: usize,
        chosen: Option<usize>,
    }
    let mut stack = vec![Level {
        value: init,
        candidates: candidates(&done),
        next: 0,
        chosen: None,
    }];
    let mut order: Vec<usize> = Vec::new();
    let mut deepest: (usize, Vec<usize>, Option<u64>, Vec<usize>) =
        (0, Vec::new(), init, Vec::new());
    let mut visited = 0usize;
    loop {
        let all_required = required.iter().all(|&i| is_done(&done, i));
        if all_required {
            return Verdict::Linearizable { order };
        }
        let Some(top) = stack.last_mut() else {
            let (_, placed, value, stuck) = deepest;
            return Verdict::NotLinearizable {
                placed,
                value,
                stuck,
            };
        };
        if let Some(prev) = top.chosen.take() {
            // Coming back from a dead end below: undo the choice.
            done[prev / 64] &= !(1 << (prev % 64));
            order.pop();
        }
        let value = top.value;
        let mut advanced = None;
        while top.next < top.candidates.len() {
            let i = top.candidates[top.next];
            top.next += 1;
            let after = match history[i].op {
                RegisterOp::Write(v) => Some(Some(v)),
                RegisterOp::Read(v) => (v == value).then_some(value),
            };
            let Some(after) = after else { continue };
            done[i / 64] |= 1 << (i % 64);
            visited += 1;
            if visited > budget {
                return Verdict::Undecided { visited };
            }
            if seen.insert((done.clone(), after)) {
                advanced = Some((i, after));
                break;
            }
            done[i / 64] &= !(1 << (i % 64));
        }
        match advanced {
            Some((i, after)) => {
                top.chosen = Some(i);
                order.push(i);
                if order.len() > deepest.0 {
                    deepest = (order.len(), order.clone(), after, Vec::new());
                }
                let c = candidates(&done);
                stack.push(Level {
                    value: after,
                    candidates: c,
                    next: 0,
                    chosen: None,
                });
            }
            None => {
                if order.len() == deepest.0 && deepest.3.is_empty() {
                    deepest.3 = top
                        .candidates
                        .iter()
                        .copied()
                        .filter(|&i| history[i].complete.is_some())
                        .collect();
                }
                stack.pop();
            }
        }
    }
}

/// A read as the weak model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub value: Option<u64>,
    pub via: String,
    pub invoke: Millis,
    pub complete: Millis,
}

/// A write as the weak model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub value: u64,
    pub via: String,
    pub invoke: Millis,
    /// None: unknown outcome.
    pub complete: Option<Millis>,
}

/// The weak model for reads from a manager's applied state (docs/api.md:
/// local, not linearizable). A manager applies the committed log in
/// order, and a write returns once applied on the manager it went
/// through, so, per manager and between two of its (re)starts:
///
/// * no invented values: a read returns "no value" or the value of a write
///   invoked before the read completed;
/// * read-your-writes (anyone's, through that manager): a read invoked
///   after a write through the same manager completed does not return a
///   value whose write completed before that write was invoked (or "no
///   value");
/// * monotonic reads: a read does not return a value whose write completed
///   before the write of the value an earlier read (completed before it was
///   invoked) returned.
///
/// "Older" is real-time precedence between writes, so a stale read that no
/// real-time order proves stale passes. `starts` gives when each manager
/// was started again; pairs across a start are not compared. Returns one
/// line per violation.
pub fn local_reads(
    writes: &[Write],
    reads: &[Read],
    starts: &BTreeMap<String, Vec<Millis>>,
) -> Vec<String> {
    let by_value: BTreeMap<u64, &Write> = writes.iter().map(|w| (w.value, w)).collect();
    let same_life = |via: &str, a: Millis, b: Millis| {
        starts
            .get(via)
            .is_none_or(|s| !s.iter().any(|&t| t > a.min(b) && t <= a.max(b)))
    };
    // Whether the write of `newer` cannot have come before the write of `older`:
    // `newer` (None: "no value") completed before `older` was invoked.
    let stale = |got: Option<u64>, floor_invoke: Millis| match got {
        None => true,
        Some(v) => by_value
            .get(&v)
            .and_then(|w| w.complete)
            .is_some_and(|c| c < floor_invoke),
    };
    let show = |v: Option<u64>| v.map_or("no value".to_string(), |v| v.to_string());
    let secs = |t: Millis| format!("{:.2}s", t as f64 / 1000.0);
    let mut out = Vec::new();
    for r in reads {
        if let Some(v) = r.value {
            match by_value.get(&v) {
                None => out.push(format!(
                    "read of {v} via {} at {} returned a value no write wrote",
                    r.via,
                    secs(r.invoke)
                )),
                Some(w) if w.invoke > r.complete => out.push(format!(
                    "read of {v} via {} at {} returned a value written only at {}",
                    r.via,
                    secs(r.invoke),
                    secs(w.invoke)
                )),
                _ => {}
            }
        }
        for w in writes.iter().filter(|w| w.via == r.via) {
            let Some(done) = w.complete else { continue };
            if done < r.invoke && same_life(&r.via, done, r.invoke) && stale(r.value, w.invoke) {
                out.push(format!(
                    "read via {} at {} returned {}, older than the write of {} acknowledged by that manager at {}",
                    r.via,
                    secs(r.invoke),
                    show(r.value),
                    w.value,
                    secs(done)
                ));
                break;
            }
        }
        let earlier = reads.iter().find(|e| {
            e.via == r.via
                && e.complete < r.invoke
                && same_life(&r.via, e.complete, r.invoke)
                && e.value.is_some()
                && e.value
                    .and_then(|v| by_value.get(&v))
                    .is_some_and(|w| stale(r.value, w.invoke))
        });
        if let Some(e) = earlier {
            out.push(format!(
                "read via {} at {} returned {}, older than {} it returned at {} (reads went backwards)",
                r.via,
                secs(r.invoke),
                show(r.value),
                show(e.value),
                secs(e.invoke)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: u64, invoke: Millis, complete: Millis) -> Entry {
        Entry {
            op: RegisterOp::Write(v),
            invoke,
            complete: Some(complete),
        }
    }
    fn r(v: Option<u64>, invoke: Millis, complete: Millis) -> Entry {
        Entry {
            op: RegisterOp::Read(v),
            invoke,
            complete: Some(complete),
        }
    }

    #[test]
    fn an_empty_history_is_linearizable() {
        assert!(matches!(check(&[], None), Verdict::Linearizable { .. }));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [Some(1), Some(2)] {
            let h = [w(1, 0, 10), w(2, 20, 40), r(seen, 25, 30)];
            assert!(
                matches!(check(&h, None), Verdict::Linearizable { .. }),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn the_stale_read_is_not_linearizable() {
        // The classic: 2 is acknowledged, then a read that starts later returns 1.
        let h = [w(1, 0, 10), w(2, 20, 30), r(Some(1), 40, 50)];
        match check(&h, None) {
            Verdict::NotLinearizable { placed, stuck, .. } => {
                assert_eq!(placed, vec![0, 1]);
                assert_eq!(stuck, vec![2]);
            }
            other => panic!("{other:?}"),
        }
    }
}
