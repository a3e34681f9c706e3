//! `-p/--publish` in docker's two forms, as the Engine API's
//! `EndpointSpec.Ports` entries: `[PUBLISHED:]TARGET[/PROTOCOL]` and
//! `published=N,target=N[,protocol=tcp|udp][,mode=ingress|host]`, plus
//! shoal's `proxy-protocol=v1|v2` and `idle-timeout=DURATION`.

use serde_json::{json, Value};
use shoal_node::api::wire;

fn port(s: &str, what: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 || what == "published" => Ok(p),
        _ => Err(format!("invalid {what} port {s:?}")),
    }
}

fn protocol(s: &str) -> Result<&'static str, String> {
    match s {
        "tcp" => Ok("tcp"),
        "udp" => Ok("udp"),
        _ => Err(format!("invalid protocol {s:?}: expected tcp or udp")),
    }
}

/// One `--publish` value, as an `EndpointSpec.Ports` entry.
pub fn parse(value: &str) -> Result<Value, String> {
    if value.contains('=') {
        let (mut published, mut target, mut proto, mut mode) = (0, None, "tcp", "ingress");
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
                        "ingress" => "ingress",
                        "host" => "host",
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
        let mut port = json!({
            "Protocol": proto,
            "TargetPort": target,
            "PublishedPort": published,
            "PublishMode": mode,
        });
        if let Some(p) = proxy {
            port["ProxyProtocol"] = json!(p);
        }
        if let Some(ns) = idle {
            port["IdleTimeout"] = json!(ns);
        }
        return Ok(port);
    }
    let (ports, proto) = match value.split_once('/') {
        Some((p, proto)) => (p, protocol(proto)?),
        None => (value, "tcp"),
    };
    let (published, target) = match ports.split_once(':') {
        Some((p, t)) => (port(p, "published")?, port(t, "target")?),
        None => (0, port(ports, "target")?),
    };
    Ok(json!({
        "Protocol": proto,
        "TargetPort": target,
        "PublishedPort": published,
        "PublishMode": "ingress",
    }))
}

/// `--publish-rm` then `--publish-add` on a service's `EndpointSpec.Ports`: a
/// removal matches by target port and protocol (and the published port, if
/// given); an addition replaces a port with the same published port.
pub fn edit(ports: &mut Vec<Value>, add: &[String], rm: &[String]) -> Result<(), String> {
    for r in rm {
        let r = parse(r)?;
        ports.retain(|p| {
            let same = p["TargetPort"] == r["TargetPort"]
                && p["Protocol"].as_str().unwrap_or("tcp") == r["Protocol"]
                && (r["PublishedPort"] == 0 || p["PublishedPort"] == r["PublishedPort"]);
            !same
        });
    }
    for a in add {
        let a = parse(a)?;
        if a["PublishedPort"] != 0 {
            ports.retain(|p| {
                p["PublishedPort"] != a["PublishedPort"]
                    || p["Protocol"].as_str().unwrap_or("tcp") != a["Protocol"]
            });
        }
        ports.push(a);
    }
    Ok(())
}

/// `Spec.EndpointSpec` for these `--publish` values, balance and mode.
pub fn endpoint_spec(
    values: &[String],
    balance: Option<&str>,
    mode: Option<&str>,
) -> Result<Value, String> {
    let ports = values
        .iter()
        .map(|v| parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut spec = json!({ "Mode": mode.unwrap_or("vip"), "Ports": ports });
    if let Some(b) = balance {
        spec["Balance"] = json!(b);
    }
    Ok(spec)
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
            (p["PublishedPort"].as_u64(), p["TargetPort"].as_u64()),
            (Some(8080), Some(80))
        );
        assert_eq!(parse("53:53/udp").expect("udp")["Protocol"], "udp");
        assert_eq!(parse("80").expect("target only")["PublishedPort"], 0);
        let l = parse("published=8080,target=80,mode=host,protocol=udp").expect("long");
        assert_eq!(l["PublishMode"], "host");
        assert_eq!(l["Protocol"], "udp");
        assert!(parse("8080:0").is_err());
        assert!(parse("x:80").is_err());
        assert!(parse("published=1").is_err());
        assert!(parse("target=80,mode=bogus").is_err());
        assert!(parse("80/sctp").is_err());
        let idle = parse("published=8080,target=80,idle-timeout=30s").expect("idle");
        assert_eq!(idle["IdleTimeout"], 30_000_000_000u64);
        assert!(parse("target=80,idle-timeout=soon").is_err());
    }
}
