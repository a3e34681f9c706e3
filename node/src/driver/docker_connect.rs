//! `network connect` for containers shoal does not run: a container started
//! with a plain `docker run` on this node joins an *attachable* overlay
//! network. Its address comes from the /28 block the cluster state holds
//! for this node on that network (so no other node, and no task, can ever
//! be given it), the node's sandbox gives the container's namespace an
//! interface on the network exactly as it does for a task, and the network's
//! DNS server goes first in the container's resolv.conf, so that service
//! names resolve. What is connected is this node's own business, kept in
//! memory: it ends with `network disconnect`, when the container exits, or
//! when the daemon stops (its sandbox removes the overlay links).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use bollard::Docker;
use futures::StreamExt;
use parking_lot::Mutex;
use shoal_core::rules::network::NetworkInfo;

use crate::overlay::Overlay;
use crate::sandbox::overlay::NetAttach;
use crate::sandbox::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// One container on one network.
#[derive(Debug, Clone)]
pub struct Connected {
    pub container_id: String,
    pub container_name: String,
    pub network_id: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    resolv_conf: Option<PathBuf>,
}

pub struct Connections {
    docker: Docker,
    overlay: Arc<Overlay>,
    sandbox: Option<Arc<Sandbox>>,
    /// By sandbox key (container id and network id prefixes).
    held: Mutex<BTreeMap<String, Connected>>,
}

/// The sandbox key of a container on a network: 12 characters, what the
/// sandbox's names take.
fn key(container_id: &str, network_id: &str) -> String {
    let c = &container_id[..container_id.len().min(8)];
    let n = &network_id[..network_id.len().min(4)];
    format!("{c}{n}")
}

fn nameserver_line(gateway: Ipv4Addr) -> String {
    format!("nameserver {gateway}")
}

impl Connections {
    pub fn new(docker: Docker, overlay: Arc<Overlay>, sandbox: Option<Arc<Sandbox>>) -> Arc<Self> {
        Arc::new(Connections {
            docker,
            overlay,
            sandbox,
            held: Mutex::new(BTreeMap::new()),
        })
    }

    /// The containers connected to `network_id` on this node.
    pub fn on(&self, network_id: &str) -> Vec<Connected> {
        self.held
            .lock()
            .values()
            .filter(|c| c.network_id == network_id)
            .cloned()
            .collect()
    }

    /// The network named (id, name, or unique id prefix) in the table.
    fn network(&self, key: &str) -> Result<NetworkInfo, ConnectError> {
        let table = self.overlay.watch.current();
        let exact = table.networks.iter().find(|n| n.id == key || n.name == key);
        let found = exact.or_else(|| {
            let mut p = table.networks.iter().filter(|n| n.id.starts_with(key));
            match (p.next(), p.next()) {
                (Some(n), None) if !key.is_empty() => Some(n),
                _ => None,
            }
        });
        found
            .cloned()
            .ok_or_else(|| ConnectError::NotFound(format!("network {key} not found")))
    }

