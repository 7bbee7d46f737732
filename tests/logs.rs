//! The logs a sysadmin reads (README "Logs"): one line per TCP connection and per UDP exchange
//! at the default level, dated timestamps, no dependency noise unless asked, and the SIGUSR1
//! status line with its totals — each checked against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, Reactor, assert_tick, expect_au_revoir_udp, greeted_udp, read_to_end, recv_text,
    tcp, udp,
};

/// The fields of one `<service> tcp <peer>: closed after S s, I bytes in, O bytes out (WHY)`
/// line.
#[derive(Debug)]
struct Closed {
    seconds: f64,
    bytes_in: u64,
    bytes_out: u64,
    why: String,
}

/// The message of each log line (after the time and the `[LEVEL] `).
fn messages(log: &str) -> impl Iterator<Item = &str> {
    log.lines()
        .filter_map(|line| line.split_once("] ").map(|(_, message)| message))
}

/// The close line of `service`'s TCP connection from `peer`, if it was logged (at most one).
fn closed_line(log: &str, service: &str, peer: SocketAddr) -> Option<Closed> {
    let prefix = format!("{service} tcp {peer}: closed after ");
    let mut found = messages(log).filter_map(|message| message.strip_prefix(&prefix));
    let rest = found.next()?;
    assert!(found.next().is_none(), "two close lines for {peer}:\n{log}");
    let parse = || -> Option<Closed> {
        let (seconds, rest) = rest.split_once(" s, ")?;
        let (bytes_in, rest) = rest.split_once(" bytes in, ")?;
        let (bytes_out, rest) = rest.split_once(" bytes out (")?;
        Some(Closed {
            seconds: seconds.parse().ok()?,
            bytes_in: bytes_in.parse().ok()?,
            bytes_out: bytes_out.parse().ok()?,
            why: rest.strip_suffix(')')?.to_string(),
        })
    };
    Some(parse().unwrap_or_else(|| panic!("malformed close line {rest:?}")))
}

/// Waits for the close line of `service`'s connection from `peer`.
fn wait_closed_line(reactor: &Reactor, service: &str, peer: SocketAddr) -> Closed {
    let log = reactor.log_when(&format!("the close line of {peer}"), |log| {
        closed_line(log, service, peer).is_some()
    });
    closed_line(&log, service, peer).expect("just seen")
}

