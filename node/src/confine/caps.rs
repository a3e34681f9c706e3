//! The capabilities a task keeps: docker's default set, with the service's
//! `--cap-add` and `--cap-drop` applied as docker applies them. Pure: the
//! set is a bit mask the child installs with `capset` (see `child`).

use caps::Capability;

use crate::confine::ConfineError;

/// docker's default capability set (moby `oci/caps/defaults.go`):
/// CapEff `00000000a80425fb` for a root task.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

fn mask(list: &[Capability]) -> u64 {
    list.iter().fold(0, |m, c| m | c.bitmask())
}

/// `NET_ADMIN`, `cap_net_admin` or `CAP_NET_ADMIN`; `None` for `ALL`.
fn parse(name: &str) -> Result<Option<Capability>, ConfineError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(None);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map(Some)
        .map_err(|_| ConfineError::UnknownCapability(name.to_string()))
}

/// The task's capability mask, as docker computes it: `ALL` in the adds
/// starts from every capability; `ALL` in the drops starts from none (then
/// only the named adds); otherwise the defaults, plus adds, minus drops.
pub fn effective(add: &[String], drop: &[String]) -> Result<u64, ConfineError> {
    let adds = add
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = drop
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let every = mask(&caps::all().into_iter().collect::<Vec<_>>());
    let add_all = adds.iter().any(Option::is_none);
    let drop_all = drops.iter().any(Option::is_none);
    let named_adds = mask(&adds.iter().flatten().copied().collect::<Vec<_>>());
    let named_drops = mask(&drops.iter().flatten().copied().collect::<Vec<_>>());
    let set = if drop_all {
        if add_all {
            every
        } else {
            named_adds
        }
    } else {
        let base = if add_all {
            every
        } else {
            mask(&DOCKER_DEFAULT)
        };
        (base | named_adds) & !named_drops
    };
    Ok(set)
}

/// Whether `set` holds `cap`.
pub fn has(set: u64, cap: Capability) -> bool {
    set & cap.bitmask() != 0
}

#[cfg(test)]
mod tests {
    use caps::Capability;

    use crate::confine::caps::{effective, has};

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_set_is_dockers() {
        assert_eq!(effective(&[], &[]).expect("defaults"), 0xa80425fb);
    }

    #[test]
    fn adds_and_drops_work_as_dockers_flags_do() {
        let set = effective(&strings(&["NET_ADMIN"]), &strings(&["cap_chown"])).expect("set");
        assert!(has(set, Capability::CAP_NET_ADMIN));
        assert!(!has(set, Capability::CAP_CHOWN));
        assert!(has(set, Capability::CAP_KILL));
        let only = effective(&strings(&["CAP_KILL"]), &strings(&["ALL"])).expect("only");
        assert_eq!(only, Capability::CAP_KILL.bitmask());
        let all = effective(&strings(&["ALL"]), &strings(&["SYS_ADMIN"])).expect("all");
        assert!(has(all, Capability::CAP_SYS_PTRACE));
        assert!(!has(all, Capability::CAP_SYS_ADMIN));
        assert!(effective(&strings(&["NOT_A_CAP"]), &[]).is_err());
    }
}
