//! `--trace-events`: the loop narrated, checked against the real binary — in words, one known
//! TCP time session from accept to close and one UDP exchange; silence when off; the JSON
//! form, every line of which must be a JSON object with the keys of its kind; and the compact
//! form of old.

mod common;

use std::io::{BufReader, Write};

use common::json::{self, Json};
use common::{Reactor, read_line, read_to_end, recv_text, tcp, udp};

/// The trace lines in words: each one's time (microseconds since the loop started, from its
/// `+S.UUUUUU s` prefix) and its text after that prefix (indent kept). Other log lines (dated)
/// are left out.
fn trace_lines(log: &str) -> Vec<(u64, &str)> {
    log.lines()
        .filter_map(|line| {
            let (time, text) = line.strip_prefix('+')?.split_once(" s ")?;
            let (seconds, micros) = time.split_once('.')?;
            if micros.len() != 6 {
                return None;
            }
            let micros = seconds.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?;
            Some((micros, text))
        })
        .collect()
}

/// Whether `text` names the token `label` (`#4.9`) as a word, not as the prefix of `#4.91`.
fn mentions(text: &str, label: &str) -> bool {
    text.split_whitespace()
        .any(|word| word.trim_end_matches([':', ')', ',']) == label)
}

/// The token (`#slot.generation`) on the first action line that ends with `action`.
fn label_of(log: &str, action: &str) -> Option<String> {
    trace_lines(log).into_iter().find_map(|(_, text)| {
        let (label, rest) = text.trim_start().split_once(": ")?;
        (rest == action).then(|| label.to_string())
    })
}

/// Asserts that lines matching `expected`, in this order, are among `lines` (others may come
/// in between: the kernel may report one change as two events).
fn assert_in_order(lines: &[&str], expected: &[&dyn Fn(&str) -> bool], names: &[&str]) {
    let mut rest = lines.iter();
    for (matches, name) in expected.iter().zip(names) {
        assert!(
            rest.any(|line| matches(line)),
            "{name:?} missing (in order) from:\n{}",
            lines.join("\n")
        );
    }
}

/// Trace lines are printed bare, never as the message of a dated log line.
fn assert_bare(log: &str) {
    for line in log.lines() {
        if let Some((_, message)) = line.split_once("] ") {
            assert!(
                !message.starts_with('+') && !message.starts_with('{'),
                "a trace line went through the dated log: {line:?}"
            );
        }
    }
}

/// Every wakeup is numbered one more than the last, time never runs backwards, and every line
/// says something.
fn assert_well_ordered(log: &str) {
    assert_bare(log);
    let lines = trace_lines(log);
    assert!(!lines.is_empty(), "no trace line in:\n{log}");
    let mut last_time = 0;
    let mut last_wakeup = 0;
    for (time, text) in lines {
        assert!(!text.trim().is_empty(), "an empty trace line");
        assert!(time >= last_time, "time ran backwards at {text:?}");
        last_time = time;
        if let Some(rest) = text.strip_prefix("wakeup #") {
            let number: u64 = rest.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(number, last_wakeup + 1, "wakeups are counted: {text:?}");
            last_wakeup = number;
        }
    }
}

