//! Container options beyond image, command and environment: docker's
//! `--entrypoint`, `--tty`, `--init`, `--group`, `--sysctl`, `--ulimit`,
//! `--dns*` and `--host`, with the rules dockerd and its client apply to
//! them. Pure: the drivers in `shoal-node` carry them out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a task's container (or process) is started with beyond the basics.
/// The default asks for nothing: the driver's own defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOptions {
    /// Replaces the image's entrypoint (`--entrypoint`, the Engine API's
    /// `ContainerSpec.Command`); for a process task, the program run
    /// instead of the one its image names.
    pub entrypoint: Vec<String>,
    /// A terminal for the task's standard streams (`--tty`).
    pub tty: bool,
    /// `--init`: `Some(true)` runs an init as pid 1; `None` leaves it to
    /// the driver's default.
    pub init: Option<bool>,
    /// Supplementary groups (names or ids) besides the user's own (`--group`).
    pub groups: Vec<String>,
    /// Namespaced kernel parameters (`--sysctl`).
    pub sysctls: BTreeMap<String, String>,
    /// Resource limits of the task's processes (`--ulimit`).
    pub ulimits: Vec<Ulimit>,
    /// The task's resolver configuration (`--dns`, `--dns-search`, `--dns-option`).
    pub dns: DnsConfig,
    /// Extra `/etc/hosts` lines, `IP NAME [ALIAS…]` as the Engine API has them (`--host`).
    pub hosts: Vec<String>,
}

/// One `--ulimit NAME=SOFT[:HARD]`; -1 is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// docker's `DNSConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// The resource names `--ulimit` takes (go-units' `ulimitNameMapping`).
pub const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The IPC namespace's sysctls a task may set (docker's `validSysctlMap`).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Bounds on what one spec may ask for.
pub const MAX_ENTRIES: usize = 64;
pub const MAX_ENTRY_BYTES: usize = 1024;

/// Which namespace a sysctl belongs to, or why it may not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlScope {
    Ipc,
    Net,
}

/// docker's `ValidateSysctl`: only sysctls of a namespace the task has
/// alone may be set.
pub fn sysctl_scope(name: &str) -> Result<SysctlScope, String> {
    let well_formed = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if well_formed && name.starts_with("net.") {
        return Ok(SysctlScope::Net);
    }
    if well_formed && (IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.")) {
        return Ok(SysctlScope::Ipc);
    }
    Err(format!("sysctl '{name}' is not allowed"))
}

/// Parses `NAME=SOFT[:HARD]` as docker's `--ulimit` does.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {text}"))?;
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (s, h),
        None => (limits, limits),
    };
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("invalid ulimit argument: {text}"))
    };
    let u = Ulimit {
        name: name.into(),
        soft: number(soft)?,
        hard: number(hard)?,
    };
    check_ulimit(&u)?;
    Ok(u)
}

fn check_ulimit(u: &Ulimit) -> Result<(), String> {
    if !ULIMIT_NAMES.contains(&u.name.as_str()) {
        return Err(format!("invalid ulimit type: {}", u.name));
    }
    if u.soft < -1 || u.hard < -1 {
        return Err(format!(
            "invalid ulimit {}: limits are -1 (unlimited) or more",
            u.name
        ));
    }
    let unlimited = |v: i64| if v == -1 { i64::MAX } else { v };
    if unlimited(u.soft) > unlimited(u.hard) {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {} > {}",
            u.soft, u.hard
        ));
    }
    Ok(())
}

/// An `/etc/hosts` line as the Engine API carries it: `IP NAME [ALIAS…]`
/// (dockerd also reads `NAME:IP`, the CLI's form, and so does this).
pub fn parse_host(entry: &str) -> Result<(IpAddr, Vec<String>), String> {
    let bad = || format!("invalid host entry {entry:?}: expected \"IP NAME [ALIAS...]\"");
    let mut words = entry.split_whitespace();
    let first = words.next().ok_or_else(bad)?;
    let (ip, names): (&str, Vec<&str>) = match first.parse::<IpAddr>() {
        Ok(_) => (first, words.collect()),
        Err(_) => {
            // `NAME:IP` (the IP may be v6, so split at the first colon).
            let (name, ip) = first.split_once(':').ok_or_else(bad)?;
            if words.next().is_some() {
                return Err(bad());
            }
            (ip.trim_start_matches('[').trim_end_matches(']'), vec![name])
        }
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    if names.is_empty() || names.iter().any(|n| !valid_host_name(n)) {
        return Err(bad());
    }
    Ok((ip, names.into_iter().map(String::from).collect()))
}

fn valid_host_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `--group`: a group name or a numeric id.
fn check_group(g: &str) -> Result<(), String> {
    let ok = !g.is_empty()
        && g.len() <= 256
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid group {g:?}"))
    }
}

