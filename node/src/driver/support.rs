//! What each driver can honour of a task template. A service asking a driver
//! for something it cannot do is refused when it is created or updated,
//! never run with the request silently dropped.

use shoal_core::model::TaskTemplate;

/// The flag (and Engine API field) a driver cannot honour.
fn unsupported_by_process(t: &TaskTemplate) -> Option<&'static str> {
    // Limits are the task's cgroup's (see `confine::cgroup`); reservations
    // are the scheduler's (counted against the node's capacity).
    if !t.container_labels.is_empty() {
        return Some("--container-label (ContainerSpec.Labels)");
    }
    // A process task's volumes are directories of the node (`volumes`).
    if t.mounts.iter().any(|m| {
        !m.local_volume()
            || m.volume
                .as_ref()
                .is_some_and(|v| !v.driver_options.is_empty())
    }) {
        return Some("a volume driver or its options (--mount volume-driver, volume-opt)");
    }
    // Its pid 1 is always shoal's init (see `confine::child`).
    if t.options.init == Some(false) {
        return Some("--init=false (ContainerSpec.Init): a process task always runs under an init");
    }
    None
}

/// A stop signal as docker takes it: a name with or without `SIG`, any
/// case, or a number.
pub fn stop_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    use std::str::FromStr;
    let invalid = || format!("invalid signal: {s}");
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| invalid());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| invalid())
}

/// Refuses a template its driver cannot run as asked.
pub fn check(t: &TaskTemplate) -> Result<(), String> {
    if t.driver == "process" {
        if let Some(flag) = unsupported_by_process(t) {
            return Err(format!(
                "the process driver cannot honour {flag}: remove it, or use --driver docker"
            ));
        }
        let program = t.options.entrypoint.first().unwrap_or(&t.image);
        if program.contains('/') && !program.starts_with('/') {
            return Err(format!(
                "invalid executable {program:?}: a relative path means nothing to the daemon; give an absolute path or a name in the daemon's PATH"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_core::model::TaskTemplate;

    use crate::driver::support::check;

    fn process(image: &str) -> TaskTemplate {
        TaskTemplate {
            driver: "process".into(),
            image: image.into(),
            ..TaskTemplate::default()
        }
    }

    #[test]
    fn the_process_driver_refuses_what_it_cannot_do() {
        assert!(check(&process("/bin/sleep")).is_ok());
        assert!(check(&process("sleep")).is_ok());
        assert!(check(&process("./sleep")).is_err());
        let mut limited = process("/bin/sleep");
        limited.resources.limit_memory_bytes = 64 << 20;
        limited.resources.limit_pids = 10;
        assert!(check(&limited).is_ok());
        let mut labelled = process("/bin/sleep");
        labelled.container_labels.insert("a".into(), "b".into());
        assert!(check(&labelled)
            .expect_err("labels")
            .contains("--container-label"));
    }
}
