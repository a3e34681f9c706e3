//! Secrets and configs end to end: real daemons (1 manager, 2 workers), the
//! process driver and the shoal-echo workload. The value is read inside the
//! task's mount namespace through `/proc/<pid>/root`, so the workload never
//! prints it (a log would hold it).

mod common;

use std::path::Path;

use common::{cluster, wait_for, Daemon, LONG};
use serde_json::Value;

/// A value that occurs nowhere by chance.
fn unique_value(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{n:x}-q2w3e4r")
}

/// `shoal secret create NAME -` with `value` on stdin.
fn create_from_stdin(d: &Daemon, what: &str, name: &str, value: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(common::shoal_bin())
        .args([what, "create", name, "-"])
        .env("SHOAL_HOST", &d.host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shoal");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The running task of `service`: (task id, node id, pid).
fn running_task(d: &Daemon, service: &str) -> (String, String, u32) {
    let mut found = None;
    wait_for("a running task", LONG, || {
        found = d
            .tasks(service)
            .into_iter()
            .find(|t| t["Status"]["State"] == "running" && t["DesiredState"] == "running")
            .map(|t| {
                (
                    t["ID"].as_str().unwrap_or("").to_string(),
                    t["NodeID"].as_str().unwrap_or("").to_string(),
                    t["Status"]["ContainerStatus"]["PID"].as_u64().unwrap_or(0) as u32,
                )
            });
        found.is_some()
    });
    found.expect("running task")
}

/// A file as the task sees it, through its mount namespace.
fn in_task(pid: u32, path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/root{path}")).ok()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_holding(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| contains(&b, needle)) {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// Whether the memory of process `pid` holds `needle` (read as root).
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with('r') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if b - a > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() {
            continue;
        }
        if mem.read_exact(&mut buf).is_ok() && contains(&buf, needle) {
            return true;
        }
    }
    false
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn the_seed_flow_mounts_the_secret_in_memory_and_the_config_at_its_target_and_leaks_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root (a mount namespace per task)");
        return;
    }
    let nodes = cluster(1, 2, &[]);
    let m = &nodes[0];
    let value = unique_value("seed");
    let sid = create_from_stdin(m, "secret", "my_mysql_password", &value);
    assert_eq!(sid.len(), 25, "{sid}");
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf_src = conf_dir.path().join("config.yaml");
    std::fs::write(&conf_src, "version: 0.1\nstorage: {}\n").expect("config");
    m.ok(&[
        "config",
        "create",
        "registry-config",
        conf_src.to_str().expect("path"),
    ]);
    // The process driver mounts a config over an existing file.
    let target = conf_dir.path().join("registry").join("config.yml");
    std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
    std::fs::write(&target, "").expect("target");
    let config_flag = format!("source=registry-config,target={}", target.display());
    m.create_echo(
        "db",
        "1",
        &[
            "--secret",
            "source=my_mysql_password,target=mysql_root_password",
            "-e",
            "MYSQL_ROOT_PASSWORD_FILE=/run/secrets/mysql_root_password",
            "--config",
            &config_flag,
        ],
        &[],
    );
    let (_task, node_id, pid) = running_task(m, "db");
    // The task reads the value from a tmpfs at /run/secrets...
    assert_eq!(
        in_task(pid, "/run/secrets/mysql_root_password").as_deref(),
        Some(value.as_str())
    );
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    assert!(
        mountinfo
            .lines()
            .any(|l| l.contains(" /run/secrets ") && l.contains(" - tmpfs ")),
        "{mountinfo}"
    );
    // ...and the config where the program expects it; the host's file is untouched.
    let conf_in_task = in_task(pid, target.to_str().expect("path"));
    assert_eq!(conf_in_task.as_deref(), Some("version: 0.1\nstorage: {}\n"));
    assert_eq!(std::fs::read_to_string(&target).expect("host file"), "");
    assert!(!Path::new("/run/secrets/mysql_root_password").exists());
    // config inspect shows the data base64; secret inspect never the data.
    let (_, config) = m
        .api("GET", "/configs/registry-config", None)
        .expect("config");
    assert_eq!(
        config["Spec"]["Data"],
        "dmVyc2lvbjogMC4xCnN0b3JhZ2U6IHt9Cg=="
    );
    let secret = m.ok(&["secret", "inspect", "my_mysql_password"]);
    assert!(
        !secret.contains(&value) && !secret.contains("Data\""),
        "{secret}"
    );
    let pretty = m.ok(&["secret", "inspect", "--pretty", "my_mysql_password"]);
    assert!(
        pretty.contains("Name:            my_mysql_password"),
        "{pretty}"
    );
    let pretty = m.ok(&["service", "inspect", "--pretty", "db"]);
    assert!(
        // docker 28's layout: `Secrets:` at the margin, its entries one in.
        pretty.contains("\nSecrets:\n Target:\tmysql_root_password\n  Source:\tmy_mysql_password"),
        "{pretty}"
    );
    let service = m.ok(&["service", "inspect", "db"]);
    assert!(service.contains("mysql_root_password") && !service.contains(&value));
    let listed = m.ok(&["secret", "ls", "-q"]);
    assert_eq!(listed.trim(), sid);
    // Not on any node's disk (Raft log, snapshots, state, logs), nor in the
    // memory of a worker that runs no task using it.
    for d in &nodes {
        let hits = files_holding(d.dir.path(), value.as_bytes());
        assert!(hits.is_empty(), "plaintext secret in {hits:?}");
    }
    let idle = nodes[1..]
        .iter()
        .find(|d| {
            let info = d.ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
            info.trim() != node_id
        })
        .expect("a worker without the task");
    assert!(!memory_holds(idle.pid().expect("pid"), value.as_bytes()));
    // Gone with the task.
    m.ok(&["service", "rm", "db"]);
    wait_for("the task's process to end", LONG, || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(!Path::new("/run/secrets/mysql_root_password").exists());
    m.ok(&["secret", "rm", "my_mysql_password"]);
    assert!(m.ok(&["secret", "ls", "-q"]).trim().is_empty());
}

#[test]
fn oversized_duplicate_badly_named_and_used_secrets_are_refused_in_dockers_words() {
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    create_from_stdin(&d, "secret", "pw", "x");
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 500 * 1024]).expect("big");
    let err = d.fails(&["secret", "create", "big", big.to_str().expect("path")]);
    assert!(
        err.contains("secret data must be larger than 0 and less than 500 KB"),
        "{err}"
    );
    let one = dir.path().join("one");
    std::fs::write(&one, "v").expect("one");
    let err = d.fails(&["secret", "create", "pw", one.to_str().expect("path")]);
    assert!(err.contains("secret pw already exists"), "{err}");
    let err = d.fails(&["secret", "create", "bad!", one.to_str().expect("path")]);
    assert!(err.contains("invalid name"), "{err}");
    let err = d.fails(&["secret", "inspect", "nope"]);
    assert!(err.contains("no such secret: nope"), "{err}");
    d.create_echo("app", "0", &["--secret", "pw"], &[]);
    let err = d.fails(&["secret", "rm", "pw"]);
    assert!(
        err.contains("secret 'pw' is in use by the following service: app"),
        "{err}"
    );
    let err = d.fails(&[
        "service",
        "create",
        "-d",
        "--driver",
        "process",
        "--secret",
        "missing",
        "/bin/true",
    ]);
    assert!(err.contains("secret not found: missing"), "{err}");
    d.ok(&["service", "rm", "app"]);
    assert_eq!(d.ok(&["secret", "rm", "pw"]).trim(), "pw");
    let configs = d.ok(&["config", "ls"]);
    assert!(configs.starts_with("ID"), "{configs}");
}

