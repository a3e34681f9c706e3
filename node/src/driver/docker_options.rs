//! A task's container options (`--entrypoint`, `--tty`, `--init`,
//! `--group`, `--sysctl`, `--ulimit`, `--dns*`, `--host`) in the engine's
//! container-create body. A task on overlay networks joins its sandbox
//! container's network namespace, and the engine takes no resolver, hosts
//! file or `net.*` sysctl for a container that joins another's: those go to
//! the sandbox container, whose namespace and files the task shares.

use bollard::models::{ContainerCreateBody, HostConfig};
use shoal_core::model::container::{parse_host, sysctl_scope, ContainerOptions, SysctlScope};

/// `IP NAME [ALIAS…]` lines as the engine's `ExtraHosts` (`NAME:IP`).
fn extra_hosts(hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter_map(|h| parse_host(h).ok())
        .flat_map(|(ip, names)| names.into_iter().map(move |n| format!("{n}:{ip}")))
        .collect()
}

fn sysctls(o: &ContainerOptions, net: bool) -> Option<std::collections::HashMap<String, String>> {
    let picked: std::collections::HashMap<_, _> = o
        .sysctls
        .iter()
        .filter(|(k, _)| (sysctl_scope(k) == Ok(SysctlScope::Net)) == net)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!picked.is_empty()).then_some(picked)
}

/// What goes on the task's own container. `sandboxed`: it joins a sandbox
/// container's network namespace (see `for_sandbox`).
pub fn apply(o: &ContainerOptions, body: &mut ContainerCreateBody, sandboxed: bool) {
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    body.entrypoint = some(&o.entrypoint);
    if o.tty {
        body.tty = Some(true);
    }
    let h = body.host_config.get_or_insert_with(HostConfig::default);
    h.init = Some(o.init.unwrap_or(false));
    h.group_add = some(&o.groups);
    h.ulimits = crate::api::container_opts::ulimits_to_wire(&o.ulimits);
    h.sysctls = if sandboxed {
        sysctls(o, false)
    } else {
        (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect())
    };
    if !sandboxed {
        h.dns = some(&o.dns.nameservers);
        h.dns_search = some(&o.dns.search);
        h.dns_options = some(&o.dns.options);
        h.extra_hosts = (!o.hosts.is_empty()).then(|| extra_hosts(&o.hosts));
    }
}

/// What goes on a task's sandbox container: its resolver (after the
/// embedded DNS server, which `dns` holds first), search domains and
/// options, its extra hosts and its `net.*` sysctls.
pub fn for_sandbox(o: &ContainerOptions, h: &mut HostConfig) {
    if !o.dns.nameservers.is_empty() {
        let dns = h.dns.get_or_insert_with(Vec::new);
        dns.extend(o.dns.nameservers.iter().cloned());
        // glibc reads three nameservers.
        dns.truncate(crate::dns::forward::MAX_UPSTREAMS);
    }
    if !o.dns.search.is_empty() {
        h.dns_search = Some(o.dns.search.clone());
    }
    if !o.dns.options.is_empty() {
        let opts = h.dns_options.get_or_insert_with(Vec::new);
        if o.dns.options.iter().any(|x| x.starts_with("ndots:")) {
            opts.retain(|x| !x.starts_with("ndots:"));
        }
        opts.extend(o.dns.options.iter().cloned());
    }
    if !o.hosts.is_empty() {
        h.extra_hosts = Some(extra_hosts(&o.hosts));
    }
    h.sysctls = sysctls(o, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandboxed_task_leaves_its_resolver_hosts_and_net_sysctls_to_the_sandbox() {
        let o = ContainerOptions {
            entrypoint: vec!["/bin/sh".into()],
            sysctls: [
                ("net.core.somaxconn".to_string(), "512".to_string()),
                ("kernel.shmmni".to_string(), "100".to_string()),
            ]
            .into(),
            dns: shoal_core::model::container::DnsConfig {
                nameservers: vec!["10.9.9.9".into()],
                search: vec!["example.org".into()],
                options: vec!["ndots:3".into()],
            },
            hosts: vec!["10.0.0.9 db db.local".into()],
            ..Default::default()
        };
        let mut body = ContainerCreateBody::default();
        apply(&o, &mut body, true);
        let h = body.host_config.clone().unwrap_or_default();
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(h.dns, None);
        assert_eq!(h.extra_hosts, None);
        assert_eq!(
            h.sysctls.map(|s| s.into_keys().collect::<Vec<_>>()),
            Some(vec!["kernel.shmmni".to_string()])
        );
        let mut sb = HostConfig {
            dns: Some(vec!["10.0.1.1".into()]),
            dns_options: Some(vec!["ndots:0".into()]),
            ..Default::default()
        };
        for_sandbox(&o, &mut sb);
        assert_eq!(
            sb.dns,
            Some(vec!["10.0.1.1".to_string(), "10.9.9.9".to_string()])
        );
        assert_eq!(sb.dns_options, Some(vec!["ndots:3".to_string()]));
        assert_eq!(
            sb.extra_hosts,
            Some(vec![
                "db:10.0.0.9".to_string(),
                "db.local:10.0.0.9".to_string()
            ])
        );
        let mut plain = ContainerCreateBody::default();
        apply(&o, &mut plain, false);
        let h = plain.host_config.unwrap_or_default();
        assert_eq!(h.dns, Some(vec!["10.9.9.9".to_string()]));
        assert_eq!(h.sysctls.map(|s| s.len()), Some(2));
    }
}
