//! The logs a sysadmin reads (README "Logs"): one line per TCP connection and per UDP exchange
//! at the default level, dated timestamps, no dependency noise unless asked, and the SIGUSR1
//! status line with its totals — each checked against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use common::{Reactor, read_to_end, tcp};

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
