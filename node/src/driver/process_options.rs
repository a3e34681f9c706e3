//! A process task's container options that the driver works out before the
//! fork: the program it runs (`--entrypoint`), its extra groups
//! (`--group`), the `/etc/resolv.conf` (`--dns*`) and `/etc/hosts`
//! (`--host`) written into its root, and the terminal of `--tty`.

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use nix::unistd::Group;
use shoal_core::model::container::{parse_host, ContainerOptions, DnsConfig};
use shoal_core::model::TaskTemplate;

/// The program and its arguments: the entrypoint, when given, replaces
/// the program the task's "image" names, as it replaces an image's own.
pub fn program(spec: &TaskTemplate) -> (String, Vec<String>) {
    match spec.options.entrypoint.split_first() {
        Some((first, rest)) => (
            first.clone(),
            rest.iter().chain(&spec.args).cloned().collect(),
        ),
        None => (spec.image.clone(), spec.args.clone()),
    }
}

/// The ids of `--group` entries (names looked up in the node's group file).
pub fn groups(names: &[String]) -> Result<Vec<u32>, String> {
    names
        .iter()
        .map(|g| match g.parse::<u32>() {
            Ok(gid) => Ok(gid),
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|grp| grp.gid.as_raw())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                }),
        })
        .collect()
}

/// `ids` (uid, gid, groups; `None`: root) with the extra groups added.
pub fn with_groups(
    ids: Option<(u32, u32, Vec<u32>)>,
    extra: &[u32],
) -> Option<(u32, u32, Vec<u32>)> {
    if extra.is_empty() {
        return ids;
    }
    let (uid, gid, mut groups) = ids.unwrap_or((0, 0, vec![0]));
    for g in extra {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    Some((uid, gid, groups))
}

/// The task's resolv.conf. `embedded`: the embedded DNS server's address
/// when the task is on overlay networks (it comes first, so service names
/// resolve); `host`: the node's own file. docker's rule: what the task
/// sets replaces that part of the node's file, the rest is kept.
pub fn resolv_conf(embedded: Option<IpAddr>, dns: &DnsConfig, host: &str) -> Vec<u8> {
    let lines_of = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == key).then(|| w.collect::<Vec<_>>().join(" "))
            })
            .collect()
    };
    let mut servers: Vec<String> = embedded.iter().map(IpAddr::to_string).collect();
    if !dns.nameservers.is_empty() {
        servers.extend(dns.nameservers.iter().cloned());
    } else if embedded.is_none() {
        servers.extend(lines_of("nameserver"));
    }
    servers.truncate(crate::dns::forward::MAX_UPSTREAMS);
    let search = if dns.search.is_empty() {
        lines_of("search")
    } else {
        vec![dns.search.join(" ")]
    };
    let options: Vec<String> = if !dns.options.is_empty() {
        dns.options.clone()
    } else if embedded.is_some() {
        vec!["ndots:0".into()]
    } else {
        lines_of("options")
    };
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    for s in search.iter().filter(|s| !s.is_empty()) {
        out.push_str(&format!("search {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out.into_bytes()
}

/// The task's /etc/hosts, as docker writes a container's: loopback names,
/// the task's own address and hostname, then the `--host` entries.
pub fn hosts_file(hostname: &str, addr: Option<IpAddr>, o: &ContainerOptions) -> Vec<u8> {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in &o.hosts {
        if let Ok((ip, names)) = parse_host(h) {
            out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    if let Some(ip) = addr {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out.into_bytes()
}

/// A terminal for `--tty`: the side the daemon reads, and the one that
/// becomes the task's stdout and stderr.
pub fn terminal() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    // The daemon's side must not leak into other children.
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    Ok((pty.master, pty.slave))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 10.1.1.1\nnameserver 10.1.1.2\nsearch corp.example\noptions edns0\n";

    #[test]
    fn resolv_conf_replaces_only_what_the_task_sets() {
        let none = DnsConfig::default();
        assert_eq!(
            String::from_utf8(resolv_conf(None, &none, HOST)).unwrap(),
            "nameserver 10.1.1.1\nnameserver 10.1.1.2\nsearch corp.example\noptions edns0\n"
        );
        let dns = DnsConfig {
            nameservers: vec!["10.9.9.9".into()],
            search: vec![],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            String::from_utf8(resolv_conf(None, &dns, HOST)).unwrap(),
            "nameserver 10.9.9.9\nsearch corp.example\noptions ndots:2\n"
        );
        let embedded = resolv_conf(Some("10.0.1.1".parse().unwrap()), &none, HOST);
        assert_eq!(
            String::from_utf8(embedded).unwrap(),
            "nameserver 10.0.1.1\nsearch corp.example\noptions ndots:0\n"
        );
    }

    #[test]
    fn the_entrypoint_replaces_the_program() {
        let mut t = TaskTemplate {
            image: "/bin/sleep".into(),
            args: vec!["5".into()],
            ..Default::default()
        };
        assert_eq!(program(&t), ("/bin/sleep".into(), vec!["5".into()]));
        t.options.entrypoint = vec!["/bin/sh".into(), "-c".into()];
        assert_eq!(
            program(&t),
            ("/bin/sh".into(), vec!["-c".into(), "5".into()])
        );
    }

    #[test]
    fn hosts_hold_the_task_and_its_extra_entries() {
        let o = ContainerOptions {
            hosts: vec!["10.0.0.9 db db.local".into()],
            ..Default::default()
        };
        let text = String::from_utf8(hosts_file("web-1", "10.2.0.5".parse().ok(), &o)).unwrap();
        assert!(text.contains("10.0.0.9\tdb db.local\n"));
        assert!(text.ends_with("10.2.0.5\tweb-1\n"));
        assert_eq!(with_groups(None, &[5]), Some((0, 0, vec![0, 5])));
        assert!(groups(&["no-such-group-here".into()]).is_err());
    }
}
