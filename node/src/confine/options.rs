//! A task's `--ulimit`s and `--sysctl`s, made ready before the fork: the
//! child only calls `setrlimit` and writes the prepared strings.

use std::ffi::CString;

use shoal_core::model::container::{ContainerOptions, Ulimit};

use super::ConfineError;

/// The kernel's resource of a `--ulimit` name.
fn resource(name: &str) -> Option<u32> {
    let r = match name {
        "as" => libc::RLIMIT_AS,
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    };
    Some(r)
}

fn value(v: i64) -> libc::rlim_t {
    if v < 0 {
        libc::RLIM_INFINITY
    } else {
        v as libc::rlim_t
    }
}

/// `setrlimit` arguments for each `--ulimit`.
pub fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<(u32, libc::rlimit)>, ConfineError> {
    ulimits
        .iter()
        .map(|u| {
            let r = resource(&u.name).ok_or_else(|| {
                ConfineError::Rejected(format!("invalid ulimit type: {}", u.name))
            })?;
            Ok((
                r,
                libc::rlimit {
                    rlim_cur: value(u.soft),
                    rlim_max: value(u.hard),
                },
            ))
        })
        .collect()
}

/// The `/proc/sys` file and value of each `--sysctl` (the names were
/// checked when the service was accepted: only namespaced ones).
pub fn sysctls(o: &ContainerOptions) -> Result<Vec<(CString, CString)>, ConfineError> {
    o.sysctls
        .iter()
        .map(|(name, v)| {
            shoal_core::model::container::sysctl_scope(name).map_err(ConfineError::Rejected)?;
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            if !std::path::Path::new(&path).exists() {
                return Err(ConfineError::Rejected(format!(
                    "sysctl '{name}': no such kernel parameter on this node"
                )));
            }
            let bad = || ConfineError::Rejected(format!("invalid sysctl {name}={v}"));
            Ok((
                CString::new(path).map_err(|_| bad())?,
                CString::new(v.as_str()).map_err(|_| bad())?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_and_sysctls_become_what_the_kernel_takes() {
        let u = shoal_core::model::container::parse_ulimit("nofile=100:-1").unwrap();
        let r = rlimits(&[u]).unwrap();
        assert_eq!(r[0].0, libc::RLIMIT_NOFILE);
        assert_eq!(r[0].1.rlim_cur, 100);
        assert_eq!(r[0].1.rlim_max, libc::RLIM_INFINITY);
        let o = ContainerOptions {
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            sysctls(&o).unwrap()[0].0.to_str().unwrap(),
            "/proc/sys/net/ipv4/ip_forward"
        );
    }
}
