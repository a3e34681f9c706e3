//! The container options of a `ContainerSpec` beyond the basics (`Command`,
//! `TTY`, `Init`, `Groups`, `Sysctls`, `Ulimits`, `DNSConfig`, `Hosts`) and
//! the generic resources of `Resources.Reservations`, read into bollard's
//! models and from there into the domain's, and back.

use bollard::models::{
    GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec,
    GenericResourcesInnerNamedResourceSpec, ResourcesUlimits, TaskSpecContainerSpec,
    TaskSpecContainerSpecDnsConfig,
};
use shoal_core::model::container::{ContainerOptions, DnsConfig, Ulimit};
use shoal_core::model::placement::GenericResource;

/// Reads the options from a request's `ContainerSpec` (already read into
/// bollard's type by `api::typed`).
pub fn parse(c: &TaskSpecContainerSpec) -> Result<ContainerOptions, String> {
    let dns = c.dns_config.clone().unwrap_or_default();
    Ok(ContainerOptions {
        entrypoint: c.command.clone().unwrap_or_default(),
        tty: c.tty.unwrap_or(false),
        init: c.init,
        groups: c.groups.clone().unwrap_or_default(),
        sysctls: c.sysctls.clone().unwrap_or_default().into_iter().collect(),
        ulimits: c
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                let name = u.name.unwrap_or_default();
                let soft = u.soft.unwrap_or(0);
                Ulimit {
                    hard: u.hard.unwrap_or(soft),
                    name,
                    soft,
                }
            })
            .collect(),
        dns: DnsConfig {
            nameservers: dns.nameservers.unwrap_or_default(),
            search: dns.search.unwrap_or_default(),
            options: dns.options.unwrap_or_default(),
        },
        hosts: c.hosts.clone().unwrap_or_default(),
    })
}

/// Fills the options into a `ContainerSpec` as dockerd shows them.
pub fn to_wire(o: &ContainerOptions, c: &mut TaskSpecContainerSpec) {
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    c.command = some(&o.entrypoint);
    c.tty = o.tty.then_some(true);
    c.init = o.init;
    c.groups = some(&o.groups);
    c.sysctls = (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect());
    c.ulimits = ulimits_to_wire(&o.ulimits);
    c.dns_config = (!o.dns.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
        nameservers: some(&o.dns.nameservers),
        search: some(&o.dns.search),
        options: some(&o.dns.options),
    });
    c.hosts = some(&o.hosts);
}

/// `--ulimit`s in the Engine API's shape (`None` for none), for a
/// `ContainerSpec` and for the engine's `HostConfig` alike.
pub fn ulimits_to_wire(ulimits: &[Ulimit]) -> Option<Vec<ResourcesUlimits>> {
    (!ulimits.is_empty()).then(|| {
        ulimits
            .iter()
            .map(|u| ResourcesUlimits {
                name: Some(u.name.clone()),
                soft: Some(u.soft),
                hard: Some(u.hard),
            })
            .collect()
    })
}

/// `GenericResources` (of a reservation or a node's description).
pub fn parse_generic(
    list: Option<&[GenericResourcesInner]>,
) -> Result<Vec<GenericResource>, String> {
    list.unwrap_or_default()
        .iter()
        .cloned()
        .map(|g| match (g.discrete_resource_spec, g.named_resource_spec) {
            (Some(d), None) => {
                let kind = d.kind.unwrap_or_default();
                let value = d.value.unwrap_or(0);
                u64::try_from(value)
                    .map_err(|_| format!("invalid generic resource {kind}={value}"))
                    .and_then(|n| GenericResource::parse(&format!("{kind}={n}")))
            }
            (None, Some(n)) => {
                let (kind, value) = (n.kind.unwrap_or_default(), n.value.unwrap_or_default());
                if value.parse::<u64>().is_ok() {
                    return Err(format!("invalid generic resource {kind}={value}: a named unit cannot be a number"));
                }
                GenericResource::parse(&format!("{kind}={value}"))
            }
            _ => Err("a GenericResources entry holds one of DiscreteResourceSpec and NamedResourceSpec".into()),
        })
        .collect()
}

pub fn generic_to_wire(list: &[GenericResource]) -> Option<Vec<GenericResourcesInner>> {
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|g| match g {
                GenericResource::Discrete { kind, value } => GenericResourcesInner {
                    discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec {
                        kind: Some(kind.clone()),
                        value: Some(i64::try_from(*value).unwrap_or(i64::MAX)),
                    }),
                    named_resource_spec: None,
                },
                GenericResource::Named { kind, value } => GenericResourcesInner {
                    named_resource_spec: Some(GenericResourcesInnerNamedResourceSpec {
                        kind: Some(kind.clone()),
                        value: Some(value.clone()),
                    }),
                    discrete_resource_spec: None,
                },
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_round_trip_through_the_engine_shape() {
        let c = json!({
            "Command": ["/bin/sh", "-c"], "TTY": true, "Init": true, "Groups": ["audio"],
            "Sysctls": {"net.core.somaxconn": "512"},
            "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
            "DNSConfig": {"Nameservers": ["10.0.0.53"], "Search": ["example.org"], "Options": ["ndots:2"]},
            "Hosts": ["10.0.0.9 db"]
        });
        let c: TaskSpecContainerSpec = serde_json::from_value(c).unwrap();
        let o = parse(&c).unwrap();
        assert_eq!(o.ulimits[0].hard, 200);
        let mut back = TaskSpecContainerSpec::default();
        to_wire(&o, &mut back);
        assert_eq!(parse(&back).unwrap(), o);
    }

    #[test]
    fn generic_resources_read_both_kinds() {
        let v = json!([{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}},
                       {"NamedResourceSpec": {"Kind": "fpga", "Value": "F-1"}}]);
        let v: Vec<GenericResourcesInner> = serde_json::from_value(v).unwrap();
        let g = parse_generic(Some(&v)).unwrap();
        assert_eq!(g[0].units(), 2);
        assert_eq!(g[1].kind(), "fpga");
        let back = generic_to_wire(&g).unwrap_or_default();
        assert_eq!(parse_generic(Some(&back)).unwrap(), g);
        let negative: Vec<GenericResourcesInner> =
            serde_json::from_value(json!([{"DiscreteResourceSpec": {"Kind": "gpu", "Value": -1}}]))
                .unwrap();
        assert!(parse_generic(Some(&negative)).is_err());
    }
}
