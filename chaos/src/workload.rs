//! Writes the harness issues (setup, method steps, probes, background
//! load), each recorded as an [`Op`] with its outcome. Every write sets a
//! whole service value, so the lost-write checker can treat each service as
//! a register.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::api;
use crate::history::{Millis, Op, Outcome, ServiceValue};

/// The label that carries a service's generation: unique to the write that set it.
pub const GENERATION_LABEL: &str = "com.shoal.chaos.generation";

/// How long a write may take before its outcome counts as unknown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The run's clock and its shared records.
pub struct Recorder {
    pub start: Instant,
    pub ops: Mutex<Vec<Op>>,
    /// The program every task runs.
    pub workload: PathBuf,
    /// The last generation a write used.
    pub generations: AtomicU64,
    /// Services published through the mesh, and on which port.
    pub published: std::collections::BTreeMap<String, u16>,
    /// Services on overlay networks, and on which.
    pub networks: std::collections::BTreeMap<String, Vec<String>>,
}

impl Recorder {
    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }
}

/// Managers a client may talk to, kept current by the runner as nodes
/// stop, pause and come back.
pub type LiveManagers = Arc<Mutex<Vec<(String, PathBuf)>>>;

pub fn service_spec(
    workload: &Path,
    name: &str,
    replicas: u64,
    generation: u64,
    publish: Option<u16>,
    networks: &[String],
) -> Value {
    let mut spec = json!({
        "Name": name,
        "Labels": { GENERATION_LABEL: generation.to_string() },
        "TaskTemplate": {
            "Driver": "process",
            "ContainerSpec": { "Image": workload.display().to_string(), "Args": [] },
            "RestartPolicy": { "Condition": "any", "Delay": 0 },
        },
        "Mode": { "Replicated": { "Replicas": replicas } },
    });
    if let Some(port) = publish {
        // HTTP on 80 and a UDP echo on 81, published on the same number
        // (the `flood` action sends to both).
        spec["TaskTemplate"]["ContainerSpec"]["Args"] = json!(["--port", "80", "--udp-port", "81"]);
        spec["EndpointSpec"] = json!({ "Ports": [
            { "TargetPort": 80, "PublishedPort": port },
            { "Protocol": "udp", "TargetPort": 81, "PublishedPort": port },
        ] });
    }
    if !networks.is_empty() {
        spec["TaskTemplate"]["Networks"] = networks
            .iter()
            .map(|n| json!({ "Target": n }))
            .collect::<Value>();
        // The harness's overlay clients only wait; everything else answers
        // on the same ports as a published service, through its VIP.
        if name != crate::requests::CLIENT {
            spec["TaskTemplate"]["ContainerSpec"]["Args"] =
                json!(["--port", "80", "--udp-port", "81"]);
        }
    }
    if publish.is_some() || !networks.is_empty() {
        // Slot by slot, no monitor wait: a roll of a few replicas is over in
        // seconds, while the others (and the drain) keep the port answering.
        spec["UpdateConfig"] = json!({ "Parallelism": 1, "Monitor": 0 });
    }
    spec
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
/// update, roll (an update that also changes the tasks' environment) or remove; `replicas` is what the service is to have (None for a
/// remove). Every create or update carries a generation no other write of
/// the run uses, so the service's final value names the write it came from.
pub fn write(
    rec: &Recorder,
    client: &str,
    kind: &str,
    service: &str,
    replicas: Option<u64>,
    via: (&str, &Path),
    timeout: Duration,
) -> Op {
    let value = match replicas {
        None => ServiceValue::Absent,
        Some(replicas) => ServiceValue::Present {
            replicas,
            generation: rec.generations.fetch_add(1, Ordering::Relaxed) + 1,
        },
    };
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
            &service_spec(
                &rec.workload,
                service,
                *replicas,
                *generation,
                rec.published.get(service).copied(),
                rec.networks.get(service).map_or(&[][..], |n| &n[..]),
            ),
            timeout,
        ),
        (
            ServiceValue::Present {
                replicas,
                generation,
            },
            _,
        ) => {
            let mut spec = service_spec(
                &rec.workload,
                service,
                *replicas,
                *generation,
                rec.published.get(service).copied(),
                rec.networks.get(service).map_or(&[][..], |n| &n[..]),
            );
            if kind == "roll" {
                // A changed task template: the updater replaces every task.
                spec["TaskTemplate"]["ContainerSpec"]["Env"] =
                    json!([format!("SHOAL_CHAOS_GENERATION={generation}")]);
            }
            api::post(
                via.1,
                &format!("/services/{service}/update"),
                &spec,
                timeout,
            )
        }
    };
    let (outcome, status, error) = match &result {
        Ok(_) => (Outcome::Ok, None, String::new()),
        Err(e) => (
            if e.refused() {
                Outcome::Refused
            } else {
                Outcome::Unknown
            },
            e.status(),
            e.to_string(),
        ),
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
        status,
        error,
    };
    if let Ok(mut ops) = rec.ops.lock() {
        ops.push(op.clone());
    }
    op
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
    // The replicas this client believes each service has (None: absent);
    // answers correct it.
    let mut believed: BTreeMap<String, Option<u64>> = (1..=services)
        .map(|i| (format!("chaos-load-{i}"), None))
        .collect();
    let names: Vec<String> = believed.keys().cloned().collect();
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let managers = live.lock().map(|l| l.clone()).unwrap_or_default();
        if !managers.is_empty() {
            let (via_name, via_path) = &managers[rng.random_range(0..managers.len())];
            let name = &names[rng.random_range(0..names.len())];
            let (kind, replicas) = match believed[name] {
                None => ("create", Some(rng.random_range(0..=2))),
                Some(replicas) => match rng.random_range(0..20) {
                    0 => ("remove", None),
                    1..=3 => ("update", Some(replicas)),
                    _ => ("scale", Some((replicas + rng.random_range(1..=2)) % 3)),
                },
            };
            let op = write(
                &rec,
                "load",
                kind,
                name,
                replicas,
                (via_name, via_path),
                WRITE_TIMEOUT,
            );
            match (op.outcome, op.status) {
                (Outcome::Ok | Outcome::Unknown, _) => {
                    believed.insert(name.clone(), replicas);
                }
                (Outcome::Refused, Some(409)) => {
                    believed.insert(name.clone(), Some(0));
                }
                (Outcome::Refused, Some(404)) => {
                    believed.insert(name.clone(), None);
                }
                (Outcome::Refused, _) => {}
            }
        }
        if let Some(rest) = gap.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
