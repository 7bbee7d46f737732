//! Daytime (RFC 867) and time (RFC 868) on our own sockets (docs/PROTOCOLS.md §4), and the
//! per-source UDP budget that keeps every UDP service from being used as a reflector.

mod common;

use std::time::{Duration, Instant};

use common::{Reactor, assert_daytime_line, assert_rfc868_now, read_to_end, tcp, udp};

#[test]
fn daytime_and_rfc868_over_tcp_speak_once_then_close() {
    let reactor = Reactor::start(&[]);
    assert_daytime_line(&read_to_end(&mut tcp(reactor.addr("daytime", "tcp"))));
    assert_rfc868_now(&read_to_end(&mut tcp(reactor.addr("rfc868", "tcp"))));
}

#[test]
fn daytime_and_rfc868_over_udp_answer_any_datagram_even_an_empty_one() {
    let reactor = Reactor::start(&[]);
    let mut buf = [0u8; 512];
    for payload in [&b""[..], b"what time is it?"] {
        let daytime = udp(reactor.addr("daytime", "udp"));
        daytime.send(payload).unwrap();
        let n = daytime.recv(&mut buf).unwrap();
        assert_daytime_line(&buf[..n]);

        let rfc868 = udp(reactor.addr("rfc868", "udp"));
        rfc868.send(payload).unwrap();
        let n = rfc868.recv(&mut buf).unwrap();
        assert_rfc868_now(&buf[..n]);
    }
}

/// Counts the datagrams that arrive on `socket` until it stays silent for 300 ms.
fn count_replies(socket: &std::net::UdpSocket) -> usize {
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    std::iter::from_fn(|| socket.recv(&mut buf).ok()).count()
}

#[test]
fn a_flood_from_one_source_gets_at_most_its_budget_across_all_udp_services() {
    let reactor = Reactor::start(&["--udp-rate-per-ip", "20"]);
    let echo = udp(reactor.addr("echo", "udp"));
    let daytime = udp(reactor.addr("daytime", "udp"));
    for _ in 0..200 {
        echo.send(b"flood").unwrap();
        daytime.send(b"").unwrap();
    }
    let flood_sent = Instant::now();
    let answered = count_replies(&echo) + count_replies(&daytime);
    // 20 for the burst, plus what refilled while the flood was being sent (well under 0.5 s).
    assert!(
        (20..=30).contains(&answered),
        "{answered} replies to 400 datagrams"
    );
    assert_eq!(
        reactor.log().matches("dropping the excess").count(),
        1,
        "logged once per episode"
    );

    // The budget refills: later the same source is served again. At 20 a second, one
    // datagram's worth is back 50 ms after the flood; the two silences `count_replies` waited
    // for already took 600 ms. (That passage of time is the token bucket's refill, part of what
    // is tested; nothing here waits for the server to catch up.)
    let refill = Duration::from_secs(1) / 20;
    assert!(
        flood_sent.elapsed() >= 2 * refill,
        "the bucket had time to refill"
    );
    echo.send(b"again").unwrap();
    assert_eq!(count_replies(&echo), 1);
}