#[test]
fn secret_add_rm_and_in_place_rotation_roll_the_service() {
    if !is_root() {
        eprintln!("skipped: needs root (a mount namespace per task)");
        return;
    }
    let d = Daemon::start(&[]);
    d.ok(&["swarm", "init"]);
    let first = unique_value("first");
    create_from_stdin(&d, "secret", "token", &first);
    d.create_echo("web", "1", &[], &[]);
    let (t0, _, pid0) = running_task(&d, "web");
    assert!(in_task(pid0, "/run/secrets/token").is_none());
    d.ok(&[
        "service",
        "update",
        "-d",
        "--secret-add",
        "source=token,mode=0400",
        "web",
    ]);
    let mut rolled = None;
    wait_for("the service to roll with the secret", LONG, || {
        let t = running_task(&d, "web");
        if t.0 != t0 {
            rolled = Some(t);
        }
        rolled.is_some()
    });
    let (t1, _, pid1) = rolled.take().expect("rolled");
    assert_eq!(
        in_task(pid1, "/run/secrets/token").as_deref(),
        Some(first.as_str())
    );
    let mode = std::fs::metadata(format!("/proc/{pid1}/root/run/secrets/token")).expect("meta");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777,
        0o400
    );
    // In place: a new value under the same name rolls every user.
    let second = unique_value("second");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("v2");
    std::fs::write(&file, &second).expect("v2");
    d.ok(&["secret", "update", "token", file.to_str().expect("path")]);
    wait_for("the service to roll with the new value", LONG, || {
        let t = running_task(&d, "web");
        if t.0 != t1 {
            rolled = Some(t);
        }
        rolled.is_some()
    });
    let (t2, _, pid2) = rolled.take().expect("rolled");
    assert_eq!(
        in_task(pid2, "/run/secrets/token").as_deref(),
        Some(second.as_str())
    );
    let (_, v): (u16, Value) = d.api("GET", "/secrets/token", None).expect("secret");
    assert_eq!(v["DataVersion"], 1);
    d.ok(&["service", "update", "-d", "--secret-rm", "token", "web"]);
    wait_for("the service to roll without the secret", LONG, || {
        let t = running_task(&d, "web");
        if t.0 != t2 {
            rolled = Some(t);
        }
        rolled.is_some()
    });
    let (_, _, pid3) = rolled.take().expect("rolled");
    assert!(in_task(pid3, "/run/secrets/token").is_none());
    assert!(files_holding(d.dir.path(), second.as_bytes()).is_empty());
    assert!(files_holding(d.dir.path(), first.as_bytes()).is_empty());
}

