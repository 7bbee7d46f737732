//! Echo (RFC 862, docs/PROTOCOLS.md §3) against the real binary: byte-exact TCP and UDP echo,
//! half-close, the reflection guard, and backpressure that bounds memory and then resumes.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Reactor, fill_until_stalled, random_bytes, read_to_end, tcp, udp};

#[test]
fn tcp_echo_returns_ten_mebibytes_of_random_bytes_exactly() {
    let reactor = Reactor::start(&[]);
    let data = random_bytes(10 << 20, 1);
    let stream = tcp(reactor.addr("echo", "tcp"));
    let mut writer = stream.try_clone().unwrap();
    let echoed = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            writer.write_all(&data).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let echoed = read_to_end(&mut &stream);
        sender.join().unwrap();
        echoed
    });
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echoed bytes differ");
}

#[test]
fn half_close_flushes_what_is_pending_then_closes() {
    let reactor = Reactor::start(&[]);
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let data = random_bytes(200_000, 2);
    // Less than what the socket buffers hold, so writing everything first cannot deadlock.
    stream.write_all(&data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_end(&mut stream);
    assert!(
        echoed == data,
        "got {} of {} bytes back",
        echoed.len(),
        data.len()
    );
}

#[test]
fn udp_echo_returns_each_datagram_unchanged() {
    let reactor = Reactor::start(&[]);
    let socket = udp(reactor.addr("echo", "udp"));
    let mut buf = vec![0u8; 65_536];
    for (i, size) in [0usize, 1, 100, 1400, 9000, 60_000].into_iter().enumerate() {
        let datagram = random_bytes(size, i as u64);
        socket.send(&datagram).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &datagram[..], "datagram of {size} bytes");
    }
}

#[test]
fn udp_echo_never_answers_a_privileged_source_port() {
    let reactor = Reactor::start(&[]);
    let echo = reactor.addr("echo", "udp");
    let socket = (600..1024)
        .find_map(|port| UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).ok())
        .expect("this test binds a source port below 1024: run it as root (CI does)");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket.send_to(b"loop?", echo).unwrap();
    let mut buf = [0u8; 16];
    assert!(socket.recv(&mut buf).is_err(), "no reply to port < 1024");

    // The same bytes from an ordinary port are echoed.
    let ordinary = udp(echo);
    ordinary.send(b"loop?").unwrap();
    assert_eq!(ordinary.recv(&mut buf).unwrap(), 5);
}

#[test]
fn a_client_that_never_reads_is_paused_not_buffered() {
    let reactor = Reactor::start(&[]);
    let rss_before = reactor.rss_kib();
    let mut hog = tcp(reactor.addr("echo", "tcp"));
    let accepted = fill_until_stalled(&mut hog, 256 << 20);
    assert!(accepted < 256 << 20, "the server never stopped reading");
    // Only the kernel's socket buffers (a few MiB on loopback) and the server's 64 KiB
    // output limit can hold bytes: the server stopped reading.
    assert!(
        accepted < 32 << 20,
        "{accepted} bytes accepted from a client that never reads"
    );
    let rss_after = reactor.rss_kib();
    assert!(
        rss_after < rss_before + 4 * 1024,
        "server RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Meanwhile others are served.
    let mut other = tcp(reactor.addr("echo", "tcp"));
    other.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    other.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");

    // Once the hog reads, every byte it sent comes back: reading resumed on its own.
    hog.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_end(&mut hog);
    assert_eq!(echoed.len(), accepted);
    assert!(echoed.iter().all(|&b| b == 0xA5));
}
