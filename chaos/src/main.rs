//! `shoal-chaos`: run a chaos scenario against a shoal cluster, list the
//! shipped ones, or judge a recorded journal again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shoal_chaos::history::Journal;
use shoal_chaos::{report, runner, scenario, shipped, svg, SHIPPED};

#[derive(Parser)]
#[command(
    name = "shoal-chaos",
    version,
    about = "Seeded chaos scenarios for shoal clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: a TOML file, or the name of a shipped one.
    Run {
        scenario: String,
        /// Seed for every random choice; printed, and the same seed replays them.
        #[arg(long)]
        seed: Option<u64>,
        /// Where the journal, report, timeline and node logs go
        /// (default: chaos-runs/NAME-SEED).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The shoal binary (default: next to this one).
        #[arg(long)]
        shoal: Option<PathBuf>,
        /// The program the scenario's services run (default: shoal-echo next to this one).
        #[arg(long)]
        workload: Option<PathBuf>,
    },
    /// List the shipped scenarios.
    List,
    /// Judge a journal again: print its report and rewrite its timeline.
    Report {
        journal: PathBuf,
        /// Where the SVG timeline goes (default: timeline.svg beside the journal).
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A description's first sentence, on one line.
fn summary(description: &str) -> String {
    let flat = description.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

/// chaos-runs/NAME, or NAME-2, NAME-3, ... if that is taken.
fn fresh_dir(name: &str) -> PathBuf {
    let base = PathBuf::from("chaos-runs");
    (1..)
        .map(|i| {
            base.join(if i == 1 {
                name.to_string()
            } else {
                format!("{name}-{i}")
            })
        })
        .find(|d| !d.exists())
        .unwrap_or_else(|| base.join(name))
}

fn load_scenario(arg: &str) -> Result<scenario::Scenario> {
    let (label, text) = if Path::new(arg).exists() {
        (
            arg.to_string(),
            std::fs::read_to_string(arg).with_context(|| format!("read {arg}"))?,
        )
    } else if let Some(t) = shipped(arg) {
        (format!("{arg} (shipped)"), t.to_string())
    } else {
        bail!("no scenario file or shipped scenario named {arg:?}; `shoal-chaos list` shows the shipped ones");
    };
    scenario::parse(&text).map_err(|e| anyhow::anyhow!("{label}: {e}"))
}

/// Writes the journal's report and timeline; whether the run passed.
fn judge(j: &Journal, dir: &Path, svg_path: &Path) -> Result<bool> {
    let verdicts = report::verdicts(j);
    let text = report::render(j, &verdicts);
    print!("{text}");
    std::fs::write(dir.join("report.txt"), &text)?;
    let passed = report::passed(j, &verdicts);
    std::fs::write(svg_path, svg::render(j, passed))?;
    eprintln!(
        "shoal-chaos: report in {}, timeline in {}",
        dir.join("report.txt").display(),
        svg_path.display()
    );
    Ok(passed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: an interrupted run takes down its daemons,
    // namespaces and mounts.
    shoal_chaos::teardown::install();
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("shoal-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    match cli.command {
        Cmd::List => {
            for (name, text) in SHIPPED {
                let sc = scenario::parse(text)
                    .map_err(|e| anyhow::anyhow!("shipped scenario {name}: {e}"))?;
                println!("{name:<18} {}", summary(&sc.description));
            }
            Ok(true)
        }
        Cmd::Report { journal, svg } => {
            let text = std::fs::read_to_string(&journal)
                .with_context(|| format!("read {}", journal.display()))?;
            let j: Journal = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a shoal-chaos journal", journal.display()))?;
            let dir = journal.parent().unwrap_or(Path::new(".")).to_path_buf();
            let svg = svg.unwrap_or_else(|| dir.join("timeline.svg"));
            judge(&j, &dir, &svg)
        }
        Cmd::Run {
            scenario,
            seed,
            out,
            shoal,
            workload,
        } => {
            let sc = load_scenario(&scenario)?;
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64 % 1_000_000)
                    .unwrap_or(1)
            });
            let out = match out {
                Some(dir) => {
                    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
                        bail!(
                            "{} is not empty: it may hold another run; choose another --out",
                            dir.display()
                        );
                    }
                    dir
                }
                None => fresh_dir(&format!("{}-{seed}", sc.name)),
            };
            let opts = runner::Options {
                seed,
                shoal: shoal.unwrap_or_else(|| sibling("shoal")),
                workload: workload.unwrap_or_else(|| sibling("shoal-echo")),
                run_dir: out.clone(),
            };
            let workload = std::fs::canonicalize(&opts.workload).with_context(|| {
                format!(
                    "workload program {} not found; build it with cargo build -p shoal-chaos",
                    opts.workload.display()
                )
            })?;
            let opts = runner::Options { workload, ..opts };
            let j = runner::run(sc, &opts)?;
            std::fs::write(out.join("journal.json"), serde_json::to_string_pretty(&j)?)?;
            judge(&j, &out, &out.join("timeline.svg"))
        }
    }
}
