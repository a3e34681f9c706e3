//! Secrets and configs over the state: their checks ("in use", names
//! taken), how commands change them, the references a task template
//! holds, and what the dispatcher hands a node.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::secret::*;
use crate::model::{ServiceSpec, TaskTemplate};
use crate::state::{ApplyError, Change, ClusterState};

impl ClusterState {
    fn objects(&self, kind: Kind) -> &BTreeMap<String, Object> {
        match kind {
            Kind::Secret => &self.secrets,
            Kind::Config => &self.configs,
        }
    }

    fn objects_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Object> {
        match kind {
            Kind::Secret => &mut self.secrets,
            Kind::Config => &mut self.configs,
        }
    }

    /// A secret or config by id, name, or unique id prefix (docker's order).
    pub fn find_object(&self, kind: Kind, key: &str) -> Option<&Object> {
        let all = self.objects(kind);
        if let Some(o) = all.get(key) {
            return Some(o);
        }
        if let Some(o) = all.values().find(|o| o.name == key) {
            return Some(o);
        }
        let mut matches = all.values().filter(|o| o.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(o), None) if !key.is_empty() => Some(o),
            _ => None,
        }
    }

    /// Names of the services whose current spec uses the object `id`.
    pub fn services_using(&self, kind: Kind, id: &str) -> Vec<String> {
        self.services
            .values()
            .filter(|s| refs(&s.spec.task_template, kind).iter().any(|r| r.id == id))
            .map(|s| s.spec.name.clone())
            .collect()
    }

    pub(crate) fn check_secrets(&self, cmd: &SecretCommand) -> Result<(), ApplyError> {
        match cmd {
            SecretCommand::Create(obj) => {
                check_name(&obj.name).map_err(ApplyError::Invalid)?;
                crate::limits::check_labels("labels", &obj.labels)
                    .map_err(|e| ApplyError::Invalid(e.0))?;
                check_stored(obj.kind, &obj.data, obj.size)?;
                let all = self.objects(obj.kind);
                if all.len() >= MAX_OBJECTS {
                    return Err(ApplyError::Invalid(format!(
                        "a swarm holds at most {MAX_OBJECTS} {}s",
                        obj.kind.as_str()
                    )));
                }
                if all.values().any(|o| o.name == obj.name) || all.contains_key(&obj.id) {
                    return Err(ApplyError::ObjectExists(obj.kind, obj.name.clone()));
                }
                Ok(())
            }
            SecretCommand::Update {
                kind,
                key,
                data,
                size,
                ..
            } => {
                check_stored(*kind, data, *size)?;
                match self.find_object(*kind, key) {
                    Some(_) => Ok(()),
                    None => Err(ApplyError::ObjectNotFound(*kind, key.clone())),
                }
            }
            SecretCommand::SetUnlockKey { sealed, .. } => {
                if self.cluster.is_none() {
                    return Err(ApplyError::NotInitialized);
                }
                match sealed {
                    Some(k) if k.len() > crate::limits::MAX_SHORT_STRING => Err(
                        ApplyError::Invalid("the sealed unlock key is too long".into()),
                    ),
                    Some(k) if !is_sealed_text(k) => Err(ApplyError::Invalid(
                        "the unlock key must be sealed under the cluster's key".into(),
                    )),
                    _ => Ok(()),
                }
            }
            SecretCommand::Remove { kind, key } => {
                let Some(obj) = self.find_object(*kind, key) else {
                    return Err(ApplyError::ObjectNotFound(*kind, key.clone()));
                };
                let users = self.services_using(*kind, &obj.id);
                if users.is_empty() {
                    return Ok(());
                }
                Err(ApplyError::InUse {
                    kind: *kind,
                    name: obj.name.clone(),
                    services: users,
                })
            }
        }
    }

    /// Every reference of a spec names an existing object, and its data
    /// version is one the object had.
    pub(crate) fn check_refs(&self, spec: &ServiceSpec) -> Result<(), ApplyError> {
        for kind in [Kind::Secret, Kind::Config] {
            let list = refs(&spec.task_template, kind);
            if list.len() > MAX_REFS {
                return Err(ApplyError::Invalid(format!(
                    "a service uses at most {MAX_REFS} {}s",
                    kind.as_str()
                )));
            }
            let mut targets = std::collections::BTreeSet::new();
            for r in list {
                check_target(kind, &r.target).map_err(ApplyError::Invalid)?;
                if r.mode > 0o7777 {
                    return Err(ApplyError::Invalid(format!(
                        "invalid file mode {:o}",
                        r.mode
                    )));
                }
                let Some(obj) = self.objects(kind).get(&r.id) else {
                    return Err(ApplyError::ObjectNotFound(kind, r.name.clone()));
                };
                if obj.name != r.name || r.data_version > obj.data_version {
                    return Err(ApplyError::ObjectNotFound(kind, r.name.clone()));
                }
                if !targets.insert(r.path(kind)) {
                    return Err(ApplyError::Invalid(format!(
                        "duplicate {} target {}",
                        kind.as_str(),
                        r.target
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn mutate_secrets(
        &mut self,
        cmd: &SecretCommand,
        index: u64,
        changes: &mut Vec<Change>,
    ) {
        match cmd {
            SecretCommand::Create(obj) => {
                let mut obj = Object::clone(obj);
                obj.version = index;
                changes.push(Change::Object(obj.kind, obj.id.clone()));
                self.objects_mut(obj.kind).insert(obj.id.clone(), obj);
            }
            SecretCommand::Update {
                kind,
                key,
                data,
                size,
                at,
            } => {
                let Some(id) = self.find_object(*kind, key).map(|o| o.id.clone()) else {
                    return;
                };
                let Some(obj) = self.objects_mut(*kind).get_mut(&id) else {
                    return;
                };
                obj.data = data.clone();
                obj.size = *size;
                obj.data_version += 1;
                obj.updated_at = *at;
                obj.version = index;
                let data_version = obj.data_version;
                changes.push(Change::Object(*kind, id.clone()));
                // Roll every service that uses it: a new spec whose
                // reference names the new version, as a `service update`.
                for svc in self.services.values_mut() {
                    let mut spec = svc.spec.clone();
                    let mut touched = false;
                    for r in refs_mut(&mut spec.task_template, *kind) {
                        if r.id == id {
                            r.data_version = data_version;
                            touched = true;
                        }
                    }
                    if touched {
                        svc.previous_spec = Some(std::mem::replace(&mut svc.spec, spec));
                        svc.update_status = None;
                        svc.updated_at = *at;
                        svc.version = index;
                        changes.push(Change::Service(svc.id.clone()));
                    }
                }
            }
            SecretCommand::SetUnlockKey { sealed, at } => {
                if let Some(c) = &mut self.cluster {
                    c.unlock_key = sealed.clone();
                    c.updated_at = *at;
                    c.version = index;
                    changes.push(Change::Cluster);
                }
            }
            SecretCommand::Remove { kind, key } => {
                if let Some(id) = self.find_object(*kind, key).map(|o| o.id.clone()) {
                    self.objects_mut(*kind).remove(&id);
                    changes.push(Change::Object(*kind, id));
                }
            }
        }
    }
}

fn check_stored(kind: Kind, data: &Stored, size: u64) -> Result<(), ApplyError> {
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    check_size(kind, len).map_err(ApplyError::Invalid)?;
    let ok = match (kind, data) {
        // The AEAD tag adds 16 bytes; the nonce is 12.
        (Kind::Secret, Stored::Sealed(s)) => {
            s.nonce.len() == 12 && s.ciphertext.len() == len.saturating_add(16)
        }
        (Kind::Config, Stored::Plain(p)) => p.len() == len,
        _ => false,
    };
    match ok {
        true => Ok(()),
        false => Err(ApplyError::Invalid(format!(
            "{} data is not stored as it must be",
            kind.as_str()
        ))),
    }
}

/// A template's references of one kind.
pub fn refs(template: &TaskTemplate, kind: Kind) -> &[FileRef] {
    match kind {
        Kind::Secret => &template.secrets,
        Kind::Config => &template.configs,
    }
}

fn refs_mut(template: &mut TaskTemplate, kind: Kind) -> &mut Vec<FileRef> {
    match kind {
        Kind::Secret => &mut template.secrets,
        Kind::Config => &mut template.configs,
    }
}

/// The payloads a node needs for `tasks` (those that may still run), opened
/// with `keyring`; a secret that cannot be opened (a locked manager) is left
/// out, and the task that needs it fails on the node.
pub fn payloads_for<'a>(
    state: &ClusterState,
    tasks: impl Iterator<Item = &'a crate::model::Task>,
    keyring: Option<&dyn Keyring>,
) -> Vec<Payload> {
    let mut wanted = std::collections::BTreeSet::new();
    for t in tasks.filter(|t| t.desired_state <= crate::model::TaskState::Running) {
        for kind in [Kind::Secret, Kind::Config] {
            for r in refs(&t.spec, kind) {
                wanted.insert((kind, r.id.clone()));
            }
        }
    }
    let mut out = Vec::new();
    for (kind, id) in wanted {
        let Some(obj) = state.objects(kind).get(&id) else {
            continue;
        };
        let data = match &obj.data {
            Stored::Plain(p) => p.clone(),
            Stored::Sealed(s) => {
                let Some(keys) = keyring else { continue };
                match keys.open(&aad(&obj.id, obj.data_version), s) {
                    Ok(plain) => plain,
                    Err(e) => {
                        tracing::warn!(secret = %obj.name, error = %e, "cannot open secret");
                        continue;
                    }
                }
            }
        };
        out.push(Payload {
            kind,
            id,
            data_version: obj.data_version,
            data,
        });
    }
    out
}

/// The files of `template` from `payloads`, or the name of one missing.
pub fn task_files(
    template: &TaskTemplate,
    payloads: &BTreeMap<(Kind, String), Arc<Vec<u8>>>,
) -> Result<Vec<TaskFile>, String> {
    let mut files = Vec::new();
    for kind in [Kind::Secret, Kind::Config] {
        for r in refs(template, kind) {
            let Some(data) = payloads.get(&(kind, r.id.clone())) else {
                return Err(format!(
                    "{} {} is not available on this node",
                    kind.as_str(),
                    r.name
                ));
            };
            files.push(TaskFile {
                kind,
                name: r.name.clone(),
                path: r.path(kind),
                uid: r.uid,
                gid: r.gid,
                mode: r.mode,
                data: data.clone(),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn names_as_docker_validates_them() {
        for ok in ["a", "my_mysql_password", "a.b-c_d", "A1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_as_swarmkit_bounds_them() {
        assert!(check_size(Kind::Secret, 0).is_err());
        assert!(check_size(Kind::Secret, 500 * 1024 - 1).is_ok());
        assert!(check_size(Kind::Secret, 500 * 1024).is_err());
        assert!(check_size(Kind::Config, 999 * 1024).is_ok());
    }

    /// A keyring that "seals" by reversing: enough for the delivery logic.
    struct Reverse;
    impl Keyring for Reverse {
        fn seal(&self, _: &[u8], plain: &[u8]) -> Result<Sealed, KeyError> {
            let mut c: Vec<u8> = plain.iter().rev().copied().collect();
            c.extend([0u8; 16]);
            Ok(Sealed {
                nonce: vec![0; 12],
                ciphertext: c,
            })
        }
        fn open(&self, _: &[u8], s: &Sealed) -> Result<Vec<u8>, KeyError> {
            let n = s.ciphertext.len().saturating_sub(16);
            Ok(s.ciphertext[..n].iter().rev().copied().collect())
        }
    }

    #[test]
    fn only_a_node_running_a_task_that_uses_a_secret_gets_it() {
        let now = Utc::now();
        let mut state = ClusterState::default();
        let sealed = Reverse.seal(b"", b"pw").expect("seal");
        let obj = Object {
            id: "sid".into(),
            kind: Kind::Secret,
            name: "pw".into(),
            labels: BTreeMap::new(),
            data: Stored::Sealed(sealed),
            size: 2,
            data_version: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        state
            .apply(
                &crate::command::Command::Secrets(SecretCommand::Create(Box::new(obj))),
                1,
            )
            .expect("create");
        let mut uses = crate::model::sample_task(crate::model::TaskState::Running, now);
        uses.spec.secrets.push(FileRef {
            id: "sid".into(),
            name: "pw".into(),
            target: "pw".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data_version: 0,
        });
        let plain = crate::model::sample_task(crate::model::TaskState::Running, now);
        let got = payloads_for(&state, [&uses].into_iter(), Some(&Reverse));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, b"pw");
        assert!(payloads_for(&state, [&plain].into_iter(), Some(&Reverse)).is_empty());
        // A task told to stop no longer needs it; a locked manager gives nothing.
        let mut stopping = uses.clone();
        stopping.desired_state = crate::model::TaskState::Shutdown;
        assert!(payloads_for(&state, [&stopping].into_iter(), Some(&Reverse)).is_empty());
        assert!(payloads_for(&state, [&uses].into_iter(), None).is_empty());
    }

    #[test]
    fn a_used_secret_cannot_be_removed_and_an_update_rolls_its_services() {
        let now = Utc::now();
        let mut state = ClusterState::default();
        let obj = Object {
            id: "cid".into(),
            kind: Kind::Config,
            name: "conf".into(),
            labels: BTreeMap::new(),
            data: Stored::Plain(b"a".to_vec()),
            size: 1,
            data_version: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        state
            .apply(
                &crate::command::Command::Secrets(SecretCommand::Create(Box::new(obj))),
                1,
            )
            .expect("create");
        let mut spec = crate::model::ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: crate::model::ServiceMode::Replicated { replicas: 1 },
            task_template: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        };
        spec.task_template.configs.push(FileRef {
            id: "cid".into(),
            name: "conf".into(),
            target: "conf".into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data_version: 0,
        });
        let svc = crate::model::Service::new("s".repeat(25), spec, now);
        state
            .apply(&crate::command::Command::CreateService(Box::new(svc)), 2)
            .expect("service");
        let rm = crate::command::Command::Secrets(SecretCommand::Remove {
            kind: Kind::Config,
            key: "conf".into(),
        });
        let err = state.apply(&rm, 3).expect_err("in use");
        assert_eq!(
            err.to_string(),
            "config 'conf' is in use by the following service: web"
        );
        let update = crate::command::Command::Secrets(SecretCommand::Update {
            kind: Kind::Config,
            key: "conf".into(),
            data: Stored::Plain(b"b".to_vec()),
            size: 1,
            at: now,
        });
        state.apply(&update, 4).expect("update");
        let svc = state.service_by_name("web").expect("svc");
        assert_eq!(svc.spec.task_template.configs[0].data_version, 1);
        assert_eq!(svc.version, 4);
        assert!(svc.previous_spec.is_some());
    }

    #[test]
    fn targets_never_climb() {
        assert!(check_target(Kind::Secret, "a").is_ok());
        assert!(check_target(Kind::Config, "/etc/x.yml").is_ok());
        for bad in ["", "../x", "a/../b", "/a/", "a\0b", "a/b"] {
            assert!(check_target(Kind::Secret, bad).is_err(), "{bad}");
        }
    }
}
