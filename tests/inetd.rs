//! Daytime (RFC 867) and time (RFC 868) on our own sockets (PROTOCOLS.md §4), and the
//! per-source UDP budget that keeps every UDP service from being used as a reflector.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Reactor, assert_daytime_line, read_to_end, tcp, udp};

const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

fn assert_rfc868_now(reply: &[u8]) {
    let seconds = u32::from_be_bytes(reply.try_into().expect("exactly 4 bytes"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = ((now + SECONDS_1900_TO_1970) % (1 << 32)) as i64;
    assert!(
        (i64::from(seconds) - expected).abs() <= 5,
        "{seconds} vs {expected}"
    );
}

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

    // The budget refills: a second later the same source is served again.
    std::thread::sleep(Duration::from_millis(1100));
    echo.send(b"again").unwrap();
    assert_eq!(count_replies(&echo), 1);
}
