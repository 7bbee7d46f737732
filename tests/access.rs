//! Access lists (`--allow`, `--deny`) against the real binary: clients bound to different
//! loopback sources (127.0.0.0/8 can be bound directly on Linux) ask for daytime and echo over
//! TCP and UDP, and see either the service or nothing at all.
//!
//! Every wait is on bytes. A refused TCP connection must end (EOF) without a byte. A refused
//! datagram is proved unanswered without sleeping: after it, an allowed client sends a datagram
//! to the *same* server socket and waits for its reply. The server reads that socket in order
//! and answers (or queues, in order) each datagram before reading the next, and loopback
//! delivers a datagram during `sendto`, so once the allowed client has its reply, any reply to
//! the refused one would already be waiting in its socket.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{Reactor, assert_daytime_line, tcp_from};

/// How long a test waits for bytes it expects; a refusal never waits for this (EOF is
/// immediate), only a broken server makes a test wait it out.
const WAIT: Duration = Duration::from_secs(5);

/// `--allow 127.0.0.0/24 --deny 127.0.0.8/29 --allow 127.0.0.9`: overlapping blocks, where the
/// most specific rule must decide.
const OVERLAPPING: [&str; 6] = [
    "--allow",
    "127.0.0.0/24",
    "--deny",
    "127.0.0.8/29",
    "--allow",
    "127.0.0.9",
];

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, d))
}

/// 127.0.1.1: outside every rule of [`OVERLAPPING`].
fn unlisted() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1))
}

/// What a TCP client saw: every byte until the server closed, or how it failed.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The server closed (EOF) after these bytes.
    Closed(Vec<u8>),
    /// The connection was reset after these bytes (a refusal of a client that had already
    /// written).
    Reset(Vec<u8>),
    /// Still open when the read timed out, after these bytes.
    Open(Vec<u8>),
}

impl Seen {
    /// Refused: ended by the server without a byte.
    fn is_refusal(&self) -> bool {
        matches!(self, Seen::Closed(b) | Seen::Reset(b) if b.is_empty())
    }
}

fn read_until_closed(mut stream: &TcpStream) -> Seen {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Seen::Closed(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Seen::Open(all);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Seen::Reset(all),
        }
    }
}

/// Daytime over TCP from `source`: what the client got before the server closed.
fn tcp_daytime(reactor: &Reactor, source: IpAddr) -> Seen {
    read_until_closed(&tcp_from(source, reactor.addr("daytime", "tcp")))
}

/// One line to echo over TCP from `source`, then a half-close: what came back before the end.
/// A refused client may see its write answered by a reset instead of EOF (the server closed a
/// socket holding unread bytes); either way, no byte.
fn tcp_echo(reactor: &Reactor, source: IpAddr) -> Seen {
    let stream = tcp_from(source, reactor.addr("echo", "tcp"));
    if (&stream).write_all(b"ping\n").is_err() {
        return Seen::Reset(Vec::new());
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    read_until_closed(&stream)
}

/// A UDP socket bound to `source`, connected to `server`, with a read timeout.
fn udp_from(source: IpAddr, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("bind udp {source}:0: {e}"));
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket
}

