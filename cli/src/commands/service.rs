//! `shoal service create|scale|rm|logs`; `ls`, `ps` and `inspect` are in `service_view.rs`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use shoal_node::api::wire;

use super::progress::wait_converged;
use super::service_view::{self, InspectArgs, PsArgs};
use super::values::{bytes, cpus, labels, publish_value, replicas};
use crate::client::{enc, Client};
use crate::output::{parse_duration, InvalidValue, ListArgs};

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ServiceCmd {
    /// Create a new service
    Create(CreateArgs),
    /// List services
    #[command(alias = "list")]
    Ls(ListArgs),
    /// List the tasks of a service
    Ps(PsArgs),
    /// Display detailed information on one or more services
    Inspect(InspectArgs),
    /// Scale one or multiple replicated services (SERVICE=REPLICAS)
    Scale(ScaleArgs),
    /// Remove one or more services
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Fetch the logs of a service
    Logs(LogsArgs),
    /// Update a service
    Update(super::update::UpdateArgs),
    /// Revert changes to a service's configuration
    Rollback(super::update::RollbackArgs),
}

fn duration_ns(s: &str) -> Result<u64, String> {
    parse_duration(s)
}

/// `seccomp=unconfined` or `seccomp=default` -> the seccomp mode.
fn security_opt(s: &str) -> Result<String, String> {
    match s.split_once(['=', ':']) {
        Some(("seccomp", mode @ ("unconfined" | "default"))) => Ok(mode.to_string()),
        _ => Err(format!(
            "invalid --security-opt {s:?}: only seccomp=unconfined and seccomp=default are supported"
        )),
    }
}

#[derive(Args)]
pub struct CreateArgs {
    /// Service name
    #[arg(long)]
    name: Option<String>,
    /// Number of tasks
    #[arg(long, default_value = "1", value_parser = replicas, allow_hyphen_values = true)]
    replicas: u64,
    /// Task driver: docker (IMAGE is an image) or process (IMAGE is an executable)
    #[arg(long, default_value = "docker")]
    driver: String,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<std::path::PathBuf>,
    #[command(flatten)]
    files: super::file_flags::CreateFileFlags,
    /// Service labels
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long, default_value = "any", value_parser = ["none", "on-failure", "any"])]
    restart_condition: String,
    /// Delay between restart attempts (ns|us|ms|s|m|h)
    #[arg(long, default_value = "5s", value_parser = duration_ns)]
    restart_delay: u64,
    /// Maximum number of restarts before giving up (0: unlimited)
    #[arg(long, default_value_t = 0)]
    restart_max_attempts: u64,
    /// Window used to evaluate the restart policy (ns|us|ms|s|m|h)
    #[arg(long, default_value = "0", value_parser = duration_ns)]
    restart_window: u64,
    /// Time to wait before force killing a task (ns|us|ms|s|m|h)
    #[arg(long, default_value = "10s", value_parser = duration_ns)]
    stop_grace_period: u64,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Container labels
    #[arg(long = "container-label")]
    container_label: Vec<String>,
    /// Limit CPUs
    #[arg(long, value_parser = cpus)]
    limit_cpu: Option<u64>,
    /// Limit Memory
    #[arg(long, value_parser = bytes)]
    limit_memory: Option<u64>,
    /// Limit the number of processes (0: unlimited)
    #[arg(long)]
    limit_pids: Option<u64>,
    /// Container hostname
    #[arg(long)]
    hostname: Option<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Attach a filesystem mount to the service
    #[arg(long, value_parser = crate::mount::parse)]
    mount: Vec<bollard::models::Mount>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Security options (only "seccomp=unconfined" and "seccomp=default")
    #[arg(long = "security-opt", value_parser = security_opt)]
    security_opt: Vec<String>,
    /// Reserve CPUs
    #[arg(long, value_parser = cpus)]
    reserve_cpu: Option<u64>,
    /// Reserve Memory
    #[arg(long, value_parser = bytes)]
    reserve_memory: Option<u64>,
    #[command(flatten)]
    rollout: super::update::RolloutFlags,
    #[command(flatten)]
    health: super::update::HealthFlags,
    #[command(flatten)]
    placement: super::placement::CreateFlags,
    #[command(flatten)]
    container: crate::container_opts::ContainerCreateFlags,
    /// Publish a port as a node port ([PUBLISHED:]TARGET[/PROTO] or published=,target=,protocol=,mode=)
    #[arg(short, long = "publish", value_parser = publish_value)]
    publish: Vec<String>,
    /// How each node balances connections to a published port (round-robin, least-conn)
    #[arg(long, value_parser = ["round-robin", "least-conn"])]
    endpoint_lb: Option<String>,
    /// Network attachments (NAME or name=NAME,alias=A; "host": the node's own network)
    #[arg(long = "network", value_parser = crate::attach::value)]
    network: Vec<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Exit immediately instead of waiting for the service to converge
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    /// Image (or, with --driver process, executable)
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    services: Vec<String>,
}

