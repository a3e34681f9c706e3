//! Running the harness on a scenario written by a test.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use shoal_chaos::history::Journal;

/// A finished run of `shoal-chaos run`: its output, its journal (if it
/// wrote one) and both streams for an assertion's message.
#[allow(dead_code)] // each test reads what it checks
pub struct Run {
    pub out: Output,
    pub show: String,
    pub journal: Option<Journal>,
}

/// `shoal-chaos ARGS`, ready to run. If the test dies, the runner (and
/// through it every daemon) dies too.
#[allow(dead_code)] // not every test binary runs it directly
pub fn chaos(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal-chaos"));
    cmd.args(args);
    // SAFETY: one async-signal-safe call between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// `shoal-chaos run FILE --seed SEED --out OUT_DIR`, to its end.
pub fn run_file(file: &Path, seed: &str, out_dir: &Path) -> Output {
    chaos(&[
        "run",
        file.to_str().expect("path"),
        "--seed",
        seed,
        "--out",
        out_dir.to_str().expect("path"),
    ])
    .output()
    .expect("run shoal-chaos")
}

/// Writes `toml` under `dir` and runs it with `seed`, its results in
/// `dir/run`.
#[allow(dead_code)] // not every test binary runs a written scenario
pub fn run_scenario(dir: &Path, name: &str, toml: &str, seed: &str) -> Run {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, toml).expect("write");
    let out_dir = dir.join("run");
    let out = run_file(&file, seed, &out_dir);
    let show = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = std::fs::read_to_string(out_dir.join("journal.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).expect("journal parses"));
    Run { out, show, journal }
}

/// Whether the report printed a PASS line for `checker`.
#[allow(dead_code)]
pub fn passed(run: &Run, checker: &str) -> bool {
    String::from_utf8_lossy(&run.out.stdout)
        .lines()
        .any(|l| l.contains("PASS") && l.contains(checker))
}
