//! docker's container-option flags of `service create` and `service
//! update`: `--entrypoint`, `--tty`, `--init`, `--group`, `--sysctl`,
//! `--ulimit`, `--dns`, `--dns-search`, `--dns-option`, `--host` and
//! `--generic-resource` (with `-add`/`-rm` on update), written into the
//! spec's `ContainerSpec` and `Resources.Reservations` in the Engine API's
//! shapes (bollard's models).

use std::collections::HashMap;

use bollard::models::{
    GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec,
    GenericResourcesInnerNamedResourceSpec, ResourcesUlimits, TaskSpecContainerSpecDnsConfig,
};
use clap::Args;
use shoal_core::model::container::parse_ulimit;
use shoal_core::model::placement::GenericResource;
use shoal_node::api::wire::{self, ResourceObject};

/// `--entrypoint "/bin/sh -c"`, split as a shell would (docker's `ShlexOpt`).
#[derive(Clone, Debug, Default)]
struct Entrypoint(Vec<String>);

fn entrypoint(s: &str) -> Result<Entrypoint, String> {
    shlex::split(s)
        .map(Entrypoint)
        .ok_or_else(|| format!("invalid entrypoint {s:?}: unbalanced quotes"))
}

fn sysctl(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("invalid sysctl {s:?}: expected KEY=VALUE")),
    }
}

fn ulimit(s: &str) -> Result<ResourcesUlimits, String> {
    parse_ulimit(s).map(|u| ResourcesUlimits {
        name: Some(u.name),
        soft: Some(u.soft),
        hard: Some(u.hard),
    })
}

fn ip(s: &str) -> Result<String, String> {
    s.parse::<std::net::IpAddr>()
        .map(|_| s.to_string())
        .map_err(|_| format!("{s} is not an ip address"))
}

/// `--host NAME:IP` as the spec's `IP NAME` line (docker's
/// `convertExtraHostsToSwarmHosts`).
fn host(s: &str) -> Result<String, String> {
    let (name, addr) = s
        .split_once(':')
        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
        .ok_or_else(|| format!("invalid argument {s:?} for \"--host\" flag: expected HOST:IP"))?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    ip(addr)?;
    Ok(format!("{addr} {name}"))
}

fn generic(s: &str) -> Result<GenericResourcesInner, String> {
    Ok(match GenericResource::parse(s)? {
        GenericResource::Discrete { kind, value } => GenericResourcesInner {
            discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec {
                kind: Some(kind),
                value: Some(i64::try_from(value).map_err(|_| format!("{s}: too large"))?),
            }),
            named_resource_spec: None,
        },
        GenericResource::Named { kind, value } => GenericResourcesInner {
            named_resource_spec: Some(GenericResourcesInnerNamedResourceSpec {
                kind: Some(kind),
                value: Some(value),
            }),
            discrete_resource_spec: None,
        },
    })
}

fn generic_kind(g: &GenericResourcesInner) -> Option<&str> {
    g.discrete_resource_spec
        .as_ref()
        .and_then(|d| d.kind.as_deref())
        .or_else(|| {
            g.named_resource_spec
                .as_ref()
                .and_then(|n| n.kind.as_deref())
        })
}

fn list_or_none<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[derive(Args, Default)]
pub struct ContainerCreateFlags {
    /// Overwrite the default ENTRYPOINT of the image (with --driver process: the program run)
    #[arg(long, value_parser = entrypoint, allow_hyphen_values = true)]
    entrypoint: Option<Entrypoint>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long)]
    init: bool,
    /// Set one or more supplementary user groups for the container
    #[arg(long = "group")]
    group: Vec<String>,
    /// Sysctl options (KEY=VALUE)
    #[arg(long = "sysctl", value_parser = sysctl)]
    sysctl: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long = "ulimit", value_parser = ulimit)]
    ulimit: Vec<ResourcesUlimits>,
    /// Set custom DNS servers
    #[arg(long = "dns", value_parser = ip)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Set one or more custom host-to-IP mappings (HOST:IP)
    #[arg(long = "host", value_parser = host)]
    host: Vec<String>,
    /// User defined resources (KIND=COUNT)
    #[arg(long = "generic-resource", value_parser = generic)]
    generic_resource: Vec<GenericResourcesInner>,
}

