//! One TaskActor per task assigned to this node: drives the driver through
//! the task's life and reports each observed state to the agent.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::driver::{Driver, Exit, Launch, Lifecycle};
use crate::session::AgentMsg;
use shoal_core::model::{Health, Task, TaskState, TaskStatus};

/// A status of this node's, stamped with its clock.
fn status(state: TaskState, message: impl Into<String>) -> TaskStatus {
    TaskStatus::new(state, message, crate::world::now())
}

#[derive(Clone)]
pub struct TaskActor;

#[derive(Clone)]
pub struct TaskArgs {
    pub task: Task,
    pub node_id: String,
    pub driver: Option<Arc<dyn Driver>>,
    pub agent: ActorRef<AgentMsg>,
    /// The secret and config files of the task, held in memory only; or
    /// which one this node was not given.
    pub files: Result<Vec<shoal_core::model::secret::TaskFile>, String>,
    pub metrics: Arc<crate::metrics::ActorMetrics>,
}

pub enum TaskMsg {
    Run,
    Stop,
    Exited(Option<Exit>),
    /// The health check's verdict changed.
    Health(Health),
}

pub struct TaskRun {
    args: TaskArgs,
    stopping: bool,
    last: TaskState,
    pid: Option<u32>,
    health: Option<Health>,
    /// Stopped because its health check failed: it ends FAILED, and the
    /// restart policy replaces it.
    unhealthy: bool,
    /// When this actor started: a task's start latency runs to RUNNING.
    started: tokio::time::Instant,
}

impl TaskRun {
    fn report(&mut self, status: TaskStatus) {
        let metrics = &self.args.metrics;
        if status.state == TaskState::Running && self.last < TaskState::Running {
            let took = crate::metrics::secs(self.started.elapsed());
            metrics.task_start_latency.observe(took);
        }
        if matches!(status.state, TaskState::Failed | TaskState::Rejected)
            && self.last < TaskState::Complete
        {
            metrics.tasks_failed.inc();
        }
        self.last = status.state;
        let _ = self
            .args
            .agent
            .send_message(AgentMsg::Status(self.args.task.id.clone(), status));
    }

    /// RUNNING, with the health it has so far if it has a health check.
    fn running(&mut self, pid: Option<u32>) {
        self.pid = pid;
        let has_check = self
            .args
            .task
            .spec
            .healthcheck
            .as_ref()
            .is_some_and(|h| !h.is_disabled());
        if has_check && self.health.is_none() {
            self.health = Some(Health::Starting);
        }
        let mut s = status(TaskState::Running, "started");
        s.pid = pid;
        s.health = self.health;
        self.report(s);
    }

