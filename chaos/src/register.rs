//! The register workload (`[register]`): clients that write a value to one
//! register and read it back through different managers, for the
//! linearizability checker ([`crate::linearizable`]).
//!
//! The register is the generation label of the service `chaos-register`
//! (no replicas): a write is a service update through a manager (it returns
//! once committed and applied there, docs/api.md), a value no other write
//! of the run uses. A local read is `GET /services/chaos-register` from a
//! manager's applied state, which the API documents as not linearizable. A
//! barrier read first writes another service (`chaos-register-barrier`)
//! through the same manager, then reads locally there: the manager has
//! applied everything committed before the barrier, so the read can be
//! placed at the barrier's commit and is judged as linearizable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api;
use crate::history::{Outcome, RegKind, RegOp, ServiceValue};
use crate::scenario::Register;
use crate::workload::{self, value_of, LiveManagers, Recorder, WRITE_TIMEOUT};

/// The service whose label is the register.
pub const SERVICE: &str = "chaos-register";
/// The service barrier reads write first.
pub const BARRIER: &str = "chaos-register-barrier";

const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    ops: Arc<Mutex<Vec<RegOp>>>,
}

impl Clients {
    pub fn start(r: &Register, rec: Arc<Recorder>, live: LiveManagers, seed: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..r.clients)
            .map(|client| {
                let (rec, live, stop, ops, rate) =
                    (rec.clone(), live.clone(), stop.clone(), ops.clone(), r.rate);
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(client as u64));
                    let gap = Duration::from_secs_f64(1.0 / rate);
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        let managers = live.lock().map(|l| l.clone()).unwrap_or_default();
                        if !managers.is_empty() {
                            let via = &managers[rng.random_range(0..managers.len())];
                            let op = match rng.random_range(0..10) {
                                0..=3 => write(&rec, client, via),
                                4..=7 => read(&rec, client, via, None),
                                _ => barrier_read(&rec, client, via),
                            };
                            if let Ok(mut v) = ops.lock() {
                                v.push(op);
                            }
                        }
                        if let Some(rest) = gap.checked_sub(began.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                })
            })
            .collect();
        Clients { stop, threads, ops }
    }

    /// Stops every client (each finishes its operation) and returns the history.
    pub fn stop(self) -> Vec<RegOp> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let mut out = self.ops.lock().map(|v| v.clone()).unwrap_or_default();
        out.sort_by_key(|o| o.invoke);
        out
    }
}

fn generation(v: &ServiceValue) -> Option<u64> {
    match v {
        ServiceValue::Present { generation, .. } => Some(*generation),
        ServiceValue::Absent => None,
    }
}

fn write(rec: &Recorder, client: usize, via: &(String, std::path::PathBuf)) -> RegOp {
    let op = workload::write(
        rec,
        "register",
        "update",
        SERVICE,
        Some(0),
        (&via.0, &via.1),
        WRITE_TIMEOUT,
    );
    RegOp {
        client,
        kind: RegKind::Write,
        value: generation(&op.value),
        via: via.0.clone(),
        invoke: op.sent,
        complete: op.done,
        outcome: op.outcome,
        error: op.error,
    }
}

/// A local read; `since` makes it a barrier read that began then.
fn read(
    rec: &Recorder,
    client: usize,
    via: &(String, std::path::PathBuf),
    since: Option<u64>,
) -> RegOp {
    let invoke = rec.now();
    let result = api::get(&via.1, &format!("/services/{SERVICE}"), READ_TIMEOUT);
    let complete = rec.now();
    let (value, outcome, error) = match result {
        Ok(s) => (generation(&value_of(&s)), Outcome::Ok, String::new()),
        // The manager says the service is not there: a read of "no value".
        Err(e) if e.status() == Some(404) => (None, Outcome::Ok, String::new()),
        Err(e) => (None, Outcome::Unknown, e.to_string()),
    };
    RegOp {
        client,
        kind: if since.is_some() {
            RegKind::BarrierRead
        } else {
            RegKind::LocalRead
        },
        value,
        via: via.0.clone(),
        invoke: since.unwrap_or(invoke),
        complete,
        outcome,
        error,
    }
}

/// A write through `via` (a barrier), then a local read there.
fn barrier_read(rec: &Recorder, client: usize, via: &(String, std::path::PathBuf)) -> RegOp {
    let b = workload::write(
        rec,
        "register",
        "update",
        BARRIER,
        Some(0),
        (&via.0, &via.1),
        WRITE_TIMEOUT,
    );
    if b.outcome == Outcome::Ok {
        read(rec, client, via, Some(b.sent))
    } else {
        // Without an acknowledged barrier it is only a local read.
        read(rec, client, via, None)
    }
}