impl ContainerCreateFlags {
    /// Writes the flags into a new service's `TaskTemplate`.
    pub fn apply(&self, task_template: &mut wire::TaskSpec) -> anyhow::Result<()> {
        let c = &mut task_template
            .container_spec
            .get_or_insert_with(Default::default)
            .docker;
        if let Some(Entrypoint(e)) = &self.entrypoint {
            c.command = list_or_none(e.clone());
        }
        c.tty = self.tty.then_some(true);
        c.init = self.init.then_some(true);
        c.groups = list_or_none(self.group.clone());
        let sysctls: HashMap<String, String> = self
            .sysctl
            .iter()
            .filter_map(|s| s.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.sysctls = (!sysctls.is_empty()).then_some(sysctls);
        c.ulimits = list_or_none(self.ulimit.clone());
        let dns = TaskSpecContainerSpecDnsConfig {
            nameservers: list_or_none(self.dns.clone()),
            search: list_or_none(self.dns_search.clone()),
            options: list_or_none(self.dns_option.clone()),
        };
        c.dns_config = (dns != Default::default()).then_some(dns);
        c.hosts = list_or_none(self.host.clone());
        if !self.generic_resource.is_empty() {
            reservations(task_template).generic_resources = Some(self.generic_resource.clone());
        }
        Ok(())
    }
}

/// `TaskTemplate.Resources.Reservations`, made if absent.
fn reservations(tt: &mut wire::TaskSpec) -> &mut ResourceObject {
    tt.docker
        .resources
        .get_or_insert_with(Default::default)
        .reservations
        .get_or_insert_with(Default::default)
}

#[derive(Args, Default)]
pub struct ContainerUpdateFlags {
    /// Overwrite the default ENTRYPOINT of the image ("" removes it)
    #[arg(long, value_parser = entrypoint, allow_hyphen_values = true)]
    entrypoint: Option<Entrypoint>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long, num_args = 0..=1, default_missing_value = "true")]
    tty: Option<bool>,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    init: Option<bool>,
    /// Add an additional supplementary user group to the container
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Remove a previously added supplementary user group from the container
    #[arg(long = "group-rm")]
    group_rm: Vec<String>,
    /// Add or update a Sysctl option (KEY=VALUE)
    #[arg(long = "sysctl-add", value_parser = sysctl)]
    sysctl_add: Vec<String>,
    /// Remove a Sysctl option
    #[arg(long = "sysctl-rm")]
    sysctl_rm: Vec<String>,
    /// Add or update a ulimit option (NAME=SOFT[:HARD])
    #[arg(long = "ulimit-add", value_parser = ulimit)]
    ulimit_add: Vec<ResourcesUlimits>,
    /// Remove a ulimit option
    #[arg(long = "ulimit-rm")]
    ulimit_rm: Vec<String>,
    /// Add or update a custom DNS server
    #[arg(long = "dns-add", value_parser = ip)]
    dns_add: Vec<String>,
    /// Remove a custom DNS server
    #[arg(long = "dns-rm")]
    dns_rm: Vec<String>,
    /// Add or update a custom DNS search domain
    #[arg(long = "dns-search-add")]
    dns_search_add: Vec<String>,
    /// Remove a DNS search domain
    #[arg(long = "dns-search-rm")]
    dns_search_rm: Vec<String>,
    /// Add or update a DNS option
    #[arg(long = "dns-option-add")]
    dns_option_add: Vec<String>,
    /// Remove a DNS option
    #[arg(long = "dns-option-rm")]
    dns_option_rm: Vec<String>,
    /// Add a custom host-to-IP mapping (HOST:IP)
    #[arg(long = "host-add", value_parser = host)]
    host_add: Vec<String>,
    /// Remove a custom host-to-IP mapping (HOST or HOST:IP)
    #[arg(long = "host-rm")]
    host_rm: Vec<String>,
    /// Add a Generic resource (KIND=COUNT)
    #[arg(long = "generic-resource-add", value_parser = generic)]
    generic_resource_add: Vec<GenericResourcesInner>,
    /// Remove a Generic resource (by its kind)
    #[arg(long = "generic-resource-rm")]
    generic_resource_rm: Vec<String>,
}

