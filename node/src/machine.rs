//! What this node tells the swarm about its machine: platform, CPUs and
//! memory (docker's `Description.Platform` and `Description.Resources`).
//! Read once, the first time it is asked for.

use std::sync::OnceLock;

use shoal_core::model::placement::Machine;

const MEMINFO: &str = "/proc/meminfo";

/// `MemTotal:  16318792 kB` → bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

pub fn describe() -> Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE
        .get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
            Machine {
                os: std::env::consts::OS.into(),
                arch: std::env::consts::ARCH.into(),
                nano_cpus: cpus * 1_000_000_000,
                memory_bytes: std::fs::read_to_string(MEMINFO)
                    .ok()
                    .and_then(|m| mem_total(&m))
                    .unwrap_or(0),
                engine_labels: Default::default(),
                // Filled in by the runtime (`ProcessDriver::confinement`).
                confinement: Default::default(),
                // Filled in by the runtime (`NodeConfig::generic_resources`).
                generic_resources: Vec::new(),
                // Filled in by the runtime (`Sandbox::capacity`).
                max_sandboxes: None,
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_memtotal_in_bytes() {
        assert_eq!(
            super::mem_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(super::mem_total("nothing"), None);
    }
}
