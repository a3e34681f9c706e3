//! A driver that runs nothing: it records every call, and a test decides
//! how each task ends (by its image, or by a call such as `fail`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::driver::{BoxFuture, Driver, DriverError, Exit, Launch, Lifecycle};
use shoal_core::model::DriverInfo;

/// The driver name a harness's services use.
pub const FAKE_DRIVER: &str = "fake";

/// What a task's image makes the fake driver do. An image not listed runs
/// until it is stopped or a test ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until stopped or ended by the test.
    Run,
    /// Exits with `code` after `after` (on the harness's clock).
    ExitAfter { after: Duration, code: i32 },
    /// `start` fails: the task is REJECTED.
    Reject(String),
    /// `start` fails for a node fault (as a sandbox the node cannot make):
    /// the task is FAILED and its slot backs off.
    NodeFault(String),
    /// `start` never returns.
    Hang,
    /// `start` takes `after` (on the harness's clock), then the task runs;
    /// meanwhile `starting` says so.
    StartAfter(Duration),
}

/// One call a driver received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverCall {
    Start(String),
    Stop(String),
    Remove(String),
}

struct Run {
    exit: watch::Sender<Option<Exit>>,
}

impl Run {
    fn lifecycle(&self) -> Lifecycle {
        match *self.exit.borrow() {
            None => Lifecycle::Running { pid: None },
            Some(e) => Lifecycle::Exited(e),
        }
    }

    /// Ends the process with `exit` unless it has already ended.
    fn end(&self, exit: Exit) -> bool {
        self.exit.send_if_modified(|e| {
            let was = e.is_none();
            *e = e.or(Some(exit));
            was
        })
    }
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<String, Run>,
    calls: Vec<DriverCall>,
    /// The secret and config files each started task was given: (path, bytes).
    files: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    /// Tasks whose `StartAfter` start is under way.
    starting: BTreeSet<String>,
}

#[derive(Default)]
pub struct FakeDriver {
    behaviours: Mutex<BTreeMap<String, Behaviour>>,
    inner: Arc<Mutex<Inner>>,
}

impl FakeDriver {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeDriver::default())
    }

    /// From now on, tasks of `image` behave as `b` when they start.
    pub fn behave(&self, image: &str, b: Behaviour) {
        self.behaviours.lock().insert(image.to_string(), b);
    }

    /// Every call so far, oldest first.
    /// The files task `task_id` was started with: (path, bytes).
    pub fn files(&self, task_id: &str) -> Vec<(String, Vec<u8>)> {
        self.inner
            .lock()
            .files
            .get(task_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every task this driver was handed files for.
    pub fn tasks_with_files(&self) -> Vec<String> {
        self.inner.lock().files.keys().cloned().collect()
    }

    pub fn calls(&self) -> Vec<DriverCall> {
        self.inner.lock().calls.clone()
    }

    /// The tasks whose process is running now.
    pub fn running(&self) -> BTreeSet<String> {
        self.inner
            .lock()
            .runs
            .iter()
            .filter(|(_, r)| r.exit.borrow().is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends a running task's process with `exit`; false if it was not running here.
    pub fn end(&self, task_id: &str, exit: Exit) -> bool {
        self.inner
            .lock()
            .runs
            .get(task_id)
            .is_some_and(|r| r.end(exit))
    }
}

impl Driver for FakeDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: FAKE_DRIVER.into(),
            version: "1".into(),
        }
    }

    fn retain(&self, keep: &std::collections::HashSet<String>) {
        self.inner.lock().runs.retain(|id, r| {
            let kept = keep.contains(id);
            if !kept {
                r.end(Exit::Signal(9));
            }
            kept
        });
    }

    fn start(&self, launch: Launch) -> BoxFuture<Result<Lifecycle, DriverError>> {
        let id = launch.task.id.clone();
        let behaviour = self
            .behaviours
            .lock()
            .get(&launch.task.spec.image)
            .cloned()
            .unwrap_or(Behaviour::Run);
        let mut inner = self.inner.lock();
        inner.calls.push(DriverCall::Start(id.clone()));
        if !launch.files.is_empty() {
            let files = launch
                .files
                .iter()
                .map(|f| (f.path.clone(), f.data.to_vec()))
                .collect();
            inner.files.insert(id.clone(), files);
        }
        if let Some(r) = inner.runs.get(&id) {
            let known = r.lifecycle();
            return Box::pin(async move { Ok(known) });
        }
        if inner.starting.contains(&id) {
            // As the process driver answers a second start.
            return Box::pin(async move {
                Err(DriverError::Failed(format!(
                    "task {id} is already starting"
                )))
            });
        }
        match behaviour {
            Behaviour::Reject(why) => Box::pin(async move { Err(DriverError::Rejected(why)) }),
            Behaviour::NodeFault(why) => Box::pin(async move {
                Err(DriverError::node_fault_by(
                    "cannot set up the task's network",
                    std::io::Error::other(why),
                ))
            }),
            Behaviour::Hang => Box::pin(std::future::pending()),
            Behaviour::StartAfter(after) => {
                inner.starting.insert(id.clone());
                // The start goes on whether or not its caller waits (as
                // the process driver's starter does).
                let shared = self.inner.clone();
                let (done, started) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let (tx, _) = watch::channel(None);
                    let mut inner = shared.lock();
                    inner.starting.remove(&id);
                    inner.runs.insert(id, Run { exit: tx });
                    let _ = done.send(());
                });
                Box::pin(async move {
                    started
                        .await
                        .map(|()| Lifecycle::Running { pid: None })
                        .map_err(|_| DriverError::Failed("the start was dropped".into()))
                })
            }
            Behaviour::Run | Behaviour::ExitAfter { .. } => {
                let (tx, _) = watch::channel(None);
                if let Behaviour::ExitAfter { after, code } = behaviour {
                    let run = Run { exit: tx.clone() };
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        run.end(Exit::Code(code));
                    });
                }
                inner.runs.insert(id, Run { exit: tx });
                Box::pin(async { Ok(Lifecycle::Running { pid: None }) })
            }
        }
    }

    fn inspect(&self, task_id: &str) -> Option<Lifecycle> {
        self.inner.lock().runs.get(task_id).map(Run::lifecycle)
    }

    fn starting(&self, task_id: &str) -> bool {
        self.inner.lock().starting.contains(task_id)
    }

    fn wait(&self, task_id: &str) -> BoxFuture<Option<Exit>> {
        let rx = self
            .inner
            .lock()
            .runs
            .get(task_id)
            .map(|r| r.exit.subscribe());
        Box::pin(async move {
            let mut rx = rx?;
            let exit = rx.wait_for(|e| e.is_some()).await.ok()?;
            *exit
        })
    }

    fn stop(&self, task_id: &str, _grace: Duration) -> BoxFuture<()> {
        let mut inner = self.inner.lock();
        inner.calls.push(DriverCall::Stop(task_id.to_string()));
        if let Some(r) = inner.runs.get(task_id) {
            r.end(Exit::Signal(15));
        }
        Box::pin(async {})
    }

    fn remove(&self, task_id: &str) {
        let mut inner = self.inner.lock();
        inner.calls.push(DriverCall::Remove(task_id.to_string()));
        inner.runs.remove(task_id);
    }
}
