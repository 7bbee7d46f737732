//! `--proxy-from` against the real binary, with PROXY headers written by hand (the real
//! balancers are in `tests/balancers.rs`). The "balancer" is a client bound to 127.0.0.1, the
//! only trusted address; a client bound to 127.0.0.2 is anybody else. The headers name clients
//! from 192.0.2.0/24 (documentation addresses, never the sockets' own).
//!
//! Every wait is on bytes or on a log line: a refusal is an EOF without a byte, a service that
//! must not have spoken yet is checked with a non-blocking read once the log shows the bytes
//! before it were read.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Reactor, assert_daytime_line, assert_tick};

const WAIT: Duration = Duration::from_secs(5);
const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TRUST: [&str; 2] = ["--proxy-from", "127.0.0.1/32"];

/// A TCP connection to `addr` from `source`, with timeouts and no Nagle delay (so each write
/// leaves as its own segment).
fn tcp_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}:0: {e}"));
    socket.connect_timeout(&addr.into(), WAIT).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A v1 header for `client` (IPv4 or IPv6).
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let (protocol, destination) = if client.is_ipv4() {
        ("TCP4", "198.51.100.1")
    } else {
        ("TCP6", "2001:db8::1")
    };
    format!(
        "PROXY {protocol} {} {destination} {} 8081\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for an IPv4 `client`, with a NOOP TLV to skip.
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let IpAddr::V4(ip) = client.ip() else {
        panic!("IPv4 only")
    };
    let mut block = ip.octets().to_vec();
    block.extend_from_slice(&[198, 51, 100, 1]);
    block.extend_from_slice(&client.port().to_be_bytes());
    block.extend_from_slice(&8081u16.to_be_bytes());
    block.extend_from_slice(&[0x04, 0, 3, 0, 0, 0]);
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&(block.len() as u16).to_be_bytes());
    header.extend_from_slice(&block);
    header
}

/// A v2 LOCAL header (what haproxy's health checks send).
fn v2_local() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

/// Every byte until the server ends the connection (EOF or reset).
fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read after {all:?}: {e}"),
        }
    }
}

/// Sends `bytes`, half-closes, and returns everything echoed back.
fn echo_through(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    until_closed(stream)
}

/// Sends `header` then `payload` on an open echo connection and reads the payload back,
/// leaving the connection open.
fn echo_round_trip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
}

#[test]
fn the_header_names_the_client_and_the_bytes_after_it_reach_the_service_whole() {
    let reactor = Reactor::start(&["-v", TRUST[0], TRUST[1]]);
    let echo = reactor.addr("echo", "tcp");

    // Header and data in one write: the service gets exactly the data.
    let mut client = tcp_from(BALANCER, echo);
    let sent = [v1("192.0.2.7:5555"), b"hello".to_vec()].concat();
    assert_eq!(echo_through(&mut client, &sent), b"hello");

    // v2 with a TLV, then binary data that itself looks like a header.
    let mut client = tcp_from(BALANCER, echo);
    let data = [v2("192.0.2.99:1"), vec![0, 1, 2, 255]].concat();
    let sent = [v2("192.0.2.8:6666"), data.clone()].concat();
    assert_eq!(echo_through(&mut client, &sent), data);

    // A byte at a time, each its own segment: the header still ends where it ends.
    let mut client = tcp_from(BALANCER, echo);
    for byte in [v1("[2001:db8::9]:7777"), b"dribbled".to_vec()].concat() {
        client.write_all(&[byte]).unwrap();
    }
    assert_eq!(echo_through(&mut client, b""), b"dribbled");

    let log = reactor.log_when("three proxied connections", |log| {
        log.matches("open via 127.0.0.1:").count() == 3
    });
    for client in ["192.0.2.7:5555", "192.0.2.8:6666", "[2001:db8::9]:7777"] {
        assert!(
            log.contains(&format!("echo tcp {client}: open via 127.0.0.1:")),
            "{client} in:\n{log}"
        );
    }
    assert!(log.contains("(PROXY v1)") && log.contains("(PROXY v2)"));
    // Each connection's one info line names the client, then the balancer.
    reactor.log_when("the close lines", |log| {
        log.contains("echo tcp 192.0.2.7:5555 via 127.0.0.1:")
            && log.matches(" via 127.0.0.1:").count() >= 3
            && log.contains(" bytes in, 5 bytes out (peer closed)")
    });
}

