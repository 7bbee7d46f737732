//! The process around the loop (docs/PROTOCOLS.md §1): command line, stdout contract, graceful
//! shutdown on SIGTERM/SIGINT, IPv6, idle timeout and `--max-conns`.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    Reactor, assert_tick, eventually, expect_au_revoir_tcp, expect_au_revoir_udp, greeted_tcp,
    greeted_udp, read_line, read_to_end, recv_text, tcp, udp,
};

/// Runs `reactor` with `args` to completion (killed after 20 s, so a server that unexpectedly
/// starts fails the test instead of hanging it); returns (status code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = common::run(env!("CARGO_BIN_EXE_reactor"), args, b"");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_clear_line(stderr: &str, mentions: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.starts_with("reactor: "), "{stderr:?}");
    assert!(
        stderr.contains(mentions),
        "{stderr:?} should mention {mentions:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn bad_options_exit_2_with_one_line_naming_the_problem() {
    for (args, mentions) in [
        (&["--time", "nope"][..], "--time"),
        (&["--ticks", "-3"][..], "--ticks"),
        (&["--ticks"][..], "--ticks"),
        (
            &["--bind", "local host"][..],
            "neither an IP address nor a host name",
        ),
        (&["--interval-ms", "0"][..], "--interval-ms"),
        (&["--frobnicate"][..], "--frobnicate"),
        (
            &["--log-time", "utc"][..],
            "--log-time: 'utc' is not one of: local, rfc3339",
        ),
        (
            &[
                "--time",
                "off",
                "--echo",
                "off",
                "--daytime",
                "off",
                "--rfc868",
                "off",
            ][..],
            "nothing to serve",
        ),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert_one_clear_line(&stderr, mentions);
    }
}

#[test]
fn a_port_in_use_exits_1_naming_the_socket() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stdout, stderr) = run(&[
        "--time",
        &port,
        "--echo",
        "0",
        "--daytime",
        "0",
        "--rfc868",
        "0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_one_clear_line(&stderr, &format!("cannot bind time tcp 127.0.0.1:{port}"));
}

#[test]
fn help_and_version_go_to_stdout_and_exit_0() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--time",
        "--echo",
        "--daytime",
        "--rfc868",
        "--max-conns",
        "--trace-events",
        "--log-time",
        "--log-deps",
    ] {
        assert!(stdout.contains(flag), "--help lists {flag}");
    }
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("reactor "));
}

#[test]
fn sigterm_says_au_revoir_to_every_session_and_exits_0_within_a_second() {
    let mut reactor = Reactor::start(&["--ticks", "1000", "--interval-ms", "1000"]);
    let mut tcp_sessions: Vec<_> = (0..30)
        .map(|_| greeted_tcp(reactor.addr("time", "tcp")))
        .collect();
    let udp_sessions: Vec<_> = (0..10)
        .map(|_| greeted_udp(reactor.addr("time", "udp")))
        .collect();
    // An echo client in the middle of a conversation is closed cleanly too.
    let mut echo = tcp(reactor.addr("echo", "tcp"));
    echo.write_all(b"ping").unwrap();
    let mut ping = [0u8; 4];
    echo.read_exact(&mut ping).unwrap();

    let signalled = Instant::now();
    reactor.signal(libc::SIGTERM);
    tcp_sessions.iter_mut().for_each(expect_au_revoir_tcp);
    udp_sessions.iter().for_each(expect_au_revoir_udp);
    assert_eq!(read_to_end(&mut echo), b"");
    drop(tcp_sessions);
    reactor.assert_stops_within_a_second(signalled);
    assert_eq!(
        reactor.extra_stdout(),
        Vec::<String>::new(),
        "stdout carries only listening lines"
    );

    // Every socket was really closed: the same ports bind again at once.
    TcpListener::bind(reactor.addr("time", "tcp")).expect("the TCP port binds again");
    UdpSocket::bind(reactor.addr("time", "udp")).expect("the UDP port binds again");
}

#[test]
fn a_hundred_signals_during_a_session_interrupt_nothing() {
    let reactor = Reactor::start(&["--ticks", "5", "--interval-ms", "100"]);
    let stream = tcp(reactor.addr("time", "tcp"));
    let started = Instant::now(); // before the greeting: no tick can come earlier than planned
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    assert_tick(read_line(&mut reader).trim_end());
    // SIGUSR1 logs a status line; each one also interrupts epoll_wait (EINTR). The next is
    // sent once the loop logged the last one, so no two merge into one pending signal.
    for sent in 1..=100 {
        reactor.signal(libc::SIGUSR1);
        reactor.log_when("a status line per SIGUSR1", |log| {
            log.matches("status: ").count() >= sent
        });
    }
    for k in 1..5u32 {
        assert_tick(read_line(&mut reader).trim_end());
        assert!(started.elapsed() >= Duration::from_millis(100) * k);
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"");
    let log = reactor.log();
    assert!(log.contains("status: "), "SIGUSR1 logs a status line");
    assert!(!log.contains("shutting down"));
}