/// Removes `rm` from `list`, then appends what of `add` it lacks.
fn edit_list(list: &mut Vec<String>, add: &[String], rm: &[String]) {
    list.retain(|x| !rm.contains(x));
    for a in add {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
}

/// docker's `updateHosts`: `NAME` removes every line naming it, `NAME:IP`
/// only the one with that address.
fn host_removed(line: &str, rm: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(addr) = words.next() else {
        return false;
    };
    let names: Vec<&str> = words.collect();
    match rm.split_once(':') {
        Some((name, ip)) => {
            addr == ip.trim_start_matches('[').trim_end_matches(']') && names.contains(&name)
        }
        None => names.contains(&rm),
    }
}

impl ContainerUpdateFlags {
    /// Applies the flags to an existing service's `TaskTemplate`.
    pub fn apply(&self, task_template: &mut wire::TaskSpec) -> anyhow::Result<()> {
        let c = &mut task_template
            .container_spec
            .get_or_insert_with(Default::default)
            .docker;
        if let Some(Entrypoint(e)) = &self.entrypoint {
            c.command = list_or_none(e.clone());
        }
        if let Some(t) = self.tty {
            c.tty = t.then_some(true);
        }
        if let Some(i) = self.init {
            c.init = Some(i);
        }
        if !self.group_add.is_empty() || !self.group_rm.is_empty() {
            let mut groups = c.groups.take().unwrap_or_default();
            edit_list(&mut groups, &self.group_add, &self.group_rm);
            c.groups = list_or_none(groups);
        }
        if !self.sysctl_add.is_empty() || !self.sysctl_rm.is_empty() {
            let mut sysctls = c.sysctls.take().unwrap_or_default();
            for k in &self.sysctl_rm {
                sysctls.remove(k.split_once('=').map_or(k.as_str(), |(k, _)| k));
            }
            for kv in &self.sysctl_add {
                if let Some((k, v)) = kv.split_once('=') {
                    sysctls.insert(k.into(), v.into());
                }
            }
            c.sysctls = (!sysctls.is_empty()).then_some(sysctls);
        }
        if !self.ulimit_add.is_empty() || !self.ulimit_rm.is_empty() {
            let mut ulimits = c.ulimits.take().unwrap_or_default();
            ulimits.retain(|u| {
                let name = u.name.as_deref().unwrap_or("");
                !self.ulimit_rm.iter().any(|r| r == name)
                    && !self
                        .ulimit_add
                        .iter()
                        .any(|a| a.name.as_deref() == Some(name))
            });
            ulimits.extend(self.ulimit_add.iter().cloned());
            c.ulimits = list_or_none(ulimits);
        }
        let dns_edits = [
            &self.dns_add,
            &self.dns_rm,
            &self.dns_search_add,
            &self.dns_search_rm,
            &self.dns_option_add,
            &self.dns_option_rm,
        ];
        if dns_edits.iter().any(|l| !l.is_empty()) {
            let dns = c.dns_config.take().unwrap_or_default();
            let edit = |v: Option<Vec<String>>, add: &[String], rm: &[String]| {
                let mut v = v.unwrap_or_default();
                edit_list(&mut v, add, rm);
                list_or_none(v)
            };
            let dns = TaskSpecContainerSpecDnsConfig {
                nameservers: edit(dns.nameservers, &self.dns_add, &self.dns_rm),
                search: edit(dns.search, &self.dns_search_add, &self.dns_search_rm),
                options: edit(dns.options, &self.dns_option_add, &self.dns_option_rm),
            };
            c.dns_config = (dns != Default::default()).then_some(dns);
        }
        if !self.host_add.is_empty() || !self.host_rm.is_empty() {
            let mut hosts = c.hosts.take().unwrap_or_default();
            hosts.retain(|h| !self.host_rm.iter().any(|r| host_removed(h, r)));
            edit_list(&mut hosts, &self.host_add, &[]);
            c.hosts = list_or_none(hosts);
        }
        if !self.generic_resource_add.is_empty() || !self.generic_resource_rm.is_empty() {
            let r = reservations(task_template);
            let mut list = r.generic_resources.take().unwrap_or_default();
            list.retain(|g| {
                let kind = generic_kind(g).unwrap_or("");
                !self.generic_resource_rm.iter().any(|k| k == kind)
                    && !self
                        .generic_resource_add
                        .iter()
                        .any(|a| generic_kind(a) == Some(kind))
            });
            list.extend(self.generic_resource_add.iter().cloned());
            r.generic_resources = list_or_none(list);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_take_dockers_forms() {
        assert_eq!(
            entrypoint("/bin/sh -c 'echo hi'").unwrap().0,
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(host("db:10.0.0.9").unwrap(), "10.0.0.9 db");
        assert!(host("db").is_err());
        assert!(host("db:nope").is_err());
        assert!(ip("1.2.3").is_err());
        assert!(sysctl("novalue").is_err());
        assert!(host_removed("10.0.0.9 db db.local", "db"));
        assert!(host_removed("10.0.0.9 db", "db:10.0.0.9"));
        assert!(!host_removed("10.0.0.9 db", "db:10.0.0.8"));
    }

    #[test]
    fn update_edits_what_the_service_has() {
        let mut tt: wire::TaskSpec = serde_json::from_value(json!({"ContainerSpec": {"Image": "x", "Hosts": ["10.0.0.9 db"],
            "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}], "Sysctls": {"net.a": "1"}},
            "Resources": {"Reservations": {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}}}))
        .unwrap();
        let flags = ContainerUpdateFlags {
            host_rm: vec!["db".into()],
            host_add: vec![host("cache:10.0.0.7").unwrap()],
            ulimit_add: vec![ulimit("nofile=5:6").unwrap()],
            sysctl_rm: vec!["net.a".into()],
            generic_resource_rm: vec!["gpu".into()],
            tty: Some(true),
            ..Default::default()
        };
        flags.apply(&mut tt).unwrap();
        let tt = serde_json::to_value(&tt).unwrap();
        let c = &tt["ContainerSpec"];
        assert_eq!(c["Hosts"], json!(["10.0.0.7 cache"]));
        assert_eq!(
            c["Ulimits"],
            json!([{"Name": "nofile", "Soft": 5, "Hard": 6}])
        );
        assert!(c.get("Sysctls").is_none());
        assert_eq!(c["TTY"], json!(true));
        assert!(tt["Resources"]["Reservations"]
            .get("GenericResources")
            .is_none());
    }
}
