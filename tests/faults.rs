//! Reliability under abuse: each classic socket fault, against the real binary. After every
//! fault the reactor must still serve others, free what the faulty peer held, not busy-loop and
//! not panic. (Others live beside the feature they guard: half-close and backpressure in
//! `echo.rs`, the reflection guard and the UDP budget in `echo.rs`/`inetd.rs`, `--max-conns`
//! in `lifecycle.rs`, stale tokens in `src/reactor.rs`.)

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, Reactor, assert_tick, eventually, expect_au_revoir_tcp, expect_au_revoir_udp,
    fill_until_stalled, greeted_tcp, greeted_udp, poll_for, random_bytes, read_line, read_to_end,
    recv_text, tcp, udp,
};

/// Clock ticks per second for /proc/<pid>/stat (Linux's USER_HZ is 100 on every architecture).
const TICKS_PER_SECOND: u64 = 100;

/// A full time-stream session: proof the reactor still serves others correctly.
fn assert_serves_a_time_session(reactor: &Reactor, ticks: usize) {
    let stream = tcp(reactor.addr("time", "tcp"));
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..ticks {
        assert_tick(read_line(&mut reader).trim_end());
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"");
}

/// CPU time the reactor uses over `window`, as a fraction of one core.
fn cpu_share(reactor: &Reactor, window: Duration) -> f64 {
    let before = reactor.cpu_ticks();
    // The measurement window itself, not a wait for the server: the reactor is already in the
    // state being measured, and the test asks what that state costs over this much time.
    std::thread::sleep(window);
    let used = reactor.cpu_ticks() - before;
    used as f64 / TICKS_PER_SECOND as f64 / window.as_secs_f64()
}

/// Closes with RST instead of FIN (`SO_LINGER` with a zero timeout).
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor, and a pointer to a correctly sized `linger`.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(stream);
}

#[test]
fn a_one_mebibyte_greeting_without_newline_is_refused_and_others_are_unaffected() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "20"]);
    let stream = tcp(reactor.addr("time", "tcp"));
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server stops listening long before 1 MiB: a write error here is expected.
        let _ = writer.write_all(&vec![b'g'; 1 << 20]);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut reply = Vec::new();
    let _ = (&stream).read_to_end(&mut reply); // may end in a reset once the server is gone
    sender.join().unwrap();
    assert_eq!(reply, b"error: line too long\n");
    assert_serves_a_time_session(&reactor, 2);
}

#[test]
fn two_thousand_silent_connections_are_closed_after_the_idle_timeout() {
    // All from 127.0.0.1: this test is about the idle timeout, not the per-source cap.
    let reactor = Reactor::start(&[
        "--idle-timeout-ms",
        "1000",
        "--ticks",
        "2",
        "--interval-ms",
        "20",
        "--max-conns-per-ip",
        "10000",
    ]);
    let baseline_fds = reactor.fd_count();
    let silent: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let service = if i % 2 == 0 { "time" } else { "echo" };
            tcp(reactor.addr(service, "tcp"))
        })
        .collect();
    eventually(IO_TIMEOUT, "2000 connections accepted", || {
        reactor.fd_count() >= baseline_fds + 2000
    });
    assert_serves_a_time_session(&reactor, 2);

    for mut stream in silent {
        assert_eq!(read_to_end(&mut stream), b"", "closed by the server");
    }
    eventually(IO_TIMEOUT, "descriptors freed", || {
        reactor.fd_count() == baseline_fds
    });
    assert_serves_a_time_session(&reactor, 2);
}

#[test]
fn an_echo_client_that_sends_100_mib_without_reading_costs_bounded_memory() {
    let reactor = Reactor::start(&[]);
    let rss_before = reactor.rss_kib();
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    const TOTAL: usize = 100 << 20;
    // Fill every buffer on the way, until the server stops taking bytes.
    let taken = fill_until_stalled(&mut stream, TOTAL);
    let rss_stalled = reactor.rss_kib();
    assert!(
        rss_stalled < rss_before + 2 * 1024,
        "RSS {rss_before} KiB -> {rss_stalled} KiB while the client did not read"
    );
    assert!(taken < TOTAL, "100 MiB cannot all have been taken");

    // The rest of the 100 MiB, sent while the client reads.
    stream.set_write_timeout(None).unwrap(); // blocks until the client reads, by design
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = random_bytes(1 << 20, 5);
        let mut left = TOTAL - taken;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });

    // Once the client reads, the connection is served again, to the last byte.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match (&stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) => panic!("read after {received} bytes: {e}"),
        }
    }
    sender.join().unwrap();
    assert_eq!(received, TOTAL);
    assert!(reactor.rss_kib() < rss_before + 2 * 1024);
}