#[test]
fn an_echo_connection_is_one_line_with_its_duration_bytes_and_why_it_ended() {
    let reactor = Reactor::start(&[]);
    let began = Instant::now(); // before the connect: the server's clock starts later
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    stream.write_all(b"hello world\n").unwrap();
    let mut echoed = [0u8; 12];
    stream.read_exact(&mut echoed).unwrap();
    stream.write_all(b"\x1b[2J\r\n").unwrap(); // control bytes: counted, never logged
    let mut more = [0u8; 6];
    stream.read_exact(&mut more).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut stream), b"");
    let line = wait_closed_line(&reactor, "echo", peer);
    let lasted = began.elapsed().as_secs_f64();
    assert_eq!((line.bytes_in, line.bytes_out), (18, 18), "{line:?}");
    assert_eq!(line.why, "peer closed");
    assert!(
        (0.0..=lasted).contains(&line.seconds),
        "{line:?}, the test saw {lasted} s"
    );
    assert!(
        !reactor.log().contains('\x1b'),
        "peer bytes reached the log"
    );

    // A megabyte the client does not read at once: most of it waits in the server's output
    // queue and is written from there, counted all the same.
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    let sent = common::random_bytes(1 << 20, 7);
    let mut writer = stream.try_clone().unwrap();
    let echoed = std::thread::scope(|scope| {
        scope.spawn(|| {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        read_to_end(&mut stream)
    });
    assert!(echoed == sent, "echoed {} bytes", echoed.len());
    let line = wait_closed_line(&reactor, "echo", peer);
    assert_eq!((line.bytes_in, line.bytes_out), (1 << 20, 1 << 20));
    assert_eq!(line.why, "peer closed");

    // A one-shot service closes first.
    let mut stream = tcp(reactor.addr("daytime", "tcp"));
    let peer = stream.local_addr().unwrap();
    let reply = read_to_end(&mut stream);
    drop(stream); // our FIN ends the server's lingering close
    let line = wait_closed_line(&reactor, "daytime", peer);
    assert_eq!((line.bytes_in, line.bytes_out), (0, reply.len() as u64));
    assert_eq!(line.why, "service done");
}

#[test]
fn a_connection_closed_for_idleness_says_so() {
    let reactor = Reactor::start(&["--idle-timeout-ms", "300"]);
    // Meanwhile a daytime client reads its line and never closes: after the server's FIN it
    // lingers for the client's, 2 s, and the close line says what cut it short.
    let mut lingering = tcp(reactor.addr("daytime", "tcp"));
    let lingering_peer = lingering.local_addr().unwrap();
    assert_eq!(
        read_to_end(&mut lingering).last(),
        Some(&b'\n'),
        "the daytime line"
    );
    let began = Instant::now();
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    assert_eq!(read_to_end(&mut stream), b"", "closed by the server");
    let line = wait_closed_line(&reactor, "echo", peer);
    let lasted = began.elapsed().as_secs_f64();
    assert_eq!((line.bytes_in, line.bytes_out), (0, 0));
    assert_eq!(
        line.why, "idle timeout: nothing sent or received for 300ms",
        "{line:?}"
    );
    assert!(
        (0.3..=lasted).contains(&line.seconds),
        "{line:?}, the test saw {lasted} s"
    );

    let line = wait_closed_line(&reactor, "daytime", lingering_peer);
    assert_eq!(
        line.why, "linger expired: no FIN from peer within 2s",
        "{line:?}"
    );
    assert!(line.seconds >= 2.0, "{line:?}");
    drop(lingering);
}

/// Waits until a log message equal to `expected` (or, with a trailing `…`, starting with what
/// precedes it) was logged; returns the message.
fn wait_message(reactor: &Reactor, expected: &str) -> String {
    let matches = |message: &str| match expected.strip_suffix('…') {
        Some(prefix) => message.starts_with(prefix),
        None => message == expected,
    };
    let log = reactor.log_when(expected, |log| messages(log).any(matches));
    messages(&log)
        .find(|m| matches(m))
        .expect("just seen")
        .to_string()
}

/// A UDP socket bound to `ip` (any 127/8 address is loopback on Linux), connected to `to`.
fn udp_from(ip: &str, to: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind udp");
    socket.connect(to).expect("connect udp");
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

#[test]
fn each_one_shot_udp_exchange_is_one_line() {
    let reactor = Reactor::start(&[]);
    let socket = udp(reactor.addr("daytime", "udp"));
    let peer = socket.local_addr().unwrap();
    socket.send(b"").unwrap();
    let reply = recv_text(&socket);
    wait_message(
        &reactor,
        &format!(
            "daytime udp {peer}: answered, 0 bytes in, {} bytes out",
            reply.len()
        ),
    );

    let socket = udp(reactor.addr("echo", "udp"));
    let peer = socket.local_addr().unwrap();
    socket.send(b"\x1b]0;owned\x07").unwrap();
    assert_eq!(recv_text(&socket), "\x1b]0;owned\x07");
    wait_message(
        &reactor,
        &format!("echo udp {peer}: answered, 10 bytes in, 10 bytes out"),
    );
    assert!(
        !reactor.log().contains('\x1b'),
        "peer bytes reached the log"
    );
}

#[test]
fn a_udp_time_session_logs_its_greeting_and_how_it_ended() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50"]);
    let time = reactor.addr("time", "udp");
    // Over: two ticks of 19 bytes and a 9-byte goodbye.
    let socket = udp(time);
    let peer = socket.local_addr().unwrap();
    socket.send(b"Bon\x1bjour").unwrap();
    for _ in 0..2 {
        assert_tick(&recv_text(&socket));
    }
    assert_eq!(recv_text(&socket), "Au Revoir");
    wait_message(
        &reactor,
        &format!("time udp {peer}: greeting \"Bon\\u{{1b}}jour\""),
    );
    let over = wait_message(&reactor, &format!("time udp {peer}: session over …"));
    let tail = format!(", 8 bytes in, {} bytes out", 2 * 19 + 9);
    let seconds = over
        .strip_prefix(&format!("time udp {peer}: session over after 2 ticks, "))
        .and_then(|rest| rest.strip_suffix(&tail))
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{over:?}"));
    assert!((0.05..10.0).contains(&seconds), "{over:?}");
    assert!(
        !reactor.log().contains('\x1b'),
        "peer bytes reached the log"
    );

    // Ended early: a full table (2 sessions, both from 127.0.0.1's network) makes room for a
    // peer from another network by ending its oldest session.
    drop(reactor);
    let mut reactor = Reactor::start(&["--interval-ms", "60000", "--max-udp-sessions", "2"]);
    let time = reactor.addr("time", "udp");
    let oldest = greeted_udp(time);
    let younger = greeted_udp(time);
    let newcomer = udp_from("127.0.1.1", time);
    newcomer.send(b"Bonjour").unwrap();
    assert_tick(&recv_text(&newcomer));
    let oldest = oldest.local_addr().unwrap();
    wait_message(
        &reactor,
        &format!(
            "time udp {oldest}: session ended early to make room for {} after 1 tick, …",
            newcomer.local_addr().unwrap()
        ),
    );

    // Shutdown: the two live sessions say goodbye, and say so in the log.
    reactor.signal(libc::SIGTERM);
    for socket in [&younger, &newcomer] {
        expect_au_revoir_udp(socket);
    }
    assert!(reactor.wait_exit(IO_TIMEOUT).is_some_and(|s| s.success()));
    let log = reactor.log();
    for socket in [&younger, &newcomer] {
        let peer = socket.local_addr().unwrap();
        let prefix = format!("time udp {peer}: said Au Revoir at shutdown after 1 tick, ");
        let line = messages(&log)
            .find(|m| m.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{log}"));
        assert!(line.ends_with(", 7 bytes in, 28 bytes out"), "{line:?}");
    }
}

#[test]
fn a_udp_flood_is_logged_within_the_budget_and_summed_up_each_second() {
    let reactor = Reactor::start(&["--udp-rate-per-ip", "0"]);
    let socket = udp(reactor.addr("rfc868", "udp"));
    let peer = socket.local_addr().unwrap();
    const EXCHANGES: u64 = 300;
    for _ in 0..EXCHANGES {
        socket.send(b"").unwrap(); // one at a time: none is lost in a full receive buffer
        let mut reply = [0u8; 8];
        assert_eq!(socket.recv(&mut reply).unwrap(), 4);
    }
    let line = format!("rfc868 udp {peer}: answered, 0 bytes in, 4 bytes out");
    let count = |log: &str| {
        let logged = messages(log).filter(|m| *m == line).count() as u64;
        let summaries: Vec<u64> = messages(log)
            .filter_map(|m| {
                let rest = m.strip_prefix("rfc868 udp: ")?;
                let (n, rest) = rest.split_once(' ')?;
                rest.starts_with("more UDP exchanges not logged individually")
                    .then(|| n.parse().expect("a count"))
            })
            .collect();
        (logged, summaries)
    };
    // The last summary comes by timer, a second after its window began.
    let log = reactor.log_when("every exchange logged or summed up", |log| {
        let (logged, summaries) = count(log);
        logged + summaries.iter().sum::<u64>() >= EXCHANGES
    });
    let (logged, summaries) = count(&log);
    assert_eq!(logged + summaries.iter().sum::<u64>(), EXCHANGES);
    assert!(!summaries.is_empty(), "the flood was summed up");
    assert!(
        logged <= 50 * (summaries.len() as u64 + 1),
        "{logged} lines for {} windows over budget",
        summaries.len()
    );
}

/// A SIGUSR1 status line, parsed.
#[derive(Debug, Default, PartialEq)]
struct Status {
    /// `status` or `status loop N/M`.
    name: String,
    /// Seconds up.
    up: u64,
    open: u64,
    /// accepted, closed, refused, bytes in, bytes out
    tcp: [u64; 5],
    /// datagrams in, datagrams out, bytes in, bytes out
    udp: [u64; 4],
}

/// Parses `<name>: up [N d ]hh:mm:ss; K TCP connections open, …; since start: TCP A accepted,
/// C closed, R refused, I bytes in, O bytes out; UDP I datagrams in, O out, I bytes in, O bytes
/// out`.
fn status_line(message: &str) -> Option<Status> {
    let (name, rest) = message.split_once(": up ")?;
    if !name.starts_with("status") {
        return None;
    }
    let (up, rest) = rest.split_once("; ")?;
    let (days, clock) = match up.split_once(" d ") {
        Some((days, clock)) => (days.parse::<u64>().ok()?, clock),
        None => (0, up),
    };
    let hms: Vec<u64> = clock
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    let (open, rest) = rest.split_once(" TCP connections open, ")?;
    let (_, totals) = rest.split_once("; since start: TCP ")?;
    let (tcp, udp) = totals.split_once("; UDP ")?;
    let numbers = |text: &str, labels: &[&str]| -> Option<Vec<u64>> {
        let mut rest = text;
        labels
            .iter()
            .map(|label| {
                let (n, after) = rest.split_once(label)?;
                rest = after;
                n.trim_start_matches(", ").parse().ok()
            })
            .collect()
    };
    let tcp = numbers(
        tcp,
        &[
            " accepted",
            " closed",
            " refused",
            " bytes in",
            " bytes out",
        ],
    )?;
    let udp = numbers(udp, &[" datagrams in", " out", " bytes in", " bytes out"])?;
    Some(Status {
        name: name.to_string(),
        up: days * 86_400 + h * 3600 + m * 60 + s,
        open: open.parse().ok()?,
        tcp: tcp.try_into().ok()?,
        udp: udp.try_into().ok()?,
    })
}

/// Sends SIGUSR1 and waits for `loops` status lines more than the log has; returns them.
fn status_lines(reactor: &Reactor, loops: usize) -> Vec<Status> {
    let statuses = |log: &str| -> Vec<Status> { messages(log).filter_map(status_line).collect() };
    let before = statuses(&reactor.log()).len();
    reactor.signal(libc::SIGUSR1);
    let log = reactor.log_when("the status lines", |log| {
        statuses(log).len() >= before + loops
    });
    statuses(&log).split_off(before)
}

/// One echo exchange of `text`, closed by the client; returns once the server logged it.
fn echo_once(reactor: &Reactor, text: &[u8]) {
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    stream.write_all(text).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut stream), text);
    wait_closed_line(reactor, "echo", peer);
}

