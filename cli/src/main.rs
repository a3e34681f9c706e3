//! `shoal`: docker's grammar for a shoal swarm.

mod client;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{daemon, node, service, swarm};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Docker Swarm mode, rebuilt as an actor-based runtime"
)]
struct Cli {
    /// Daemon socket to connect to (or to serve, for `shoal daemon`)
    #[arg(
        short = 'H',
        long = "host",
        env = "SHOAL_HOST",
        global = true,
        default_value = "unix:///var/run/shoal.sock"
    )]
    host: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a node in the foreground
    Daemon(daemon::DaemonArgs),
    /// Display system-wide information
    Info,
    /// Manage the swarm
    #[command(subcommand)]
    Swarm(swarm::SwarmCmd),
    /// Manage swarm nodes
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Manage services
    #[command(subcommand)]
    Service(service::ServiceCmd),
}

/// Client commands die quietly of SIGPIPE when their output is closed
/// (`shoal service ls | head -1`), as docker's Go client does; Rust ignores
/// SIGPIPE by default, which turns every later print into a panic. The daemon
/// keeps ignoring it: it must survive clients and log readers that go away.
fn default_sigpipe() {
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and usage errors print too.
            default_sigpipe();
            e.exit()
        }
    };
    if !matches!(cli.command, Command::Daemon(_)) {
        default_sigpipe();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Daemon(args) => daemon::run(&cli.host, args).await,
            Command::Info => commands::info(&client::Client::new(&cli.host)?).await,
            Command::Swarm(cmd) => swarm::run(&client::Client::new(&cli.host)?, cmd).await,
            Command::Node(cmd) => node::run(&client::Client::new(&cli.host)?, cmd).await,
            Command::Service(cmd) => service::run(&client::Client::new(&cli.host)?, cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<client::DaemonError>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("Error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
