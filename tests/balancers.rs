//! Behind real load balancers: haproxy (TCP mode, PROXY v1 to one reactor and v2 to the other,
//! health checks, a reactor stopped under it) and nginx's stream module (TCP with
//! `proxy_protocol on`, and UDP). Everything runs on loopback ports chosen at run time; the
//! balancers run in the foreground from the sample configurations in `contrib/` (the
//! `@PLACEHOLDERS@` replaced), with their pid file, sockets and logs in a temporary directory,
//! and are killed at the end. Clients bind to 127.0.0.7, so a reactor that logs 127.0.0.7 got
//! the address from the PROXY header: the balancer connects from 127.0.0.1.
//!
//! A missing balancer fails the test with the command that installs it (Debian packages
//! `haproxy`, `nginx`, `libnginx-mod-stream`; `.ci/run` installs them).
//!
//! Every wait is on bytes, a log line or the balancer's own state (haproxy's stats socket).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Reactor, assert_tick, free_port, need, poll_for};

/// Where clients come from: not the balancer's address, so only a PROXY header can tell it.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
/// Each test ends within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(20);

/// The reactors behind the balancer: time and echo, short time-stream sessions, the balancer
/// (127.0.0.1) trusted, debug logging (the `open via` lines).
fn backend() -> Reactor {
    Reactor::start(&[
        "-v",
        "--proxy-from",
        "127.0.0.1",
        "--daytime",
        "off",
        "--rfc868",
        "off",
        "--ticks",
        "2",
        "--interval-ms",
        "100",
    ])
}

/// nginx's stream module, as Debian installs it.
fn stream_module() -> PathBuf {
    need("nginx", "nginx libnginx-mod-stream");
    let known = [
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/share/nginx/modules/ngx_stream_module.so",
    ];
    // Debian's modules-available file names the .so (relative to /usr/lib/nginx).
    let listed = std::fs::read_to_string("/usr/share/nginx/modules-available/mod-stream.conf")
        .ok()
        .and_then(|text| {
            let name = text.split_whitespace().nth(1)?.trim_end_matches(';');
            Some(Path::new("/usr/lib/nginx").join(name))
        });
    listed
        .into_iter()
        .chain(known.map(PathBuf::from))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs nginx's stream module: apt-get update && apt-get install -y libnginx-mod-stream"
            )
        })
}

/// A sample configuration from `contrib/`, its placeholders replaced; fails if one is left.
fn configure(sample: &str, values: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(sample);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {sample}: {e}"));
    for (name, value) in values {
        let placeholder = format!("@{name}@");
        assert!(text.contains(&placeholder), "{sample} has no {placeholder}");
        text = text.replace(&placeholder, value);
    }
    // Only comment lines may still name a placeholder (they describe them).
    for line in text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        assert!(
            !line.contains('@'),
            "{sample}: a placeholder left in {line:?}"
        );
    }
    text
}

/// A balancer in the foreground, with a directory of its own; killed and cleaned up on drop.
struct Balancer {
    child: Child,
    dir: PathBuf,
    /// Where its stderr goes.
    log: PathBuf,
}

impl Balancer {
    /// A fresh directory for `name`'s configuration, sockets and logs.
    fn dir(name: &str) -> PathBuf {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "inetloop-{name}-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spawn(program: &Path, args: &[&str], dir: PathBuf) -> Balancer {
        let log = dir.join("stderr.log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Balancer { child, dir, log }
    }

    /// What it wrote to stderr, and to `file` in its directory (if given).
    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `check` holds; fails with the balancer's stderr if it never does or if the
    /// balancer died.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Balancer) -> Option<T>) -> T {
        let found = poll_for(IO_TIMEOUT, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the balancer exited ({status}) before: {what}\n{}",
                    self.stderr()
                );
            }
            check(self)
        });
        found.unwrap_or_else(|| panic!("timed out waiting for: {what}\n{}", self.stderr()))
    }
}

impl Drop for Balancer {
    /// SIGTERM first: nginx's master then stops its workers (a SIGKILLed master would leave them
    /// running, orphaned, on their ports); SIGKILL only if it has not exited within the limit.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let exited = poll_for(IO_TIMEOUT, || self.child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- balancer stderr ---\n{}", self.stderr());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP connection from [`CLIENT`], with timeouts.
fn tcp_from_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(CLIENT, 0).into()).unwrap();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A UDP socket bound to [`CLIENT`], connected to `addr`, with a timeout.
fn udp_from_client(addr: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(CLIENT, 0)).unwrap();
    socket.connect(addr).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// One echo exchange through the balancer: a line out, the same line back, then the client
