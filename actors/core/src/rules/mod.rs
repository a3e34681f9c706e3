//! How a command changes the state: `check` refuses it or lets it through,
//! `apply` makes every change it implies, deterministically, per aggregate
//! (`placement`, `port`, `secret`, `network`; services, nodes and tasks here).
//!
//! Pure: no IO. `store::StateMachine` persists what `apply` reports as changed.

pub mod network;
pub mod placement;
pub mod port;
pub mod secret;

use crate::command::{Command, TaskUpdate};
use crate::limits;
use crate::model::{Node, Service, TaskState};
use crate::state::{ApplyError, Change, ClusterState};

fn invalid(e: limits::LimitError) -> ApplyError {
    ApplyError::Invalid(e.0)
}

impl ClusterState {
    /// Checks `cmd` against the current state without changing anything.
    pub fn check(&self, cmd: &Command) -> Result<(), ApplyError> {
        match cmd {
            Command::InitCluster { cluster, node } => match self.cluster {
                Some(_) => Err(ApplyError::AlreadyInitialized),
                None => limits::check_cluster_spec(&cluster.spec)
                    .and_then(|()| limits::check_node(node))
                    .map_err(invalid),
            },
            Command::UpsertNode(node) => {
                // A registration racing `node rm` must not bring the node back.
                if self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.removed_nodes.contains(&node.id))
                {
                    return Err(ApplyError::NodeNotFound(node.id.clone()));
                }
                limits::check_node(node).map_err(invalid)
            }
            Command::DeleteTasks(_) | Command::UpdateTasks { .. } => Ok(()),
            Command::UpdateNode { id, labels_add, .. } => {
                let Some(node) = self.nodes.get(id) else {
                    return Err(ApplyError::NodeNotFound(id.clone()));
                };
                let mut labels = node.labels.clone();
                labels.extend(labels_add.iter().cloned());
                limits::check_labels("node labels", &labels).map_err(invalid)
            }
            Command::RemoveNode { id } => match self.nodes.contains_key(id) {
                true => Ok(()),
                false => Err(ApplyError::NodeNotFound(id.clone())),
            },
            Command::RotateJoinTokens {
                worker, manager, ..
            } => match self.cluster {
                // Tokens are sealed by the manager that rotates them: one
                // without the DEK cannot choose a token it knows.
                Some(_)
                    if [worker, manager].into_iter().flatten().any(|t| {
                        !crate::model::secret::is_sealed_text(t)
                            || t.len() > limits::MAX_SHORT_STRING
                    }) =>
                {
                    Err(ApplyError::Invalid(
                        "join tokens must be sealed under the cluster's key".into(),
                    ))
                }
                Some(_) => Ok(()),
                None => Err(ApplyError::NotInitialized),
            },
            Command::UpdateClusterSpec { spec, .. } => match self.cluster {
                Some(_) => limits::check_cluster_spec(spec).map_err(invalid),
                None => Err(ApplyError::NotInitialized),
            },
            Command::SetNodeState { node_id, .. } => match self.nodes.contains_key(node_id) {
                true => Ok(()),
                false => Err(ApplyError::NodeNotFound(node_id.clone())),
            },
            Command::SetNodeClockSkew { node_id, skew_ms } => {
                let bound = 2 * crate::clock::MAX_SKEW.num_milliseconds();
                if skew_ms.is_some_and(|s| s.abs() > bound) {
                    return Err(ApplyError::Invalid(format!(
                        "clock skew {skew_ms:?} ms out of range"
                    )));
                }
                match self.nodes.contains_key(node_id) {
                    true => Ok(()),
                    false => Err(ApplyError::NodeNotFound(node_id.clone())),
                }
            }
            Command::CreateService(svc) => {
                limits::check_service_spec(&svc.spec).map_err(invalid)?;
                self.check_refs(&svc.spec)?;
                self.check_service_networks(&svc.spec, None)?;
                crate::rules::port::check(self, &svc.spec.endpoint, None)
                    .map_err(ApplyError::Invalid)?;
                match self.service_by_name(&svc.spec.name) {
                    Some(_) => Err(ApplyError::ServiceNameConflict(svc.spec.name.clone())),
                    None => Ok(()),
                }
            }
            Command::UpdateService {
                service,
                spec,
                expected_version,
                ..
            } => {
                limits::check_service_spec(spec).map_err(invalid)?;
                self.check_refs(spec)?;
                let Some(svc) = self.find_service(service) else {
                    return Err(ApplyError::ServiceNotFound(service.clone()));
                };
                if expected_version.is_some_and(|v| v != svc.version) {
                    return Err(ApplyError::OutOfSequence(svc.spec.name.clone()));
                }
                self.check_service_networks(spec, Some(svc))?;
                crate::rules::port::check(self, &spec.endpoint, Some(&svc.id))
                    .map_err(ApplyError::Invalid)?;
                match self.service_by_name(&spec.name) {
                    Some(other) if other.id != svc.id => {
                        Err(ApplyError::ServiceNameConflict(spec.name.clone()))
                    }
                    _ => Ok(()),
                }
            }
            Command::RollbackService {
                service,
                expected_version,
                message,
                ..
            } => {
                limits::check_message(message).map_err(invalid)?;
                let Some(svc) = self.find_service(service) else {
                    return Err(ApplyError::ServiceNotFound(service.clone()));
                };
                if expected_version.is_some_and(|v| v != svc.version) {
                    return Err(ApplyError::OutOfSequence(svc.spec.name.clone()));
                }
                match &svc.previous_spec {
                    None => Err(ApplyError::NoPreviousSpec(svc.id.clone())),
                    Some(prev) => match self.service_by_name(&prev.name) {
                        Some(other) if other.id != svc.id => {
                            Err(ApplyError::ServiceNameConflict(prev.name.clone()))
                        }
                        _ => Ok(()),
                    },
                }
            }
            Command::UpdateProgress {
                service_id,
                expected_version,
                status,
                ..
            } => {
                if let Some(st) = status {
                    limits::check_message(&st.message).map_err(invalid)?;
                }
                match self.services.get(service_id) {
                    None => Err(ApplyError::ServiceNotFound(service_id.clone())),
                    Some(svc) if svc.version != *expected_version => {
                        Err(ApplyError::OutOfSequence(svc.spec.name.clone()))
                    }
                    Some(_) => Ok(()),
                }
            }
            Command::RemoveService { service, .. } => match self.find_service(service) {
                Some(_) => Ok(()),
                None => Err(ApplyError::ServiceNotFound(service.clone())),
            },
            Command::CreateTasks(tasks) => {
                for t in tasks {
                    if self.tasks.contains_key(&t.id) {
                        return Err(ApplyError::TaskExists(t.id.clone()));
                    }
                    if !self.services.contains_key(&t.service_id) {
                        return Err(ApplyError::ServiceNotFound(t.service_id.clone()));
                    }
                }
                Ok(())
            }
            Command::Secrets(c) => self.check_secrets(c),
            Command::Networks(c) => self.check_networks(c),
            Command::Batch(cmds) => cmds.iter().try_for_each(|c| self.check(c)),
            // The Store unpacks an entry's writes and applies each alone:
            // anywhere else (in a `Batch`, nested) a packed write is refused.
            Command::Packed(_) => Err(ApplyError::Invalid(
                "packed writes apply only as a whole Raft entry".into(),
            )),
        }
    }

    /// Applies a committed command at Raft `index`: all of it, or (if `check`
    /// refuses it) nothing.
    pub fn apply(&mut self, cmd: &Command, index: u64) -> Result<Vec<Change>, ApplyError> {
        self.check(cmd)?;
        let mut changes = Vec::new();
        self.mutate(cmd, index, &mut changes);
        if changes.iter().any(|c| matches!(c, Change::Node(_))) {
            self.settle_format(index, &mut changes);
        }
        for id in std::mem::take(&mut self.touched_networks) {
            if let Some(n) = self.networks.get_mut(&id) {
                n.version = index;
            }
            if !changes.contains(&Change::Network(id.clone())) {
                changes.push(Change::Network(id));
            }
        }
        Ok(changes)
    }

    /// The cluster version follows the nodes: the newest format all of them
    /// support (docs/upgrades.md). It may go down as well as up (a node
    /// started again on an older build): the features it gates are the
    /// writers' choice, and every build reads the records of the others.
    fn settle_format(&mut self, index: u64, changes: &mut Vec<Change>) {
        let format = self
            .nodes
            .values()
            .map(Node::format)
            .min()
            .unwrap_or(crate::codec::FORMAT);
        if let Some(c) = &mut self.cluster {
            if c.format != format {
                c.format = format;
                c.version = index;
                if !changes.contains(&Change::Cluster) {
                    changes.push(Change::Cluster);
                }
            }
        }
    }

    fn mutate(&mut self, cmd: &Command, index: u64, changes: &mut Vec<Change>) {
        match cmd {
            Command::InitCluster { cluster, node } => {
                let mut cluster = cluster.clone();
                cluster.version = index;
                self.cluster = Some(cluster);
                changes.push(Change::Cluster);
                self.create_ingress(index, changes);
                self.put_node(node.clone(), index, changes);
            }
            Command::UpsertNode(node) => {
                let mut node = node.clone();
                // What the node says about itself changes; what managers
                // decided about it (role, certificate generation,
                // availability, labels) only changes through `UpdateNode`,
                // so a registration racing a demotion cannot undo it.
                if let Some(old) = self.nodes.get(&node.id) {
                    node.created_at = old.created_at;
                    node.role = old.role;
                    node.cert_generation = old.cert_generation;
                    node.availability = old.availability;
                    node.labels = old.labels.clone();
                    node.clock_skew_ms = old.clock_skew_ms;
                }
                self.put_node(node, index, changes);
            }
            Command::SetNodeState {
                node_id,
                state,
                message,
                at,
            } => {
                if let Some(node) = self.nodes.get_mut(node_id) {
                    node.state = *state;
                    node.status_message = message.clone();
                    node.updated_at = *at;
                    node.version = index;
                    changes.push(Change::Node(node_id.clone()));
                }
            }
            Command::SetNodeClockSkew { node_id, skew_ms } => {
                if let Some(node) = self.nodes.get_mut(node_id) {
                    if node.clock_skew_ms != *skew_ms {
                        node.clock_skew_ms = *skew_ms;
                        node.version = index;
                        changes.push(Change::Node(node_id.clone()));
                    }
                }
            }
            Command::UpdateNode {
                id,
                role,
                availability,
                labels_add,
                labels_rm,
                at,
            } => {
                if let Some(node) = self.nodes.get_mut(id) {
                    if let Some(r) = role.filter(|r| *r != node.role) {
                        node.role = r;
                        node.cert_generation += 1;
                    }
                    if let Some(a) = availability {
                        node.availability = *a;
                    }
                    for (k, v) in labels_add {
                        node.labels.insert(k.clone(), v.clone());
                    }
                    for k in labels_rm {
                        node.labels.remove(k);
                    }
                    node.updated_at = *at;
                    node.version = index;
                    changes.push(Change::Node(id.clone()));
                }
            }
            Command::RemoveNode { id } => {
                self.nodes.remove(id);
                self.release_blocks(id);
                changes.push(Change::Node(id.clone()));
                if let Some(c) = &mut self.cluster {
                    if !c.removed_nodes.contains(id) {
                        c.removed_nodes.push(id.clone());
                    }
                    c.version = index;
                    changes.push(Change::Cluster);
                }
            }
            Command::RotateJoinTokens {
                worker,
                manager,
                at,
            } => {
                if let Some(c) = &mut self.cluster {
                    if let Some(w) = worker {
                        c.join_tokens.worker = w.clone();
                    }
                    if let Some(m) = manager {
                        c.join_tokens.manager = m.clone();
                    }
                    c.updated_at = *at;
                    c.version = index;
                    changes.push(Change::Cluster);
                }
            }
            Command::UpdateClusterSpec { spec, at } => {
                if let Some(c) = &mut self.cluster {
                    c.spec = spec.clone();
                    c.updated_at = *at;
                    c.version = index;
                    changes.push(Change::Cluster);
                }
            }
            Command::CreateService(svc) => {
                let mut svc = Service::clone(svc);
                svc.spec.endpoint = crate::rules::port::assign(self, None, svc.spec.endpoint);
                svc.version = index;
                svc.virtual_ips = Vec::new();
                changes.push(Change::Service(svc.id.clone()));
                let id = svc.id.clone();
                self.services.insert(svc.id.clone(), svc);
                self.assign_vips(&id);
            }
            Command::UpdateService {
                service, spec, at, ..
            } => {
                let id = self.find_service(service).map(|s| s.id.clone());
                let mut spec = spec.clone();
                spec.endpoint = crate::rules::port::assign(self, id.as_deref(), spec.endpoint);
                if let Some(svc) = id.as_ref().and_then(|id| self.services.get_mut(id)) {
                    svc.previous_spec = Some(std::mem::replace(&mut svc.spec, spec));
                    // As swarmkit: a new spec forgets the last rollout (a
                    // paused one resumes); the updater starts the next.
                    svc.update_status = None;
                    svc.updated_at = *at;
                    svc.version = index;
                    changes.push(Change::Service(svc.id.clone()));
                }
                if let Some(id) = id {
                    self.assign_vips(&id);
                }
            }
            Command::RollbackService {
                service,
                manual,
                message,
                at,
                ..
            } => {
                let id = self.find_service(service).map(|s| s.id.clone());
                if let Some(svc) = id.as_ref().and_then(|id| self.services.get_mut(id)) {
                    if let Some(prev) = svc.previous_spec.take() {
                        let current = std::mem::replace(&mut svc.spec, prev);
                        if *manual {
                            svc.previous_spec = Some(current);
                        }
                    }
                    svc.update_status = Some(crate::model::UpdateStatus {
                        state: crate::model::UpdateState::RollbackStarted,
                        started_at: Some(*at),
                        completed_at: None,
                        message: message.clone(),
                    });
                    svc.updated_at = *at;
                    svc.version = index;
                    changes.push(Change::Service(svc.id.clone()));
                }
                if let Some(id) = id {
                    self.assign_vips(&id);
                }
            }
            Command::UpdateProgress {
                service_id,
                status: Some(status),
                at,
                ..
            } => {
                if let Some(svc) = self.services.get_mut(service_id) {
                    svc.update_status = Some(status.clone());
                    svc.updated_at = *at;
                    svc.version = index;
                    changes.push(Change::Service(svc.id.clone()));
                }
            }
            Command::UpdateProgress { status: None, .. } => {}
            Command::RemoveService { service, at } => {
                let Some(id) = self.find_service(service).map(|s| s.id.clone()) else {
                    return;
                };
                let id = &id;
                if let Some(svc) = self.services.remove(id) {
                    self.release_vips(&svc);
                }
                changes.push(Change::ServiceRemoved(id.clone()));
                for task in self.tasks.values_mut().filter(|t| t.service_id == *id) {
                    if task.desired_state < TaskState::Remove {
                        task.desired_state = TaskState::Remove;
                        task.updated_at = *at;
                        task.version = index;
                        changes.push(Change::Task {
                            id: task.id.clone(),
                            service_id: id.clone(),
                        });
                    }
                }
            }
            Command::CreateTasks(tasks) => {
                for t in tasks {
                    let mut t = t.clone();
                    t.version = index;
                    t.attachments = Vec::new();
                    changes.push(Change::Task {
                        id: t.id.clone(),
                        service_id: t.service_id.clone(),
                    });
                    self.tasks.insert(t.id.clone(), t);
                }
            }
            Command::UpdateTasks { updates, at } => {
                for u in updates {
                    self.update_task(u, *at, index, changes);
                }
            }
            Command::DeleteTasks(ids) => {
                for id in ids {
                    if let Some(t) = self.tasks.remove(id) {
                        self.release(&t);
                        changes.push(Change::TaskRemoved {
                            id: t.id,
                            service_id: t.service_id,
                        });
                    }
                }
            }
            Command::Secrets(c) => self.mutate_secrets(c, index, changes),
            Command::Networks(c) => self.mutate_networks(c, index, changes),
            Command::Batch(cmds) => {
                for c in cmds {
                    self.mutate(c, index, changes);
                }
            }
            // Refused by `check`.
            Command::Packed(_) => {}
        }
    }

    fn put_node(&mut self, mut node: Node, index: u64, changes: &mut Vec<Change>) {
        node.version = index;
        changes.push(Change::Node(node.id.clone()));
        self.nodes.insert(node.id.clone(), node);
        self.reserve_blocks();
    }

    fn update_task(
        &mut self,
        update: &TaskUpdate,
        at: chrono::DateTime<chrono::Utc>,
        index: u64,
        changes: &mut Vec<Change>,
    ) {
        let task_id = match update {
            TaskUpdate::Assign { task_id, .. }
            | TaskUpdate::Pending { task_id, .. }
            | TaskUpdate::Desired { task_id, .. }
            | TaskUpdate::Status { task_id, .. } => task_id,
        };
        // A task may be deleted while an update for it is in flight: nothing to do.
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        // A task takes its addresses as it is assigned: one that cannot
        // have them all stays pending, saying which network is full.
        let mut pending = None;
        let mut attachments = Vec::new();
        if let TaskUpdate::Assign { node_id, .. } = update {
            if task.node_id.as_ref().is_none_or(|n| n == node_id)
                && task.status.state < TaskState::Assigned
            {
                match self.allocate(task_id) {
                    Ok(a) => attachments = a,
                    Err(reason) => {
                        pending = Some(TaskUpdate::Pending {
                            task_id: task_id.clone(),
                            reason,
                        })
                    }
                }
            }
        }
        let update = pending.as_ref().unwrap_or(update);
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        let changed = match update {
            TaskUpdate::Assign { node_id, .. } => {
                // A global task comes with its node already named.
                if task.node_id.as_ref().is_none_or(|n| n == node_id)
                    && task.status.state < TaskState::Assigned
                {
                    task.attachments = attachments;
                    task.node_id = Some(node_id.clone());
                    task.status = crate::model::TaskStatus {
                        state: TaskState::Assigned,
                        timestamp: at,
                        message: "scheduler assigned task to node".into(),
                        ..Default::default()
                    };
                    true
                } else {
                    false
                }
            }
            TaskUpdate::Pending { reason, .. } => {
                if task.status.state <= TaskState::Pending
                    && (task.status.state != TaskState::Pending
                        || task.status.err.as_deref() != Some(reason.as_str()))
                {
                    task.status = crate::model::TaskStatus {
                        state: TaskState::Pending,
                        timestamp: at,
                        message: "pending task scheduling".into(),
                        err: Some(reason.clone()),
                        ..Default::default()
                    };
                    true
                } else {
                    false
                }
            }
            TaskUpdate::Desired { state, .. } => {
                // Desired state also only moves forward: a task told to stop never runs again.
                if *state > task.desired_state {
                    task.desired_state = *state;
                    true
                } else {
                    false
                }
            }
            // Only the node a task is assigned to speaks for it.
            TaskUpdate::Status { node_id, .. } if task.node_id.as_ref() != Some(node_id) => false,
            TaskUpdate::Status { status, .. } => {
                if status.state > task.status.state
                    || (status.state == task.status.state && *status != task.status)
                {
                    if status.state == TaskState::Running && task.started_at.is_none() {
                        task.started_at = Some(status.timestamp);
                    }
                    task.status = status.clone();
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            task.updated_at = at;
            task.version = index;
            changes.push(Change::Task {
                id: task.id.clone(),
                service_id: task.service_id.clone(),
            });
            // An ended task runs no more: its addresses go back (it keeps
            // them in its record, as docker's task inspect shows them).
            if task.status.state.is_terminal() && !task.attachments.is_empty() {
                let ended = task.clone();
                self.release(&ended);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;
    use chrono::Utc;

    fn state_with_task() -> ClusterState {
        let mut s = ClusterState::default();
        let mut t = crate::model::sample_task(TaskState::New, Utc::now());
        t.node_id = Some("n1".into());
        s.tasks.insert("t".into(), t);
        s
    }

    fn report_from(s: &mut ClusterState, node: &str, state: TaskState, index: u64) {
        let cmd = Command::UpdateTasks {
            updates: vec![TaskUpdate::Status {
                task_id: "t".into(),
                node_id: node.into(),
                status: TaskStatus::new(state, state.as_str(), Utc::now()),
            }],
            at: Utc::now(),
        };
        s.apply(&cmd, index).expect("apply");
    }

    fn report(s: &mut ClusterState, state: TaskState, index: u64) {
        report_from(s, "n1", state, index)
    }

    #[test]
    fn only_the_tasks_node_reports_its_status() {
        let mut s = state_with_task();
        report_from(&mut s, "n2", TaskState::Failed, 2);
        assert_eq!(s.tasks["t"].status.state, TaskState::New);
        report(&mut s, TaskState::Running, 3);
        assert_eq!(s.tasks["t"].status.state, TaskState::Running);
    }

    #[test]
    fn join_tokens_in_plaintext_are_refused() {
        let mut s = ClusterState {
            cluster: Some(crate::model::Cluster {
                id: "c".into(),
                spec: Default::default(),
                join_tokens: crate::model::JoinTokens {
                    worker: "sealed:old".into(),
                    manager: "sealed:old".into(),
                },
                ca_cert_pem: String::new(),
                removed_nodes: Vec::new(),
                unlock_key: None,
                created_at: Utc::now(),
                updated_at: Utc::now(),
                version: 0,
                format: 0,
            }),
            ..ClusterState::default()
        };
        let rotate = |worker: &str| Command::RotateJoinTokens {
            worker: Some(worker.into()),
            manager: None,
            at: Utc::now(),
        };
        assert!(s.apply(&rotate("SWMTKN-1-abc-def"), 1).is_err());
        assert_eq!(
            s.cluster.as_ref().map(|c| c.join_tokens.worker.as_str()),
            Some("sealed:old")
        );
        s.apply(&rotate("sealed:new"), 2).expect("a sealed token");
        assert_eq!(
            s.cluster.as_ref().map(|c| c.join_tokens.worker.as_str()),
            Some("sealed:new")
        );
    }

    #[test]
    fn the_cluster_version_is_the_lowest_format_of_the_nodes() {
        let cluster = crate::model::Cluster {
            id: "c".into(),
            spec: Default::default(),
            join_tokens: crate::model::JoinTokens {
                worker: "sealed:w".into(),
                manager: "sealed:m".into(),
            },
            ca_cert_pem: String::new(),
            removed_nodes: Vec::new(),
            unlock_key: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 0,
            format: 0,
        };
        let node = |id: &str, max_format: u32| Node {
            id: id.into(),
            max_format,
            ..sample_node()
        };
        let mut s = ClusterState::default();
        // A swarm of one node of this build.
        s.apply(
            &Command::InitCluster {
                cluster,
                node: node("n1", crate::codec::FORMAT),
            },
            1,
        )
        .expect("init");
        assert_eq!(s.format(), crate::codec::FORMAT);
        assert!(s.packs_writes());
        // A node of format 1 (it reports nothing) brings it down...
        let changes = s.apply(&Command::UpsertNode(node("n2", 0)), 2).expect("n2");
        assert!(changes.contains(&Change::Cluster));
        assert_eq!(s.format(), 1);
        assert!(!s.packs_writes());
        assert_eq!(s.cluster.as_ref().map(|c| c.version), Some(2));
        // ...until it registers again from a newer build, or leaves.
        s.apply(&Command::UpsertNode(node("n2", 2)), 3)
            .expect("n2 again");
        assert_eq!(s.format(), 2);
        s.apply(&Command::UpsertNode(node("n3", 1)), 4).expect("n3");
        assert_eq!(s.format(), 1);
        s.apply(&Command::RemoveNode { id: "n3".into() }, 5)
            .expect("rm");
        assert_eq!(s.format(), 2);
        // A change of a node that leaves the version alone leaves the cluster alone.
        let changes = s
            .apply(&Command::UpsertNode(node("n2", 2)), 6)
            .expect("same");
        assert!(!changes.contains(&Change::Cluster));
    }

    #[test]
    fn a_role_change_bumps_the_certificate_generation() {
        let mut s = ClusterState::default();
        s.apply(&Command::UpsertNode(sample_node()), 1)
            .expect("apply");
        let set = |s: &mut ClusterState, role, index| {
            let cmd = Command::UpdateNode {
                id: "n1".into(),
                role: Some(role),
                availability: None,
                labels_add: Vec::new(),
                labels_rm: Vec::new(),
                at: Utc::now(),
            };
            s.apply(&cmd, index).expect("apply");
        };
        set(&mut s, crate::model::NodeRole::Manager, 2);
        assert_eq!(s.nodes["n1"].cert_generation, 1);
        // Not a change: no new generation.
        set(&mut s, crate::model::NodeRole::Manager, 3);
        assert_eq!(s.nodes["n1"].cert_generation, 1);
        set(&mut s, crate::model::NodeRole::Worker, 4);
        assert_eq!(s.nodes["n1"].cert_generation, 2);
    }

    #[test]
    fn a_registration_keeps_what_managers_decided_and_cannot_revive_a_removed_node() {
        let mut s = ClusterState {
            cluster: Some(crate::model::Cluster {
                id: "c".into(),
                spec: Default::default(),
                join_tokens: crate::model::JoinTokens {
                    worker: String::new(),
                    manager: String::new(),
                },
                ca_cert_pem: String::new(),
                removed_nodes: Vec::new(),
                unlock_key: None,
                created_at: Utc::now(),
                updated_at: Utc::now(),
                version: 0,
                format: 0,
            }),
            ..ClusterState::default()
        };
        let mut manager = sample_node();
        manager.role = crate::model::NodeRole::Manager;
        s.apply(&Command::UpsertNode(manager.clone()), 1)
            .expect("apply");
        // Demoted while a registration read the old entry...
        let demote = Command::UpdateNode {
            id: "n1".into(),
            role: Some(crate::model::NodeRole::Worker),
            availability: None,
            labels_add: Vec::new(),
            labels_rm: Vec::new(),
            at: Utc::now(),
        };
        s.apply(&demote, 2).expect("apply");
        // ...which then lands: the demotion stands.
        manager.hostname = "renamed".into();
        s.apply(&Command::UpsertNode(manager.clone()), 3)
            .expect("apply");
        assert_eq!(s.nodes["n1"].role, crate::model::NodeRole::Worker);
        assert_eq!(s.nodes["n1"].cert_generation, 1);
        assert_eq!(s.nodes["n1"].hostname, "renamed");
        s.apply(&Command::RemoveNode { id: "n1".into() }, 4)
            .expect("apply");
        assert!(s.apply(&Command::UpsertNode(manager), 5).is_err());
        assert!(!s.nodes.contains_key("n1"));
    }

    #[test]
    fn a_spec_past_the_limits_is_refused_when_it_applies() {
        let mut s = ClusterState::default();
        let mut spec = crate::model::ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: crate::model::ServiceMode::Replicated { replicas: 1 },
            task_template: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        };
        spec.mode = crate::model::ServiceMode::Replicated { replicas: u64::MAX };
        let svc = Service {
            id: "s".into(),
            spec,
            previous_spec: None,
            update_status: None,
            virtual_ips: Vec::new(),
            version: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let err = s.apply(&Command::CreateService(Box::new(svc)), 1);
        assert!(matches!(err, Err(ApplyError::Invalid(_))), "{err:?}");
        assert!(s.services.is_empty());
    }

    fn sample_node() -> Node {
        Node {
            id: "n1".into(),
            raft_id: 0,
            hostname: "h".into(),
            role: crate::model::NodeRole::Worker,
            availability: Default::default(),
            labels: Default::default(),
            state: Default::default(),
            status_message: String::new(),
            clock_skew_ms: None,
            addr: String::new(),
            drivers: Vec::new(),
            sandbox_error: None,
            machine: Default::default(),
            cert_generation: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 0,
            max_format: crate::codec::FORMAT,
        }
    }

    #[test]
    fn observed_state_never_moves_backwards() {
        // Every pair of states, in both orders: the later one in swarmkit's order wins.
        for (i, a) in TaskState::ALL.iter().enumerate() {
            for b in &TaskState::ALL[..i] {
                let mut s = state_with_task();
                report(&mut s, *a, 2);
                report(&mut s, *b, 3);
                assert_eq!(s.tasks["t"].status.state, *a, "{a:?} then {b:?}");
            }
        }
        let mut s = state_with_task();
        for (i, st) in TaskState::ALL.iter().enumerate() {
            report(&mut s, *st, i as u64 + 2);
            assert_eq!(s.tasks["t"].status.state, *st);
        }
    }

    #[test]
    fn desired_state_never_moves_backwards_either() {
        let mut s = state_with_task();
        let set = |s: &mut ClusterState, state| {
            let cmd = Command::UpdateTasks {
                updates: vec![TaskUpdate::Desired {
                    task_id: "t".into(),
                    state,
                }],
                at: Utc::now(),
            };
            s.apply(&cmd, 9).expect("apply");
        };
        set(&mut s, TaskState::Shutdown);
        set(&mut s, TaskState::Running);
        assert_eq!(s.tasks["t"].desired_state, TaskState::Shutdown);
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let mut s = state_with_task();
        let before = s.clone();
        let cmd = Command::Batch(vec![
            Command::DeleteTasks(vec!["t".into()]),
            Command::RemoveService {
                service: "missing".into(),
                at: Utc::now(),
            },
        ]);
        assert_eq!(
            s.apply(&cmd, 5),
            Err(ApplyError::ServiceNotFound("missing".into()))
        );
        assert_eq!(s, before);
    }
}
