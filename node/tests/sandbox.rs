//! The task sandbox against the real kernel: namespaces, routed veths, the
//! claim link and NAT, made and removed. Needs root (skipped, saying so,
//! without).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shoal_node::sandbox::{self, Sandbox};

fn root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tiny HTTP server inside the task's namespace, answering with `name`.
fn serve_in(net: &sandbox::TaskNet, name: &str) -> Child {
    let fd = std::fs::File::open(&net.netns).expect("netns");
    let raw = fd.as_raw_fd();
    let script = format!(
        "import http.server as h\n\
         class H(h.BaseHTTPRequestHandler):\n\
         \x20def do_GET(s):\n\
         \x20\x20s.send_response(200);s.end_headers();s.wfile.write(b'{name}')\n\
         \x20def log_message(s,*a): pass\n\
         h.HTTPServer(('0.0.0.0',80),H).serve_forever()\n"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    // SAFETY: setns is a syscall.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn");
    drop(fd);
    child
}

fn get(addr: std::net::Ipv4Addr) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect((addr, 80)) {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            return out.lines().last().map(str::to_string);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Whatever happens, the test's namespaces, veths, link and tables go.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        sandbox::clean(&self.0);
    }
}

fn links() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip")
            .stdout,
    )
    .into_owned()
}

#[test]
fn two_tasks_bind_the_same_port_in_their_own_namespaces_and_nothing_is_left() {
    if !root() {
        eprintln!("skipped: network sandboxes need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let _clean = Cleanup(dir.path().to_path_buf());
    let sb = Sandbox::open(dir.path(), None, None).expect("open");
    let saved = std::fs::read_to_string(dir.path().join("net.json")).expect("net.json");
    let tag = saved.split('"').nth(3).expect("tag").to_string();
    let a = sb.prepare("aaaaaaaaaaaaaaaaaaaaaaaaa", &[]).expect("a");
    let b = sb.prepare("bbbbbbbbbbbbbbbbbbbbbbbbb", &[]).expect("b");
    assert_ne!(a.addr, b.addr);
    let mut pa = serve_in(&a, "task-a");
    let mut pb = serve_in(&b, "task-b");
    let (ra, rb) = (get(a.addr), get(b.addr));
    let _ = (pa.kill(), pb.kill(), pa.wait(), pb.wait());
    assert_eq!(ra.as_deref(), Some("task-a"));
    assert_eq!(rb.as_deref(), Some("task-b"));

    // A daemon killed now leaves its namespaces: the next open removes them.
    drop(sb);
    assert!(a.netns.exists());
    let sb = Sandbox::open(dir.path(), None, None).expect("reopen");
    assert!(!a.netns.exists() && !b.netns.exists(), "leftovers removed");
    let c = sb.prepare("ccccccccccccccccccccccccc", &[]).expect("c");
    sb.release("ccccccccccccccccccccccccc");
    assert!(!c.netns.exists());
    assert!(!links().contains(&format!("sv{tag}")), "no task veth left");

    sandbox::clean(dir.path());
    assert!(
        !links().contains(&format!("shb{tag}")),
        "claim link removed"
    );
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&format!("shoal_{tag}")));
}

/// Every bridge the sandbox makes keeps a MAC address of its own as tasks
/// come and go (here the node's claim link; an overlay's bridge, whose
/// ports are tasks, is made the same way): a bridge that took its ports'
/// lowest address changed it when that port left, and the other tasks,
/// whose ARP entry held the old one, lost their gateway (and an overlay's
/// embedded DNS) until the entry expired.
#[test]
fn the_bridge_keeps_its_address_when_tasks_leave() {
    if !root() {
        eprintln!("skipped: network sandboxes need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let _clean = Cleanup(dir.path().to_path_buf());
    let sb = Sandbox::open(dir.path(), None, None).expect("open");
    let ids = [
        "ddddddddddddddddddddddddd",
        "eeeeeeeeeeeeeeeeeeeeeeeee",
        "fffffffffffffffffffffffff",
    ];
    for id in ids {
        sb.prepare(id, &[]).expect("prepare");
    }
    let mac = || {
        std::fs::read_to_string(format!("/sys/class/net/{}/address", sb.bridge()))
            .expect("the bridge's address")
    };
    let first = mac();
    let assign =
        std::fs::read_to_string(format!("/sys/class/net/{}/addr_assign_type", sb.bridge()))
            .expect("addr_assign_type");
    assert_eq!(
        assign.trim(),
        "3",
        "an address set, not one taken from a port"
    );
    for id in ids {
        sb.release(id);
        assert_eq!(mac(), first, "after {id} left");
    }
    sb.prepare("ggggggggggggggggggggggggg", &[])
        .expect("prepare");
    assert_eq!(mac(), first);
    sb.release("ggggggggggggggggggggggggg");
}

/// How fast sandboxes are made and removed on this machine (ignored: a
/// figure for docs/benchmarks.md, not a check): `SANDBOXES` (default 200)
/// made one after another, then removed.
#[test]
#[ignore]
fn sandboxes_made_and_removed_per_second() {
    if !root() {
        eprintln!("skipped: network sandboxes need root");
        return;
    }
    let n: usize = std::env::var("SANDBOXES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tmp");
    let _clean = Cleanup(dir.path().to_path_buf());
    let sb = Sandbox::open(dir.path(), None, None).expect("open");
    // Names come from the first 12 characters of an id: those differ.
    let ids: Vec<String> = (0..n).map(|i| format!("{i:012}abcdefghijklm")).collect();
    let t = Instant::now();
    for id in &ids {
        sb.prepare(id, &[]).expect("prepare");
    }
    let made = t.elapsed();
    let t = Instant::now();
    for id in &ids {
        sb.release(id);
    }
    let removed = t.elapsed();
    println!(
        "{n} sandboxes: made {:.0}/s ({:.2} ms each), removed {:.0}/s ({:.2} ms each)",
        n as f64 / made.as_secs_f64(),
        made.as_secs_f64() * 1000.0 / n as f64,
        n as f64 / removed.as_secs_f64(),
        removed.as_secs_f64() * 1000.0 / n as f64,
    );
}