#[test]
fn words_show_one_time_session_from_accept_to_close() {
    let reactor = Reactor::start(&["--ticks", "2", "--interval-ms", "50", "--trace-events"]);
    // Our FIN, when it returns, ends the server's lingering close.
    let me = common::whole_tcp_session(reactor.addr("time", "tcp"), 2);

    // The connection's token is named when it is accepted: `#slot.generation`.
    let accepted = format!("accepted time tcp {me}");
    let log = reactor.log_when("the accept is traced", |log| {
        label_of(log, &accepted).is_some()
    });
    let label = label_of(&log, &accepted).unwrap();
    assert!(label.starts_with('#'), "{label}");
    // The close is the session's last line: once it is there, all of them are.
    let closed = format!("{label}: deregistered and closed");
    let log = reactor.log_when("the session's close is traced", |log| {
        log.lines().any(|line| line.ends_with(&closed))
    });
    assert_well_ordered(&log);
    let lines: Vec<&str> = trace_lines(&log)
        .into_iter()
        .map(|(_, text)| text)
        .filter(|text| mentions(text, &label))
        .collect();
    let event = format!("  {label} time tcp {me}: readable");
    let tick_timer = format!("  timer fired: tick 2/2 of {label} (time tcp {me})");
    let action = |what: &str| {
        let expected = format!("    {label}: {what}");
        move |line: &str| line == expected
    };
    let read_8 = action("read 8 bytes");
    let drained = |line: &str| {
        line.ends_with(": short read: drained") || line.ends_with(": read → WouldBlock: drained")
    };
    let wrote_20 = action("wrote 20 bytes");
    // The loop slept until the tick, and the timerfd woke it: the wakeup says so, naming the
    // timer and its owner.
    let woke_for_the_tick = |line: &str| {
        line.starts_with("wakeup #")
            && line.contains(", timeout was ")
            && line.ends_with(&format!(
                " on the timerfd (next timer: tick 2/2 of {label})"
            ))
    };
    let wrote_30 = action("wrote 30 bytes");
    let fin = action("sent FIN");
    let eof = action("read → 0: end of input (the peer's FIN)");
    let close = action("deregistered and closed");
    assert_in_order(
        &lines,
        &[
            &action(&accepted),
            &|line: &str| line.starts_with(&event), // the greeting makes it readable
            &read_8,                                // "Bonjour\n"
            &drained,                               // a short read: nothing more waits
            &wrote_20,                              // the first tick, at once
            &woke_for_the_tick,
            &|line: &str| line == tick_timer,
            &wrote_30, // the second tick and "Au Revoir\n"
            &fin,
            &eof, // our FIN, read while lingering
            &close,
        ],
        &[
            "accepted",
            "readable event",
            "read 8 bytes",
            "drained",
            "wrote 20 bytes",
            "wakeup for the tick",
            "tick timer",
            "wrote 30 bytes",
            "sent FIN",
            "EOF",
            "closed",
        ],
    );
    // The listener's side: its event in words, and accept until WouldBlock.
    let all: Vec<&str> = trace_lines(&log).into_iter().map(|(_, t)| t).collect();
    assert!(
        all.iter()
            .any(|t| t.trim_start().starts_with('#') && t.ends_with(" time listener: readable")),
        "the listener's event is traced:\n{}",
        all.join("\n")
    );
    assert!(
        all.iter()
            .any(|t| t.ends_with(": accept → WouldBlock: backlog drained")),
        "draining the backlog is traced"
    );
    // The timerfd's own event follows the wakeups it caused.
    assert!(
        all.iter()
            .any(|t| t.trim_start().ends_with(" alarm (timerfd): readable")),
        "the timerfd's event is traced:\n{}",
        all.join("\n")
    );
    // Before anyone connected, nothing was due: the first wakeup slept without a timeout.
    assert!(
        all.iter().any(|t| t.starts_with("wakeup #1 after ")
            && t.ends_with("no timeout (nothing due: sleep until an event)")),
        "the first wakeup had no timeout:\n{}",
        all.join("\n")
    );
}

