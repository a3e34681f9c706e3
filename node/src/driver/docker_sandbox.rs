//! The network of a docker task on overlay networks. The engine cannot
//! wire a container into shoal's overlays, and a task's program must not
//! start before its interfaces exist; so, as Kubernetes does with its pause
//! container, every such task gets a *sandbox container* first: a program
//! that only sleeps (`shoal/pause:1`, built here, no registry needed) on
//! the engine's default bridge (the task's way out, and the address the
//! routing mesh reaches it at), with `HostConfig.Dns` set to the embedded
//! DNS server of the task's first network. The node's sandbox then gives
//! that container's namespace one interface per overlay network, exactly as
//! it does for a process task, and only then is the task's own container
//! created, sharing the sandbox's namespace (`NetworkMode: container:...`),
//! so that it sees its overlay addresses and resolv.conf from its first
//! instruction. The two containers go together.

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use crate::sandbox::overlay::NetAttach;

/// The image of sandbox containers.
pub const PAUSE_IMAGE: &str = "shoal/pause:1";
/// On a sandbox container: the task it holds the network of.
pub const LABEL_SANDBOX: &str = "com.shoal.sandbox.task";

/// A sandbox container, started, its namespace not yet wired.
pub struct SandboxContainer {
    pub name: String,
    pub pid: u32,
    /// Its address on the engine's bridge (none on internal-only networks).
    pub addr: Option<IpAddr>,
}

/// The sandbox container's name: the task container's with `.sandbox`.
pub fn name_for(task_container: &str) -> String {
    format!("{task_container}.sandbox")
}

/// A static x86-64 Linux program of 129 bytes: `pause(2)` in a loop. As a
/// container's pid 1 it ignores every signal it has no handler for, so it
/// goes when its container is removed (SIGKILL), which is the only way
/// shoal ends it.
pub fn pause_program() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    // mov eax, 34 (pause); syscall; jmp back to the mov.
    let code: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let total = HEADERS + code.len() as u64;
    let mut elf = Vec::with_capacity(total as usize);
    // ELF header: 64-bit, little endian, version 1, System V.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // One PT_LOAD, read and execute, of the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for word in [0, BASE, BASE, total, total, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(&code);
    elf
}

/// The engine's own words for an error, where it gave some.
pub fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Builds `shoal/pause:1` unless the engine has it.
pub async fn ensure_image(docker: &Docker) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("docker tasks on overlay networks need an x86-64 node".into());
    }
    if docker.inspect_image(PAUSE_IMAGE).await.is_ok() {
        return Ok(());
    }
    let program = pause_program();
    let context = crate::ustar::archive(&[
        (
            "Dockerfile",
            b"FROM scratch\nCOPY pause /pause\nENTRYPOINT [\"/pause\"]\n",
            0o644,
        ),
        ("pause", &program, 0o755),
    ]);
    let opts = BuildImageOptionsBuilder::default()
        .t(PAUSE_IMAGE)
        .rm(true)
        .build();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("building {PAUSE_IMAGE}: {}", engine_message(&e)))?;
        if let Some(detail) = info.error_detail {
            return Err(format!(
                "building {PAUSE_IMAGE}: {}",
                detail.message.unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Starts the sandbox container of a task, with the task's hostname if it
/// has one (replacing one an earlier try
/// left): on the engine's bridge, or on no engine network at all when
/// every network of the task is internal.
pub async fn start(
    docker: &Docker,
    name: &str,
    labels: HashMap<String, String>,
    nets: &[NetAttach],
    hostname: Option<String>,
    options: &shoal_core::model::container::ContainerOptions,
) -> Result<SandboxContainer, String> {
    ensure_image(docker).await?;
    remove(docker, name).await;
    let internal_only = nets.iter().all(|n| n.internal);
    let dns = nets.first().map(|n| vec![n.gateway.to_string()]);
    let mut host_config = HostConfig {
        dns,
        dns_options: Some(vec!["ndots:0".into()]),
        network_mode: internal_only.then(|| "none".into()),
        init: Some(false),
        ..Default::default()
    };
    super::docker_options::for_sandbox(options, &mut host_config);
    let body = ContainerCreateBody {
        // The task's container shares this one's namespaces, hostname too
        // (the engine refuses a hostname on a container that joins another's).
        hostname,
        image: Some(PAUSE_IMAGE.into()),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("creating the sandbox container: {}", engine_message(&e)))?;
    if let Err(e) = docker.start_container(name, None).await {
        remove(docker, name).await;
        return Err(format!(
            "starting the sandbox container: {}",
            engine_message(&e)
        ));
    }
    let inspect = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| format!("inspecting the sandbox container: {}", engine_message(&e)))?;
    let pid = inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    let Some(pid) = pid else {
        remove(docker, name).await;
        return Err("the sandbox container is not running".into());
    };
    Ok(SandboxContainer {
        name: name.to_string(),
        pid,
        addr: engine_address(&inspect),
    })
}

/// A container's first address on an engine network.
pub fn engine_address(inspect: &bollard::models::ContainerInspectResponse) -> Option<IpAddr> {
    inspect
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .values()
        .find_map(|e| e.ip_address.clone().filter(|a| !a.is_empty()))?
        .parse()
        .ok()
}

/// Removes a container, running or not, with its anonymous volumes (as
/// swarmkit's executor does; named ones stay); a missing one is no error.
pub async fn remove(docker: &Docker, name: &str) {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    if let Err(e) = docker.remove_container(name, Some(opts)).await {
        let msg = engine_message(&e);
        if !msg.contains("No such container") {
            tracing::debug!(container = %name, error = %msg, "remove failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_program_is_one_loadable_segment() {
        let p = pause_program();
        assert_eq!(p.len(), 129);
        assert_eq!(&p[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(p[24..32].try_into().expect("8 bytes"));
        assert_eq!(entry, 0x40_0000 + 120);
        let filesz = u64::from_le_bytes(p[64 + 32..64 + 40].try_into().expect("8 bytes"));
        assert_eq!(filesz, p.len() as u64);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_pause_program_runs_until_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_program()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut child = std::process::Command::new(&path).spawn().expect("exec");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(child.try_wait().expect("wait").is_none(), "it exited");
        child.kill().expect("kill");
        let status = child.wait().expect("wait");
        assert!(!status.success());
    }
}