#[test]
fn sigint_with_a_client_that_never_closes_still_exits_0_within_a_second() {
    let mut reactor = Reactor::start(&["--ticks", "1000"]);
    let stream = tcp(reactor.addr("time", "tcp"));
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    assert_tick(read_line(&mut reader).trim_end());
    let signalled = Instant::now();
    reactor.signal(libc::SIGINT);
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    // The client keeps its end open; the grace period ends the wait.
    reactor.assert_stops_within_a_second(signalled);
}

#[test]
fn every_service_works_on_ipv6_loopback() {
    let reactor = Reactor::start(&["--bind", "::1", "--ticks", "1", "--interval-ms", "10"]);
    let addr = reactor.addr("time", "tcp");
    assert!(addr.is_ipv6(), "{addr}");
    let stream = tcp(addr);
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    assert_tick(read_line(&mut reader).trim_end());
    assert_eq!(read_line(&mut reader), "Au Revoir\n");

    let socket = udp(reactor.addr("echo", "udp"));
    socket.send(b"v6").unwrap();
    assert_eq!(recv_text(&socket), "v6");
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_chatty_one_is_not() {
    let reactor = Reactor::start(&["--idle-timeout-ms", "300"]);
    let opened = Instant::now(); // before connecting: the server's clock starts later
    let mut silent = tcp(reactor.addr("echo", "tcp"));
    let chatty = tcp(reactor.addr("echo", "tcp"));
    let mut buf = [0u8; 1];
    for _ in 0..8 {
        // The chatty client's own pace, not a wait for the server: a byte every 100 ms keeps it
        // active (< the 300 ms timeout) while its life runs well past that timeout.
        std::thread::sleep(Duration::from_millis(100));
        (&chatty).write_all(b"x").unwrap();
        (&chatty).read_exact(&mut buf).unwrap();
    }
    assert_eq!(read_to_end(&mut silent), b"", "the silent one was closed");
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= Duration::from_millis(300),
        "{closed_after:?}"
    );
    (&chatty).write_all(b"y").unwrap();
    (&chatty).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"y", "the chatty one is still served");
}

#[test]
fn at_max_conns_new_connections_wait_and_are_served_when_a_slot_frees() {
    let reactor = Reactor::start(&["--max-conns", "2"]);
    let echo = reactor.addr("echo", "tcp");
    let first = tcp(echo);
    let second = tcp(echo);
    for stream in [&first, &second] {
        let mut stream = stream;
        stream.write_all(b"a").unwrap();
        let mut buf = [0u8; 1];
        stream.read_exact(&mut buf).unwrap();
    }
    // The third completes its handshake in the kernel's backlog but is not served yet.
    let mut third = tcp(echo);
    third.write_all(b"waiting").unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 7];
    assert!(third.read(&mut buf).is_err(), "served beyond --max-conns");

    // A slot frees: the waiting connection is accepted without any new connection arriving.
    first.shutdown(Shutdown::Write).unwrap();
    drop(first);
    third.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    third.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"waiting");
    drop(second);
}

#[test]
fn two_event_loops_share_the_ports_and_stop_together() {
    let mut reactor =
        Reactor::start(&["--threads", "2", "--ticks", "1000", "--interval-ms", "1000"]);
    eventually(Duration::from_secs(5), "one thread per loop", || {
        reactor.proc_status("Threads") == 2
    });
    // Sessions spread over both loops (the kernel hashes each connection to one listener).
    let mut sessions: Vec<_> = (0..40)
        .map(|_| greeted_tcp(reactor.addr("time", "tcp")))
        .collect();
    let peers: Vec<_> = (0..20)
        .map(|_| greeted_udp(reactor.addr("time", "udp")))
        .collect();
    let echo = udp(reactor.addr("echo", "udp"));
    echo.send(b"both").unwrap();
    assert_eq!(recv_text(&echo), "both");

    let signalled = Instant::now();
    reactor.signal(libc::SIGTERM);
    sessions.iter_mut().for_each(expect_au_revoir_tcp);
    drop(sessions);
    peers.iter().for_each(expect_au_revoir_udp);
    reactor.assert_stops_within_a_second(signalled);
}
