//! How the dashboard learns what changed, through the control socket
//! alone, without reading every object every second:
//!
//! * `GET /events` (the swarm's events as the manager applies them): a
//!   service or node event re-reads that one object (and a service's
//!   tasks); a removal drops it; every event goes to the page's list.
//! * Each second (each `FAST_TICK` while a service is not converged or
//!   rolls out), `GET /info`: the Raft term, leader and applied index. A
//!   new leader or term re-reads the nodes (whose leader flag moved). If
//!   the applied index has not moved, nothing in the swarm changed and
//!   nothing more is read. If it moved (tasks have no docker event, so this
//!   is how their changes show), one `GET /services?status=true` gives every
//!   service's running and desired counts, and only the services whose
//!   counts or version changed, that are not converged, or that are rolling
//!   out have their tasks read again (and a rollout's progress: its running
//!   tasks of the current spec).
//! * At most every `FULL_EVERY`, and only if the applied index moved since
//!   the last such read, one `GET /tasks`: a task replaced between two
//!   ticks leaves the counts as they were, and this is what shows it.
//!
//! After each change the model is rendered once into the `watch` the page
//! streams follow; the timeline takes a sample each second.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::model::{rolling, Model};
use super::timeline::{Sample, Timeline};
use crate::client::{enc, Client};

/// How often the Raft status is read (and the timeline sampled) while
/// every service is converged.
pub const TICK: Duration = Duration::from_secs(1);
/// How often while a service is not converged or rolls out: its tasks
/// change state one by one, and each should show soon after it does.
pub const FAST_TICK: Duration = Duration::from_millis(250);
/// The longest a task replaced between two ticks may stay unseen.
pub const FULL_EVERY: Duration = Duration::from_secs(10);
/// Events waiting for the feed: room for the manager's whole journal (its
/// last 1,024, replayed by `since`) and a burst more. A feed that falls
/// further behind ends the stream and reads everything again.
const EVENT_QUEUE: usize = 4_096;

/// What the feed publishes: the page's JSON snapshot, and the timeline.
pub struct Published {
    pub snapshot: watch::Sender<Arc<str>>,
    pub timeline: Mutex<Timeline>,
}