    /// Connects `container` to `network` on this node (`node_id`: whose
    /// block the address comes from), at `want` if given.
    pub async fn connect(
        self: &Arc<Self>,
        node_id: &str,
        network: &str,
        container: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Connected, ConnectError> {
        let net = self.network(network)?;
        if !net.attachable || net.ingress {
            return Err(ConnectError::Forbidden(format!(
                "Could not attach to network {network}: network {} not manually attachable",
                net.name
            )));
        }
        let Some(sandbox) = self.sandbox.clone() else {
            return Err(ConnectError::Failed(
                "this node cannot give containers a network (see node inspect)".into(),
            ));
        };
        let Some(dp) = self.overlay.dataplane() else {
            return Err(ConnectError::Failed(
                "this node has no overlay data plane (see its log)".into(),
            ));
        };
        let table = self.overlay.watch.current();
        let Some(block) = table
            .blocks
            .iter()
            .find(|b| b.network_id == net.id && b.node_id == node_id)
            .map(|b| b.block)
        else {
            return Err(ConnectError::Failed(format!(
                "this node holds no addresses of network {} for containers (it has no Docker engine in the swarm's view)",
                net.name
            )));
        };
        let inspect = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|_| ConnectError::NotFound(format!("No such container: {container}")))?;
        let cid = inspect.id.clone().unwrap_or_default();
        let cname = inspect
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let pid = inspect
            .state
            .as_ref()
            .filter(|s| s.running == Some(true))
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                ConnectError::Conflict(format!("Container {container} is not running"))
            })?;
        let k = key(&cid, &net.id);
        let addr = {
            let held = self.held.lock();
            if held.contains_key(&k) {
                return Err(ConnectError::Forbidden(format!(
                    "endpoint with name {cname} already exists in network {}",
                    net.name
                )));
            }
            let taken: Vec<Ipv4Addr> = held.values().map(|c| c.addr).collect();
            let usable = |a: &Ipv4Addr| {
                net.subnet.contains(*a)
                    && *a != net.gateway
                    && *a != net.subnet.addr
                    && *a != net.subnet.nth((net.subnet.size() - 1) as u32)
                    && !taken.contains(a)
            };
            match want {
                Some(a) if !block.contains(a) => {
                    return Err(ConnectError::Forbidden(format!(
                    "the address {a} is not this node's to give on network {} (its block: {block})",
                    net.name
                )))
                }
                Some(a) if !usable(&a) => {
                    return Err(ConnectError::Forbidden(format!(
                        "Address already in use: {a}"
                    )))
                }
                Some(a) => a,
                None => (0..block.size())
                    .map(|o| block.nth(o as u32))
                    .find(usable)
                    .ok_or_else(|| {
                        ConnectError::Forbidden(format!(
                            "no address left in this node's block {block} of network {}",
                            net.name
                        ))
                    })?,
            }
        };
        // Devices after the ones shoal gave it already (eth0 is the engine's).
        let first = 1 + self
            .held
            .lock()
            .values()
            .filter(|c| c.container_id == cid)
            .count();
        let attach = NetAttach {
            network_id: net.id.clone(),
            addr,
            subnet: net.subnet,
            gateway: net.gateway,
            internal: net.internal,
            mtu: if net.encrypted { dp.mtu } else { dp.vxlan_mtu },
        };
        let resolv_conf = inspect.resolv_conf_path.clone().map(PathBuf::from);
        let connected = Connected {
            container_id: cid.clone(),
            container_name: cname,
            network_id: net.id.clone(),
            addr,
            prefix: net.subnet.prefix,
            resolv_conf: resolv_conf.clone(),
        };
        self.held.lock().insert(k.clone(), connected.clone());
        let (k2, gateway) = (k.clone(), net.gateway);
        let wired = tokio::task::spawn_blocking(move || {
            sandbox.attach_container(&k2, pid, &[attach], first)?;
            if let Some(path) = resolv_conf {
                name_server_first(&path, gateway);
            }
            Ok::<_, crate::sandbox::SandboxError>(())
        })
        .await
        .map_err(|e| ConnectError::Failed(e.to_string()))
        .and_then(|r| r.map_err(|e| ConnectError::Failed(format!("cannot connect: {e}"))));
        if let Err(e) = wired {
            self.held.lock().remove(&k);
            return Err(e);
        }
        // The connection ends with the container.
        let me = Arc::downgrade(self);
        let docker = self.docker.clone();
        tokio::spawn(async move {
            let _ = docker.wait_container(&cid, None).next().await;
            if let Some(me) = me.upgrade() {
                me.release(&k).await;
            }
        });
        Ok(connected)
    }

    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), ConnectError> {
        let net = self.network(network)?;
        let cid = match self.docker.inspect_container(container, None).await {
            Ok(i) => i.id.unwrap_or_default(),
            // A container gone already may still be named by its id.
            Err(_) => container.to_string(),
        };
        let k = self
            .held
            .lock()
            .iter()
            .find(|(_, c)| {
                c.network_id == net.id && (c.container_id == cid || c.container_name == container)
            })
            .map(|(k, _)| k.clone());
        let Some(k) = k else {
            return Err(ConnectError::Forbidden(format!(
                "container {container} is not connected to network {}",
                net.name
            )));
        };
        self.release(&k).await;
        Ok(())
    }

    /// Takes the interface out and the nameserver line back.
    async fn release(&self, k: &str) {
        let Some(c) = self.held.lock().remove(k) else {
            return;
        };
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let gateway = self.network(&c.network_id).ok().map(|n| n.gateway);
        let k = k.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            sandbox.release(&k);
            if let (Some(path), Some(gw)) = (c.resolv_conf, gateway) {
                drop_name_server(&path, gw);
            }
        })
        .await;
    }
}

/// Puts `nameserver GATEWAY` first in a container's resolv.conf (the
/// engine's file, bind-mounted into it), once.
fn name_server_first(path: &std::path::Path, gateway: Ipv4Addr) {
    let line = nameserver_line(gateway);
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    if text.lines().any(|l| l.trim() == line) {
        return;
    }
    let _ = std::fs::write(path, format!("{line}\n{text}"));
}

fn drop_name_server(path: &std::path::Path, gateway: Ipv4Addr) {
    let line = nameserver_line(gateway);
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let kept: Vec<&str> = text.lines().filter(|l| l.trim() != line).collect();
    let _ = std::fs::write(path, kept.join("\n") + "\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_the_sandbox_names() {
        assert_eq!(key("0123456789abcdef", "zyxwvut"), "01234567zyxw");
        assert_eq!(key("ab", "c"), "abc");
    }

    #[test]
    fn the_nameserver_line_goes_first_once_and_comes_back_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\noptions ndots:0\n").expect("write");
        let gw = Ipv4Addr::new(10, 0, 9, 1);
        name_server_first(&path, gw);
        name_server_first(&path, gw);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "nameserver 10.0.9.1\nnameserver 192.0.2.53\noptions ndots:0\n"
        );
        drop_name_server(&path, gw);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "nameserver 192.0.2.53\noptions ndots:0\n");
    }
}
