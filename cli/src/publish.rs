//! `-p/--publish` in docker's two forms, as the Engine API's
//! `EndpointSpec.Ports` entries: `[PUBLISHED:]TARGET[/PROTOCOL]` and
//! `published=N,target=N[,protocol=tcp|udp][,mode=ingress|host]`, plus
//! shoal's `proxy-protocol=v1|v2` and `idle-timeout=DURATION`.

use shoal_node::api::wire::{
    self, EndpointPortConfig, EndpointPortConfigProtocolEnum as Protocol,
    EndpointPortConfigPublishModeEnum as PublishMode, EndpointSpecModeEnum,
};

fn port(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 || what == "published" => Ok(p),
        _ => Err(format!("invalid {what} port {s:?}")),
    }
}

fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "tcp" => Ok(Protocol::TCP),
        "udp" => Ok(Protocol::UDP),
        _ => Err(format!("invalid protocol {s:?}: expected tcp or udp")),
    }
}

fn entry(proto: Protocol, target: u16, published: u16, mode: PublishMode) -> wire::PortConfig {
    wire::PortConfig {
        docker: EndpointPortConfig {
            protocol: Some(proto),
            target_port: Some(i64::from(target)),
            published_port: Some(i64::from(published)),
            publish_mode: Some(mode),
            name: None,
        },
        ..Default::default()
    }
}

/// One `--publish` value, as an `EndpointSpec.Ports` entry.
pub fn parse(value: &str) -> Result<wire::PortConfig, String> {
    if value.contains('=') {
        let (mut published, mut target, mut proto, mut mode) =
            (0, None, Protocol::TCP, PublishMode::INGRESS);
        let mut proxy = None;
        let mut idle = None;
        for field in value.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("invalid field {field:?}: must be a key=value pair"))?;
            match k.trim() {
                "published" => published = port(v, "published")?,
                "target" => target = Some(port(v, "target")?),
                "protocol" => proto = protocol(v)?,
                "mode" => {
                    mode = match v {
                        "ingress" => PublishMode::INGRESS,
                        "host" => PublishMode::HOST,
                        _ => {
                            return Err(format!(
                        "invalid publish mode value ({v}): must be either \"ingress\" or \"host\""
                    ))
                        }
                    }
                }
                "proxy-protocol" => {
                    proxy = match v {
                        "v1" | "v2" => Some(v.to_string()),
                        _ => {
                            return Err(format!(
                            "invalid proxy-protocol value ({v}): must be either \"v1\" or \"v2\""
                        ))
                        }
                    }
                }
                "idle-timeout" => idle = Some(crate::output::parse_duration(v)?),
                other => return Err(format!("invalid field key {other}")),
            }
        }
        let target = target.ok_or("missing mandatory field \"target\"")?;
        let mut port = entry(proto, target, published, mode);
        port.proxy_protocol = proxy;
        port.idle_timeout = idle;
        return Ok(port);
    }
    let (ports, proto) = match value.split_once('/') {
        Some((p, proto)) => (p, protocol(proto)?),
        None => (value, Protocol::TCP),
    };
    let (published, target) = match ports.split_once(':') {
        Some((p, t)) => (port(p, "published")?, port(t, "target")?),
        None => (0, port(ports, "target")?),
    };
    Ok(entry(proto, target, published, PublishMode::INGRESS))
}

/// A port's protocol, `tcp` when it names none (docker's default).
fn proto_of(p: &wire::PortConfig) -> Protocol {
    p.docker.protocol.unwrap_or(Protocol::TCP)
}