/// half-closes and the connection ends.
fn echo_once(addr: SocketAddr, text: &str) {
    let mut stream = tcp_from_client(addr);
    stream.write_all(text.as_bytes()).unwrap();
    let mut back = vec![0u8; text.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("echo of {text:?} through {addr}: {e}"));
    assert_eq!(back, text.as_bytes());
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

/// Echo as `nc -N` and socat use it: everything sent, then a half-close, then the echo read
/// until the end.
fn echo_half_closed(addr: SocketAddr, text: &str) {
    let mut stream = tcp_from_client(addr);
    stream.write_all(text.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back, text.as_bytes(), "through {addr}");
}

/// One TCP time-stream session (`--ticks 2`) through the balancer.
fn time_session(addr: SocketAddr, greeting: &str) {
    time_session_then(addr, greeting, false);
}

/// A time-stream session whose client half-closes right after its greeting: it still reads
/// every tick.
fn time_session_half_closed(addr: SocketAddr, greeting: &str) {
    time_session_then(addr, greeting, true);
}

fn time_session_then(addr: SocketAddr, greeting: &str, half_close: bool) {
    let mut stream = tcp_from_client(addr);
    stream
        .write_all(format!("{greeting}\n").as_bytes())
        .unwrap();
    if half_close {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 3, "{reply:?}");
    assert_tick(lines[0]);
    assert_tick(lines[1]);
    assert_eq!(lines[2], "Au Revoir");
}

/// Every line of a reactor's log about [`CLIENT`] (opened, greeted, closed), for the test's
/// output.
fn about_client(log: &str) -> String {
    let client = CLIENT.to_string();
    log.lines()
        .filter(|line| line.contains(&client))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many connections from [`CLIENT`] a reactor's log shows for `service`, and through
/// which PROXY version.
fn proxied(log: &str, service: &str) -> Vec<String> {
    let prefix = format!("{service} tcp {CLIENT}:");
    log.lines()
        .filter(|line| line.contains(&prefix) && line.contains(": open via 127.0.0.1:"))
        .map(|line| line.to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// haproxy

/// haproxy from `contrib/haproxy/haproxy.cfg` in front of reactors `a` and `b`.
struct Haproxy {
    balancer: Balancer,
    time: SocketAddr,
    echo: SocketAddr,
}

impl Haproxy {
    fn start(a: &Reactor, b: &Reactor) -> Haproxy {
        let program = need("haproxy", "haproxy");
        let dir = Balancer::dir("haproxy");
        let (time, echo): (SocketAddr, SocketAddr) = (
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()),
        );
        let config = configure(
            "contrib/haproxy/haproxy.cfg",
            &[
                ("RUN_DIR", dir.display().to_string()),
                ("TIME_LISTEN", time.to_string()),
                ("ECHO_LISTEN", echo.to_string()),
                ("TIME_A", a.addr("time", "tcp").to_string()),
                ("TIME_B", b.addr("time", "tcp").to_string()),
                ("ECHO_A", a.addr("echo", "tcp").to_string()),
                ("ECHO_B", b.addr("echo", "tcp").to_string()),
                ("CHECK_INTER", "100ms".to_string()),
            ],
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let file = file.display().to_string();
        let mut balancer = Balancer::spawn(&program, &["-f", &file, "-db"], dir);
        let haproxy_ready = |b: &Balancer| Some(()).filter(|()| stats(b).is_some());
        balancer.wait_for("haproxy's stats socket", haproxy_ready);
        Haproxy {
            balancer,
            time,
            echo,
        }
    }

    /// Waits until every server of both backends is in `state` (`UP`, `DOWN`) per the stats
    /// socket, as `server: check_status` pairs.
    fn wait_until(&mut self, server: &str, state: &str) -> Vec<(String, String, String)> {
        self.balancer
            .wait_for(&format!("server {server} {state}"), |b| {
                let rows = stats(b)?;
                let wanted = rows
                    .iter()
                    .filter(|(_, name, _, _)| name == server)
                    .collect::<Vec<_>>();
                let all = wanted.len() == 2 && wanted.iter().all(|(_, _, st, _)| st == state);
                all.then(|| {
                    rows.iter()
                        .map(|(proxy, name, _, check)| (proxy.clone(), name.clone(), check.clone()))
                        .collect()
                })
            })
    }
}

/// haproxy's `show stat`, as (proxy, server, status, check_status) for each server line; `None`
/// while the socket does not answer.
fn stats(balancer: &Balancer) -> Option<Vec<(String, String, String, String)>> {
    let mut socket = UnixStream::connect(balancer.dir.join("haproxy.sock")).ok()?;
    socket.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    socket.write_all(b"show stat\n").ok()?;
    let mut csv = String::new();
    socket.read_to_string(&mut csv).ok()?;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (status, check) = (column("status")?, column("check_status")?);
    Some(
        lines
            .map(|line| line.split(',').collect::<Vec<&str>>())
            .filter(|row| row.len() > check && !matches!(row[1], "FRONTEND" | "BACKEND"))
            .map(|row| {
                (
                    row[0].to_owned(),
                    row[1].to_owned(),
                    row[status].to_owned(),
                    row[check].to_owned(),
                )
            })
            .collect(),
    )
}

#[test]
fn haproxy_spreads_time_and_echo_over_two_reactors_that_log_the_real_client() {
    let started = Instant::now();
    let (a, b) = (backend(), backend());
    let mut haproxy = Haproxy::start(&a, &b);
    haproxy.wait_until("a", "UP");
    haproxy.wait_until("b", "UP");

    for n in 0..2 {
        echo_once(haproxy.echo, &format!("through haproxy {n}\n"));
        echo_half_closed(haproxy.echo, &format!("half-closed {n}\n"));
    }
    time_session(haproxy.time, "Bonjour");
    time_session_half_closed(haproxy.time, "Salut");

    // Round robin: two echo connections and one time stream each; "a" is sent PROXY v1, "b" v2.
    for (reactor, version) in [(&a, "(PROXY v1)"), (&b, "(PROXY v2)")] {
        let log = reactor.log_when("two echo clients and one greeting", |log| {
            proxied(log, "echo").len() == 2 && proxied(log, "time").len() == 1
        });
        for line in proxied(&log, "echo").iter().chain(&proxied(&log, "time")) {
            assert!(line.contains(version), "{line}");
        }
        assert!(
            log.contains(&format!("time tcp {CLIENT}:")) && log.contains(": greeting \""),
            "the greeting is logged under the client's address:\n{log}"
        );
        println!("reactor sent {version}:\n{}", about_client(&log));
    }
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn haproxy_health_checks_keep_both_up_and_a_stopped_reactor_fails_no_new_client() {
    let started = Instant::now();
    let (a, mut b) = (backend(), backend());
    let mut haproxy = Haproxy::start(&a, &b);
    let rows = haproxy.wait_until("a", "UP");
    haproxy.wait_until("b", "UP");
    // The checks really ran, through the PROXY header: a connect check for the time stream, a
    // line echoed back for echo.
    let checks_passed = |rows: &[(String, String, String)]| {
        rows.iter().all(|(proxy, _, check)| match proxy.as_str() {
            "time" => check.starts_with("L4OK"),
            _ => check.starts_with("L7OK"),
        })
    };
    let rows = if checks_passed(&rows) {
        rows
    } else {
        haproxy.balancer.wait_for("every check passed", |h| {
            let rows: Vec<_> = stats(h)?
                .into_iter()
                .map(|(p, s, _, c)| (p, s, c))
                .collect();
            checks_passed(&rows).then_some(rows)
        })
    };
    println!("haproxy show stat (proxy, server, check_status): {rows:?}");
    // What the reactors saw of the checks: v1 names haproxy's own addresses, v2 says LOCAL.
    let log_a = a.log_when("a v1 health check", |log| {
        log.contains("echo tcp 127.0.0.1:") && log.contains(": open via 127.0.0.1:")
    });
    let log_b = b.log_when("a v2 LOCAL health check", |log| {
        log.contains("the balancer's own (PROXY v2 LOCAL)")
    });
    for (name, log) in [("a", &log_a), ("b", &log_b)] {
        assert!(
            !log.contains("PROXY header;") && !log.contains("WARN"),
            "checks are not failures in {name}:\n{log}"
        );
    }

    // Stop b the way a service manager does, and wait until it is gone.
    b.signal(libc::SIGTERM);
    b.wait_exit(IO_TIMEOUT).expect("b exits after SIGTERM");
    // Clients that connect after the stop, before and after haproxy's checks notice it: none
    // fails (haproxy redispatches a refused connection to a).
    for n in 0..6 {
        echo_once(haproxy.echo, &format!("after the stop {n}\n"));
    }
    time_session(haproxy.time, "after the stop");
    haproxy.wait_until("b", "DOWN");
    for n in 6..10 {
        echo_once(haproxy.echo, &format!("after the stop {n}\n"));
    }
    let log = a.log_when("every client after the stop served by a", |log| {
        proxied(log, "echo").len() == 10 && proxied(log, "time").len() == 1
    });
    assert!(
        haproxy.balancer.stderr().contains("Server echo/b is DOWN"),
        "haproxy logged the change"
    );
    println!("a served, after b stopped:\n{}", about_client(&log));
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// nginx

/// nginx from `contrib/nginx/inetloop-stream.conf` in front of reactors `a` and `b`, TCP and
/// UDP on the same ports.
struct Nginx {
    balancer: Balancer,
    time: SocketAddr,
    echo: SocketAddr,
}

impl Nginx {
    fn start(a: &Reactor, b: &Reactor) -> Nginx {
        let program = need("nginx", "nginx libnginx-mod-stream");
        let module = stream_module();
        let dir = Balancer::dir("nginx");
        let (time, echo): (SocketAddr, SocketAddr) = (
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_port()),
        );
        let config = configure(
            "contrib/nginx/inetloop-stream.conf",
            &[
                ("STREAM_MODULE", module.display().to_string()),
                ("RUN_DIR", dir.display().to_string()),
                ("TIME_LISTEN", time.to_string()),
                ("ECHO_LISTEN", echo.to_string()),
                ("TIME_A", a.addr("time", "tcp").to_string()),
                ("TIME_B", b.addr("time", "tcp").to_string()),
                ("ECHO_A", a.addr("echo", "tcp").to_string()),
                ("ECHO_B", b.addr("echo", "tcp").to_string()),
            ],
        );
        let file = dir.join("inetloop-stream.conf");
        std::fs::write(&file, config).unwrap();
        let (file, prefix, early_log) = (
            file.display().to_string(),
            format!("{}/", dir.display()),
            dir.join("early-error.log").display().to_string(),
        );
        let mut balancer = Balancer::spawn(
            &program,
            &[
                "-p",
                &prefix,
                "-e",
                &early_log,
                "-c",
                &file,
                "-g",
                "daemon off;",
            ],
            dir,
        );
        balancer.wait_for("nginx's worker", |b| {
            b.read("error.log")
                .contains("start worker process")
                .then_some(())
        });
        Nginx {
            balancer,
            time,
            echo,
        }
    }
}

#[test]
fn nginx_stream_relays_tcp_with_the_proxy_protocol_and_udp_without() {
    let started = Instant::now();
    let (a, b) = (backend(), backend());
    let nginx = Nginx::start(&a, &b);

    // TCP: the client's address reaches the reactors in a PROXY v1 line. Clients that
    // half-close after sending (nc -N, socat) are served too (proxy_half_close).
    for n in 0..2 {
        echo_once(nginx.echo, &format!("through nginx {n}\n"));
        echo_half_closed(nginx.echo, &format!("half-closed {n}\n"));
    }
    time_session(nginx.time, "Bonjour");
    time_session_half_closed(nginx.time, "Salut");
    for reactor in [&a, &b] {
        let log = reactor.log_when("two echo clients and one greeting", |log| {
            proxied(log, "echo").len() == 2 && proxied(log, "time").len() == 1
        });
        assert!(
            proxied(&log, "echo")
                .iter()
                .all(|line| line.contains("(PROXY v1)")),
            "{log}"
        );
        println!("reactor behind nginx:\n{}", about_client(&log));
    }

    // UDP echo: each datagram comes back through nginx.
    for n in 0..4 {
        let socket = udp_from_client(nginx.echo);
        let text = format!("datagram {n}");
        socket.send(text.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], text.as_bytes());
    }
    // UDP time stream: a greeting, two ticks and Au Revoir, relayed one by one.
    for _ in 0..2 {
        let socket = udp_from_client(nginx.time);
        socket.send(b"Bonjour").unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let len = socket.recv(&mut buf).unwrap();
            assert_tick(std::str::from_utf8(&buf[..len]).unwrap());
        }
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"Au Revoir");
    }
    // What a reactor knows of a UDP client behind nginx: nginx's address (a port per
    // session), never the client's.
    let logs: Vec<String> = [&a, &b].iter().map(|reactor| reactor.log()).collect();
    let greetings: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains("time udp ") && line.contains(": greeting"))
        .collect();
    assert_eq!(greetings.len(), 2, "{greetings:?}");
    assert!(
        greetings
            .iter()
            .all(|line| line.contains("time udp 127.0.0.1:")),
        "{greetings:?}"
    );
    let udp_lines: Vec<&str> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter(|line| line.contains(" udp 127.0.0.1:"))
        .collect();
    println!("UDP through nginx:\n{}", udp_lines.join("\n"));
    let access = nginx.balancer.read("access.log");
    assert!(
        access.contains(&format!("{CLIENT}:")) && access.contains(" UDP 200 "),
        "{access}"
    );
    assert!(
        started.elapsed() < TEST_LIMIT,
        "took {:?}",
        started.elapsed()
    );
}
