//! A log rate limit: at most one line per period for an event anyone on the
//! network can cause, with a count of the ones left out.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Quiet {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Quiet {
    pub fn new(period: Duration) -> Self {
        Quiet {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when this occurrence may be logged (`n` were left out since
    /// the last logged one), `None` when it should stay quiet.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock();
        match st.0 {
            Some(last) if now.duration_since(last) < self.period => {
                st.1 += 1;
                None
            }
            _ => {
                let suppressed = std::mem::take(&mut st.1);
                st.0 = Some(now);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_left_out() {
        let q = Quiet::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(q.admit_at(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(q.admit_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(q.admit_at(t0 + Duration::from_secs(11)), Some(1000));
        assert_eq!(q.admit_at(t0 + Duration::from_secs(12)), None);
    }
}