#[test]
fn sigusr1_logs_uptime_and_totals_since_start() {
    let began = Instant::now();
    let reactor = Reactor::start(&["--max-conns-per-ip", "1"]);
    let listening = Instant::now(); // the loop was made before it printed its listening lines
    for _ in 0..3 {
        echo_once(&reactor, b"hello");
    }
    // One held open; the next from the same source is over its limit: closed at once.
    let held = tcp(reactor.addr("echo", "tcp"));
    let mut refused = tcp(reactor.addr("echo", "tcp"));
    assert_eq!(read_to_end(&mut refused), b"");
    for _ in 0..2 {
        let socket = udp(reactor.addr("daytime", "udp"));
        socket.send(b"x").unwrap();
        recv_text(&socket);
        let peer = socket.local_addr().unwrap();
        wait_message(
            &reactor,
            &format!("daytime udp {peer}: answered, 1 bytes in, 26 bytes out"),
        );
    }
    let [status] = &status_lines(&reactor, 1)[..] else {
        panic!("one status line")
    };
    assert!(status.up <= began.elapsed().as_secs(), "{status:?}");
    assert_eq!(
        *status,
        Status {
            name: "status".into(),
            up: status.up,
            open: 1,
            tcp: [4, 3, 1, 15, 15],
            udp: [2, 2, 2, 52],
        }
    );
    drop(held);

    // Uptime is measured in seconds, so let two of them pass (the clock is what is tested).
    std::thread::sleep(Duration::from_secs(2).saturating_sub(listening.elapsed()));
    let [status] = &status_lines(&reactor, 1)[..] else {
        panic!("one status line")
    };
    let most = began.elapsed().as_secs();
    assert!(
        (2..=most).contains(&status.up),
        "{status:?}, at most {most} s"
    );
}

