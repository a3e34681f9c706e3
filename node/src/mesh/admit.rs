//! Which tunnels a node takes from its peers (pure: the endpoint table in,
//! a verdict out). A tunnel is the far half of a published ingress port, so
//! the far node takes one only for what its own copy of the replicated
//! endpoint table publishes: a running task of this node, and a target port
//! and protocol that task's service publishes in ingress mode. Every node of
//! the swarm is an ingress node of every ingress port (as in Swarm's routing
//! mesh): that the peer is still a member is the transport's standing check.

use std::net::IpAddr;

use shoal_core::model::port::{PortConfig, Protocol, PublishMode};

use shoal_core::rules::port::ServiceEndpoints;

/// Why a tunnel was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this node is not in a swarm")]
    NotInSwarm,
    #[error("a node does not tunnel to itself")]
    FromItself,
    #[error("the task is not a running backend of this node in the endpoint table")]
    NotABackend,
    #[error("the task's service publishes no such target port and protocol in ingress mode")]
    NotPublished,
    #[error("the task is not running here")]
    NotRunning,
    #[error("the task has no address of its own (host network): not dialled for a peer")]
    Loopback,
}

/// Whether `peer` may open a tunnel to `task_id`'s `port`/`protocol` on this
/// node (`own`), by the endpoint table: the published port it serves if so.
pub fn tunnel<'a>(
    table: &'a [ServiceEndpoints],
    own: &str,
    peer: &str,
    task_id: &str,
    port: u16,
    protocol: Protocol,
) -> Result<&'a PortConfig, Refusal> {
    if peer == own {
        return Err(Refusal::FromItself);
    }
    let service = table
        .iter()
        .find(|s| {
            s.backends
                .iter()
                .any(|b| b.task_id == task_id && b.node_id == own)
        })
        .ok_or(Refusal::NotABackend)?;
    service
        .ports
        .iter()
        .find(|p| {
            p.publish_mode == PublishMode::Ingress
                && p.published_port != 0
                && p.target_port == port
                && p.protocol == protocol
        })
        .ok_or(Refusal::NotPublished)
}

/// A task address a peer's tunnel may be dialled on: never one of the
/// node's own (loopback or unspecified: a task on the host's network).
pub fn address(ip: IpAddr) -> Result<(), Refusal> {
    let v4_mapped_loopback = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    };
    if ip.is_loopback() || ip.is_unspecified() || v4_mapped_loopback {
        Err(Refusal::Loopback)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::model::port::{Balance, PortConfig};
    use shoal_core::rules::port::Backend;

    use super::*;

    fn table() -> Vec<ServiceEndpoints> {
        let port = |target, protocol, publish_mode| PortConfig {
            protocol,
            target_port: target,
            published_port: 30000 + target,
            publish_mode,
            proxy_protocol: None,
            idle_timeout_ns: 0,
        };
        vec![ServiceEndpoints {
            service_id: "web".into(),
            ports: vec![
                port(80, Protocol::Tcp, PublishMode::Ingress),
                port(53, Protocol::Udp, PublishMode::Ingress),
                port(443, Protocol::Tcp, PublishMode::Host),
            ],
            balance: Balance::RoundRobin,
            backends: vec![
                Backend {
                    task_id: "t1".into(),
                    node_id: "n1".into(),
                    node_addr: "a1".into(),
                },
                Backend {
                    task_id: "t2".into(),
                    node_id: "n2".into(),
                    node_addr: "a2".into(),
                },
            ],
        }]
    }

    #[test]
    fn only_a_published_ingress_target_of_a_local_backend_is_tunnelled() {
        let t = table();
        let ok =
            |port, protocol| tunnel(&t, "n1", "n2", "t1", port, protocol).map(|p| p.target_port);
        assert_eq!(ok(80, Protocol::Tcp), Ok(80));
        assert_eq!(ok(53, Protocol::Udp), Ok(53));
        assert_eq!(
            tunnel(&t, "n1", "n2", "t1", 22, Protocol::Tcp),
            Err(Refusal::NotPublished)
        );
        assert_eq!(
            tunnel(&t, "n1", "n2", "t1", 80, Protocol::Udp),
            Err(Refusal::NotPublished)
        );
        // Host-mode ports are never proxied between nodes.
        assert_eq!(
            tunnel(&t, "n1", "n2", "t1", 443, Protocol::Tcp),
            Err(Refusal::NotPublished)
        );
        // Another node's task, an unknown task, a tunnel from itself.
        assert_eq!(
            tunnel(&t, "n1", "n2", "t2", 80, Protocol::Tcp),
            Err(Refusal::NotABackend)
        );
        assert_eq!(
            tunnel(&t, "n1", "n2", "zz", 80, Protocol::Tcp),
            Err(Refusal::NotABackend)
        );
        assert_eq!(
            tunnel(&t, "n1", "n1", "t1", 80, Protocol::Tcp),
            Err(Refusal::FromItself)
        );
    }

    #[test]
    fn loopback_and_unspecified_addresses_are_never_dialled_for_a_peer() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(address(ip), Err(Refusal::Loopback), "{ip}");
        }
        assert_eq!(address("10.200.0.5".parse().expect("ip")), Ok(()));
    }
}
