//! `shoal-echo`: a tiny workload for shoal tasks, like the `hostname` image of
//! the Swarm tutorials. It says who it is (task, slot, service, node,
//! hostname) once at start and, with `--port`, to every HTTP request.
//!
//! std only, so that it builds statically for a container image.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: shoal-echo [--port N] [--udp-port N] [--get HOST:PORT] [--exit-after SECS] [--exit-code N] [--print TEXT]

Prints one line saying which task it is, then stays alive.

  --port N           answer HTTP requests on 0.0.0.0:N with that line
  --udp-port N       answer every UDP datagram on 0.0.0.0:N with that line
  --get HOST:PORT    every half second, GET http://HOST:PORT/ and print
                     `get HOST -> ADDR: BODY` (HOST resolved through the
                     first nameserver of /etc/resolv.conf), or why not
  --exit-after SECS  exit after SECS seconds (fractions allowed)
  --exit-code N      exit code when exiting because of --exit-after (default 0)
  --print TEXT       print TEXT to stdout once at start
  --help             show this help

SIGTERM exits 0; SIGINT exits 130.
Reads SHOAL_TASK_ID, SHOAL_TASK_SLOT, SHOAL_SERVICE_NAME and SHOAL_NODE_ID.
";

/// Longest request head read before answering anyway.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
struct Config {
    port: Option<u16>,
    udp_port: Option<u16>,
    exit_after: Option<Duration>,
    exit_code: i32,
    print: Option<String>,
    get: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Run(Config),
    Help,
}

/// Parses the arguments after the program name. Flags take their value as the
/// next argument or after `=` (`--port 80`, `--port=80`).
fn parse_args<I>(args: I) -> Result<Parsed, String>
where
    I: IntoIterator<Item = String>,
{
    let mut cfg = Config {
        port: None,
        udp_port: None,
        exit_after: None,
        exit_code: 0,
        print: None,
        get: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        if !matches!(
            flag.as_str(),
            "--port" | "--udp-port" | "--exit-after" | "--exit-code" | "--print" | "--get"
        ) {
            return Err(format!("unknown argument: {arg}"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--port" | "--udp-port" => {
                let port = value
                    .parse::<u16>()
                    .map_err(|_| format!("{flag}: not a port number: {value}"))?;
                if flag == "--port" {
                    cfg.port = Some(port);
                } else {
                    cfg.udp_port = Some(port);
                }
            }
            "--exit-after" => {
                let secs = value
                    .parse::<f64>()
                    .map_err(|_| format!("--exit-after: not a number of seconds: {value}"))?;
                let d = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--exit-after: out of range: {value}"))?;
                cfg.exit_after = Some(d);
            }
            "--exit-code" => {
                let code = value
                    .parse::<i32>()
                    .ok()
                    .filter(|c| (0..=255).contains(c))
                    .ok_or_else(|| format!("--exit-code: not an exit code (0-255): {value}"))?;
                cfg.exit_code = code;
            }
            "--print" => cfg.print = Some(value),
            "--get" => {
                let port_ok = value
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(format!("--get: not HOST:PORT: {value}"));
                }
                cfg.get = Some(value);
            }
            _ => unreachable!("flag checked above"),
        }
    }
    Ok(Parsed::Run(cfg))
}

/// The line that says who this task is; `env` looks a variable up.
fn identity_line(env: impl Fn(&str) -> Option<String>, hostname: &str) -> String {
    let var = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "shoal-echo task={} slot={} service={} node={} hostname={}",
        var("SHOAL_TASK_ID"),
        var("SHOAL_TASK_SLOT"),
        var("SHOAL_SERVICE_NAME"),
        var("SHOAL_NODE_ID"),
        if hostname.is_empty() { "-" } else { hostname },
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "-".into())
}

/// Prints one line and flushes: stdout is often a pipe to a log collector.
/// A closed stdout is not a reason to stop serving.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn http_response(body_line: &str) -> Vec<u8> {
    let body = format!("{body_line}\n");
    format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The PROXY protocol v2 signature a proxy may send before the request.
const PROXY_V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY protocol header (v1 text or v2 binary) at the start of `buf`:
/// the client address it names and its length, once it is all in.
fn proxy_header(buf: &[u8]) -> Option<(String, usize)> {
    if let Some(rest) = buf.strip_prefix(PROXY_V2) {
        let len = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) as usize;
        let addr = rest.get(4..4 + len)?;
        let client = match rest[1] >> 4 {
            1 if len >= 12 => format!(
                "{}.{}.{}.{}:{}",
                addr[0],
                addr[1],
                addr[2],
                addr[3],
                u16::from_be_bytes([addr[8], addr[9]])
            ),
            2 if len >= 36 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&addr[..16]);
                let port = u16::from_be_bytes([addr[32], addr[33]]);
                format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))
            }
            _ => "-".into(),
        };
        return Some((client, 16 + len));
    }
    if buf.starts_with(b"PROXY ") {
        let end = buf.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&buf[..end]);
        let f: Vec<&str> = line.split(' ').collect();
        let client = match f.as_slice() {
            [_, _, src, _, sport, _] if src.contains(':') => format!("[{src}]:{sport}"),
            [_, _, src, _, sport, _] => format!("{src}:{sport}"),
            _ => "-".into(),
        };
        return Some((client, end + 2));
    }
    None
}