#[test]
fn with_two_loops_each_logs_its_own_status_line_with_its_number() {
    let reactor = Reactor::start(&["--threads", "2"]);
    const CONNECTIONS: u64 = 6;
    for _ in 0..CONNECTIONS {
        echo_once(&reactor, b"abc");
    }
    let mut lines = status_lines(&reactor, 2);
    lines.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = lines.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["status loop 1/2", "status loop 2/2"]);
    let sum = |field: fn(&Status) -> u64| lines.iter().map(field).sum::<u64>();
    assert_eq!(
        sum(|s| s.tcp[0]),
        CONNECTIONS,
        "accepted, both loops: {lines:?}"
    );
    assert_eq!(sum(|s| s.tcp[1]), CONNECTIONS, "closed: {lines:?}");
    assert_eq!(sum(|s| s.tcp[3]), 3 * CONNECTIONS, "bytes in: {lines:?}");
    assert_eq!(sum(|s| s.tcp[4]), 3 * CONNECTIONS, "bytes out: {lines:?}");
}

/// The timestamp of the reactor's first log line (what precedes ` [LEVEL]`).
fn first_timestamp(reactor: &Reactor) -> String {
    let log = reactor.log_when("a first log line", |log| log.contains('\n'));
    let line = log.lines().next().expect("a line");
    let (stamp, _) = line
        .split_once(" [")
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    stamp.to_string()
}

