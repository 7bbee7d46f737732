//! Deployed as a sysadmin deploys it: started by the real `systemd-socket-activate` on sockets
//! it passes (TCP and UDP, named and unnamed, a wrong one refused), listening on IPv4 and IPv6
//! loopback at once, and on the real ports 7, 13 and 37 as root, dropping to `nobody` once
//! bound — checked with `rdate`, `nc` and `/proc/PID/status`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::{
    IO_TIMEOUT, assert_daytime_line, assert_rfc868_now, assert_tick, free_port, need, poll_for,
};
use inetloop::server::privileges;

/// A process under test: its stdout lines arrive on a channel, stderr goes to a file.
struct Process {
    child: Child,
    stdout: mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Process {
    fn spawn(program: &str, args: &[&str]) -> Process {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "inetloop-deploy-{}-{}.log",
            std::process::id(),
            SPAWNED.fetch_add(1, Ordering::SeqCst)
        ));
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            stdout: rx,
            log,
        }
    }

    fn line(&self) -> String {
        self.stdout
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("no stdout line ({e}); stderr:\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        poll_for(limit, || self.child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("still running after {limit:?}; stderr:\n{}", self.log()))
    }

    fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(5))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `systemd-socket-activate ACTIVATION… reactor ARGS…`: the supervisor binds, waits for the
/// first client, then execs the reactor with the sockets as fds 3, 4, ….
fn activated(activation: &[&str], args: &[&str]) -> Process {
    need("systemd-socket-activate", "systemd");
    let mut all: Vec<&str> = activation.to_vec();
    all.push(env!("CARGO_BIN_EXE_reactor"));
    all.extend_from_slice(args);
    Process::spawn("systemd-socket-activate", &all)
}

