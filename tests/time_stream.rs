//! The time stream (docs/PROTOCOLS.md §2) against the real binary: TCP and UDP, greeting rules,
//! half-close, session caps, and many concurrent sessions in one loop.

mod common;

use std::io::{BufReader, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::{Reactor, assert_tick, read_line, read_to_end, recv_text, tcp, udp};

const INTERVAL: Duration = Duration::from_millis(50);

/// Greets over TCP and checks: `ticks` tick lines at the right moments, `Au Revoir`, EOF.
fn run_tcp_session(reactor: &Reactor, greeting: &[u8], ticks: u32) {
    let stream = tcp(reactor.addr("time", "tcp"));
    let greeted = Instant::now();
    (&stream).write_all(greeting).unwrap();
    let mut reader = BufReader::new(stream);
    for k in 0..ticks {
        let line = read_line(&mut reader);
        let arrived = greeted.elapsed();
        assert!(line.ends_with('\n'), "tick {k} {line:?} has no newline");
        assert_tick(line.trim_end_matches('\n'));
        // Tick k is scheduled k intervals after the greeting reached the server.
        assert!(arrived >= INTERVAL * k, "tick {k} after {arrived:?}");
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"", "EOF after Au Revoir");
}

#[test]
fn tcp_session_sends_ticks_at_the_interval_then_au_revoir_then_closes() {
    let reactor = Reactor::start(&["--ticks", "3", "--interval-ms", "50"]);
    // Timing is checked against the moment the greeting left: tick k cannot come earlier than
    // k intervals after it, however the test thread is scheduled (gaps between arrivals can
    // shrink when one read is delayed, so they are not asserted).
    run_tcp_session(&reactor, b"Bonjour\n", 3);
    assert!(
        reactor.log().contains("greeting \"Bonjour\""),
        "greeting is logged"
    );
}

#[test]
fn crlf_greeting_and_a_greeting_of_exactly_1024_bytes_are_accepted() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50"]);
    run_tcp_session(&reactor, b"Bonjour\r\n", 2);
    let mut longest = vec![b'g'; 1024];
    longest.push(b'\n');
    run_tcp_session(&reactor, &longest, 2);
}

#[test]
fn greeting_over_1024_bytes_gets_an_error_and_a_close() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50"]);
    let mut stream = tcp(reactor.addr("time", "tcp"));
    let mut too_long = vec![b'g'; 1025];
    too_long.push(b'\n');
    stream.write_all(&too_long).unwrap();
    assert_eq!(read_to_end(&mut stream), b"error: line too long\n");

    // Without any newline the verdict comes as soon as the cap is passed.
    let mut stream = tcp(reactor.addr("time", "tcp"));
    stream.write_all(&[b'g'; 4000]).unwrap();
    assert_eq!(read_to_end(&mut stream), b"error: line too long\n");

    // Others are unaffected.
    run_tcp_session(&reactor, b"Bonjour\n", 2);
}

#[test]
fn half_closed_client_still_gets_every_tick() {
    let reactor = Reactor::start(&["--ticks", "4", "--interval-ms", "50"]);
    let stream = tcp(reactor.addr("time", "tcp"));
    (&stream).write_all(b"Bonjour\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..4 {
        assert_tick(read_line(&mut reader).trim_end_matches('\n'));
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"");
}

#[test]
fn client_that_closes_before_greeting_is_closed_at_once() {
    let reactor = Reactor::start(&["--ticks", "3", "--interval-ms", "50"]);
    let mut stream = tcp(reactor.addr("time", "tcp"));
    stream.write_all(b"Bonj").unwrap(); // an incomplete greeting
    stream.shutdown(Shutdown::Write).unwrap();
    let started = Instant::now();
    assert_eq!(read_to_end(&mut stream), b"", "no ticks without a greeting");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
}

#[test]
fn input_after_the_greeting_is_discarded() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50"]);
    run_tcp_session(&reactor, b"Bonjour\nand more\nand more\n", 2);
}

#[test]
fn udp_session_sends_ticks_then_au_revoir() {
    let reactor = Reactor::start(&["--ticks", "3", "--interval-ms", "50"]);
    let socket = udp(reactor.addr("time", "udp"));
    let greeted = Instant::now();
    socket.send(b"Bonjour").unwrap();
    for k in 0..3u32 {
        let tick = recv_text(&socket);
        assert!(!tick.ends_with('\n'), "a UDP tick has no newline: {tick:?}");
        assert_tick(&tick);
        assert!(greeted.elapsed() >= INTERVAL * k);
        if k == 0 {
            // A second datagram during the session is ignored (no second session).
            socket.send(b"Bonjour again").unwrap();
        }
    }
    assert_eq!(recv_text(&socket), "Au Revoir");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "nothing after Au Revoir");
}

#[test]
fn udp_sessions_are_capped_per_source_ip() {
    let reactor = Reactor::start(&[
        "--ticks",
        "3",
        "--interval-ms",
        "200",
        "--max-udp-sessions-per-ip",
        "2",
    ]);
    let peers: Vec<_> = (0..3).map(|_| udp(reactor.addr("time", "udp"))).collect();
    for peer in &peers[..2] {
        peer.send(b"Bonjour").unwrap();
        assert_tick(&recv_text(peer));
    }
    peers[2].send(b"Bonjour").unwrap();
    peers[2]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        peers[2].recv(&mut buf).is_err(),
        "a peer over the cap gets nothing"
    );
    assert!(reactor.log().contains("session cap reached"));
}

#[test]
fn two_hundred_tcp_and_fifty_udp_sessions_complete_together_on_one_port() {
    // Every client is on 127.0.0.1: lift the per-source limits this test is not about.
    let reactor = Reactor::start(&[
        "--ticks",
        "3",
        "--interval-ms",
        "100",
        "--max-conns-per-ip",
        "1000",
        "--udp-rate-per-ip",
        "0",
    ]);
    // The same port number serves both protocols.
    assert_eq!(
        reactor.addr("time", "tcp").port(),
        reactor.addr("time", "udp").port()
    );
    let tcp_addr = reactor.addr("time", "tcp");
    let udp_addr = reactor.addr("time", "udp");
    std::thread::scope(|scope| {
        let mut sessions = Vec::new();
        for i in 0..200 {
            sessions.push(scope.spawn(move || {
                let stream = tcp(tcp_addr);
                (&stream)
                    .write_all(format!("client {i}\n").as_bytes())
                    .unwrap();
                let mut reader = BufReader::new(stream);
                for _ in 0..3 {
                    assert_tick(read_line(&mut reader).trim_end_matches('\n'));
                }
                assert_eq!(read_line(&mut reader), "Au Revoir\n");
                assert_eq!(read_to_end(&mut reader), b"");
            }));
        }
        for i in 0..50 {
            sessions.push(scope.spawn(move || {
                let socket = udp(udp_addr);
                socket.send(format!("peer {i}").as_bytes()).unwrap();
                for _ in 0..3 {
                    assert_tick(&recv_text(&socket));
                }
                assert_eq!(recv_text(&socket), "Au Revoir");
            }));
        }
        for session in sessions {
            session.join().expect("a session failed");
        }
    });
}
