//! `shoal`: docker's grammar for a shoal swarm.

mod attach;
mod client;
mod commands;
mod container_opts;
mod dashboard;
mod filter;
mod mount;
mod output;
mod pretty;
mod publish;
mod stack;
mod template;
mod usage;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use shoal_node::confine::{keeper, launcher};

use crate::commands::{daemon, node, service, swarm};

#[derive(Parser)]
#[command(
    name = "shoal",
    disable_version_flag = true,
    about = "Docker Swarm mode, rebuilt as an actor-based runtime"
)]
struct Cli {
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Daemon socket to connect to (or to serve, for `shoal daemon`); before
    /// the command, as docker's `-H` (`service create --host` is another flag)
    #[arg(
        short = 'H',
        long = "host",
        env = "SHOAL_HOST",
        default_value = "unix:///var/run/shoal.sock"
    )]
    host: String,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a node in the foreground
    Daemon(daemon::DaemonArgs),
    /// Serve a live web dashboard of the swarm on 127.0.0.1
    Dashboard(dashboard::DashboardArgs),
    /// Display system-wide information
    Info(commands::InfoArgs),
    /// Get real time events from the swarm
    Events(commands::events::EventsArgs),
    /// Return low-level information on tasks, services or nodes
    Inspect(commands::inspect::InspectArgs),
    /// Manage the swarm
    #[command(subcommand)]
    Swarm(swarm::SwarmCmd),
    /// Manage swarm nodes
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Manage services
    #[command(subcommand)]
    Service(Box<service::ServiceCmd>),
    /// Manage this node's volumes
    #[command(subcommand)]
    Volume(commands::volume::VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(commands::network::NetworkCmd),
    /// Manage Swarm stacks
    #[command(subcommand)]
    Stack(commands::stack::StackCmd),
    /// Manage Swarm secrets
    #[command(subcommand)]
    Secret(commands::secret::ObjectCmd),
    /// Manage Swarm configs
    #[command(subcommand)]
    Config(commands::secret::ObjectCmd),
    /// Generate the autocompletion script for the specified shell
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    // The daemon starts this binary as each task's keeper: before anything
    // else (no runtime, no parsing), it does only that.
    if std::env::args_os().nth(1).as_deref() == Some(keeper::ARG.as_ref()) {
        if std::env::args_os().nth(2).as_deref() == Some(launcher::ARG.as_ref()) {
            launcher::main();
        }
        keeper::main();
    }
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and usage errors print too.
            default_sigpipe();
            match usage::report::<Cli>(&e, &args) {
                Some((message, code)) => {
                    if !message.is_empty() {
                        eprintln!("{message}");
                    }
                    return ExitCode::from(code);
                }
                None => e.exit(),
            }
        }
    };
    if !matches!(cli.command, Some(Command::Daemon(_))) {
        default_sigpipe();
    }
    let command = match cli.command {
        _ if cli.version => {
            println!("shoal version {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        None => {
            let _ = Cli::command().print_help();
            return ExitCode::SUCCESS;
        }
        Some(Command::Completion { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(command) => command,
    };
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
    let host = cli.host;
    let result = rt.block_on(async move {
        match command {
            Command::Daemon(args) => daemon::run(&host, args).await,
            Command::Dashboard(args) => dashboard::run(&host, args).await,
            Command::Info(args) => commands::info(&client::Client::new(&host)?, args).await,
            Command::Events(args) => {
                commands::events::run(&client::Client::new(&host)?, args).await
            }
            Command::Inspect(args) => {
                commands::inspect::run(&client::Client::new(&host)?, args).await
            }
            Command::Swarm(cmd) => swarm::run(&client::Client::new(&host)?, cmd).await,
            Command::Node(cmd) => node::run(&client::Client::new(&host)?, cmd).await,
            Command::Service(cmd) => service::run(&client::Client::new(&host)?, *cmd).await,
            Command::Secret(cmd) => {
                let client = client::Client::new(&host)?;
                commands::secret::run(&client, commands::secret::Kind::Secret, cmd).await
            }
            Command::Config(cmd) => {
                let client = client::Client::new(&host)?;
                commands::secret::run(&client, commands::secret::Kind::Config, cmd).await
            }
            Command::Volume(cmd) => commands::volume::run(&client::Client::new(&host)?, cmd).await,
            Command::Network(cmd) => {
                commands::network::run(&client::Client::new(&host)?, cmd).await
            }
            Command::Stack(cmd) => commands::stack::run(&client::Client::new(&host)?, cmd).await,
            Command::Completion { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(code) = e.downcast_ref::<output::Failed>() {
                // The command printed what it had to say already.
                return ExitCode::from(code.0);
            }
            if let Some(invalid) = e.downcast_ref::<output::InvalidValue>() {
                eprintln!("{invalid}\nSee 'shoal service create --help'.");
                return ExitCode::from(usage::FLAG_ERROR);
            }
            if e.downcast_ref::<client::DaemonError>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("Error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