/// Asserts that `at`, read from `stamp`, is a UTC time between `before` and now.
fn assert_now(stamp: &str, at: chrono::NaiveDateTime, before: chrono::NaiveDateTime) {
    let after = chrono::Utc::now().naive_utc();
    let slack = chrono::TimeDelta::seconds(1);
    assert!(
        (before - slack..=after + slack).contains(&at),
        "{stamp:?} is not now: {at} UTC is not within [{before}, {after}]"
    );
}

#[test]
fn log_lines_carry_the_date_in_local_time_or_rfc3339_utc() {
    // A zone 5:30 ahead of UTC, named by a POSIX TZ string (no time zone database needed).
    let zone = |command: &mut std::process::Command| {
        command.env("TZ", "XST-5:30");
    };
    let ahead = chrono::TimeDelta::minutes(5 * 60 + 30);

    let before = chrono::Utc::now().naive_utc();
    let local = Reactor::start_with(&[], zone);
    let stamp = first_timestamp(&local);
    let at = chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S%.3f")
        .unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
    assert_eq!(stamp.len(), "2026-11-25 23:55:01.123".len(), "{stamp:?}");
    assert_now(&stamp, at - ahead, before);

    let before = chrono::Utc::now().naive_utc();
    let rfc3339 = Reactor::start_with(&["--log-time", "rfc3339"], zone);
    let stamp = first_timestamp(&rfc3339);
    let at =
        chrono::DateTime::parse_from_rfc3339(&stamp).unwrap_or_else(|e| panic!("{stamp:?}: {e}"));
    assert!(stamp.ends_with("+00:00"), "UTC: {stamp:?}");
    assert_eq!(
        stamp.len(),
        "2026-11-25T23:55:01.123+00:00".len(),
        "{stamp:?}"
    );
    assert_now(&stamp, at.naive_utc(), before);
}

#[test]
fn dependencies_log_only_when_asked() {
    let quiet = Reactor::start(&["-vv"]);
    let loud = Reactor::start(&["-vv", "--log-deps"]);
    for reactor in [&quiet, &loud] {
        let mut stream = tcp(reactor.addr("echo", "tcp"));
        let peer = stream.local_addr().unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut stream), b"");
        // Our own lines at every level are there, the debug ones too.
        wait_closed_line(reactor, "echo", peer);
        wait_message(reactor, &format!("echo tcp {peer}: open (#…"));
    }
    // mio logs each registration at trace level, with its source path.
    let mio = "registering event source with poller";
    let quiet = quiet.log();
    assert!(
        !quiet.contains(mio),
        "mio's lines without --log-deps:\n{quiet}"
    );
    assert!(!quiet.contains(".cargo/registry"), "{quiet}");
    assert!(loud.log().contains(mio), "no mio line with --log-deps");
}

#[test]
fn a_connection_cut_short_by_the_send_timeout_or_a_reset_says_so() {
    let reactor = Reactor::start(&["--send-timeout-ms", "300"]);

    // Writes and never reads: echo's output stalls, and 300 ms later the server gives up
    // (its close resets the connection under our blocked write).
    let stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    let chunk = vec![b'w'; 64 * 1024];
    let mut written = 0usize;
    let error = loop {
        match (&stream).write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "the server never stopped taking input");
    };
    let line = wait_closed_line(&reactor, "echo", peer);
    assert_eq!(
        line.why, "send timeout: peer took no output for 300ms",
        "{line:?} (our write: {error})"
    );
    assert!(line.bytes_out < line.bytes_in, "{line:?}");

    // Sends, reads one byte of the echo, and closes with the rest unread: the kernel resets
    // the connection instead of closing it.
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let peer = stream.local_addr().unwrap();
    stream.write_all(&[b'r'; 1000]).unwrap();
    stream.read_exact(&mut [0u8; 1]).unwrap();
    drop(stream);
    let line = wait_closed_line(&reactor, "echo", peer);
    assert!(line.why.starts_with("peer reset: "), "{line:?}");
    assert_eq!(line.bytes_in, 1000, "{line:?}");
}
