//! What the actors read from the world outside them: the wall clock and
//! random numbers. A node reads the system clock and the OS's randomness.
//! The in-process harness (`crate::harness`) installs a fake world on the one
//! thread its cluster runs on: wall time then follows tokio's paused clock
//! from a fixed epoch and random numbers come from a seed, so that a seed
//! replays a run exactly.
//!
//! Secrets (join tokens, keys) never come from here: a fake world must not
//! be able to make them predictable.
//!
//! A node's wall clock can be moved by a fixed offset (`set_skew`), as if
//! the host's clock were wrong: the chaos harness does it through the
//! daemon's `/debug/chaos/clock`, which only `--enable-chaos` serves.
//! Everything that reads the wall clock on the node's path reads it here, so
//! the offset reaches the state, the certificates and their checks alike.

use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use shoal_core::clock::MAX_SKEW;

struct Fake {
    epoch: DateTime<Utc>,
    start: tokio::time::Instant,
    rng: StdRng,
}

thread_local! {
    static FAKE: RefCell<Option<Fake>> = const { RefCell::new(None) };
}

/// The process's clock offset in milliseconds (0 unless a chaos fault set it).
static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// The wall-clock time, as the actors write it into the state.
pub fn now() -> DateTime<Utc> {
    FAKE.with_borrow(|f| match f {
        Some(f) => f.epoch + TimeDelta::from_std(f.start.elapsed()).unwrap_or(TimeDelta::MAX),
        None => Utc::now() + skew(),
    })
}

/// Moves this process's wall clock by `offset` from the system's (clamped
/// to `MAX_SKEW`); `TimeDelta::zero()` puts it back. The fake world of the
/// harness is not moved.
pub fn set_skew(offset: TimeDelta) {
    let offset = offset.clamp(-MAX_SKEW, MAX_SKEW);
    SKEW_MS.store(offset.num_milliseconds(), Ordering::Relaxed);
}

/// How far this process's wall clock is moved from the system's.
pub fn skew() -> TimeDelta {
    TimeDelta::milliseconds(SKEW_MS.load(Ordering::Relaxed))
}

/// Runs `f` with this thread's source of (non-secret) randomness.
pub fn with_rng<R>(f: impl FnOnce(&mut dyn RngCore) -> R) -> R {
    FAKE.with_borrow_mut(|fake| match fake {
        Some(fake) => f(&mut fake.rng),
        None => f(&mut rand::rng()),
    })
}

/// A random 25-character lowercase alphanumeric id, the shape Swarm uses
/// (from the world's randomness: a harness's seed decides it).
pub fn new_id() -> String {
    with_rng(|rng| shoal_core::model::id_from(rng))
}

/// From now on this thread's clock reads `epoch` plus the time tokio's clock
/// has moved since, and its random numbers come from `seed`. Call it inside
/// the runtime (a current-thread one with a paused clock) the actors run on.
pub fn install(seed: u64, epoch: DateTime<Utc>) {
    FAKE.set(Some(Fake {
        epoch,
        start: tokio::time::Instant::now(),
        rng: StdRng::seed_from_u64(seed),
    }));
}

/// Back to the system clock and the OS's randomness.
pub fn uninstall() {
    FAKE.set(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_and_times() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let run = || {
            rt.block_on(async {
                let epoch = DateTime::<Utc>::UNIX_EPOCH;
                install(7, epoch);
                let a = with_rng(|r| r.next_u64());
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                let t = now() - epoch;
                uninstall();
                (a, t)
            })
        };
        let (a, t) = run();
        assert_eq!(run().0, a);
        assert_eq!(t, TimeDelta::seconds(3));
    }
}