/// Connects, retrying while the supervisor is still binding.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = poll_for(IO_TIMEOUT, || TcpStream::connect(addr).ok())
        .unwrap_or_else(|| panic!("cannot connect to {addr}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

const ONLY: [&str; 6] = ["--echo", "off", "--daytime", "off", "--rfc868", "off"];

#[test]
fn a_named_tcp_socket_passed_by_systemd_socket_activate_serves_the_time_stream() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = ONLY.to_vec();
    args.extend(["--ticks", "2", "--interval-ms", "50"]);
    let mut reactor = activated(&["-l", &listen, "--fdname", "time"], &args);
    let mut client = connect(listen.parse().unwrap());
    client.write_all(b"Bonjour\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 3, "{reply:?}");
    assert_tick(lines[0]);
    assert_eq!(lines[2], "Au Revoir");
    assert_eq!(reactor.line(), format!("listening time tcp {listen}"));
    assert!(
        reactor
            .log()
            .contains("socket activation: serving the 1 socket(s)")
    );
    assert!(reactor.stop().success(), "{}", reactor.log());
}

#[test]
fn a_named_udp_socket_serves_daytime_and_the_datagram_that_woke_it_is_answered() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut reactor = activated(
        &["--datagram", "-l", &listen, "--fdname", "daytime"],
        &["--time", "off"],
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The first datagram that reaches the supervisor's socket makes it start the reactor, and
    // waits there to be answered; one sent before the supervisor has bound is lost, so resend.
    let mut buf = [0u8; 100];
    let n = poll_for(IO_TIMEOUT, || {
        client.send_to(b"", &listen).ok()?;
        client.recv(&mut buf).ok()
    })
    .unwrap_or_else(|| panic!("no daytime reply; stderr:\n{}", reactor.log()));
    assert_daytime_line(&buf[..n]);
    assert_eq!(reactor.line(), format!("listening daytime udp {listen}"));
    assert!(reactor.stop().success(), "{}", reactor.log());
}

#[test]
fn an_unnamed_socket_is_matched_to_its_service_by_port() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let port_arg = port.to_string();
    let mut reactor = activated(
        &["-l", &listen],
        &[
            "--time",
            "off",
            "--daytime",
            "off",
            "--echo",
            "off",
            "--rfc868",
            &port_arg,
        ],
    );
    let mut client = connect(listen.parse().unwrap());
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_rfc868_now(&reply);
    assert_eq!(reactor.line(), format!("listening rfc868 tcp {listen}"));
    assert!(reactor.stop().success(), "{}", reactor.log());
}

#[test]
fn a_socket_the_reactor_cannot_serve_is_refused_with_one_clear_line() {
    // A Unix socket, named as if it were echo: not an IPv4/IPv6 socket.
    let path = std::env::temp_dir().join(format!("inetloop-deploy-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let path_text = path.to_str().unwrap().to_owned();
    let mut reactor = activated(&["-l", &path_text, "--fdname", "echo"], &[]);
    let _client = poll_for(IO_TIMEOUT, || {
        std::os::unix::net::UnixStream::connect(&path).ok()
    })
    .expect("the supervisor listens on the Unix socket");
    let status = reactor.wait(IO_TIMEOUT);
    let log = reactor.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("reactor: ")).collect();
    assert_eq!(
        errors,
        vec!["reactor: passed socket fd 3: not an IPv4 or IPv6 socket (a Unix socket?)"],
        "{log}"
    );
    let _ = std::fs::remove_file(&path);

    // A TCP socket with no name whose port is no service's.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut reactor = activated(&["-l", &listen], &[]);
    let _client = connect(listen.parse().unwrap());
    assert_eq!(reactor.wait(IO_TIMEOUT).code(), Some(1));
    assert!(
        reactor.log().contains(&format!(
            "reactor: passed socket fd 3 (tcp {listen}) has no name and its port is no service's"
        )),
        "{}",
        reactor.log()
    );
}

#[test]
fn ipv4_and_ipv6_loopback_are_served_at_once_on_the_same_port() {
    let mut reactor = Process::spawn(
        env!("CARGO_BIN_EXE_reactor"),
        &[
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "--time",
            "off",
            "--echo",
            "off",
            "--rfc868",
            "off",
            "--daytime",
            "0",
        ],
    );
    let lines: Vec<String> = (0..4).map(|_| reactor.line()).collect();
    let tcp: Vec<SocketAddr> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("listening daytime tcp "))
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(tcp.len(), 2, "{lines:?}");
    assert!(tcp[0].is_ipv4() && tcp[1].is_ipv6(), "{lines:?}");
    assert_eq!(
        tcp[0].port(),
        tcp[1].port(),
        "port 0 is chosen once for both"
    );
    for addr in &tcp {
        let mut reply = Vec::new();
        connect(*addr).read_to_end(&mut reply).unwrap();
        assert_daytime_line(&reply);
    }
    for line in lines.iter().filter(|l| l.contains(" udp ")) {
        let addr: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
        let client = UdpSocket::bind(SocketAddr::new(
            if addr.is_ipv4() {
                "127.0.0.1".parse().unwrap()
            } else {
                "::1".parse().unwrap()
            },
            0,
        ))
        .unwrap();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        client.send_to(b"", addr).unwrap();
        let mut buf = [0u8; 100];
        let n = client.recv(&mut buf).unwrap();
        assert_daytime_line(&buf[..n]);
    }
    assert!(reactor.stop().success());
}

/// Reads `field` of `/proc/PID/status`, e.g. the four numbers of `Uid:`.
fn proc_status(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn as_root_on_the_real_ports_it_drops_to_nobody_once_bound_and_rdate_and_nc_still_answer() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test binds ports 7, 13 and 37, so it must run as root (CI does)"
    );
    need("rdate", "rdate");
    need("nc", "netcat-openbsd");
    let nobody =
        privileges::look_up("nobody", Some("nogroup")).expect("user nobody, group nogroup");
    let mut reactor = Process::spawn(
        env!("CARGO_BIN_EXE_reactor"),
        &[
            "--echo",
            "7",
            "--daytime",
            "13",
            "--rfc868",
            "37",
            "--time",
            "off",
            "--user",
            "nobody",
            "--group",
            "nogroup",
        ],
    );
    let lines: Vec<String> = (0..6).map(|_| reactor.line()).collect();
    assert!(
        lines.contains(&"listening daytime tcp 127.0.0.1:13".to_owned()),
        "{lines:?}"
    );
    assert!(
        reactor.log().contains("running as nobody"),
        "{}",
        reactor.log()
    );

    let pid = reactor.child.id();
    assert_eq!(
        proc_status(pid, "Uid"),
        vec![nobody.uid; 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(proc_status(pid, "Gid"), vec![nobody.gid; 4]);
    assert_eq!(
        proc_status(pid, "Groups"),
        vec![nobody.gid],
        "root's groups are gone"
    );

    let rdate = common::run("rdate", &["-p", "127.0.0.1"], b"");
    let said = String::from_utf8_lossy(&rdate.stdout);
    assert!(
        rdate.status.success(),
        "rdate: {said} {}",
        String::from_utf8_lossy(&rdate.stderr)
    );
    let year = chrono::Local::now().format("%Y").to_string();
    assert!(said.contains(&year), "rdate printed {said:?}");

    let nc = common::run("nc", &["-d", "127.0.0.1", "13"], b"");
    assert_daytime_line(&nc.stdout);

    let mut echo = connect("127.0.0.1:7".parse().unwrap());
    echo.write_all(b"still serving as nobody\n").unwrap();
    let mut line = String::new();
    BufReader::new(&echo).read_line(&mut line).unwrap();
    assert_eq!(line, "still serving as nobody\n");
    assert!(reactor.stop().success(), "{}", reactor.log());
}

/// Connects from `source` (a loopback address of our choosing) to `server`.
fn connect_from(source: std::net::IpAddr, server: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    poll_for(IO_TIMEOUT, || socket.connect(&server.into()).ok())
        .unwrap_or_else(|| panic!("connect {source} -> {server}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

#[test]
fn ipv4_peers_of_a_passed_dual_stack_socket_are_matched_as_ipv4_by_the_access_lists() {
    // systemd-socket-activate binds [::] dual-stack (net.ipv6.bindv6only = 0, Linux's default),
    // so IPv4 peers reach the reactor as ::ffff:a.b.c.d.
    let v6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").unwrap_or_default();
    assert_eq!(
        v6only.trim(),
        "0",
        "this test needs dual-stack IPv6 sockets (sysctl net.ipv6.bindv6only=0)"
    );
    let port = free_port();
    let listen = format!("[::]:{port}");
    let mut reactor = activated(
        &["-l", &listen, "--fdname", "daytime"],
        &["--allow", "127.0.0.0/8", "--deny", "127.0.0.10"],
    );
    let v4_server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let read = |source: &str| {
        let mut reply = Vec::new();
        let _ = connect_from(source.parse().unwrap(), v4_server).read_to_end(&mut reply);
        reply
    };
    assert_daytime_line(&read("127.0.0.2"));
    assert_eq!(read("127.0.0.10"), b"", "denied as the IPv4 address it is");
    let mut reply = Vec::new();
    let v6_server: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let _ = connect_from("::1".parse().unwrap(), v6_server).read_to_end(&mut reply);
    assert_eq!(reply, b"", "::1 is outside the IPv4-only allow list");
    let log = reactor.log();
    assert!(
        log.contains("daytime tcp: refused 127.0.0.10 (--deny 127.0.0.10/32)"),
        "logged as the IPv4 address it is:\n{log}"
    );
    assert!(reactor.stop().success(), "{}", reactor.log());
}

#[test]
fn under_type_notify_it_says_ready_once_its_sockets_are_bound() {
    let dir = std::env::temp_dir().join(format!("inetloop-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let supervisor = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    supervisor.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reactor"))
        .args([
            "--time",
            "0",
            "--echo",
            "off",
            "--daytime",
            "off",
            "--rfc868",
            "off",
        ])
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = supervisor
        .recv(&mut buf)
        .expect("READY=1 within the timeout");
    let said = String::from_utf8_lossy(&buf[..n]).into_owned();
    // By then the sockets are bound and announced: the listening line is already there.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(said.lines().any(|l| l == "READY=1"), "{said:?}");
    assert!(
        first.starts_with("listening time tcp 127.0.0.1:"),
        "{first:?}"
    );
}