/// `--publish-rm` then `--publish-add` on a service's `EndpointSpec.Ports`: a
/// removal matches by target port and protocol (and the published port, if
/// given); an addition replaces a port with the same published port.
pub fn edit(
    ports: &mut Vec<wire::PortConfig>,
    add: &[String],
    rm: &[String],
) -> Result<(), String> {
    let published = |p: &wire::PortConfig| p.docker.published_port.unwrap_or(0);
    for r in rm {
        let r = parse(r)?;
        ports.retain(|p| {
            let same = p.docker.target_port == r.docker.target_port
                && proto_of(p) == proto_of(&r)
                && (published(&r) == 0 || published(p) == published(&r));
            !same
        });
    }
    for a in add {
        let a = parse(a)?;
        if published(&a) != 0 {
            ports.retain(|p| published(p) != published(&a) || proto_of(p) != proto_of(&a));
        }
        ports.push(a);
    }
    Ok(())
}

/// An endpoint mode (`vip`, `dnsrr`) as the Engine API's word.
pub fn endpoint_mode(mode: &str) -> Result<EndpointSpecModeEnum, String> {
    match mode {
        "vip" => Ok(EndpointSpecModeEnum::VIP),
        "dnsrr" => Ok(EndpointSpecModeEnum::DNSRR),
        _ => Err(format!(
            "invalid endpoint mode {mode:?}: expected vip or dnsrr"
        )),
    }
}

/// `Spec.EndpointSpec` for these `--publish` values, balance and mode.
pub fn endpoint_spec(
    values: &[String],
    balance: Option<&str>,
    mode: Option<&str>,
) -> Result<wire::EndpointSpec, String> {
    let ports = values
        .iter()
        .map(|v| parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(wire::EndpointSpec {
        docker: bollard::models::EndpointSpec {
            mode: Some(endpoint_mode(mode.unwrap_or("vip"))?),
            ports: None,
        },
        balance: balance.map(str::to_string),
        ports: Some(ports),
        extra: Default::default(),
    })
}

/// `*:80->80/tcp, ...` for the ports `keep` selects.
fn ports_text(
    ports: Option<&[wire::PortConfig]>,
    keep: impl Fn(&wire::PortConfig) -> bool,
) -> String {
    ports
        .unwrap_or_default()
        .iter()
        .filter(|p| keep(p))
        .map(|p| {
            let p = &p.docker;
            format!(
                "*:{}->{}/{}",
                p.published_port.unwrap_or(0),
                p.target_port.unwrap_or(0),
                p.protocol
                    .as_ref()
                    .map_or("tcp".to_string(), |x| x.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `service ls`'s PORTS column: the ingress ports of `Endpoint.Ports`.
pub fn column(endpoint_ports: Option<&[wire::PortConfig]>) -> String {
    ports_text(endpoint_ports, |p| {
        p.docker.publish_mode != Some(wire::EndpointPortConfigPublishModeEnum::HOST)
    })
}

/// `service ps`'s PORTS column: a task's host-mode ports.
pub fn task_column(task_ports: Option<&[wire::PortConfig]>) -> String {
    ports_text(task_ports, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms() {
        let p = parse("8080:80").expect("short");
        assert_eq!(
            (p.docker.published_port, p.docker.target_port),
            (Some(8080), Some(80))
        );
        assert_eq!(
            parse("53:53/udp").expect("udp").docker.protocol,
            Some(Protocol::UDP)
        );
        assert_eq!(
            parse("80").expect("target only").docker.published_port,
            Some(0)
        );
        let l = parse("published=8080,target=80,mode=host,protocol=udp").expect("long");
        assert_eq!(l.docker.publish_mode, Some(PublishMode::HOST));
        assert_eq!(l.docker.protocol, Some(Protocol::UDP));
        assert!(parse("8080:0").is_err());
        assert!(parse("x:80").is_err());
        assert!(parse("published=1").is_err());
        assert!(parse("target=80,mode=bogus").is_err());
        assert!(parse("80/sctp").is_err());
        let idle = parse("published=8080,target=80,idle-timeout=30s").expect("idle");
        assert_eq!(idle.idle_timeout, Some(30_000_000_000u64));
        assert!(parse("target=80,idle-timeout=soon").is_err());
        assert_eq!(
            serde_json::json!(parse("8080:80").expect("short")),
            serde_json::json!({"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                               "PublishMode": "ingress"})
        );
    }
}