/// Reads until the end of the request head, EOF, an error or a timeout.
/// Returns how many bytes of request came, and the client a PROXY protocol
/// header named (if one came first).
fn read_request_head(stream: &mut TcpStream) -> (usize, Option<String>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::new();
    let mut client = None;
    let mut buf = [0u8; 4096];
    while head.len() < MAX_REQUEST_HEAD && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                let waiting_for_proxy = client.is_none()
                    && (head.starts_with(b"PROXY ")
                        || head.starts_with(&PROXY_V2[..head.len().min(12)]));
                if waiting_for_proxy {
                    match proxy_header(&head) {
                        Some((c, len)) => {
                            client = Some(c);
                            head.drain(..len);
                        }
                        None => continue,
                    }
                }
                if head.windows(4).any(|w| w == b"\r\n\r\n")
                    || head.windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (head.len(), client)
}

fn handle_connection(mut stream: TcpStream, peer: SocketAddr, line: &str) {
    // A bare connect-and-close (a TCP probe) is not a request.
    let (len, client) = read_request_head(&mut stream);
    if len == 0 {
        return;
    }
    say(&format!("request from {peer}"));
    let line = match client {
        Some(c) => format!("{line} client={c}"),
        None => line.to_string(),
    };
    let _ = stream.write_all(&http_response(&line));
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// Accepts connections forever, one thread each.
fn serve(listener: TcpListener, line: String) {
    let line: &'static str = Box::leak(line.into_boxed_str());
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let spawned = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || handle_connection(stream, peer, line));
                if let Err(e) = spawned {
                    eprintln!("shoal-echo: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("shoal-echo: accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// SIGTERM exits 0 and SIGINT 130 through `_exit`, which is
/// async-signal-safe. The default actions would do for a child process, but
/// as PID 1 of a container a signal without a handler is never delivered, so
/// `docker stop` would wait for its timeout and SIGKILL. Declared by hand to
/// stay std-only; every line printed is already flushed.
#[cfg(unix)]
mod signals {
    use std::os::raw::c_int;

    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn _exit(status: c_int) -> !;
    }

    extern "C" fn on_sigterm(_: c_int) {
        // SAFETY: `_exit` is async-signal-safe and takes no pointers.
        unsafe { _exit(0) }
    }

    extern "C" fn on_sigint(_: c_int) {
        // SAFETY: as above.
        unsafe { _exit(130) }
    }

    pub fn install() {
        // SAFETY: the handlers only call `_exit`; `signal` keeps no pointer
        // but the handler's address, which lives as long as the program.
        unsafe {
            signal(SIGTERM, on_sigterm as extern "C" fn(c_int) as usize);
            signal(SIGINT, on_sigint as extern "C" fn(c_int) as usize);
        }
    }
}

#[cfg(not(unix))]
mod signals {
    pub fn install() {}
}

fn main() {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            let _ = io::stdout().flush();
            return;
        }
        Err(e) => {
            eprintln!("shoal-echo: {e}");
            eprint!("{USAGE}");
            process::exit(2);
        }
    };
    signals::install();

    let line = identity_line(|k| std::env::var(k).ok(), &hostname());
    say(&line);
    if let Some(text) = &cfg.print {
        say(text);
    }

    if let Some(port) = cfg.udp_port {
        let socket = match std::net::UdpSocket::bind(("0.0.0.0", port)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("shoal-echo: cannot listen on udp 0.0.0.0:{port}: {e}");
                process::exit(1);
            }
        };
        let reply = line.clone().into_bytes();
        thread::Builder::new()
            .name("udp".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&reply, from);
                }
            })
            .expect("spawn the udp thread");
    }
    if let Some(target) = cfg.get.clone() {
        thread::Builder::new()
            .name("get".into())
            .spawn(move || loop {
                say(&get::once(&target));
                thread::sleep(Duration::from_millis(500));
            })
            .expect("spawn the get thread");
    }
    if let Some(port) = cfg.port {
        let listener = match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("shoal-echo: cannot listen on 0.0.0.0:{port}: {e}");
                process::exit(1);
            }
        };
        if let Ok(addr) = listener.local_addr() {
            eprintln!("shoal-echo: listening on {addr}");
        }
        thread::Builder::new()
            .name("accept".into())
            .spawn(move || serve(listener, line))
            .expect("spawn the accept thread");
        if let Some(after) = cfg.exit_after {
            let code = cfg.exit_code;
            thread::Builder::new()
                .name("watchdog".into())
                .spawn(move || {
                    thread::sleep(after);
                    process::exit(code);
                })
                .expect("spawn the watchdog thread");
        }
    } else if let Some(after) = cfg.exit_after {
        thread::sleep(after);
        process::exit(cfg.exit_code);
    }

    // Stay alive; signals end the process.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

#[path = "../dns_wire.rs"]
mod dns_wire;