#[test]
fn no_service_speaks_before_the_header_is_complete() {
    let reactor = Reactor::start(&["--trace-events", "-v", TRUST[0], TRUST[1]]);
    let mut client = tcp_from(BALANCER, reactor.addr("daytime", "tcp"));
    let header = v1("192.0.2.9:4000");
    client.write_all(&header[..10]).unwrap();
    reactor.log_when("the first 10 bytes read", |log| {
        log.contains(": read 10 bytes")
    });
    // Daytime speaks as soon as it starts, in the turn that read the bytes: had it started, its
    // line would already be in this socket (loopback delivers during the server's write).
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let early = client.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "daytime spoke before the header was complete: {early:?}"
    );
    client.set_nonblocking(false).unwrap();
    client.write_all(&header[10..]).unwrap();
    assert_daytime_line(&until_closed(&mut client));
    reactor.log_when("the client's address", |log| {
        log.contains("daytime tcp 192.0.2.9:4000: open via 127.0.0.1:")
    });
}

#[test]
fn the_time_stream_greets_the_client_behind_the_balancer() {
    let reactor = Reactor::start(&[TRUST[0], TRUST[1], "--ticks", "1", "--interval-ms", "10"]);
    let mut client = tcp_from(BALANCER, reactor.addr("time", "tcp"));
    client
        .write_all(&[v1("[2001:db8::7]:4001"), b"Bonjour\n".to_vec()].concat())
        .unwrap();
    let reply = String::from_utf8(until_closed(&mut client)).unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 2, "{reply:?}");
    assert_tick(lines[0]);
    assert_eq!(lines[1], "Au Revoir");
    reactor.log_when("the greeting, under the client's address", |log| {
        log.contains("time tcp [2001:db8::7]:4001: greeting \"Bonjour\"")
    });
}

#[test]
fn a_stranger_sending_a_proxy_header_is_served_its_bytes_as_they_are() {
    let reactor = Reactor::start(&["-v", TRUST[0], TRUST[1]]);
    let mut client = tcp_from(STRANGER, reactor.addr("echo", "tcp"));
    let forged = [v1("192.0.2.7:5555"), b"hello".to_vec()].concat();
    assert_eq!(
        echo_through(&mut client, &forged),
        forged,
        "echoed, not parsed"
    );
    let log = reactor.log_when("the stranger's connection closed", |log| {
        log.contains("echo tcp 127.0.0.2:") && log.contains(": closed")
    });
    assert!(
        !log.contains("192.0.2.7"),
        "the forged client never appears:\n{log}"
    );
}

#[test]
fn the_access_lists_judge_the_client_named_by_the_header_not_the_balancer() {
    let reactor = Reactor::start(&[
        "-v",
        TRUST[0],
        TRUST[1],
        "--deny",
        "127.0.0.1",
        "--deny",
        "192.0.2.66",
    ]);
    let echo = reactor.addr("echo", "tcp");
    // The balancer's own address is denied, yet the client it relays is served.
    let mut client = tcp_from(BALANCER, echo);
    let sent = [v1("192.0.2.7:1"), b"in".to_vec()].concat();
    assert_eq!(echo_through(&mut client, &sent), b"in");
    // A denied client behind the balancer gets nothing.
    let mut client = tcp_from(BALANCER, echo);
    let sent = [v2("192.0.2.66:2"), b"out".to_vec()].concat();
    assert_eq!(
        echo_through(&mut client, &sent),
        b"",
        "refused without a byte"
    );
    reactor.log_when(
        "the refusal of the client, and its close line at debug",
        |log| {
            log.contains("echo tcp: refused 192.0.2.66 (--deny 192.0.2.66/32)")
                && log.contains("[DEBUG] echo tcp 192.0.2.66:2 via 127.0.0.1:")
                && log.contains("(refused: --deny 192.0.2.66/32)")
        },
    );
}