#[derive(Args)]
pub struct ScaleArgs {
    #[arg(short, long)]
    detach: bool,
    #[arg(required = true)]
    specs: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Do not neatly format logs
    #[arg(long)]
    raw: bool,
    /// Do not include task IDs in output
    #[arg(long)]
    no_task_ids: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    service: String,
}

/// A random docker-style name (`adjective_surname`) for a service created without --name.
fn random_name() -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "gifted", "happy", "jolly", "keen", "lucid", "nifty", "quirky",
        "sharp", "vivid",
    ];
    const RIGHT: &[&str] = &[
        "curie", "darwin", "euler", "hopper", "knuth", "lamport", "liskov", "noether", "ritchie",
        "turing",
    ];
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    format!("{}_{}", LEFT[n % LEFT.len()], RIGHT[(n / 7) % RIGHT.len()])
}

/// `--env-file` entries, then `--env` ones, as docker's `ReadKVEnvStrings`:
/// blank lines and `#` comments are skipped, `KEY=VALUE` is taken as it is,
/// a bare `KEY` takes its value from this shell's environment (or is left
/// out when unset).
fn env_with_files(files: &[std::path::PathBuf], env: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| InvalidValue(format!("open {}: {e}", f.display())))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = line.split_once('=').map_or(line, |(k, _)| k);
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(InvalidValue(format!(
                    "variable '{key}' contains whitespaces (in {})",
                    f.display()
                ))
                .into());
            }
            if line.contains('=') {
                out.push(line.to_string());
            } else if let Ok(v) = std::env::var(key) {
                out.push(format!("{key}={v}"));
            }
        }
    }
    out.extend(env.iter().cloned());
    Ok(out)
}

