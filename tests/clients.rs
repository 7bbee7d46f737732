//! The blocking clients (docs/PROTOCOLS.md §5) against the real reactor, and against fixtures for
//! what the reactor never does (silence, garbage, early close).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Reactor, assert_tick, random_bytes, run};

fn time_client(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_time-client"), args, b"")
}

fn echo_client(args: &[&str], stdin: &[u8]) -> Output {
    run(env!("CARGO_BIN_EXE_echo-client"), args, stdin)
}

fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one line on stderr: {text:?}");
    text
}

fn assert_success(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}

fn assert_ticks_then_au_revoir(output: &Output, ticks: usize) {
    assert_success(output);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), ticks + 1, "{stdout:?}");
    for line in &lines[..ticks] {
        assert_tick(line);
    }
    assert_eq!(lines[ticks], "Au Revoir");
}

#[test]
fn time_client_over_tcp_and_udp_prints_every_tick_then_au_revoir() {
    let reactor = Reactor::start(&["--ticks", "3", "--interval-ms", "50"]);
    for (proto, flags) in [("tcp", &[][..]), ("udp", &["--udp"][..])] {
        let addr = reactor.addr("time", proto).to_string();
        let mut args = flags.to_vec();
        args.extend(["--interval-ms", "50", "--greeting", "Salut", &addr]);
        assert_ticks_then_au_revoir(&time_client(&args), 3);
    }
    assert!(reactor.log().contains("greeting \"Salut\""));
}

#[test]
fn time_client_over_udp_reports_a_lost_datagram_instead_of_hanging() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let output = time_client(&["--udp", "--interval-ms", "100", &addr]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("lost"), "{:?}", output.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn time_client_failures_are_one_clear_line() {
    // Nobody listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = time_client(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("connection refused"));

    // An unknown host.
    let output = time_client(&["nosuchhost.invalid:8080"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("nosuchhost.invalid"));

    // A server that answers something else.
    let fixture = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fixture.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = fixture.accept().unwrap();
        let mut greeting = [0u8; 8];
        let _ = stream.read(&mut greeting);
        let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\n");
    });
    let output = time_client(&[&addr]);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("malformed reply"));

    // Usage errors.
    let output = time_client(&["--greeting", "two\nlines"]);
    assert_eq!(output.status.code(), Some(2));
    let output = time_client(&["not-an-address"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn echo_client_over_tcp_returns_stdin_byte_for_byte() {
    let reactor = Reactor::start(&[]);
    let addr = reactor.addr("echo", "tcp").to_string();
    let output = echo_client(&[&addr], b"Bonjour\nhello world\n");
    assert_success(&output);
    assert_eq!(output.stdout, b"Bonjour\nhello world\n");

    // More than every buffer on the way holds: needs the concurrent writer to not deadlock.
    let big = random_bytes(8 << 20, 7);
    let output = echo_client(&[&addr], &big);
    assert_success(&output);
    assert!(
        output.stdout == big,
        "echoed {} of {} bytes",
        output.stdout.len(),
        big.len()
    );
}

#[test]
fn echo_client_over_udp_prints_each_line_back() {
    let reactor = Reactor::start(&[]);
    let addr = reactor.addr("echo", "udp").to_string();
    let output = echo_client(&["--udp", &addr], b"one\n\ntwo three\n");
    assert_success(&output);
    assert_eq!(output.stdout, b"one\n\ntwo three\n");
}

#[test]
fn echo_client_reports_a_server_that_stops_echoing() {
    let fixture = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fixture.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = fixture.accept().unwrap();
        let mut buf = [0u8; 9];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf[..4]).unwrap(); // echoes 4 bytes, then hangs up
    });
    let output = echo_client(&[&addr], b"abcdefgh\n");
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr_line(&output);
    assert!(message.contains("after echoing 4 of 9 bytes"), "{message}");

    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let output = echo_client(&["--udp", "--timeout", "0.3", &addr], b"anyone?\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("lost"));
}
