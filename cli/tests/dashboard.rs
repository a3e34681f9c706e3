//! `shoal dashboard`: the token guards every path (page, asset, data,
//! stream); and headless Chromium, driven through its DevTools protocol,
//! sees three nodes and a service's tasks, then a killed task replaced and
//! a scaled service's new boxes, without a reload. The update latency from
//! a task's RUNNING in the state to its running box in the page is printed
//! for docs/benchmarks.md, and a screenshot of the page is kept in the
//! test's temporary directory (and at `$SHOAL_DASHBOARD_SCREENSHOT`, if
//! set).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A `shoal dashboard` process, killed when dropped.
struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:PORT/TOKEN/`
    url: String,
    port: u16,
    token: String,
}

impl Dashboard {
    fn start(d: &Daemon) -> Dashboard {
        let mut child = Command::new(shoal_bin())
            .args(["-H", &d.host, "dashboard"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run shoal dashboard");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        lines
            .read_line(&mut line)
            .expect("the dashboard's first line");
        // The rest is drained: a closed pipe would end the dashboard.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        let url = line
            .trim()
            .strip_prefix("Dashboard: ")
            .unwrap_or_else(|| panic!("the dashboard printed {line:?}"))
            .to_string();
        let rest = url.strip_prefix("http://127.0.0.1:").expect("on 127.0.0.1");
        let (port, token) = rest.split_once('/').expect("port/token/");
        Dashboard {
            port: port.parse().expect("port"),
            token: token.trim_end_matches('/').to_string(),
            url,
            child,
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET with `host` as the Host header: the status and what came back
/// before `limit` (a stream is read only that long).
fn get(port: u16, path: &str, host: &str, limit: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    // A refused head may be cut off while it is written: read what came.
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn nothing_is_served_without_the_token() {
    let d = Daemon::start(&[]);
    // Not in a swarm: the dashboard says so and serves nothing.
    let out = d.shoal(&["dashboard"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a swarm manager"), "{err}");

    d.ok(&["swarm", "init"]);
    let dash = Dashboard::start(&d);
    let host = format!("127.0.0.1:{}", dash.port);
    let short = Duration::from_secs(5);
    let t = &dash.token;
    let (status, page) = get(dash.port, &format!("/{t}/"), &host, short);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<title>shoal dashboard</title>"));
    assert!(page.to_lowercase().contains("referrer-policy: no-referrer"));
    let (status, _) = get(dash.port, &format!("/{t}/app.js"), &host, short);
    assert_eq!(status, 200);
    let (status, stream) = get(dash.port, &format!("/{t}/stream"), &host, short);
    assert_eq!(status, 200);
    assert!(
        stream.contains("event: state") && stream.contains("node-1"),
        "{stream}"
    );

    // No token, a wrong one, one a character short: nothing at all.
    let wrong = "A".repeat(t.len());
    let shorter = &t[..t.len() - 1];
    for prefix in ["", wrong.as_str(), shorter] {
        for what in ["", "app.js", "style.css", "state", "stream", "timeline.svg"] {
            let path = if prefix.is_empty() {
                format!("/{what}")
            } else {
                format!("/{prefix}/{what}")
            };
            let (status, body) = get(dash.port, &path, &host, short);
            assert_eq!(status, 404, "{path}: {body}");
            assert!(
                !body.contains("shoal") && !body.contains("node-1"),
                "{path}: {body}"
            );
        }
    }
    // The token, but another Host (a rebound name): refused.
    let (status, _) = get(dash.port, &format!("/{t}/"), "evil.example:80", short);
    assert_eq!(status, 403);
    // A request head past the bound: refused, the server still serves.
    let long = "x".repeat(16 * 1024);
    let (status, _) = get(dash.port, &format!("/{t}/?{long}"), &host, short);
    assert!(status == 431 || status == 0 || status == 400, "{status}");
    // A service id that is not one: 404 without asking the daemon.
    let (status, _) = get(
        dash.port,
        &format!("/{t}/services/..%2Fswarm"),
        &host,
        short,
    );
    assert_eq!(status, 404);
    let (status, _) = get(dash.port, &format!("/{t}/"), &host, short);
    assert_eq!(status, 200);
}

/// Headless Chromium, in a process group of its own, killed with it.
struct Chromium {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

fn chromium_path() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|dir| std::path::Path::new(dir).join(name))
            .find(|p| p.is_file())
    })
}

impl Chromium {
    fn start(binary: &std::path::Path, url: &str) -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1150",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let mut guard = Group(child.id());
        let browser = rx.recv_timeout(LONG).expect("chromium's DevTools address");
        let port: u16 = browser
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("DevTools port");
        // The page's own target, from the DevTools HTTP endpoint.
        let mut page_ws = None;
        wait_for("chromium's page target", LONG, || {
            let (status, text) = get(
                port,
                "/json/list",
                &format!("127.0.0.1:{port}"),
                Duration::from_secs(5),
            );
            if status != 200 {
                return false;
            }
            let Some((_, body)) = text.split_once("\r\n\r\n") else {
                return false;
            };
            let body = dechunk(body);
            let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(&body) else {
                return false;
            };
            page_ws = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string));
            page_ws.is_some()
        });
        let (ws, _) = tungstenite::connect(page_ws.expect("page target").as_str())
            .expect("DevTools websocket");
        guard.0 = 0;
        Chromium {
            child,
            ws,
            next_id: 1,
            _profile: profile,
        }
    }

    /// One DevTools command, its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(tungstenite::Message::text(msg))
            .expect("send to DevTools");
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let tungstenite::Message::Text(text) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// A JavaScript expression's value in the page.
    /// A promise's value in the page.
    fn eval_async(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        r["result"]["value"].clone()
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Kills chromium's process group if setting it up fails half way.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: kill(2) of the process group this test started.
            unsafe {
                libc::kill(-(self.0 as i32), libc::SIGKILL);
            }
        }
    }
}

/// An HTTP/1.1 chunked body, joined (or the body as it is).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        let Some(chunk) = after.get(..n) else {
            return body.to_string();
        };
        out.push_str(chunk);
        rest = after.get(n + 2..).unwrap_or("");
    }
}

/// The running boxes of `service` in the page: their task ids.
fn boxes(c: &mut Chromium, service: &str) -> Vec<String> {
    let v = c.eval(&format!(
        "Array.from(document.querySelectorAll('.task[data-service=\"{service}\"][data-state=\"running\"]')).map(e => e.dataset.taskId)"
    ));
    serde_json::from_value(v).unwrap_or_default()
}

fn ms_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

#[test]
fn a_browser_sees_the_swarm_change_without_a_reload() {
    let Some(binary) = chromium_path() else {
        eprintln!("SKIPPED: no chromium on PATH (Debian package chromium; .ci/run installs it)");
        return;
    };
    let mut nodes = cluster(3, 0, &[]);
    let tok = token("dashboard");
    nodes[0].create_echo("web", "3", &["--restart-delay", "0s"], &["--print", &tok]);
    let publish = format!("{}:8080", free_tcp_port());
    let api = token("dashboard-api");
    nodes[0].create_echo(
        "api",
        "2",
        &["-p", &publish],
        &["--print", &api, "--port", "8080"],
    );
    wait_for("3 and 2 running", LONG, || {
        running(&nodes[0], "web") == 3 && running(&nodes[0], "api") == 2
    });

    // The dashboard reads a manager that is not the leader, which is
    // killed later on.
    let led = leader_of(&nodes, 0).expect("a leader");
    let via = (led + 1) % 3;
    let dash = Dashboard::start(&nodes[via]);
    let mut c = Chromium::start(&binary, &dash.url);
    wait_for("three node columns and three running boxes", LONG, || {
        c.eval("document.querySelectorAll('.node').length") == json!(3)
            && boxes(&mut c, "web").len() == 3
    });
    let hosts = c.eval(
        "Array.from(document.querySelectorAll('.node')).map(e => e.dataset.hostname).sort().join(',')",
    );
    assert_eq!(hosts, json!("manager-1,manager-2,manager-3"));
    let leader = c.eval("document.getElementById('leader').textContent");
    assert!(
        leader
            .as_str()
            .is_some_and(|l| l.contains("manager-") && l.contains("term")),
        "{leader}"
    );
    // A mark a reload would wipe.
    c.eval("window.notReloaded = true");

    // A killed task: its box replaced by the new task's.
    let before = boxes(&mut c, "web");
    let pid = pids_with(&tok)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill a task");
    wait_for("the killed task's box replaced", LONG, || {
        let now = boxes(&mut c, "web");
        now.len() == 3 && now.iter().any(|id| !before.contains(id))
    });

    // A scale: the two new tasks' boxes, and how long after RUNNING each
    // showed.
    let shown = boxes(&mut c, "web");
    nodes[0].ok(&["service", "scale", "-d", "web=5"]);
    wait_for("five running boxes", LONG, || {
        boxes(&mut c, "web").len() == 5
    });
    assert_eq!(c.eval("window.notReloaded"), json!(true), "no reload");
    let seen = c.eval("window.shoal.runningSeen");
    let mut latencies = Vec::new();
    for t in nodes[0].tasks("web") {
        let id = t["ID"].as_str().unwrap_or_default();
        if shown.iter().any(|s| s == id) || t["Status"]["State"] != "running" {
            continue;
        }
        let Some(at) = seen[id].as_i64() else {
            continue;
        };
        let running_at = ms_of(t["Status"]["Timestamp"].as_str().unwrap_or(""));
        latencies.push(at - running_at);
    }
    assert_eq!(latencies.len(), 2, "the two new tasks' boxes: {seen}");
    eprintln!(
        "dashboard update latency, RUNNING in the state to its box in the page: {latencies:?} ms"
    );

    // A click on the service: its history, the killed task's error among it.
    c.eval("document.querySelector('tr.svc[data-service-name=\"web\"]').click()");
    wait_for(
        "the service's history with the killed task's error",
        LONG,
        || {
            let rows = c.eval("document.querySelectorAll('#history tbody tr').length");
            let errors = c.eval(
            "Array.from(document.querySelectorAll('#history td.err')).map(e => e.textContent).join('|')",
        );
            rows.as_u64().unwrap_or(0) >= 6
                && errors
                    .as_str()
                    .is_some_and(|e| !e.trim_matches('|').is_empty())
        },
    );
    // The timeline drew.
    wait_for("the timeline image", LONG, || {
        c.eval("document.getElementById('timeline').naturalWidth > 0") == json!(true)
    });

    // A rollout, one task at a time: its state and progress in the table.
    nodes[0].ok(&[
        "service",
        "update",
        "-d",
        "--update-parallelism",
        "1",
        "--update-delay",
        "3s",
        "--env-add",
        "ROUND=2",
        "web",
    ]);
    wait_for("the rollout's progress bar", LONG, || {
        c.eval("document.querySelector('#services .bar') !== null") == json!(true)
    });
    let progress = c.eval("document.querySelector('#services .bar').title");
    assert!(
        progress.as_str().is_some_and(|p| p.ends_with("/5")),
        "{progress}"
    );

    // The leader killed: the page names another in a newer term, the old
    // leader's column goes down, and the timeline marks both.
    let term_of = |text: &Value| -> u64 {
        text.as_str()
            .and_then(|t| t.rsplit("term ").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let header = c.eval("document.getElementById('leader').textContent");
    let term_before = term_of(&header);
    let old = format!("manager-{}", led + 1);
    assert!(
        header.as_str().is_some_and(|h| h.contains(&old)),
        "{header}"
    );
    nodes[led].kill9();
    wait_for("a new leader in a newer term in the page", LONG, || {
        let header = c.eval("document.getElementById('leader').textContent");
        term_of(&header) > term_before
            && header
                .as_str()
                .is_some_and(|h| h.contains("manager-") && !h.contains(&old))
    });
    wait_for("the old leader's column down", LONG, || {
        c.eval(&format!(
            "document.querySelector('.node[data-hostname=\"{old}\"]').classList.contains('down')"
        )) == json!(true)
    });
    wait_for("the timeline's leader change and node down", LONG, || {
        let svg = c.eval_async("fetch('timeline.svg').then(r => r.text())");
        svg.as_str().is_some_and(|s| {
            s.contains(r##"stroke="#d62728" stroke-width="2""##) && s.contains(r#"class="down""#)
        })
    });
    c.eval_async(
        "new Promise(r => { const i = document.getElementById('timeline'); i.onload = () => r(true); i.src = 'timeline.svg?now=' + Date.now(); })",
    );

    // The screenshot: the test's artefact.
    let shot = c.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert!(png.starts_with(b"\x89PNG"));
    let dir = tempfile::Builder::new()
        .prefix("shoal-dashboard")
        .tempdir()
        .expect("tempdir")
        .keep();
    let path = dir.join("dashboard.png");
    std::fs::write(&path, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    if let Some(extra) = std::env::var_os("SHOAL_DASHBOARD_SCREENSHOT") {
        std::fs::write(&extra, &png).expect("write the screenshot copy");
    }

    // The same browser without the token: nothing.
    c.call(
        "Page.navigate",
        json!({ "url": format!("http://127.0.0.1:{}/", dash.port) }),
    );
    wait_for("the page without a token refused", LONG, || {
        c.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .is_some_and(|t| t.contains("404"))
    });
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
