//! Clock skew between nodes, as the leader's dispatcher sees it in
//! heartbeats: each heartbeat carries the sender's wall-clock time, and the
//! difference to the leader's clock at receipt is one sample of that node's
//! offset (its skew, less the heartbeat's transit, which is never negative).
//!
//! What shoal does with it (docs/security.md, clocks):
//! * a status report's times are moved onto the leader's clock by the
//!   node's offset before they are written, so restart delays, update
//!   delays and monitors are counted on one clock whatever the workers'
//!   clocks say;
//! * a node whose clock is more than `SKEW_BOUND` from the cluster's (the
//!   median of all the nodes' offsets, so a wrong leader is the one
//!   flagged, not everyone else) is flagged in the state, which `node ls`
//!   and `node inspect` show.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

/// The most a clock can be moved (by a chaos fault) or be believed off: a
/// year either way.
pub const MAX_SKEW: TimeDelta = TimeDelta::days(366);

/// How far a node's clock may be from the cluster's before it is flagged.
pub const SKEW_BOUND: TimeDelta = TimeDelta::seconds(10);

/// Offsets smaller than this are heartbeat transit and scheduling noise: a
/// report's times are kept as the node wrote them.
pub const TRANSLATE_ABOVE: TimeDelta = TimeDelta::milliseconds(500);

/// The largest offset recorded, either way: the largest a chaos fault makes
/// (`crate::clock::MAX_SKEW`). A node's skew against the median is then at
/// most twice that, which the state takes (`Command::SetNodeClockSkew`).
pub const MAX_OFFSET: TimeDelta = TimeDelta::days(366);

/// A node's clock against the leader's: its latest heartbeat's offset
/// (node clock minus leader clock, milliseconds).
#[derive(Debug, Default, Clone)]
pub struct Offsets {
    last: Option<i64>,
}

impl Offsets {
    /// Records a heartbeat sent at `sent` (the node's clock) and received at
    /// `received` (the leader's). `sent` comes from a peer: the offset is
    /// held within `MAX_OFFSET` whatever it says.
    pub fn record(&mut self, sent: DateTime<Utc>, received: DateTime<Utc>) {
        let offset = (sent - received).clamp(-MAX_OFFSET, MAX_OFFSET);
        self.last = Some(offset.num_milliseconds());
    }

    /// The node's offset; `None` before its first heartbeat.
    pub fn offset(&self) -> Option<TimeDelta> {
        self.last.map(TimeDelta::milliseconds)
    }

    /// `at`, a time on the node's clock, on the leader's (as it is, if the
    /// move would leave the calendar: a peer may send any time).
    pub fn to_leader(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self.offset() {
            Some(o) if o.abs() > TRANSLATE_ABOVE => at.checked_sub_signed(o).unwrap_or(at),
            _ => at,
        }
    }
}

/// Nodes whose offsets must be known before any clock is judged: of two
/// clocks that differ, nothing says which is wrong.
pub const JUDGE_FROM: usize = 3;

/// Each node's skew from the cluster's clock (the median offset), in
/// milliseconds, for the nodes whose skew is beyond `SKEW_BOUND`; the others
/// are `None`. Nothing is judged (an empty map) with fewer than
/// `JUDGE_FROM` offsets, as just after an election.
pub fn flagged(offsets: &BTreeMap<String, TimeDelta>) -> BTreeMap<String, Option<i64>> {
    if offsets.len() < JUDGE_FROM {
        return BTreeMap::new();
    }
    let mut sorted: Vec<i64> = offsets.values().map(|o| o.num_milliseconds()).collect();
    sorted.sort_unstable();
    let median = match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    };
    offsets
        .iter()
        .map(|(node, o)| {
            let skew = o.num_milliseconds() - median;
            let flag = (skew.abs() > SKEW_BOUND.num_milliseconds()).then_some(skew);
            (node.clone(), flag)
        })
        .collect()
}

/// Flags are written only once two looks in a row agree: when a clock
/// jumps (the leader's own, above all), the nodes' heartbeats report the
/// jump one by one over a heartbeat period, and a look in between sees a
/// mix that would flag the wrong nodes.
#[derive(Debug, Default)]
pub struct Judge {
    previous: BTreeMap<String, Option<i64>>,
}

impl Judge {
    /// The flags to write: each node judged the same way as at the last
    /// look, and unlike what `recorded` (the state) says.
    pub fn look(
        &mut self,
        offsets: &BTreeMap<String, TimeDelta>,
        recorded: impl Fn(&str) -> Option<Option<i64>>,
    ) -> Vec<(String, Option<i64>)> {
        let now = flagged(offsets);
        let writes = now
            .iter()
            .filter(|(node, flag)| {
                self.previous
                    .get(node.as_str())
                    .is_some_and(|before| !needs_write(*before, **flag))
            })
            .filter_map(|(node, flag)| {
                let recorded = recorded(node)?;
                needs_write(recorded, *flag).then(|| (node.clone(), *flag))
            })
            .collect();
        self.previous = now;
        writes
    }
}

/// Whether the recorded flag must be written again: it appeared, it went,
/// or it moved by more than the bound.
pub fn needs_write(recorded: Option<i64>, now: Option<i64>) -> bool {
    match (recorded, now) {
        (None, None) => false,
        (Some(a), Some(b)) => (a - b).abs() > SKEW_BOUND.num_milliseconds(),
        _ => true,
    }
}

