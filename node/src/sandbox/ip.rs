//! The kernel calls of the sandbox, through iproute2 and nftables (the same
//! netlink requests `ip` and `nft` make). Blocking: called only from the
//! process driver's starter threads and from blocking tasks, never from an
//! async task or an actor handler.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum IpError {
    #[error("cannot run {0}: {1}")]
    Spawn(&'static str, #[source] std::io::Error),
    #[error("{tool} failed: {stderr}")]
    Failed { tool: &'static str, stderr: String },
}

/// Runs `tool args...` with `input` on stdin; an error carries its stderr.
fn run(tool: &'static str, args: &[&str], input: Option<&str>) -> Result<String, IpError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IpError::Spawn(tool, e))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| IpError::Spawn(tool, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| IpError::Spawn(tool, e))?;
    if !out.status.success() {
        return Err(IpError::Failed {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n netns] -batch -` with one command a line.
pub fn batch(netns: Option<&str>, lines: &[String]) -> Result<(), IpError> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    run("ip", &args, Some(&(lines.join("\n") + "\n"))).map(|_| ())
}

/// `ip -force -batch -`: every line is tried, failures or not.
pub fn run_force(lines: &[String]) -> Result<(), IpError> {
    run(
        "ip",
        &["-force", "-batch", "-"],
        Some(&(lines.join("\n") + "\n")),
    )
    .map(|_| ())
}

/// `bridge -force -batch -`.
pub fn bridge_force(lines: &[String]) -> Result<(), IpError> {
    run(
        "bridge",
        &["-force", "-batch", "-"],
        Some(&(lines.join("\n") + "\n")),
    )
    .map(|_| ())
}

/// `ip args...`, its output.
pub fn ip(args: &[&str]) -> Result<String, IpError> {
    run("ip", args, None)
}

/// `nft -f -` with `script`.
pub fn nft(script: &str) -> Result<(), IpError> {
    run("nft", &["-f", "-"], Some(script)).map(|_| ())
}

/// `ip` succeeded, or failed because there was nothing to remove.
pub fn ignore_missing(r: Result<String, IpError>) -> Result<(), IpError> {
    match r {
        Ok(_) => Ok(()),
        Err(IpError::Failed { stderr, .. })
            if stderr.contains("Cannot find device")
                || stderr.contains("No such file")
                || stderr.contains("does not exist")
                || stderr.contains("No such process") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `iptables -w args...` (only for the rules a local Docker engine's chains need).
pub fn iptables(args: &[&str]) -> Result<(), IpError> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run("iptables", &all, None).map(|_| ())
}