/// Checks every option as dockerd would before it accepts the spec, and
/// bounds what one spec may hold. `host_network`: the task keeps the node's
/// network namespace, so no `net.*` sysctl.
pub fn check(o: &ContainerOptions, host_network: bool) -> Result<(), String> {
    let lists: [(&str, usize); 8] = [
        ("ContainerSpec.Command", o.entrypoint.len()),
        ("ContainerSpec.Groups", o.groups.len()),
        ("ContainerSpec.Sysctls", o.sysctls.len()),
        ("ContainerSpec.Ulimits", o.ulimits.len()),
        (
            "ContainerSpec.DNSConfig.Nameservers",
            o.dns.nameservers.len(),
        ),
        ("ContainerSpec.DNSConfig.Search", o.dns.search.len()),
        ("ContainerSpec.DNSConfig.Options", o.dns.options.len()),
        ("ContainerSpec.Hosts", o.hosts.len()),
    ];
    for (what, n) in lists {
        if n > MAX_ENTRIES {
            return Err(format!(
                "{what} holds {n} entries; the limit is {MAX_ENTRIES}"
            ));
        }
    }
    let strings = o
        .entrypoint
        .iter()
        .chain(&o.groups)
        .chain(o.sysctls.keys())
        .chain(o.sysctls.values())
        .chain(&o.dns.nameservers)
        .chain(&o.dns.search)
        .chain(&o.dns.options)
        .chain(&o.hosts);
    for s in strings {
        if s.len() > MAX_ENTRY_BYTES || s.contains('\0') || s.contains('\n') {
            return Err(format!(
                "a container option is longer than {MAX_ENTRY_BYTES} bytes or holds a NUL or newline"
            ));
        }
    }
    for g in &o.groups {
        check_group(g)?;
    }
    for name in o.sysctls.keys() {
        if sysctl_scope(name)? == SysctlScope::Net && host_network {
            return Err(format!(
                "sysctl '{name}' is not allowed with the host network namespace"
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for u in &o.ulimits {
        check_ulimit(u)?;
        if !seen.insert(u.name.as_str()) {
            return Err(format!("ulimit {} is given twice", u.name));
        }
    }
    for ns in &o.dns.nameservers {
        ns.parse::<IpAddr>()
            .map_err(|_| format!("{ns} is not an ip address"))?;
    }
    for h in &o.hosts {
        parse_host(h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ulimits_parse_as_dockers() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048"),
            Ok(Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            })
        );
        assert_eq!(parse_ulimit("core=-1").map(|u| u.hard), Ok(-1));
        assert_eq!(
            parse_ulimit("bogus=1").unwrap_err(),
            "invalid ulimit type: bogus"
        );
        assert_eq!(
            parse_ulimit("nofile").unwrap_err(),
            "invalid ulimit argument: nofile"
        );
        assert_eq!(
            parse_ulimit("nofile=10:5").unwrap_err(),
            "ulimit soft limit must be less than or equal to hard limit: 10 > 5"
        );
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        assert_eq!(sysctl_scope("net.ipv4.ip_forward"), Ok(SysctlScope::Net));
        assert_eq!(sysctl_scope("kernel.shmmax"), Ok(SysctlScope::Ipc));
        assert_eq!(sysctl_scope("fs.mqueue.msg_max"), Ok(SysctlScope::Ipc));
        assert_eq!(
            sysctl_scope("kernel.panic").unwrap_err(),
            "sysctl 'kernel.panic' is not allowed"
        );
        assert!(sysctl_scope("net.../x").is_err());
        let o = ContainerOptions {
            sysctls: [("net.core.somaxconn".to_string(), "512".to_string())].into(),
            ..Default::default()
        };
        assert!(check(&o, false).is_ok());
        assert!(check(&o, true).unwrap_err().contains("host network"));
    }

    #[test]
    fn hosts_take_both_forms() {
        assert_eq!(
            parse_host("10.0.0.1 db db.local").map(|(_, n)| n),
            Ok(vec!["db".to_string(), "db.local".to_string()])
        );
        assert_eq!(
            parse_host("db:10.0.0.1").map(|(ip, _)| ip.to_string()),
            Ok("10.0.0.1".to_string())
        );
        assert_eq!(
            parse_host("v6:[::1]").map(|(ip, _)| ip.to_string()),
            Ok("::1".to_string())
        );
        assert!(parse_host("10.0.0.1").is_err());
        assert!(parse_host("db:notanip").is_err());
        assert!(parse_host("10.0.0.1 bad/name").is_err());
    }

    #[test]
    fn bounds_and_addresses_are_checked() {
        let o = ContainerOptions {
            dns: DnsConfig {
                nameservers: vec!["nope".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(check(&o, false).unwrap_err(), "nope is not an ip address");
        let o = ContainerOptions {
            groups: vec!["g".into(); MAX_ENTRIES + 1],
            ..Default::default()
        };
        assert!(check(&o, false).unwrap_err().contains("the limit is 64"));
        let o = ContainerOptions {
            ulimits: vec![
                parse_ulimit("nofile=1").unwrap(),
                parse_ulimit("nofile=2").unwrap(),
            ],
            ..Default::default()
        };
        assert!(check(&o, false).unwrap_err().contains("twice"));
    }
}