/// `--get`: one HTTP request by name, resolved with a DNS query of its own
/// (`dns_wire`: std only, and a static binary in an empty image has no
/// resolver library to lean on).
mod get {
    use super::dns_wire;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
    use std::time::Duration;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// The line to print for one request to `target` (HOST:PORT).
    pub fn once(target: &str) -> String {
        let Some((host, port)) = target.rsplit_once(':') else {
            return format!("get {target} failed: not HOST:PORT");
        };
        let port: u16 = port.parse().unwrap_or(80);
        let addr = match host.parse::<Ipv4Addr>() {
            Ok(a) => a,
            Err(_) => match resolve(host) {
                Ok(a) => a,
                Err(e) => return format!("get {host} failed: resolve: {e}"),
            },
        };
        match fetch(SocketAddr::from((addr, port)), host) {
            Ok(body) => format!("get {host} -> {addr}: {body}"),
            Err(e) => format!("get {host} -> {addr} failed: {e}"),
        }
    }

    fn fetch(to: SocketAddr, host: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&to, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut answer = Vec::new();
        s.take(64 * 1024).read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok(body.trim().to_string())
    }

    /// The first A record for `name`, from the first nameserver of
    /// /etc/resolv.conf.
    pub fn resolve(name: &str) -> Result<Ipv4Addr, String> {
        let conf = std::fs::read_to_string("/etc/resolv.conf").map_err(|e| e.to_string())?;
        let server = dns_wire::nameserver(&conf)?;
        let id = (std::process::id() as u16) ^ 0x5a5a;
        let q = dns_wire::query(name, id)?;
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        sock.send_to(&q, (server, 53)).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
        dns_wire::answer(&buf[..n], id)
            .map_err(|e| format!("no address for {name} from {server}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Parsed::Run(cfg)) => cfg,
            other => panic!("{args:?} parsed to {other:?}"),
        }
    }

    #[test]
    fn defaults_listen_nowhere_and_never_exit() {
        assert_eq!(
            run(&[]),
            Config {
                port: None,
                udp_port: None,
                exit_after: None,
                exit_code: 0,
                print: None,
                get: None,
            }
        );
    }

    #[test]
    fn parses_every_flag() {
        let cfg = run(&[
            "--port",
            "8080",
            "--exit-after",
            "1.5",
            "--exit-code",
            "3",
            "--print",
            "hello world",
        ]);
        assert_eq!(cfg.port, Some(8080));
        assert_eq!(cfg.exit_after, Some(Duration::from_millis(1500)));
        assert_eq!(cfg.exit_code, 3);
        assert_eq!(cfg.print.as_deref(), Some("hello world"));
    }

    #[test]
    fn accepts_flag_equals_value() {
        let cfg = run(&["--port=80", "--exit-after=2", "--print=a=b"]);
        assert_eq!(cfg.port, Some(80));
        assert_eq!(cfg.exit_after, Some(Duration::from_secs(2)));
        assert_eq!(cfg.print.as_deref(), Some("a=b"));
    }

    #[test]
    fn get_reads_the_first_a_record_of_an_answer() {
        assert_eq!(
            run(&["--get", "server:80"]).get.as_deref(),
            Some("server:80")
        );
        // id 7, one question (a.b, A, IN), a CNAME then an A by pointer.
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 0, 0, 2, 0xc0, 12]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 10, 0, 9, 2]);
        assert_eq!(
            dns_wire::answer(&m, 7),
            Ok(std::net::Ipv4Addr::new(10, 0, 9, 2))
        );
        assert!(dns_wire::answer(&m, 8).is_err(), "another id");
        assert!(dns_wire::answer(&m[..m.len() - 2], 7).is_err(), "truncated");
        m[3] = 0x83;
        assert!(dns_wire::answer(&m, 7).is_err(), "NXDOMAIN");
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse(&["--port", "80", "--help"]), Ok(Parsed::Help));
        assert_eq!(parse(&["-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            &["--bogus"][..],
            &["positional"],
            &["--port"],
            &["--port", "http"],
            &["--port", "70000"],
            &["--exit-after", "-1"],
            &["--exit-after", "soon"],
            &["--exit-after", "inf"],
            &["--exit-code", "256"],
            &["--get", "server"],
            &["--get", ":80"],
            &["--get", "server:http"],
            &["--exit-code", "-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            parse(&["--bogus"]),
            Err("unknown argument: --bogus".to_string())
        );
    }

    #[test]
    fn identity_line_uses_dashes_for_missing_values() {
        let env = |k: &str| match k {
            "SHOAL_TASK_ID" => Some("abc".to_string()),
            "SHOAL_TASK_SLOT" => Some("2".to_string()),
            "SHOAL_SERVICE_NAME" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            identity_line(env, "box1"),
            "shoal-echo task=abc slot=2 service=- node=- hostname=box1"
        );
        assert_eq!(
            identity_line(|_| None, ""),
            "shoal-echo task=- slot=- service=- node=- hostname=-"
        );
    }

    #[test]
    fn answers_http_with_the_identity_line() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(listener, "shoal-echo task=t".into()));
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\nContent-Type: text/plain\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nshoal-echo task=t\n"), "{answer}");
    }
}
