//! `--user <name|uid>[:<group|gid>]` for the process driver: the ids a task
//! runs as, looked up before the fork (the lookups are not async-signal-safe).

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};

/// Who a task's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's groups in the group database, as
    /// docker gives a container's process.
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// Resolves a `--user` value the way docker does: a name must exist; a
/// numeric uid need not (its group is then 0 unless one is given).
pub fn resolve(spec: &str) -> Result<Credentials, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => Some(
            User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| UserError::NoUser(user.to_string()))?,
        ),
    };
    let uid = match (&entry, user.parse::<u32>()) {
        (Some(e), _) => e.uid.as_raw(),
        (None, Ok(uid)) => uid,
        (None, Err(_)) => return Err(UserError::NoUser(user.to_string())),
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|grp| grp.gid.as_raw())
                .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
        },
        None => entry.as_ref().map_or(0, |e| e.gid.as_raw()),
    };
    let mut groups = vec![gid];
    if let Some(e) = &entry {
        if let Ok(name) = CString::new(e.name.as_str()) {
            if let Ok(list) = nix::unistd::getgrouplist(&name, Gid::from_raw(gid)) {
                for g in list {
                    if !groups.contains(&g.as_raw()) {
                        groups.push(g.as_raw());
                    }
                }
            }
        }
    }
    Ok(Credentials {
        uid,
        gid,
        groups,
        home: entry.map(|e| e.dir.to_string_lossy().into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use crate::driver::user::{resolve, UserError};

    #[test]
    fn names_and_ids_resolve_as_docker_resolves_them() {
        let root = resolve("root").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        let numeric = resolve("4242:4343").expect("ids need no entry");
        assert_eq!((numeric.uid, numeric.gid), (4242, 4343));
        assert_eq!(numeric.groups, vec![4343]);
        assert_eq!(
            resolve("no-such-user-here"),
            Err(UserError::NoUser("no-such-user-here".into()))
        );
        assert_eq!(
            resolve("0:no-such-group-here"),
            Err(UserError::NoGroup("no-such-group-here".into()))
        );
    }
}