#[test]
fn resets_in_the_middle_of_output_free_the_connection_and_kill_nothing() {
    let reactor = Reactor::start(&["--ticks", "100000", "--interval-ms", "1"]);
    let baseline_fds = reactor.fd_count();
    for round in 0..50 {
        // A time stream ticking every millisecond, reset after its first line…
        let stream = tcp(reactor.addr("time", "tcp"));
        (&stream).write_all(b"Bonjour\n").unwrap();
        let mut first = [0u8; 20];
        (&stream).read_exact(&mut first).unwrap();
        reset(stream);
        // …and an echo connection reset while the server still has a megabyte to send back.
        let echo = tcp(reactor.addr("echo", "tcp"));
        let _ = (&echo).write_all(&random_bytes(1 << 20, round));
        reset(echo);
    }
    eventually(IO_TIMEOUT, "descriptors freed", || {
        reactor.fd_count() == baseline_fds
    });
    // SIGPIPE did not kill it (Rust ignores SIGPIPE; writes get EPIPE instead).
    let mut echo = tcp(reactor.addr("echo", "tcp"));
    echo.write_all(b"alive").unwrap();
    let mut buf = [0u8; 5];
    echo.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"alive");
    assert!(!reactor.log().contains("panicked"));
}

#[test]
fn connect_reset_connect_never_crosses_data_between_reused_slots() {
    let reactor = Reactor::start(&[]);
    let echo = reactor.addr("echo", "tcp");
    for round in 0u32..2000 {
        let doomed = tcp(echo);
        (&doomed)
            .write_all(format!("doomed {round}").as_bytes())
            .unwrap();
        reset(doomed);
        let mut keeper = tcp(echo);
        let message = format!("keeper {round}");
        keeper.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        keeper.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes(), "round {round}");
    }
}

