//! The daemon's tunable timings, as the command line gives them, checked
//! once here so that the actors get only consistent values.

use std::time::Duration;

use shoal_actors::context::Timings;

/// `shoal daemon --raft-tick --raft-election-ticks --raft-heartbeat-ticks
/// --dispatcher-heartbeat`.
#[derive(Debug, Clone, Copy)]
pub struct DaemonTimings {
    pub raft_tick: Duration,
    pub raft_election_ticks: usize,
    pub raft_heartbeat_ticks: usize,
    pub dispatcher_heartbeat: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingsError {
    #[error("--raft-election-ticks must be larger than --raft-heartbeat-ticks")]
    ElectionNotAfterHeartbeat,
    #[error("{0} must be larger than zero")]
    Zero(&'static str),
}

impl DaemonTimings {
    /// The timings the actors run with; refuses an election timeout that is
    /// not longer than the heartbeat (a leader would lose every election it
    /// just won) and zero periods.
    pub fn build(self) -> Result<Timings, TimingsError> {
        if self.raft_tick.is_zero() {
            return Err(TimingsError::Zero("--raft-tick"));
        }
        if self.dispatcher_heartbeat.is_zero() {
            return Err(TimingsError::Zero("--dispatcher-heartbeat"));
        }
        if self.raft_heartbeat_ticks == 0 {
            return Err(TimingsError::Zero("--raft-heartbeat-ticks"));
        }
        if self.raft_election_ticks <= self.raft_heartbeat_ticks {
            return Err(TimingsError::ElectionNotAfterHeartbeat);
        }
        let mut t = Timings::default();
        t.raft.tick = self.raft_tick;
        t.raft.election_ticks = self.raft_election_ticks;
        t.raft.heartbeat_ticks = self.raft_heartbeat_ticks;
        t.dispatcher_heartbeat = self.dispatcher_heartbeat;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> DaemonTimings {
        DaemonTimings {
            raft_tick: Duration::from_millis(100),
            raft_election_ticks: 10,
            raft_heartbeat_ticks: 1,
            dispatcher_heartbeat: Duration::from_secs(1),
        }
    }

    #[test]
    fn inconsistent_timings_are_refused() {
        assert!(defaults().build().is_ok());
        let mut t = defaults();
        t.raft_election_ticks = 1;
        assert_eq!(
            t.build().err(),
            Some(TimingsError::ElectionNotAfterHeartbeat)
        );
        let mut t = defaults();
        t.raft_tick = Duration::ZERO;
        assert_eq!(t.build().err(), Some(TimingsError::Zero("--raft-tick")));
    }
}
