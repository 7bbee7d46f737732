//! `--trace-events`: one log line per readiness event and per action, checked for the events
//! of one known TCP session and one UDP exchange.

mod common;

use std::io::{BufReader, Write};

use common::{Reactor, read_line, read_to_end, recv_text, tcp, udp};

/// The trace lines (after the log's time and level) that mention `label`, in order.
fn lines_of<'a>(log: &'a str, label: &str) -> Vec<&'a str> {
    log.lines()
        .filter_map(|line| line.split_once("] ").map(|(_, text)| text))
        .filter(|text| text.starts_with(&format!("{label}:")))
        .collect()
}

/// The token label (`#slot.generation`) of the first trace line whose text after the label
/// satisfies `matches`.
fn label_where(log: &str, matches: impl Fn(&str) -> bool) -> &str {
    log.lines()
        .find_map(|line| {
            let text = line.split_once("] ")?.1;
            let (label, rest) = text.split_once(": ")?;
            matches(rest).then_some(label)
        })
        .unwrap_or_else(|| panic!("no such trace line in:\n{log}"))
}

/// Asserts that `expected` fragments appear in `lines` in this order (other lines may be
/// in between: e.g. the kernel may split one event into two).
fn assert_in_order(lines: &[&str], expected: &[&str]) {
    let mut rest = lines.iter();
    for fragment in expected {
        assert!(
            rest.any(|line| line.contains(fragment)),
            "{fragment:?} missing (in order) from:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn trace_events_show_one_time_session_from_accept_to_close() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50", "--trace-events"]);
    let stream = tcp(reactor.addr("time", "tcp"));
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        read_line(&mut reader);
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"");
    drop(reader); // our FIN ends the server's lingering close

    // The connection's token is announced when it is accepted: `#slot.generation`.
    let accepted =
        label_where(&reactor.log(), |rest| rest.starts_with("accepted time tcp")).to_string();
    // The close is the last trace line of the session: once it is logged, all of them are.
    let log = reactor.log_when("the session's close is traced", |log| {
        lines_of(log, &accepted)
            .iter()
            .any(|line| line.contains("deregistered and closed"))
    });
    let accepted = accepted.as_str();
    assert!(accepted.starts_with('#'), "{accepted}");
    assert_in_order(
        &lines_of(&log, accepted),
        &[
            "accepted time tcp 127.0.0.1:",
            "R---- time tcp", // the greeting makes the connection readable
            "read 8 bytes",   // "Bonjour\n"
            "wrote 20 bytes", // the first tick, at once
            "timer 0x0 fired",
            "wrote 30 bytes", // the second tick and "Au Revoir\n"
            "sent FIN",
            "read EOF", // our FIN, read while lingering
            "deregistered and closed",
        ],
    );
    assert!(
        log.contains("time listener"),
        "the listener's event is traced"
    );
    assert!(
        log.contains("accept WouldBlock"),
        "draining the backlog is traced"
    );
}

#[test]
fn trace_events_show_a_udp_exchange_and_are_silent_when_off() {
    let reactor = Reactor::start(&["--trace-events"]);
    let socket = udp(reactor.addr("echo", "udp"));
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");
    // The socket's readiness was traced before the reply left; draining it to WouldBlock is
    // traced after: wait for that line, the last of the exchange.
    let label = label_where(&reactor.log(), |rest| rest == "R---- echo udp").to_string();
    let log = reactor.log_when("the drained socket is traced", |log| {
        lines_of(log, &label)
            .iter()
            .any(|line| line.contains("recv WouldBlock"))
    });
    let label = label.as_str();
    assert_in_order(
        &lines_of(&log, label),
        &[
            "R---- echo udp",
            "read 3 bytes from 127.0.0.1:",
            "sent 3 bytes to 127.0.0.1:",
            "recv WouldBlock",
        ],
    );

    let quiet = Reactor::start(&[]);
    let socket = udp(quiet.addr("echo", "udp"));
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");
    // The exchange's own line (logged after its trace lines would have been) is there; no
    // line names a token, and none says what was read or sent.
    let peer = socket.local_addr().unwrap();
    let log = quiet.log_when("the exchange is logged", |log| {
        log.contains(&format!(
            "echo udp {peer}: answered, 3 bytes in, 3 bytes out"
        ))
    });
    let traced: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.split_once("] ")
                .is_some_and(|(_, message)| message.starts_with('#'))
                || line.contains("read 3 bytes")
                || line.contains("sent 3 bytes")
        })
        .collect();
    assert!(
        traced.is_empty(),
        "no trace without --trace-events: {traced:?}"
    );
}