#[test]
fn words_show_a_udp_exchange_and_are_silent_when_off() {
    let reactor = Reactor::start(&["--trace-events"]);
    let socket = udp(reactor.addr("echo", "udp"));
    let me = socket.local_addr().unwrap();
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");
    // Draining the socket to WouldBlock is the last line of the exchange.
    let received = format!("received 3 bytes from {me}");
    let log = reactor.log_when("the drained socket is traced", |log| {
        label_of(log, &received).is_some_and(|label| {
            log.lines()
                .any(|line| line.ends_with(&format!("{label}: recv → WouldBlock: drained")))
        })
    });
    assert_well_ordered(&log);
    let label = label_of(&log, &received).unwrap();
    let lines: Vec<&str> = trace_lines(&log)
        .into_iter()
        .map(|(_, text)| text)
        .filter(|text| text.starts_with("wakeup #") || mentions(text, &label))
        .collect();
    let event = format!("  {label} echo udp: readable");
    let sent = format!("    {label}: sent 3 bytes to {me}");
    let received = format!("    {label}: {received}");
    let drained = format!("    {label}: recv → WouldBlock: drained");
    assert_in_order(
        &lines,
        &[
            // No connection, no timer: the loop slept until the datagram came.
            &|line: &str| {
                line.starts_with("wakeup #")
                    && line.contains(": 1 event, no timeout (nothing due: sleep until an event)")
            },
            &|line: &str| line == event,
            &|line: &str| line == received,
            &|line: &str| line == sent,
            &|line: &str| line == drained,
        ],
        &["wakeup", "readable", "received", "sent", "drained"],
    );

    let quiet = Reactor::start(&[]);
    let socket = udp(quiet.addr("echo", "udp"));
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");
    // The exchange's own line (logged after its trace lines would have been) is there; no
    // line is a trace line, and none says what was read or sent.
    let peer = socket.local_addr().unwrap();
    let log = quiet.log_when("the exchange is logged", |log| {
        log.contains(&format!(
            "echo udp {peer}: answered, 3 bytes in, 3 bytes out"
        ))
    });
    let traced: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.starts_with('+')
                || line.starts_with('{')
                || line.contains(" #")
                || line.contains("received 3 bytes")
                || line.contains("sent 3 bytes")
        })
        .collect();
    assert!(
        traced.is_empty(),
        "no trace without --trace-events: {traced:?}"
    );
}

/// The keys every JSON record has, and those of each kind.
const COMMON_KEYS: [&str; 4] = ["kind", "t_us", "text", "wakeup"];

fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "wakeup" => &[
            "events",
            "interrupted",
            "slept_us",
            "timeout_us",
            "timerfd",
            "why",
        ],
        "event" => &["flags", "token", "what"],
        "action" => &["token", "what"],
        "timer" => &["name", "token", "what"],
        other => panic!("unknown kind {other:?}"),
    }
}

