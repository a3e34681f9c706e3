//! Writes the harness issues (setup, method steps, probes, background
//! load), each recorded as an [`Op`] with its outcome. Every write sets a
//! whole service value, so the lost-write checker can treat each service as
//! a register.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::api;
use crate::history::{Millis, Op, Outcome, ServiceValue};

/// The label that carries a service's generation (bumped by `update`).
pub const GENERATION_LABEL: &str = "com.shoal.chaos.generation";

/// How long a write may take before its outcome counts as unknown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The run's clock and its shared records.
pub struct Recorder {
    pub start: Instant,
    pub ops: Mutex<Vec<Op>>,
    /// The program every task runs.
    pub workload: PathBuf,
}

impl Recorder {
    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }
}

/// Managers a client may talk to, kept current by the runner as nodes
/// stop, pause and come back.
pub type LiveManagers = Arc<Mutex<Vec<(String, PathBuf)>>>;

pub fn service_spec(workload: &Path, name: &str, replicas: u64, generation: u64) -> Value {
    json!({
        "Name": name,
        "Labels": { GENERATION_LABEL: generation.to_string() },
        "TaskTemplate": {
            "Driver": "process",
            "ContainerSpec": { "Image": workload.display().to_string(), "Args": [] },
            "RestartPolicy": { "Condition": "any", "Delay": 0 },
        },
        "Mode": { "Replicated": { "Replicas": replicas } },
    })
}

/// What a service listing entry says the service is.
pub fn value_of(service: &Value) -> ServiceValue {
    ServiceValue::Present {
        replicas: service
            .pointer("/Spec/Mode/Replicated/Replicas")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        generation: service
            .pointer(&format!("/Spec/Labels/{GENERATION_LABEL}"))
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0),
    }
}

/// Issues one write to `via` and records it. `kind` is create, scale,
/// update or remove; `value` is what the service is afterwards.
pub fn write(
    rec: &Recorder,
    client: &str,
    kind: &str,
    service: &str,
    value: ServiceValue,
    via: (&str, &Path),
    timeout: Duration,
) -> Op {
    let sent = rec.now();
    let result = match (&value, kind) {
        (ServiceValue::Absent, _) => api::request(
            via.1,
            "DELETE",
            &format!("/services/{service}"),
            None,
            timeout,
        ),
        (
            ServiceValue::Present {
                replicas,
                generation,
            },
            "create",
        ) => api::post(
            via.1,
            "/services/create",
            &service_spec(&rec.workload, service, *replicas, *generation),
            timeout,
        ),
        (
            ServiceValue::Present {
                replicas,
                generation,
            },
            _,
        ) => api::post(
            via.1,
            &format!("/services/{service}/update"),
            &service_spec(&rec.workload, service, *replicas, *generation),
            timeout,
        ),
    };
    let (outcome, error) = match &result {
        Ok(_) => (Outcome::Ok, String::new()),
        Err(e) if e.refused() => (Outcome::Refused, e.to_string()),
        Err(e) => (Outcome::Unknown, e.to_string()),
    };
    let op = Op {
        client: client.to_string(),
        kind: kind.to_string(),
        service: service.to_string(),
        value,
        via: via.0.to_string(),
        sent,
        done: rec.now(),
        outcome,
        error,
    };
    if let Ok(mut ops) = rec.ops.lock() {
        ops.push(op.clone());
    }
    op
}

/// Whether the error says the service is not there / already there.
fn status_of(op: &Op) -> Option<u16> {
    op.error
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
}

/// Background writes over `services` services named chaos-load-N, at
/// `rate` a second, until `stop` is set. Each write goes to a live manager
/// picked from `seed`.
pub fn run_load(
    rec: Arc<Recorder>,
    live: LiveManagers,
    rate: f64,
    services: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let gap = Duration::from_secs_f64(1.0 / rate);
    // What this client believes each service is; writes correct it.
    let mut believed: BTreeMap<String, ServiceValue> = (1..=services)
        .map(|i| (format!("chaos-load-{i}"), ServiceValue::Absent))
        .collect();
    let names: Vec<String> = believed.keys().cloned().collect();
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let managers = live.lock().map(|l| l.clone()).unwrap_or_default();
        if !managers.is_empty() {
            let (via_name, via_path) = &managers[rng.random_range(0..managers.len())];
            let name = &names[rng.random_range(0..names.len())];
            let (kind, value) = match believed[name].clone() {
                ServiceValue::Absent => (
                    "create",
                    ServiceValue::Present {
                        replicas: rng.random_range(0..=2),
                        generation: 0,
                    },
                ),
                ServiceValue::Present {
                    replicas,
                    generation,
                } => match rng.random_range(0..20) {
                    0 => ("remove", ServiceValue::Absent),
                    1..=3 => (
                        "update",
                        ServiceValue::Present {
                            replicas,
                            generation: generation + 1,
                        },
                    ),
                    _ => (
                        "scale",
                        ServiceValue::Present {
                            replicas: (replicas + rng.random_range(1..=2)) % 3,
                            generation,
                        },
                    ),
                },
            };
            let op = write(
                &rec,
                "load",
                kind,
                name,
                value.clone(),
                (via_name, via_path),
                WRITE_TIMEOUT,
            );
            match (op.outcome, status_of(&op)) {
                (Outcome::Ok, _) | (Outcome::Unknown, _) => {
                    believed.insert(name.clone(), value);
                }
                (Outcome::Refused, Some(409)) => {
                    believed.insert(
                        name.clone(),
                        ServiceValue::Present {
                            replicas: 0,
                            generation: 0,
                        },
                    );
                }
                (Outcome::Refused, Some(404)) => {
                    believed.insert(name.clone(), ServiceValue::Absent);
                }
                (Outcome::Refused, _) => {}
            }
        }
        if let Some(rest) = gap.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
