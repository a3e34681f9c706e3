use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use shoal_node::options::DaemonTimings;
use shoal_node::runtime::NodeConfig;

use crate::output::parse_duration;

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map(Duration::from_nanos)
}

fn generic_resource(s: &str) -> Result<shoal_core::model::placement::GenericResource, String> {
    shoal_core::model::placement::GenericResource::parse(s)
}

#[derive(Args)]
pub struct DaemonArgs {
    /// Where the node keeps its state
    #[arg(long, default_value = "/var/lib/shoal")]
    data_dir: PathBuf,
    /// Name this node shows in `node ls` (default: the OS hostname)
    #[arg(long)]
    hostname: Option<String>,
    /// Address for cluster traffic (QUIC, UDP)
    #[arg(long, default_value = "0.0.0.0:2377")]
    listen_addr: std::net::SocketAddr,
    /// Address other nodes use to reach this one (default: the listen address)
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Allow the fault-injection hooks of the control API (never in production)
    #[arg(long)]
    enable_chaos: bool,
    /// Raft tick
    #[arg(long, value_parser = duration, default_value = "100ms")]
    raft_tick: Duration,
    /// Raft election timeout, in ticks (raft-rs draws each from [N, 2N))
    #[arg(long, default_value_t = 6)]
    raft_election_ticks: usize,
    /// Raft heartbeat interval, in ticks
    #[arg(long, default_value_t = 1)]
    raft_heartbeat_ticks: usize,
    /// Interval of agent heartbeats; a node is down after three are missed,
    /// or once one is late and its cluster port is closed
    #[arg(long, value_parser = duration, default_value = "500ms")]
    dispatcher_heartbeat: Duration,
    /// Validity of the node certificates this node issues as a manager
    #[arg(long, value_parser = duration, default_value = "2160h")]
    cert_expiry: Duration,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off unless
    /// given; a loopback address unless --metrics-allow-remote)
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Let --metrics-addr be an address other hosts can reach
    #[arg(long, requires = "metrics_addr")]
    metrics_allow_remote: bool,
    /// A resource this node offers tasks, as dockerd's flag: `gpu=2` (a
    /// count) or `gpu=GPU-1a2b` (one named unit); repeat for more
    #[arg(long = "node-generic-resource", value_name = "KIND=VALUE", value_parser = generic_resource)]
    node_generic_resources: Vec<shoal_core::model::placement::GenericResource>,
    /// Hold at most N tasks with a network sandbox of their own at once
    /// (shoal's own; default: one per address of the blocks a node may
    /// claim, 8168); the scheduler keeps further tasks pending
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=shoal_node::sandbox::MAX_SANDBOXES as i64))]
    max_sandboxes: Option<u16>,
    /// Tasks take only N addresses of each /22 block of the node (tests:
    /// blocks claimed and given back with a few hundred tasks)
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u16).range(1..=shoal_node::sandbox::BLOCK_HOSTS as i64))]
    sandbox_block_hosts: Option<u16>,
    /// The newest record format this node claims (tests: the stand-in for
    /// an older build, docs/upgrades.md).
    #[arg(long, value_name = "N", hide = true, env = "SHOAL_MAX_FORMAT", default_value_t = shoal_node::protocol::codec::FORMAT, value_parser = clap::value_parser!(u32).range(shoal_node::protocol::codec::OLDEST as i64..=shoal_node::protocol::codec::FORMAT as i64))]
    max_format: u32,
    /// Log filter (also RUST_LOG)
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Remove what a daemon of this data dir left after a kill (its tasks'
    /// network namespaces, its bridge, its NAT table) and exit
    #[arg(long)]
    clean_sandbox: bool,
}

fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub async fn run(host: &str, a: DaemonArgs) -> anyhow::Result<()> {
    if a.clean_sandbox {
        let dir = a.data_dir.clone();
        tokio::task::spawn_blocking(move || shoal_node::sandbox::clean(&dir)).await?;
        return Ok(());
    }
    let mut filter = std::env::var("RUST_LOG").unwrap_or(a.log_level.clone());
    // hickory's server logs every DNS query at info: the embedded DNS
    // server would flood the log (and anyone could make it).
    if !filter.contains("hickory") {
        filter.push_str(",hickory_server=warn");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .map_err(|e| anyhow!("invalid --log-level {filter:?}: {e}"))?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let metrics = a
        .metrics_addr
        .map(|addr| shoal_node::metrics::MetricsAddr::new(addr, a.metrics_allow_remote))
        .transpose()?;
    let socket = host.strip_prefix("unix://").ok_or_else(|| {
        anyhow!("invalid host {host:?}: the daemon serves unix:///path/to/socket only")
    })?;
    let timings = DaemonTimings {
        raft_tick: a.raft_tick,
        raft_election_ticks: a.raft_election_ticks,
        raft_heartbeat_ticks: a.raft_heartbeat_ticks,
        dispatcher_heartbeat: a.dispatcher_heartbeat,
    }
    .build()?;
    let hostname = a.hostname.unwrap_or_else(os_hostname);
    let span = tracing::info_span!("node", host = %hostname);
    let _enter = span.enter();
    let config = NodeConfig {
        data_dir: a.data_dir,
        hostname,
        listen_addr: a.listen_addr,
        advertise_addr: a.advertise_addr,
        cert_validity: a.cert_expiry,
        enable_chaos: a.enable_chaos,
        timings,
        generic_resources: a.node_generic_resources,
        max_sandboxes: a.max_sandboxes.map(usize::from),
        sandbox_block_hosts: a.sandbox_block_hosts.map(usize::from),
        max_format: a.max_format,
    };
    shoal_node::daemon::run(config, PathBuf::from(socket), metrics)
        .await
        .context("daemon failed")
}