#[test]
fn the_per_source_limit_counts_the_clients_behind_the_balancer_and_every_path_releases() {
    let reactor = Reactor::start(&["-v", TRUST[0], TRUST[1], "--max-conns-per-ip", "2"]);
    let echo = reactor.addr("echo", "tcp");
    let open_as = |client: &str| {
        let mut stream = tcp_from(BALANCER, echo);
        stream.write_all(&v1(client)).unwrap();
        stream
    };

    // Connections that end without ever being admitted, or after being admitted, leave
    // nothing counted: bad headers, EOF right after the header, EOF inside the header.
    for _ in 0..5 {
        let mut bad = tcp_from(BALANCER, echo);
        assert_eq!(echo_through(&mut bad, b"GET / HTTP/1.0\r\n\r\n"), b"");
        let mut short = open_as("192.0.2.9:1");
        assert_eq!(echo_through(&mut short, b""), b"");
        let mut cut = tcp_from(BALANCER, echo);
        assert_eq!(echo_through(&mut cut, b"PROXY TCP4 192.0.2.9"), b"");
    }

    // Two from 192.0.2.9 are served; the balancer itself holds more than two, which is fine.
    let mut first = open_as("192.0.2.9:10");
    echo_round_trip(&mut first, b"one");
    let mut second = open_as("192.0.2.9:11");
    echo_round_trip(&mut second, b"two");
    // The third from that client is closed at once, and so is a fourth: a refusal releases
    // nothing it did not take.
    for port in [12, 13] {
        let mut over = open_as(&format!("192.0.2.9:{port}"));
        assert_eq!(echo_through(&mut over, b"three"), b"", "over the limit");
    }
    // Another client behind the same balancer is not affected.
    let mut other = open_as("192.0.2.10:1");
    echo_round_trip(&mut other, b"other");
    // Once one of 192.0.2.9's connections closes, it may open one more, and only one.
    drop(first);
    let mut again = common::poll_for(WAIT, || {
        let mut stream = open_as("192.0.2.9:20");
        stream.write_all(b"again").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).ok().map(|()| stream)
    })
    .expect("a freed slot is usable again");
    echo_round_trip(&mut again, b"still");
    let mut over = open_as("192.0.2.9:21");
    assert_eq!(echo_through(&mut over, b"x"), b"", "the limit holds again");
    let log = reactor.log();
    assert!(
        log.contains("echo tcp: 192.0.2.9 holds 2 connections (--max-conns-per-ip)"),
        "{log}"
    );
    drop(second);
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection_and_is_logged_once_then_summed() {
    let reactor = Reactor::start(&[TRUST[0], TRUST[1]]);
    let echo = reactor.addr("echo", "tcp");
    for _ in 0..4 {
        let mut client = tcp_from(BALANCER, echo);
        assert_eq!(echo_through(&mut client, b"hello\n"), b"", "no byte echoed");
    }
    // An end of input before the header is complete, on another service: its own line.
    let mut client = tcp_from(BALANCER, reactor.addr("daytime", "tcp"));
    assert_eq!(
        echo_through(&mut client, b"PROXY TCP4 "),
        b"",
        "daytime never spoke"
    );
    let log = reactor.log_when("the summary of the repeats", |log| {
        log.contains("PROXY headers: 3 more")
    });
    assert_eq!(
        log.matches("malformed PROXY header: no PROXY signature")
            .count(),
        1,
        "named once:\n{log}"
    );
    assert!(
        log.contains("daytime tcp 127.0.0.1:")
            && log.contains("end of input before a complete PROXY header"),
        "{log}"
    );
    // SIGUSR1's status counts every one.
    reactor.signal(libc::SIGUSR1);
    let log = reactor.log_when("the status line", |log| {
        log.contains("closed without a valid PROXY header: 5")
    });
    // No info line per failed connection: the bounded warnings above are the whole story.
    assert!(!log.contains(": closed after"), "{log}");
}

#[test]
fn a_header_that_dribbles_in_is_cut_at_the_greeting_deadline_counted_from_the_accept() {
    let reactor = Reactor::start(&[TRUST[0], TRUST[1], "--greeting-timeout-ms", "400"]);
    let mut client = tcp_from(BALANCER, reactor.addr("echo", "tcp"));
    let accepted = Instant::now();
    // A byte every 50 ms: every byte is activity, none is progress. The header (48 bytes)
    // would take 2.4 s.
    let mut writer = client.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        for byte in v1("192.0.2.7:5555") {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(until_closed(&mut client), b"");
    let took = accepted.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(2000),
        "closed after {took:?}"
    );
    reactor.log_when("the deadline", |log| {
        log.contains("no complete PROXY header 400 ms after the accept (--greeting-timeout-ms)")
    });
    dribbler.join().unwrap();
}

#[test]
fn a_local_header_from_a_health_check_makes_the_balancer_the_peer() {
    let reactor = Reactor::start(&["-v", TRUST[0], TRUST[1]]);
    let mut client = tcp_from(BALANCER, reactor.addr("echo", "tcp"));
    let sent = [v2_local(), b"check".to_vec()].concat();
    assert_eq!(echo_through(&mut client, &sent), b"check");
    reactor.log_when("the balancer as the peer", |log| {
        log.contains("echo tcp 127.0.0.1:") && log.contains("the balancer's own (PROXY v2 LOCAL)")
    });
}

#[test]
fn a_connection_still_awaiting_its_header_at_shutdown_is_closed_at_once() {
    let mut reactor = Reactor::start(&[TRUST[0], TRUST[1]]);
    let mut client = tcp_from(BALANCER, reactor.addr("time", "tcp"));
    client.write_all(b"PROXY ").unwrap();
    // Proved connected and read before the signal: a greeted time stream on the side would
    // do, but the status line is simpler.
    reactor.signal(libc::SIGUSR1);
    reactor.log_when("one connection open", |log| {
        log.contains("status: up ") && log.contains("; 1 TCP connections open")
    });
    let signalled = Instant::now();
    reactor.signal(libc::SIGTERM);
    assert_eq!(
        until_closed(&mut client),
        b"",
        "no Au Revoir: no service yet"
    );
    reactor.assert_stops_within_a_second(signalled);
}