/// Sends `payload` to `service`'s UDP socket from each of `sources`, then proves the server has
/// dealt with all of them (see the module doc) with one more from `probe`, which must be
/// allowed. Returns each source's reply, or `None` for no reply.
fn udp_replies(
    reactor: &Reactor,
    service: &str,
    payload: &[u8],
    sources: &[IpAddr],
    probe: IpAddr,
) -> Vec<Option<Vec<u8>>> {
    let server = reactor.addr(service, "udp");
    let sockets: Vec<UdpSocket> = sources.iter().map(|s| udp_from(*s, server)).collect();
    for socket in &sockets {
        socket.send(payload).unwrap();
    }
    let barrier = udp_from(probe, server);
    barrier.send(payload).unwrap();
    let mut buf = [0u8; 2048];
    barrier
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no {service} reply for the allowed probe {probe}: {e}"));
    sockets
        .iter()
        .map(|socket| {
            socket.set_nonblocking(true).unwrap();
            match socket.recv(&mut buf) {
                Ok(n) => Some(buf[..n].to_vec()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => None,
                Err(e) => panic!("recv on {:?}: {e}", socket.local_addr()),
            }
        })
        .collect()
}

/// Lines of the reactor's log that contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

#[test]
fn overlapping_cidrs_over_tcp_the_most_specific_rule_decides() {
    let reactor = Reactor::start(&OVERLAPPING);
    let served = |seen: Seen| match seen {
        Seen::Closed(line) => assert_daytime_line(&line),
        other => panic!("expected a daytime line then EOF, got {other:?}"),
    };
    // In the allowed /24.
    served(tcp_daytime(&reactor, v4(2)));
    // In the denied /29 inside it: EOF, not a byte.
    assert_eq!(tcp_daytime(&reactor, v4(10)), Seen::Closed(Vec::new()));
    // The allowed /32 inside the denied /29.
    served(tcp_daytime(&reactor, v4(9)));
    // Outside every rule, while an allow list exists.
    assert_eq!(tcp_daytime(&reactor, unlisted()), Seen::Closed(Vec::new()));
}

#[test]
fn overlapping_cidrs_over_udp_the_most_specific_rule_decides() {
    let reactor = Reactor::start(&OVERLAPPING);
    let sources = [v4(2), v4(10), v4(9), unlisted()];
    let replies = udp_replies(&reactor, "daytime", b"", &sources, v4(3));
    let [allowed_24, denied_29, allowed_32, unlisted] = replies.try_into().unwrap();
    assert_daytime_line(&allowed_24.expect("127.0.0.2 is answered"));
    assert_eq!(denied_29, None, "127.0.0.10 (denied /29) is not answered");
    assert_daytime_line(&allowed_32.expect("127.0.0.9 (allowed /32) is answered"));
    assert_eq!(unlisted, None, "127.0.1.1 (no rule, an allow exists)");
    // Refused again: counted, not named again; the UDP port's timer writes the summary.
    assert_eq!(
        udp_replies(&reactor, "daytime", b"", &[v4(10)], v4(3)),
        [None]
    );
    let log = reactor.log_when("a summary line", |log| log.contains("access lists: "));
    assert_eq!(
        lines_with(&log, "daytime udp: refused 127.0.0.10"),
        1,
        "named once:\n{log}"
    );
    assert!(
        log.contains("access lists: 1 more refused"),
        "the repeat summed:\n{log}"
    );
}

#[test]
fn a_per_service_deny_refuses_that_service_only() {
    let reactor = Reactor::start(&["--deny", "echo=127.0.0.3"]);
    // TCP: echo refused for 127.0.0.3, served for 127.0.0.2; daytime served for both.
    let refused = tcp_echo(&reactor, v4(3));
    assert!(refused.is_refusal(), "echo for 127.0.0.3: {refused:?}");
    assert_eq!(tcp_echo(&reactor, v4(2)), Seen::Closed(b"ping\n".to_vec()));
    match tcp_daytime(&reactor, v4(3)) {
        Seen::Closed(line) => assert_daytime_line(&line),
        other => panic!("daytime for 127.0.0.3: {other:?}"),
    }
    // UDP: the same.
    let echoed = udp_replies(&reactor, "echo", b"ping", &[v4(3), v4(2)], v4(4));
    assert_eq!(echoed, [None, Some(b"ping".to_vec())]);
    let daytime = udp_replies(&reactor, "daytime", b"", &[v4(3)], v4(4));
    assert_daytime_line(
        daytime[0]
            .as_deref()
            .expect("daytime for 127.0.0.3 over UDP"),
    );
}

#[test]
fn a_refusal_is_logged_once_counted_and_the_rest_summed_within_a_second() {
    let reactor = Reactor::start(&OVERLAPPING);
    for _ in 0..3 {
        assert_eq!(tcp_daytime(&reactor, v4(10)), Seen::Closed(Vec::new()));
    }
    for _ in 0..3 {
        let replies = udp_replies(&reactor, "daytime", b"", &[v4(10)], v4(2));
        assert_eq!(replies, [None]);
    }
    // Every refusal has been dealt with (EOF seen, probe answered); the status line is written
    // after them all.
    reactor.signal(libc::SIGUSR1);
    let log = reactor.log_when("a status line", |log| log.contains("status: "));
    assert!(
        log.contains("refused by access lists: 3 tcp, 3 udp"),
        "counted by transport:\n{log}"
    );
    for transport in ["tcp", "udp"] {
        let named = format!("daytime {transport}: refused 127.0.0.10 (--deny 127.0.0.8/29)");
        assert_eq!(lines_with(&log, &named), 1, "{named:?} once in:\n{log}");
    }
    assert_eq!(
        lines_with(&log, "refused"),
        3,
        "two refusals and the status:\n{log}"
    );
    // The four not named are summed in a line (or two, if they straddled a second), written by
    // a timer within a second or so: no further refusal is needed to get it out.
    let summed = |log: &str| -> u64 {
        log.lines()
            .filter_map(|line| {
                line.split_once("access lists: ")?
                    .1
                    .split_once(" more refused")
            })
            .filter_map(|(count, _)| count.parse::<u64>().ok())
            .sum()
    };
    let log = reactor.log_when("a summary of 4 more refused", |log| summed(log) >= 4);
    assert_eq!(summed(&log), 4, "{log}");
}

#[test]
fn refused_peers_spend_neither_their_connection_share_nor_their_udp_budget() {
    let reactor = Reactor::start(&[
        "--deny",
        "echo=127.0.0.4",
        "--max-conns-per-ip",
        "1",
        "--udp-rate-per-ip",
        "1",
    ]);
    for _ in 0..3 {
        let seen = tcp_echo(&reactor, v4(4));
        assert!(seen.is_refusal(), "echo for 127.0.0.4: {seen:?}");
    }
    // Its one connection is still free for daytime.
    match tcp_daytime(&reactor, v4(4)) {
        Seen::Closed(line) => assert_daytime_line(&line),
        other => panic!("daytime for 127.0.0.4 after refused echo: {other:?}"),
    }
    // Three refused echo datagrams, back to back, did not spend its one datagram a second.
    let echo = udp_from(v4(4), reactor.addr("echo", "udp"));
    for _ in 0..3 {
        echo.send(b"ping").unwrap();
    }
    let daytime = udp_from(v4(4), reactor.addr("daytime", "udp"));
    daytime.send(b"").unwrap();
    let mut buf = [0u8; 2048];
    let n = daytime
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no daytime reply for 127.0.0.4: {e}"));
    assert_daytime_line(&buf[..n]);
}

#[test]
fn bad_rules_exit_2_with_one_line_naming_the_flag_and_help_lists_both_flags() {
    for (args, expected) in [
        (
            ["--allow", "10.0.0.0/33"],
            "reactor: --allow: '10.0.0.0/33': an IPv4 prefix is at most /32\n",
        ),
        (
            ["--deny", "ftp=10.0.0.0/8"],
            "reactor: --deny: 'ftp' is not a service (time, echo, daytime or rfc868)\n",
        ),
        (
            ["--deny", "10.0.0.1/8"],
            "reactor: --deny: '10.0.0.1/8' has address bits set past its prefix (the network is 10.0.0.0/8)\n",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_reactor"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing bound, nothing announced"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_reactor"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--allow [SERVICE=]CIDR",
        "--deny [SERVICE=]CIDR",
        "longest prefix",
    ] {
        assert!(help.contains(flag), "--help mentions {flag:?}");
    }
}