/// `swarm unlock` with `key` on stdin.
fn unlock(d: &Daemon, key: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(common::shoal_bin())
        .args(["swarm", "unlock"])
        .env("SHOAL_HOST", &d.host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shoal");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{key}\n").as_bytes())
        .expect("write");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

fn swmkey(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {text}"))
        .to_string()
}

#[test]
fn an_autolocked_manager_restarts_locked_until_unlocked_and_a_rotated_key_replaces_the_old() {
    let mut d = Daemon::start(&[]);
    let key = swmkey(&d.ok(&["swarm", "init", "--autolock"]));
    assert_eq!(d.ok(&["swarm", "unlock-key", "-q"]).trim(), key);
    let value = unique_value("locked");
    create_from_stdin(&d, "secret", "pw", &value);
    assert!(!d.data_dir().join("keys/kek").exists());
    d.kill9_and_restart();
    let err = d.fails(&["secret", "ls"]);
    assert!(
        err.contains("Swarm is encrypted and needs to be unlocked"),
        "{err}"
    );
    let wrong = unlock(&d, "SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("invalid key"));
    assert!(d.fails(&["secret", "ls"]).contains("needs to be unlocked"));
    let right = unlock(&d, &key);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    wait_for("the manager to serve", LONG, || {
        d.shoal(&["secret", "ls", "-q"]).status.success()
    });
    assert_eq!(
        d.ok(&["secret", "ls", "--format", "{{.Name}}"]).trim(),
        "pw"
    );
    let again = unlock(&d, &key);
    assert!(String::from_utf8_lossy(&again.stderr).contains("swarm is not locked"));
    // A rotated key replaces the old one.
    let rotated = d.ok(&["swarm", "unlock-key", "--rotate"]);
    assert!(
        rotated.contains("Successfully rotated manager unlock key."),
        "{rotated}"
    );
    let new_key = swmkey(&rotated);
    assert_ne!(new_key, key);
    d.kill9_and_restart();
    assert!(String::from_utf8_lossy(&unlock(&d, &key).stderr).contains("invalid key"));
    assert!(unlock(&d, &new_key).status.success());
    wait_for("the manager to serve", LONG, || {
        d.shoal(&["secret", "ls", "-q"]).status.success()
    });
    // Off again: a restart needs no key.
    d.ok(&["swarm", "update", "--autolock=false"]);
    assert!(d.data_dir().join("keys/kek").exists());
    d.kill9_and_restart();
    wait_for("the manager to serve", LONG, || {
        d.shoal(&["secret", "ls", "-q"]).status.success()
    });
    assert!(files_holding(d.dir.path(), value.as_bytes()).is_empty());
    assert!(files_holding(d.dir.path(), new_key.as_bytes()).is_empty());
}

#[test]
fn three_managers_log_no_plaintext_and_a_manager_that_catches_up_from_a_snapshot_opens_secrets() {
    let m1 = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    m1.ok(&["swarm", "init", "--snapshot-interval", "3"]);
    let token = m1
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let m2 = Daemon::start_on("127.0.0.3", "manager-2", &[]);
    common::join(&m2, &token, &m1);
    let value = unique_value("raft");
    create_from_stdin(&m1, "secret", "pw", &value);
    // Enough entries for a snapshot and compaction before the third joins.
    for i in 0..8 {
        m1.create_echo(&format!("s{i}"), "0", &["--secret", "pw"], &[]);
    }
    let m3 = Daemon::start_on("127.0.0.4", "manager-3", &[]);
    common::join(&m3, &token, &m1);
    wait_for("the third manager to catch up", LONG, || {
        m3.shoal(&["secret", "ls", "-q"]).status.success()
            && !m3.ok(&["secret", "ls", "-q"]).trim().is_empty()
            && m3.ok(&["service", "ls", "-q"]).lines().count() == 8
    });
    // It opens what the state holds sealed: the join tokens.
    assert_eq!(
        m3.ok(&["swarm", "join-token", "-q", "manager"]).trim(),
        token
    );
    for d in [&m1, &m2, &m3] {
        let hits = files_holding(d.dir.path(), value.as_bytes());
        assert!(hits.is_empty(), "plaintext in {hits:?}");
        let hits = files_holding(&d.data_dir(), token.as_bytes());
        assert!(hits.is_empty(), "a plaintext join token in {hits:?}");
    }
}

#[test]
fn a_manager_that_joins_an_autolocked_swarm_follows_the_unlock_key_and_reads_secrets_after_unlock()
{
    let m1 = Daemon::start_on("127.0.0.2", "manager-1", &[]);
    let key = swmkey(&m1.ok(&["swarm", "init", "--autolock", "--snapshot-interval", "3"]));
    let token = m1
        .ok(&["swarm", "join-token", "-q", "manager"])
        .trim()
        .to_string();
    let value = unique_value("joined");
    create_from_stdin(&m1, "secret", "pw", &value);
    for i in 0..6 {
        m1.create_echo(&format!("s{i}"), "0", &["--secret", "pw"], &[]);
    }
    let m2 = Daemon::start_on("127.0.0.3", "manager-2", &[]);
    common::join(&m2, &token, &m1);
    let m3 = Daemon::start_on("127.0.0.4", "manager-3", &[]);
    common::join(&m3, &token, &m1);
    let mut late = m3;
    wait_for("the late manager to follow the unlock key", LONG, || {
        late.data_dir().join("keys/autolock").exists() && !late.data_dir().join("keys/kek").exists()
    });
    assert_eq!(late.ok(&["swarm", "unlock-key", "-q"]).trim(), key);
    late.kill9_and_restart();
    assert!(late
        .fails(&["secret", "ls"])
        .contains("needs to be unlocked"));
    assert!(unlock(&late, &key).status.success());
    wait_for("the late manager to serve", LONG, || {
        late.shoal(&["service", "ls", "-q"]).status.success()
            && late.ok(&["service", "ls", "-q"]).lines().count() == 6
    });
    assert_eq!(
        late.ok(&["secret", "ls", "--format", "{{.Name}}"]).trim(),
        "pw"
    );
    assert_eq!(
        late.ok(&["swarm", "join-token", "-q", "manager"]).trim(),
        token
    );
    for d in [&m1, &m2, &late] {
        assert!(files_holding(d.dir.path(), value.as_bytes()).is_empty());
        assert!(files_holding(&d.data_dir(), key.as_bytes()).is_empty());
    }
}