#[test]
fn json_lines_are_objects_with_the_keys_of_their_kind_and_stdout_stays_clean() {
    let mut reactor =
        Reactor::start(&["--ticks", "2", "--interval-ms", "30", "--trace-events=json"]);
    // A greeting that would break a line or a terminal if it were copied raw.
    let stream = tcp(reactor.addr("time", "tcp"));
    let me = stream.local_addr().unwrap();
    (&stream).write_all(b"Bon\"jour\\\x1b[2J\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        read_line(&mut reader);
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"");
    drop(reader);
    let socket = udp(reactor.addr("echo", "udp"));
    socket.send(b"</script>").unwrap();
    assert_eq!(recv_text(&socket), "</script>");

    let log = reactor.log_when("the session closed and the datagram drained", |log| {
        log.contains("\"what\":\"recv_drained\"")
            && log.contains(&format!("time tcp {me}: closed after"))
            && log.matches("\"what\":\"closed\"").count() >= 1
    });
    let mut records = Vec::new();
    for line in log.lines() {
        if line.starts_with('{') {
            let record = json::parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            records.push((record, line));
        } else {
            // Anything else is an ordinary dated log line, never a trace line in words.
            assert!(
                line.as_bytes().first().is_some_and(u8::is_ascii_digit) && line.contains(" ["),
                "neither JSON nor a log line: {line:?}"
            );
        }
    }
    assert_bare(&log);
    assert!(records.len() > 10, "{} records:\n{log}", records.len());
    let (mut last_time, mut last_wakeup) = (0, 0);
    for (record, line) in &records {
        let kind = record.get("kind").and_then(Json::as_str).unwrap();
        let keys = record.keys();
        for key in COMMON_KEYS.iter().chain(kind_keys(kind)) {
            assert!(keys.contains(key), "no {key:?} in {line}");
        }
        let time = record.get("t_us").and_then(Json::as_u64).unwrap();
        let wakeup = record.get("wakeup").and_then(Json::as_u64).unwrap();
        assert!(
            time >= last_time && wakeup >= last_wakeup,
            "out of order: {line}"
        );
        if kind == "wakeup" {
            assert_eq!(wakeup, last_wakeup + 1, "wakeups are counted: {line}");
        }
        (last_time, last_wakeup) = (time, wakeup);
        if let Some(token) = record.get("token") {
            let token = token.as_str().unwrap();
            assert!(
                token.starts_with('#') && token[1..].split('.').all(|n| n.parse::<u64>().is_ok()),
                "token label {token:?}"
            );
        }
        // Peer bytes never reach the trace, raw or escaped.
        for raw in ["jour", "\u{1b}", "script"] {
            assert!(!line.contains(raw), "{raw:?} in {line}");
        }
    }
    let has = |kind: &str, what: &str, text: &str| {
        records.iter().any(|(r, _)| {
            r.get("kind").and_then(Json::as_str) == Some(kind)
                && r.get("what").and_then(Json::as_str) == Some(what)
                && r.get("text").and_then(Json::as_str) == Some(text)
        })
    };
    assert!(has(
        "action",
        "accepted",
        &format!("accepted time tcp {me}")
    ));
    assert!(has("action", "wrote", "wrote 20 bytes"));
    assert!(has("action", "fin", "sent FIN"));
    assert!(
        records.iter().any(|(r, _)| {
            r.get("kind").and_then(Json::as_str) == Some("timer")
                && r.get("name").and_then(Json::as_str) == Some("tick 2/2")
                && r.get("desc").and_then(Json::as_str) == Some(&format!("time tcp {me}"))
        }),
        "the tick, by name"
    );
    assert!(
        records.iter().any(|(r, _)| {
            r.get("why").and_then(Json::as_str) == Some("timer")
                && r.get("timer").and_then(Json::as_str) == Some("tick 2/2")
        }),
        "a wakeup names the tick it waited for"
    );
    // The logged greeting is escaped as ever; stdout kept only the `listening` lines.
    assert!(log.contains(r#"greeting "Bon\"jour\\\u{1b}[2J""#), "{log}");
    reactor.signal(libc::SIGTERM);
    let status = reactor.wait_exit(common::IO_TIMEOUT).expect("exits");
    assert!(status.success());
    assert_eq!(reactor.extra_stdout(), Vec::<String>::new());
}

#[test]
fn the_compact_form_keeps_the_flags_of_old() {
    let reactor = Reactor::start(&["--trace-events=compact"]);
    let socket = udp(reactor.addr("echo", "udp"));
    let me = socket.local_addr().unwrap();
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");
    let log = reactor.log_when("the drained socket is traced", |log| {
        log.contains(": recv → WouldBlock: drained")
    });
    assert_well_ordered(&log);
    let lines: Vec<&str> = trace_lines(&log).into_iter().map(|(_, t)| t).collect();
    let label = lines
        .iter()
        .find_map(|t| t.strip_suffix(": R---- echo udp"))
        .unwrap_or_else(|| panic!("no R---- line:\n{}", lines.join("\n")));
    assert!(lines.contains(&format!("{label}: received 3 bytes from {me}").as_str()));
    assert!(
        !lines.iter().any(|t| t.starts_with("wakeup")),
        "no wakeup lines in the compact form"
    );
}

#[test]
fn a_bad_trace_form_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reactor"))
        .arg("--trace-events=xml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "reactor: --trace-events: 'xml' is not a trace form (words, compact or json)\n"
    );
}

#[test]
fn the_json_reader_of_these_tests_is_strict() {
    let object =
        json::parse(r#" {"a":1,"b":[true,null,"x\u00e9\ud83d\ude00"],"c":-0.5e3} "#).unwrap();
    assert_eq!(object.get("a").and_then(Json::as_u64), Some(1));
    assert_eq!(
        object.get("b"),
        Some(&Json::Array(vec![
            Json::Bool(true),
            Json::Null,
            Json::String("xé😀".into())
        ]))
    );
    assert_eq!(object.get("c"), Some(&Json::Number(-500.0)));
    for bad in [
        "{\"a\":1}x",
        "{\"a\":\"\u{1b}\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":01}",
        "{\"a\":1,}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":\"\\ud800\"}",
        "{a:1}",
        "",
    ] {
        assert!(json::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

/// Once a write said `WouldBlock`, the plumbing waits for the socket's writable edge before it
/// tries another: between two `write → WouldBlock` lines of a connection there is always a
/// writable event for it (a `write` in between could only be refused again).
#[test]
fn a_refused_write_is_not_tried_again_before_the_writable_edge() {
    let reactor = Reactor::start(&["--sndbuf", "4096", "--trace-events"]);
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let me = stream.local_addr().unwrap();
    // Fill both directions without reading: echo's output blocks, then its input stops.
    let sent = common::fill_until_stalled(&mut stream, 4 << 20);
    let mut echoed = vec![0u8; sent];
    std::io::Read::read_exact(&mut stream, &mut echoed).expect("every byte echoed");
    drop(stream);
    let accepted = format!("accepted echo tcp {me}");
    let log = reactor.log_when("the connection closed", |log| {
        label_of(log, &accepted).is_some_and(|label| {
            log.lines()
                .any(|line| line.ends_with(&format!("{label}: deregistered and closed")))
        })
    });
    let label = label_of(&log, &accepted).unwrap();
    let lines: Vec<&str> = trace_lines(&log)
        .into_iter()
        .map(|(_, text)| text)
        .filter(|text| mentions(text, &label))
        .collect();
    let refused = format!("    {label}: write → WouldBlock: ");
    let writable_event = |line: &str| {
        line.starts_with(&format!("  {label} echo tcp {me}: ")) && line.contains("writable")
    };
    let mut refusals = 0;
    let mut waiting_for_edge = false;
    for line in &lines {
        if line.starts_with(&refused) {
            assert!(
                !waiting_for_edge,
                "a write tried again before the writable edge:\n{}",
                lines.join("\n")
            );
            waiting_for_edge = true;
            refusals += 1;
        } else if writable_event(line) {
            waiting_for_edge = false;
        }
    }
    assert!(
        refusals > 0,
        "the output never blocked:\n{}",
        lines.join("\n")
    );
}

/// Idle stays idle: when a closed connection's timers are dropped, the loop's timerfd, armed
/// for the earliest of them, is disarmed with them — no wakeup comes at the deadline that
/// no longer exists.
#[test]
fn a_dropped_timer_does_not_wake_the_loop_later() {
    let reactor = Reactor::start(&["--trace-events", "--idle-timeout-ms", "300"]);
    let mut stream = tcp(reactor.addr("echo", "tcp"));
    let me = stream.local_addr().unwrap();
    std::io::Write::write_all(&mut stream, b"x").unwrap();
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
    drop(stream);
    let accepted = format!("accepted echo tcp {me}");
    let log = reactor.log_when("the idle timer is dropped", |log| {
        label_of(log, &accepted).is_some_and(|label| {
            log.lines().any(|line| {
                line.contains("timer dropped: ") && line.contains(&format!(" of {label}"))
            })
        })
    });
    let wakeups = |log: &str| {
        log.lines()
            .filter(|line| line.contains(" wakeup #"))
            .count()
    };
    let before = wakeups(&log);
    // The idle timeout would have come 300 ms after the echo: watch past it. An absence can
    // only be seen over a window; this one is bounded, and short.
    std::thread::sleep(std::time::Duration::from_millis(600));
    let after = reactor.log();
    assert_eq!(
        wakeups(&after),
        before,
        "the loop woke with nothing to do:\n{}",
        after
            .lines()
            .skip_while(|l| !l.contains(&accepted))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `--coarse-timers`: no timerfd; the tick's wakeup is `epoll_wait`'s own timeout.
#[test]
fn coarse_timers_sleep_on_the_poll_timeout() {
    let reactor = Reactor::start(&[
        "--coarse-timers",
        "--ticks",
        "2",
        "--interval-ms",
        "30",
        "--trace-events",
    ]);
    common::whole_tcp_session(reactor.addr("time", "tcp"), 2);
    let log = reactor.log_when("the tick's timer is traced", |log| {
        log.contains("timer fired: tick 2/2 of ")
    });
    let woke = trace_lines(&log)
        .into_iter()
        .map(|(_, text)| text)
        .find(|text| text.starts_with("wakeup #") && text.contains("(next timer: tick 2/2 of "))
        .expect("the wakeup for the tick");
    assert!(woke.contains(", timeout was "), "{woke}");
    assert!(!woke.contains("on the timerfd"), "{woke}");
    assert!(!log.contains("alarm (timerfd)"), "no timerfd:\n{log}");
}