/// How long before `now` the time `at` was. A time a little ahead of `now`
/// (clocks a little apart) is `now`; one ahead by more than the bound was
/// written under a leader whose clock was ahead of this one's, and counts as
/// long past: a wait that began then is not waited out a second time.
pub fn elapsed(now: DateTime<Utc>, at: DateTime<Utc>) -> std::time::Duration {
    match (now - at).to_std() {
        Ok(d) => d,
        Err(_) if at - now > SKEW_BOUND => std::time::Duration::MAX,
        Err(_) => std::time::Duration::ZERO,
    }
}

/// A skew for people: `+10m0s`, `-1d0h0m`, `+12s`.
pub fn describe(skew_ms: i64) -> String {
    let sign = if skew_ms < 0 { '-' } else { '+' };
    let s = (skew_ms.unsigned_abs() + 500) / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: i64) -> TimeDelta {
        TimeDelta::milliseconds(v)
    }

    #[test]
    fn the_latest_heartbeat_gives_the_offset() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut o = Offsets::default();
        assert_eq!(o.offset(), None);
        // Clock 600 s ahead, 5 ms in transit.
        o.record(t0 + ms(600_000), t0 + ms(5));
        assert_eq!(o.offset(), Some(ms(599_995)));
        assert_eq!(o.to_leader(t0 + ms(600_000)), t0 + ms(5));
        // Put right.
        o.record(t0, t0 + ms(2));
        assert_eq!(o.offset(), Some(ms(-2)));
        // Noise is not translated.
        assert_eq!(o.to_leader(t0), t0);
    }

    #[test]
    fn a_peers_times_at_the_ends_of_the_calendar_are_held() {
        let now = DateTime::<Utc>::UNIX_EPOCH + ms(1_000_000);
        let mut o = Offsets::default();
        o.record(DateTime::<Utc>::MAX_UTC, now);
        assert_eq!(o.offset(), Some(MAX_OFFSET));
        assert_eq!(
            o.to_leader(DateTime::<Utc>::MIN_UTC),
            DateTime::<Utc>::MIN_UTC
        );
        o.record(DateTime::<Utc>::MIN_UTC, now);
        assert_eq!(o.offset(), Some(-MAX_OFFSET));
        let skews = flagged(
            &[("a", MAX_OFFSET), ("b", -MAX_OFFSET), ("c", -MAX_OFFSET)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let bound = 2 * crate::clock::MAX_SKEW.num_milliseconds();
        assert!(skews.values().flatten().all(|s| s.abs() <= bound));
    }

    #[test]
    fn a_flag_is_written_once_two_looks_agree() {
        let mut judge = Judge::default();
        let offsets = |a: i64, b: i64, c: i64, d: i64| -> BTreeMap<String, TimeDelta> {
            [("l", a), ("m", b), ("n", c), ("w", d)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ms(v)))
                .collect()
        };
        let unflagged = |_: &str| Some(None);
        // The leader's clock jumped 10 min: two nodes have reported it yet.
        assert!(judge
            .look(&offsets(0, 600_000, 600_000, 0), unflagged)
            .is_empty());
        // Every node has: the leader is the one off, at the second look.
        assert!(judge
            .look(&offsets(0, 600_000, 600_000, 600_000), unflagged)
            .is_empty());
        let w = judge.look(&offsets(0, 600_000, 600_000, 600_000), unflagged);
        assert_eq!(w, vec![("l".to_string(), Some(-600_000))]);
        // Already written: nothing more.
        let flagged_l = |n: &str| Some((n == "l").then_some(-600_000));
        assert!(judge
            .look(&offsets(0, 600_000, 600_000, 600_000), flagged_l)
            .is_empty());
    }

    #[test]
    fn the_wrong_clock_is_flagged_even_when_it_is_the_leaders() {
        // Offsets as a leader 10 min ahead sees them: its own agent 0, the
        // two others 10 min behind it.
        let offsets: BTreeMap<String, TimeDelta> = [
            ("leader".to_string(), ms(0)),
            ("a".to_string(), ms(-600_000)),
            ("b".to_string(), ms(-600_010)),
        ]
        .into();
        let f = flagged(&offsets);
        assert_eq!(f["leader"], Some(600_000));
        assert_eq!(f["a"], None);
        assert_eq!(f["b"], None);
        // Two clocks apart: which is wrong cannot be told.
        let two: BTreeMap<String, TimeDelta> =
            [("x".to_string(), ms(0)), ("y".to_string(), ms(-600_000))].into();
        assert!(flagged(&two).is_empty());
    }

    #[test]
    fn a_flag_is_written_when_it_appears_goes_or_moves() {
        assert!(!needs_write(None, None));
        assert!(needs_write(None, Some(60_000)));
        assert!(needs_write(Some(60_000), None));
        assert!(!needs_write(Some(60_000), Some(61_000)));
        assert!(needs_write(Some(60_000), Some(-60_000)));
    }

    #[test]
    fn a_time_far_ahead_is_long_past_and_a_little_ahead_is_now() {
        let now = DateTime::<Utc>::UNIX_EPOCH + ms(1_000_000);
        assert_eq!(elapsed(now, now - ms(2_000)).as_millis(), 2_000);
        assert_eq!(elapsed(now, now + ms(300)), std::time::Duration::ZERO);
        assert_eq!(elapsed(now, now + ms(600_000)), std::time::Duration::MAX);
    }

    #[test]
    fn skews_read_as_durations() {
        assert_eq!(describe(600_000), "+10m0s");
        assert_eq!(describe(-86_400_000), "-1d0h0m");
        assert_eq!(describe(12_400), "+12s");
        assert_eq!(describe(-3_723_000), "-1h2m3s");
    }
}
