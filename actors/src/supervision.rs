//! OTP-style supervision on top of ractor's supervision events.
//!
//! ractor tells a parent when a child starts, stops or fails, but restarts
//! nothing. `Children` is the restart logic any actor can embed (one_for_one,
//! restart intensity within a period, escalation by failing itself);
//! `Supervisor` is an actor made of nothing else, for the static parts of the
//! tree. Every supervised actor is entered in the node's `Directory` under its
//! name, which is how peers and the chaos hook find the current incarnation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::RwLock;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};

/// Names of the node's supervised actors, each mapped to its live incarnation.
#[derive(Default)]
pub struct Directory {
    actors: RwLock<HashMap<String, ActorCell>>,
    heals: RwLock<HashMap<String, VecDeque<Duration>>>,
    /// The node's counters and histograms, which every actor reaches
    /// through the directory it already holds.
    pub metrics: Arc<crate::metrics::ActorMetrics>,
}

impl Directory {
    pub fn new() -> Arc<Self> {
        Arc::new(Directory::default())
    }

    pub fn cell(&self, name: &str) -> Option<ActorCell> {
        self.actors
            .read()
            .get(name)
            .filter(|c| c.get_status() == ActorStatus::Running)
            .cloned()
    }

    pub fn get<M: ractor::Message>(&self, name: &str) -> Option<ActorRef<M>> {
        self.cell(name).map(ActorRef::from)
    }

