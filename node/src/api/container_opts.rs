//! The container options of a `ContainerSpec` beyond the basics (`Command`,
//! `TTY`, `Init`, `Groups`, `Sysctls`, `Ulimits`, `DNSConfig`, `Hosts`) and
//! the generic resources of `Resources.Reservations`, read into bollard's
//! models and from there into the domain's, and back.

use bollard::models::{
    GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec,
    GenericResourcesInnerNamedResourceSpec, ResourcesUlimits, TaskSpecContainerSpec,
    TaskSpecContainerSpecDnsConfig,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use shoal_actors::constraints::GenericResource;
use shoal_actors::container::{ContainerOptions, DnsConfig, Ulimit};

fn typed<T: DeserializeOwned + Default>(v: Option<&Value>, what: &str) -> Result<T, String> {
    match v {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("invalid ContainerSpec.{what}: {e}")),
    }
}

/// Reads the options from a request's `ContainerSpec`.
pub fn parse(container_spec: Option<&Value>) -> Result<ContainerOptions, String> {
    let get = |k: &str| container_spec.and_then(|c| c.get(k));
    let ulimits: Vec<ResourcesUlimits> = typed(get("Ulimits"), "Ulimits")?;
    let dns: TaskSpecContainerSpecDnsConfig = typed(get("DNSConfig"), "DNSConfig")?;
    let sysctls: std::collections::HashMap<String, String> = typed(get("Sysctls"), "Sysctls")?;
    Ok(ContainerOptions {
        entrypoint: typed(get("Command"), "Command")?,
        tty: typed::<Option<bool>>(get("TTY"), "TTY")?.unwrap_or(false),
        init: typed(get("Init"), "Init")?,
        groups: typed(get("Groups"), "Groups")?,
        sysctls: sysctls.into_iter().collect(),
        ulimits: ulimits
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
        hosts: typed(get("Hosts"), "Hosts")?,
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
pub fn parse_generic(v: Option<&Value>) -> Result<Vec<GenericResource>, String> {
    let list: Vec<GenericResourcesInner> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("invalid GenericResources: {e}"))?,
    };
    list.into_iter()
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
        let o = parse(Some(&c)).unwrap();
        assert_eq!(o.ulimits[0].hard, 200);
        let mut back = TaskSpecContainerSpec::default();
        to_wire(&o, &mut back);
        assert_eq!(
            parse(Some(&serde_json::to_value(back).unwrap())).unwrap(),
            o
        );
        assert!(parse(Some(&json!({"Ulimits": "nofile"}))).is_err());
    }

    #[test]
    fn generic_resources_read_both_kinds() {
        let v = json!([{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}},
                       {"NamedResourceSpec": {"Kind": "fpga", "Value": "F-1"}}]);
        let g = parse_generic(Some(&v)).unwrap();
        assert_eq!(g[0].units(), 2);
        assert_eq!(g[1].kind(), "fpga");
        let back = serde_json::to_value(generic_to_wire(&g)).unwrap();
        assert_eq!(parse_generic(Some(&back)).unwrap(), g);
        assert!(parse_generic(Some(
            &json!([{"DiscreteResourceSpec": {"Kind": "gpu", "Value": -1}}])
        ))
        .is_err());
    }
}