    fn watch(&self, myself: &ActorRef<TaskMsg>, driver: &Arc<dyn Driver>) {
        let wait = driver.wait(&self.args.task.id);
        let me = myself.clone();
        tokio::spawn(async move {
            let exit = wait.await;
            let _ = me.send_message(TaskMsg::Exited(exit));
        });
        // The driver runs the health check; its verdicts come in as messages.
        if let Some(mut health) = driver.health(&self.args.task.id) {
            let me = myself.clone();
            tokio::spawn(async move {
                loop {
                    let h = *health.borrow_and_update();
                    if me.send_message(TaskMsg::Health(h)).is_err() {
                        return;
                    }
                    if health.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    fn finish(&mut self, myself: &ActorRef<TaskMsg>, status: TaskStatus) {
        self.report(status);
        if let Some(d) = &self.args.driver {
            d.remove(&self.args.task.id);
        }
        myself.stop(Some("task finished".into()));
    }
}

impl Actor for TaskActor {
    type Msg = TaskMsg;
    type State = TaskRun;
    type Arguments = TaskArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TaskMsg>,
        args: TaskArgs,
    ) -> Result<TaskRun, ActorProcessingErr> {
        let last = args.task.status.state;
        let _ = myself.send_message(TaskMsg::Run);
        Ok(TaskRun {
            args,
            stopping: false,
            last,
            pid: None,
            health: None,
            unhealthy: false,
            started: tokio::time::Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TaskMsg>,
        msg: TaskMsg,
        st: &mut TaskRun,
    ) -> Result<(), ActorProcessingErr> {
        let task = st.args.task.clone();
        let Some(driver) = st.args.driver.clone() else {
            let mut s = status(TaskState::Rejected, "rejected");
            s.err = Some(format!(
                "driver {} is not available on this node",
                task.spec.driver
            ));
            st.finish(&myself, s);
            return Ok(());
        };
        match msg {
            TaskMsg::Run => match driver.inspect(&task.id) {
                Some(Lifecycle::Running { pid }) => {
                    st.pid = pid;
                    if st.last < TaskState::Running {
                        st.running(pid);
                    }
                    st.watch(&myself, &driver);
                }
                Some(Lifecycle::Exited(exit)) => {
                    let _ = myself.send_message(TaskMsg::Exited(Some(exit)));
                }
                // A start still under way (this actor is a restarted
                // incarnation): look again once it has ended, instead of
                // taking the task for lost.
                None if driver.starting(&task.id) => {
                    myself.send_after(Duration::from_millis(100), || TaskMsg::Run);
                }
                None if task.status.state >= TaskState::Starting => {
                    let mut s = status(TaskState::Failed, "failed");
                    s.err = Some("task process is gone (its node restarted)".into());
                    st.finish(&myself, s);
                }
                None if task.desired_state > TaskState::Running => {
                    st.finish(&myself, status(TaskState::Shutdown, "shutdown"));
                }
                None => {
                    st.report(status(TaskState::Preparing, "preparing"));
                    st.report(status(TaskState::Starting, "starting"));
                    let files = match &st.args.files {
                        Ok(files) => files.clone(),
                        Err(missing) => {
                            let mut s = status(TaskState::Failed, "failed");
                            s.err = Some(missing.clone());
                            st.finish(&myself, s);
                            return Ok(());
                        }
                    };
                    let launch = Launch {
                        task: task.clone(),
                        node_id: st.args.node_id.clone(),
                        files,
                    };
                    match driver.start(launch).await {
                        Ok(Lifecycle::Running { pid }) => {
                            st.running(pid);
                            st.watch(&myself, &driver);
                        }
                        Ok(Lifecycle::Exited(exit)) => {
                            let _ = myself.send_message(TaskMsg::Exited(Some(exit)));
                        }
                        Err(e) => {
                            st.args.metrics.driver_error("start");
                            let state = if e.is_rejection() {
                                TaskState::Rejected
                            } else {
                                TaskState::Failed
                            };
                            let mut s = TaskStatus::new(state, state.as_str(), crate::world::now());
                            s.err = Some(e.to_string());
                            s.node_fault = e.is_node_fault();
                            st.finish(&myself, s);
                        }
                    }
                }
            },
            TaskMsg::Stop => {
                if !st.stopping {
                    st.stopping = true;
                    let grace = Duration::from_nanos(task.spec.stop_grace_period_ns);
                    let stop = driver.stop(&task.id, grace);
                    tokio::spawn(stop);
                }
            }
            TaskMsg::Health(h) => {
                if st.stopping || st.health == Some(h) {
                    return Ok(());
                }
                st.health = Some(h);
                if st.last == TaskState::Running {
                    st.running(st.pid);
                }
                if h == Health::Unhealthy {
                    // As docker's agent does: an unhealthy task is failed,
                    // and the restart policy decides what comes next.
                    st.unhealthy = true;
                    st.stopping = true;
                    let grace = Duration::from_nanos(task.spec.stop_grace_period_ns);
                    tokio::spawn(driver.stop(&task.id, grace));
                }
            }
            TaskMsg::Exited(exit) => {
                let status = match exit {
                    _ if st.unhealthy => {
                        let mut s = status(TaskState::Failed, "failed");
                        s.exit_code = exit.map(Exit::code);
                        s.err = Some("task: unhealthy container".into());
                        s.health = Some(Health::Unhealthy);
                        s
                    }
                    _ if st.stopping => status(TaskState::Shutdown, "shutdown"),
                    Some(Exit::Code(0)) => {
                        let mut s = status(TaskState::Complete, "finished");
                        s.exit_code = Some(0);
                        s
                    }
                    Some(Exit::OomKilled) => {
                        let mut s = status(TaskState::Failed, "failed");
                        s.exit_code = Some(137);
                        s.err = Some("task: non-zero exit (137): OOMKilled".into());
                        s
                    }
                    Some(e) => {
                        let mut s = status(TaskState::Failed, "failed");
                        s.exit_code = Some(e.code());
                        s.err = Some(format!("task: non-zero exit ({})", e.code()));
                        s
                    }
                    None => {
                        let mut s = status(TaskState::Failed, "failed");
                        s.err = Some("task process is gone".into());
                        s
                    }
                };
                st.finish(&myself, status);
            }
        }
        Ok(())
    }
}