    pub fn names(&self) -> Vec<(String, ActorStatus)> {
        let mut v: Vec<_> = self
            .actors
            .read()
            .iter()
            .map(|(n, c)| (n.clone(), c.get_status()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn insert(&self, name: &str, cell: ActorCell) {
        self.actors.write().insert(name.to_string(), cell);
    }

    fn remove_if(&self, name: &str, id: ActorId) {
        let mut actors = self.actors.write();
        if actors.get(name).map(|c| c.get_id()) == Some(id) {
            actors.remove(name);
        }
    }

    fn record_heal(&self, name: &str, took: Duration) {
        let mut heals = self.heals.write();
        let q = heals.entry(name.to_string()).or_default();
        if q.len() == 32 {
            q.pop_front();
        }
        q.push_back(took);
    }

    /// Recent restart durations of `name` (failure noticed -> new incarnation running).
    pub fn heal_times(&self, name: &str) -> Vec<Duration> {
        self.heals
            .read()
            .get(name)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// Whether a child that stops on its own is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whatever the reason it stopped.
    Permanent,
    /// Restarted only when it failed or was killed.
    Transient,
}

/// How to (re)start one child: `start` receives the supervisor to link to.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: String,
    pub restart: Restart,
    pub start: Arc<dyn Fn(ActorCell) -> SpawnFuture + Send + Sync>,
}

impl ChildSpec {
    /// A child made by spawning `actor` with a fresh copy of `args` each time.
    pub fn new<A>(name: impl Into<String>, restart: Restart, actor: A, args: A::Arguments) -> Self
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        let start = Arc::new(move |sup: ActorCell| -> SpawnFuture {
            let actor = actor.clone();
            let args = args.clone();
            Box::pin(async move {
                let (r, _) = Actor::spawn_linked(None, actor, args, sup).await?;
                Ok(r.get_cell())
            })
        });
        ChildSpec {
            name: name.into(),
            restart,
            start,
        }
    }
}

/// Restart intensity: more than `max_restarts` within `period` escalates.
#[derive(Debug, Clone, Copy)]
pub struct Intensity {
    pub max_restarts: usize,
    pub period: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 20,
            period: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("child {child} restarted more than {max} times in {period:?}; escalating")]
pub struct Escalation {
    pub child: String,
    pub max: usize,
    pub period: Duration,
}

/// A supervisor's children and its restart bookkeeping.
pub struct Children {
    directory: Arc<Directory>,
    intensity: Intensity,
    specs: HashMap<String, ChildSpec>,
    running: HashMap<ActorId, String>,
    /// Children this supervisor stopped on purpose: their exit is not a failure.
    stopping: HashSet<ActorId>,
    restarts: VecDeque<Instant>,
}

impl Children {
    pub fn new(directory: Arc<Directory>, intensity: Intensity) -> Self {
        Children {
            directory,
            intensity,
            specs: HashMap::new(),
            running: HashMap::new(),
            stopping: HashSet::new(),
            restarts: VecDeque::new(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.specs.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.specs.keys()
    }

    /// Starts a child and keeps it running from now on.
    pub async fn start(&mut self, supervisor: &ActorCell, spec: ChildSpec) -> Result<(), SpawnErr> {
        let cell = (spec.start)(supervisor.clone()).await?;
        self.directory.insert(&spec.name, cell.clone());
        self.running.insert(cell.get_id(), spec.name.clone());
        self.specs.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// Stops a child for good.
    pub fn stop(&mut self, name: &str) {
        if self.specs.remove(name).is_none() {
            return;
        }
        let ids: Vec<ActorId> = self
            .running
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.running.remove(&id);
            if let Some(cell) = self.directory.cell(name).filter(|c| c.get_id() == id) {
                self.stopping.insert(id);
                cell.stop(Some("stopped by supervisor".into()));
            }
            self.directory.remove_if(name, id);
        }
    }

    pub fn stop_all(&mut self) {
        let names: Vec<String> = self.specs.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
    }

    /// Reacts to a supervision event; `Err` means the supervisor must fail
    /// itself so that its own parent takes over.
    pub async fn handle_event(
        &mut self,
        supervisor: &ActorCell,
        event: SupervisionEvent,
    ) -> Result<(), Escalation> {
        let noticed = Instant::now();
        let (cell, abnormal, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let why = reason.unwrap_or_default();
                let abnormal = why == "killed";
                (cell, abnormal, why)
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if self.stopping.remove(&id) {
            return Ok(());
        }
        let Some(name) = self.running.remove(&id) else {
            return Ok(());
        };
        self.directory.remove_if(&name, id);
        let Some(spec) = self.specs.get(&name).cloned() else {
            return Ok(());
        };
        if !abnormal && spec.restart == Restart::Transient {
            self.specs.remove(&name);
            return Ok(());
        }
        tracing::warn!(child = %name, reason = %why, "child stopped; restarting");
        loop {
            self.note_restart(&name)?;
            self.directory.metrics.restart(&name);
            match (spec.start)(supervisor.clone()).await {
                Ok(new) => {
                    self.directory.insert(&name, new.clone());
                    self.running.insert(new.get_id(), name.clone());
                    self.directory.record_heal(&name, noticed.elapsed());
                    return Ok(());
                }
                Err(e) => tracing::error!(child = %name, error = %e, "restart failed"),
            }
        }
    }

    fn note_restart(&mut self, name: &str) -> Result<(), Escalation> {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.intensity.period)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.intensity.max_restarts {
            return Err(Escalation {
                child: name.to_string(),
                max: self.intensity.max_restarts,
                period: self.intensity.period,
            });
        }
        self.restarts.push_back(now);
        Ok(())
    }
}

/// A supervisor actor: starts its children in order and keeps them running.
#[derive(Clone)]
pub struct Supervisor;

#[derive(Clone)]
pub struct SupervisorArgs {
    pub directory: Arc<Directory>,
    pub intensity: Intensity,
    pub children: Vec<ChildSpec>,
}

pub enum SupervisorMsg {
    StartChild(ChildSpec, Option<RpcReplyPort<Result<(), String>>>),
    StopChild(String),
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = Children;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Children, ActorProcessingErr> {
        let mut children = Children::new(args.directory, args.intensity);
        for spec in args.children {
            children.start(&myself.get_cell(), spec).await?;
        }
        Ok(children)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        children: &mut Children,
    ) -> Result<(), ActorProcessingErr> {
        children.stop_all();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        children: &mut Children,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::StartChild(spec, reply) => {
                let result = if children.contains(&spec.name) {
                    Ok(())
                } else {
                    children
                        .start(&myself.get_cell(), spec)
                        .await
                        .map_err(|e| e.to_string())
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            SupervisorMsg::StopChild(name) => children.stop(&name),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        children: &mut Children,
    ) -> Result<(), ActorProcessingErr> {
        children.handle_event(&myself.get_cell(), event).await?;
        Ok(())
    }
}