impl CreateArgs {
    /// The spec `service create` sends, as docker's client builds it.
    fn spec(&self, image: String) -> anyhow::Result<wire::ServiceSpec> {
        let a = self;
        let opt = |n: Option<u64>| n.map(wire::int);
        let mut container = wire::ContainerSpec {
            docker: wire::docker::TaskSpecContainerSpec {
                image: Some(image),
                args: Some(a.args.clone()),
                env: Some(env_with_files(&a.env_file, &a.env)?),
                stop_grace_period: Some(wire::int(a.stop_grace_period)),
                dir: a.workdir.clone(),
                user: a.user.clone(),
                labels: Some(labels(&a.container_label)?.into_iter().collect()),
                hostname: a.hostname.clone(),
                mounts: Some(a.mount.clone()),
                stop_signal: a.stop_signal.clone(),
                read_only: Some(a.read_only),
                capability_add: Some(a.cap_add.clone()),
                capability_drop: Some(a.cap_drop.clone()),
                privileges: Some(wire::TaskSpecContainerSpecPrivileges {
                    seccomp: Some(wire::TaskSpecContainerSpecPrivilegesSeccomp {
                        mode: wire::word(a.security_opt.last().map_or("default", String::as_str)),
                        profile: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        a.health.apply(&mut container)?;
        a.files.apply(&mut container)?;
        let networks = a
            .network
            .iter()
            .map(|n| crate::attach::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(InvalidValue)?;
        let mut spec = wire::ServiceSpec {
            docker: wire::docker::ServiceSpec {
                name: Some(a.name.clone().unwrap_or_else(random_name)),
                labels: Some(labels(&a.label)?.into_iter().collect()),
                mode: Some(a.placement.mode(a.replicas)?),
                ..Default::default()
            },
            task_template: Some(wire::TaskSpec {
                docker: wire::docker::TaskSpec {
                    resources: Some(wire::TaskSpecResources {
                        limits: Some(wire::Limit {
                            nano_cpus: opt(a.limit_cpu),
                            memory_bytes: opt(a.limit_memory),
                            pids: opt(a.limit_pids),
                        }),
                        reservations: Some(wire::ResourceObject {
                            nano_cpus: opt(a.reserve_cpu),
                            memory_bytes: opt(a.reserve_memory),
                            generic_resources: None,
                        }),
                        ..Default::default()
                    }),
                    restart_policy: Some(wire::TaskSpecRestartPolicy {
                        condition: wire::word(&a.restart_condition),
                        delay: Some(wire::int(a.restart_delay)),
                        max_attempts: Some(wire::int(a.restart_max_attempts)),
                        window: Some(wire::int(a.restart_window)),
                    }),
                    networks: Some(networks),
                    placement: Some(a.placement.placement()),
                    ..Default::default()
                },
                driver: Some(a.driver.clone()),
                container_spec: Some(container),
                ..Default::default()
            }),
            endpoint_spec: Some(
                crate::publish::endpoint_spec(
                    &a.publish,
                    a.endpoint_lb.as_deref(),
                    a.endpoint_mode.as_deref(),
                )
                .map_err(InvalidValue)?,
            ),
            ..Default::default()
        };
        a.rollout.apply(&mut spec)?;
        let tt = spec.task_template.get_or_insert_with(Default::default);
        a.container.apply(tt)?;
        if a.driver == "process" {
            // The entrypoint is the program run: resolved as IMAGE is.
            let program = tt
                .container_spec
                .as_mut()
                .and_then(|c| c.docker.command.as_mut())
                .and_then(|c| c.first_mut());
            if let Some(program) = program {
                *program = super::executable::resolve(program)?;
            }
        }
        Ok(spec)
    }
}

pub async fn run(client: &Client, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Create(a) => {
            let image = if a.driver == "process" {
                super::executable::resolve(&a.image)?
            } else {
                a.image.clone()
            };
            let spec = a.spec(image)?;
            let created: wire::ServiceCreateResponse =
                client.post_as("/services/create", &spec).await?;
            let id = created.id.unwrap_or_default();
            println!("{id}");
            // Progress is drawn slot by slot: replicated services only
            // (docs/cli.md lists this difference).
            if !a.detach && a.placement.mode == "replicated" {
                wait_converged(client, &id, a.quiet).await?;
            }
        }
        ServiceCmd::Ls(a) => service_view::ls(client, a).await?,
        ServiceCmd::Ps(a) => service_view::ps(client, a).await?,
        ServiceCmd::Inspect(a) => service_view::inspect(client, a).await?,
        ServiceCmd::Scale(a) => {
            let mut parsed = Vec::new();
            for spec in &a.specs {
                let (name, n) = spec.split_once('=').ok_or_else(|| {
                    anyhow!("invalid scale specifier '{spec}': expected <service name>=<value>")
                })?;
                let n = replicas(n).map_err(|e| anyhow!("invalid replicas value {n}: {e}"))?;
                parsed.push((name.to_string(), n));
            }
            let mut failed = false;
            for (name, n) in parsed {
                match scale(client, &name, n).await {
                    Ok(id) => {
                        println!("{name} scaled to {n}");
                        if !a.detach {
                            wait_converged(client, &id, false).await?;
                        }
                    }
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(anyhow!("some services could not be scaled"));
            }
        }
        ServiceCmd::Rm(a) => {
            let mut failed = false;
            for name in &a.services {
                match client.delete(&format!("/services/{}", enc(name))).await {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(anyhow!("some services could not be removed"));
            }
        }
        ServiceCmd::Update(a) => super::update::update(client, a).await?,
        ServiceCmd::Rollback(a) => super::update::rollback(client, a).await?,
        ServiceCmd::Logs(a) => {
            if a.tail != "all" && a.tail.parse::<usize>().is_err() {
                return Err(anyhow!(
                    "invalid value for --tail: {:?}: expected a number or \"all\"",
                    a.tail
                ));
            }
            let since = match &a.since {
                Some(since) => super::since::parse(since, chrono::Utc::now())?,
                None => String::new(),
            };
            let svc: wire::Service = client
                .get_as(&format!("/services/{}", enc(&a.service)))
                .await?;
            let path = format!(
                "/services/{}/logs?follow={}&tail={}&timestamps={}&since={}&raw={}&task_ids={}&trunc={}",
                enc(svc.docker.id.as_deref().unwrap_or("")),
                a.follow,
                enc(&a.tail),
                a.timestamps,
                enc(&since),
                a.raw,
                !a.no_task_ids,
                !a.no_trunc,
            );
            client.stream_logs(&path).await?;
        }
    }
    Ok(())
}

async fn scale(client: &Client, name: &str, n: u64) -> anyhow::Result<String> {
    let svc: wire::Service = client.get_as(&format!("/services/{}", enc(name))).await?;
    let mut spec = svc.spec.unwrap_or_default();
    if spec
        .docker
        .mode
        .as_ref()
        .is_some_and(|m| m.global.is_some())
    {
        return Err(anyhow!(
            "{name}: scale can only be used with replicated or replicated-job mode"
        ));
    }
    spec.docker.mode = Some(wire::ServiceSpecMode {
        replicated: Some(wire::ServiceSpecModeReplicated {
            replicas: Some(wire::int(n)),
        }),
        ..Default::default()
    });
    let id = svc.docker.id.unwrap_or_default();
    let version = svc.docker.version.and_then(|v| v.index).unwrap_or(0);
    let _: wire::ServiceUpdateResponse = client
        .post_as(
            &format!("/services/{}/update?version={version}", enc(&id)),
            &spec,
        )
        .await?;
    Ok(id)
}