#[test]
fn out_of_descriptors_the_reactor_waits_without_spinning_and_serves_the_queue_later() {
    let reactor = Reactor::start(&["--idle-timeout-ms", "0"]);
    // At start the reactor fits --max-conns under its limit (tests/descriptors.rs), so EMFILE
    // comes from what it could not foresee: here, the limit lowered under it (`prlimit --pid`).
    let limit = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: prlimit reads one rlimit struct, which `limit` is; a null old-limit pointer is
    // allowed.
    let rc = unsafe {
        libc::prlimit(
            reactor.pid(),
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let baseline_fds = reactor.fd_count();
    let echo = reactor.addr("echo", "tcp");
    let clients: Vec<TcpStream> = (0..200)
        .map(|i| {
            let stream = tcp(echo);
            (&stream).write_all(format!("{i:03}").as_bytes()).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    // The reactor accepts until it runs out of descriptors, and says so.
    reactor.log_when("EMFILE is logged", |log| log.contains("pausing accepts"));
    // It holds every descriptor it may have now: one per client it took. Those are served; the
    // rest wait in the backlog.
    let taken = reactor.fd_count() - baseline_fds;
    let mut replies = vec![Vec::new(); clients.len()];
    eventually(IO_TIMEOUT, "every accepted client is echoed", || {
        for (mut stream, reply) in clients.iter().zip(&mut replies) {
            let mut buf = [0u8; 3];
            match stream.read(&mut buf[..3 - reply.len()]) {
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        replies.iter().filter(|reply| reply.len() == 3).count() >= taken
    });
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for (i, (stream, reply)) in clients.into_iter().zip(replies).enumerate() {
        stream.set_nonblocking(false).unwrap();
        if reply.len() == 3 {
            assert_eq!(reply, format!("{i:03}").as_bytes());
            served.push(stream);
        } else {
            assert_eq!(reply, b"", "client {i} got part of its echo");
            waiting.push((i, stream));
        }
    }
    assert!(
        !served.is_empty() && served.len() < 64,
        "{} served",
        served.len()
    );

    let share = cpu_share(&reactor, Duration::from_secs(1));
    assert!(
        share < 0.05,
        "the reactor used {share:.2} of a core while at the limit"
    );

    // Others close: the waiting ones are accepted and echoed, with no new connection arriving.
    drop(served);
    for (i, mut stream) in waiting {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut reply = [0u8; 3];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, format!("{i:03}").as_bytes(), "client {i}");
        drop(stream); // frees a descriptor for the next ones
    }
}

#[test]
fn at_max_conns_the_backlog_waits_without_spinning() {
    let reactor = Reactor::start(&["--max-conns", "10", "--idle-timeout-ms", "0"]);
    let baseline_fds = reactor.fd_count();
    let echo = reactor.addr("echo", "tcp");
    let held: Vec<TcpStream> = (0..10).map(|_| tcp(echo)).collect();
    eventually(IO_TIMEOUT, "the first 10 are accepted", || {
        reactor.fd_count() >= baseline_fds + 10
    });
    let waiting: Vec<TcpStream> = (0..40)
        .map(|i| {
            let stream = tcp(echo);
            (&stream).write_all(&[i]).unwrap();
            stream
        })
        .collect();
    let share = cpu_share(&reactor, Duration::from_secs(1));
    assert!(
        share < 0.05,
        "the reactor used {share:.2} of a core at --max-conns"
    );
    drop(held);
    for (i, mut stream) in waiting.into_iter().enumerate() {
        let mut reply = [0u8; 1];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], i as u8);
    }
}

/// A UDP socket bound to `ip:port`, or `None` if that port is taken.
fn bind_udp(ip: [u8; 4], port: u16) -> Option<UdpSocket> {
    UdpSocket::bind(SocketAddr::from((Ipv4Addr::from(ip), port))).ok()
}

#[test]
fn a_flood_of_twenty_thousand_udp_greetings_is_capped_and_admitted_sessions_keep_time() {
    let reactor = Reactor::start(&[
        "--ticks",
        "10",
        "--interval-ms",
        "200",
        "--max-udp-sessions",
        "1000",
        "--max-udp-sessions-per-ip",
        "100",
        "--udp-rate-per-ip",
        "0",
    ]);
    let time = reactor.addr("time", "udp");
    // A session admitted before the flood, watched for punctuality.
    let watched = udp(time);
    let started = Instant::now(); // before the greeting: no tick can come earlier than planned
    watched.send(b"watch").unwrap();
    assert_tick(&recv_text(&watched));
    let rss_before = reactor.rss_kib();

    // 20,000 greetings: 200 source IPs of 127/8 × 100 ports each (bound, sent, closed).
    let mut sent = 0;
    'flood: for host in 2..=255u8 {
        for port in 40_000..40_100u16 {
            if let Some(socket) = bind_udp([127, 0, 0, host], port) {
                let _ = socket.send_to(b"flood", time);
                sent += 1;
                if sent == 20_000 {
                    break 'flood;
                }
            }
        }
    }
    assert_eq!(sent, 20_000);

    // The watched session keeps its schedule through the flood.
    for k in 1..10u32 {
        assert_tick(&recv_text(&watched));
        let due = Duration::from_millis(200) * k;
        assert!(started.elapsed() >= due, "tick {k} early");
    }
    assert_eq!(recv_text(&watched), "Au Revoir");
    assert!(reactor.log().contains("session cap reached"));
    let rss_flooded = reactor.rss_kib();
    assert!(
        rss_flooded < rss_before + 8 * 1024,
        "RSS {rss_before} KiB -> {rss_flooded} KiB"
    );

    // Every admitted session expires after its ticks: a newcomer is admitted again. Those of
    // the flood end a little after the watched one (they began later); until then a greeting is
    // ignored, so it is repeated until the first tick comes back.
    let newcomer = udp(time);
    newcomer
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    let first = poll_for(IO_TIMEOUT, || {
        newcomer.send(b"after the flood").unwrap();
        let n = newcomer.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram"))
    })
    .expect("a newcomer is admitted after the flood's sessions ended");
    assert_tick(&first);
}

#[test]
fn sigterm_with_a_thousand_live_sessions_exits_0_within_a_second_after_au_revoir() {
    let mut reactor = Reactor::start(&[
        "--ticks",
        "1000",
        "--interval-ms",
        "1000",
        "--max-udp-sessions-per-ip",
        "1000",
        "--udp-rate-per-ip",
        "0",
        "--max-conns-per-ip",
        "10000",
    ]);
    let mut tcp_sessions: Vec<_> = (0..800)
        .map(|_| greeted_tcp(reactor.addr("time", "tcp")))
        .collect();
    let udp_sessions: Vec<_> = (0..200)
        .map(|_| greeted_udp(reactor.addr("time", "udp")))
        .collect();

    let signalled = Instant::now();
    reactor.signal(libc::SIGTERM);
    tcp_sessions.iter_mut().for_each(expect_au_revoir_tcp);
    drop(tcp_sessions);
    udp_sessions.iter().for_each(expect_au_revoir_udp);
    reactor.assert_stops_within_a_second(signalled);
}