impl Published {
    pub fn new() -> Arc<Published> {
        Arc::new(Published {
            snapshot: watch::channel(Arc::from("{}")).0,
            timeline: Mutex::new(Timeline::default()),
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn filters(v: Value) -> String {
    enc(&v.to_string())
}

struct Feed {
    client: Client,
    model: Model,
    published: Arc<Published>,
    /// The model version last rendered.
    rendered: u64,
    /// The applied index at the last full task read, and when it was.
    full_at: (u64, Instant),
}

impl Feed {
    fn publish(&mut self) {
        if self.model.version == self.rendered {
            return;
        }
        self.rendered = self.model.version;
        match serde_json::to_string(&self.model.view()) {
            Ok(text) => {
                self.published.snapshot.send_replace(Arc::from(text));
            }
            Err(e) => tracing::warn!(error = %e, "cannot render the dashboard's snapshot"),
        }
    }

    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        match self.client.get(path).await? {
            Value::Array(items) => Ok(items),
            other => anyhow::bail!("unexpected answer to {path}: {other}"),
        }
    }

    /// Everything, once: at the start and after the events stream broke.
    async fn read_all(&mut self) -> anyhow::Result<()> {
        self.read_raft().await?;
        let nodes = self.list("/nodes").await?;
        self.model.set_nodes(&nodes);
        let services = self.list("/services?status=true").await?;
        self.model.set_services(&services);
        let tasks = self.list("/tasks").await?;
        self.model.set_all_tasks(&tasks);
        self.full_at = (self.model.applied, Instant::now());
        let rolling: Vec<String> = self
            .model
            .services()
            .filter(|s| rolling(s.update.as_ref()))
            .map(|s| s.id.clone())
            .collect();
        for id in rolling {
            self.read_progress(&id).await?;
        }
        Ok(())
    }

    /// `GET /info`'s Raft status; the nodes again if the leadership moved.
    /// Returns whether the applied index moved.
    async fn read_raft(&mut self) -> anyhow::Result<bool> {
        let info = self.client.get("/info").await?;
        let raft = info
            .pointer("/Swarm/RaftStatus")
            .cloned()
            .unwrap_or(Value::Null);
        if raft.is_null() {
            anyhow::bail!(
                "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
            );
        }
        let n = |k: &str| raft.get(k).and_then(Value::as_u64).unwrap_or(0);
        let before = self.model.applied;
        if self.model.set_raft(n("Term"), n("LeaderID"), n("Applied")) {
            let nodes = self.list("/nodes").await?;
            self.model.set_nodes(&nodes);
        }
        Ok(self.model.applied != before)
    }

    async fn read_service(&mut self, id: &str) -> anyhow::Result<()> {
        let path = format!(
            "/services?status=true&filters={}",
            filters(json!({ "id": [id] }))
        );
        let found = self.list(&path).await?;
        match found
            .iter()
            .find(|s| s.get("ID").and_then(Value::as_str) == Some(id))
        {
            Some(s) => self.model.set_service(s),
            None => {
                self.model.remove_service(id);
                return Ok(());
            }
        }
        self.read_tasks(id).await
    }

    async fn read_tasks(&mut self, id: &str) -> anyhow::Result<()> {
        let path = format!("/tasks?filters={}", filters(json!({ "service": [id] })));
        match self.list(&path).await {
            Ok(tasks) => self.model.set_service_tasks(id, &tasks),
            // Removed since: its event says so.
            Err(e) if crate::client::DaemonError::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        if rolling(self.model.service(id).and_then(|s| s.update.as_ref())) {
            self.read_progress(id).await?;
        }
        Ok(())
    }

    /// A rollout's progress: running tasks of the service's current spec.
    async fn read_progress(&mut self, id: &str) -> anyhow::Result<()> {
        let path = format!(
            "/tasks?filters={}",
            filters(
                json!({ "service": [id], "_up-to-date": ["true"], "desired-state": ["running"] })
            )
        );
        let tasks = self.list(&path).await?;
        let done = tasks
            .iter()
            .filter(|t| t.pointer("/Status/State").and_then(Value::as_str) == Some("running"))
            .count() as u64;
        self.model.set_progress(id, done);
        Ok(())
    }

    async fn read_node(&mut self, id: &str) -> anyhow::Result<()> {
        match self.client.get(&format!("/nodes/{}", enc(id))).await {
            Ok(n) => self.model.set_node(&n),
            Err(e) if crate::client::DaemonError::is_not_found(&e) => self.model.remove_node(id),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A batch of events: each object they name read once.
    async fn on_events(&mut self, events: Vec<Value>) -> anyhow::Result<()> {
        let (mut services, mut nodes) = (BTreeSet::new(), BTreeSet::new());
        for e in &events {
            self.model.push_event(e);
            let kind = e.get("Type").and_then(Value::as_str).unwrap_or("");
            let action = e.get("Action").and_then(Value::as_str).unwrap_or("");
            let Some(id) = e.pointer("/Actor/ID").and_then(Value::as_str) else {
                continue;
            };
            match (kind, action) {
                ("service", "remove") => {
                    services.remove(id);
                    self.model.remove_service(id);
                }
                ("service", _) => {
                    services.insert(id.to_string());
                }
                ("node", "remove") => {
                    nodes.remove(id);
                    self.model.remove_node(id);
                }
                ("node", _) => {
                    nodes.insert(id.to_string());
                }
                _ => {}
            }
        }
        // Many events of one object (a scale of a big service) read it once.
        for id in services {
            self.read_service(&id).await?;
        }
        for id in nodes {
            self.read_node(&id).await?;
        }
        Ok(())
    }

    /// Once a second: the Raft status, then what it says may have changed.
    async fn on_tick(&mut self) -> anyhow::Result<()> {
        let moved = self.read_raft().await?;
        if moved {
            let before: Vec<(String, u64, u64, u64, Option<String>)> = self
                .model
                .services()
                .map(|s| {
                    let update = s.update.as_ref().map(|u| u.state.clone());
                    (s.id.clone(), s.running, s.desired, s.version, update)
                })
                .collect();
            let services = self.list("/services?status=true").await?;
            self.model.set_services(&services);
            let stale: Vec<String> = self
                .model
                .services()
                .filter(|s| {
                    let update = s.update.as_ref().map(|u| u.state.clone());
                    let same = before.iter().any(|b| {
                        b.0 == s.id
                            && (b.1, b.2, b.3) == (s.running, s.desired, s.version)
                            && b.4 == update
                    });
                    !same || s.running != s.desired || rolling(s.update.as_ref())
                })
                .map(|s| s.id.clone())
                .collect();
            for id in stale {
                self.read_tasks(&id).await?;
            }
        }
        let (applied_at_full, when) = self.full_at;
        if self.model.applied != applied_at_full && when.elapsed() >= FULL_EVERY {
            let tasks = self.list("/tasks").await?;
            self.model.set_all_tasks(&tasks);
            self.full_at = (self.model.applied, Instant::now());
        }
        let sample = Sample::of(&self.model, now_ms());
        self.published.timeline.lock().push(sample);
        Ok(())
    }
}

/// Reads the events stream into `tx` until it ends or fails.
async fn read_events(host: String, tx: mpsc::Sender<Value>) -> anyhow::Result<()> {
    let client = Client::new(&host)?;
    // The events of the timeline's window the manager still keeps, for the
    // page's list; then the live ones.
    let since =
        (chrono::Utc::now().timestamp() - super::timeline::WINDOW.as_secs() as i64).to_string();
    let path = format!("/events?since={since}");
    // `stream_lines` calls back synchronously: a full queue ends the
    // stream (the feed then reads everything again), it never grows.
    client
        .stream_lines(&path, |line| {
            if line.is_empty() {
                return Ok(());
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => tx
                    .try_send(v)
                    .map_err(|_| anyhow::anyhow!("the dashboard fell behind the events")),
                Err(e) => {
                    tracing::debug!(error = %e, "dashboard: an event that is not JSON");
                    Ok(())
                }
            }
        })
        .await
}

/// The feed: runs until the process ends. The first read's error is
/// returned (the control socket is not a manager's, say); later ones are
/// retried.
pub async fn run(
    host: String,
    published: Arc<Published>,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) {
    let mut feed = Feed {
        client: match Client::new(&host) {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
        model: Model::default(),
        published,
        rendered: u64::MAX,
        full_at: (0, Instant::now()),
    };
    let mut ready = Some(ready);
    loop {
        let (tx, mut rx) = mpsc::channel::<Value>(EVENT_QUEUE);
        let events = tokio::spawn(read_events(host.clone(), tx));
        match feed.read_all().await {
            Ok(()) => {
                feed.publish();
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            Err(e) => {
                events.abort();
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::warn!(error = %e, "dashboard: reading the swarm failed; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        let result: anyhow::Result<()> = loop {
            let unsettled = feed
                .model
                .services()
                .any(|s| s.running != s.desired || rolling(s.update.as_ref()));
            let tick = tokio::time::sleep(if unsettled { FAST_TICK } else { TICK });
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else {
                        break Err(anyhow::anyhow!("the events stream ended"));
                    };
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    if let Err(e) = feed.on_events(batch).await {
                        break Err(e);
                    }
                }
                _ = tick => {
                    if let Err(e) = feed.on_tick().await {
                        break Err(e);
                    }
                }
            }
            feed.publish();
        };
        events.abort();
        if let Err(e) = result {
            tracing::warn!(error = %e, "dashboard: lost the daemon; reading everything again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
