//! The teaching examples (`examples/`), run the way a reader runs them: each server on port 0,
//! talked to with real sockets for a bounded time, killed when the test ends.
//!
//! `cargo test` builds the examples into `target/debug/examples/` before running this file;
//! they are found next to the test binary (`target/debug/deps/examples-…`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, assert_tick, random_bytes, read_line, read_to_end, recv_text, tcp, udp};
use inetloop::services::clock::DAYTIME_FORMAT;

/// The path of a built example.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let debug = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let path = debug.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --examples` (plain `cargo test` builds them)",
        path.display()
    );
    path
}

/// A running example server, killed when dropped.
struct Example {
    child: Child,
    /// `(service, proto)` → address, from the `listening …` lines.
    sockets: HashMap<(String, String), SocketAddr>,
    log: PathBuf,
}

impl Example {
    /// Starts `name` with `args` and reads its `listening …` lines (there must be `sockets`).
    fn start(name: &str, args: &[&str], sockets: usize) -> Example {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let log = std::env::temp_dir().join(format!(
            "inetloop-example-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let child = Command::new(example_path(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut example = Example {
            child,
            sockets: HashMap::new(),
            log,
        };
        // Read the lines on a thread, so a silent server fails the test within a timeout.
        let stdout = example.child.stdout.take().expect("stdout is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        for _ in 0..sockets {
            let line = match lines_rx.recv_timeout(IO_TIMEOUT) {
                Ok(Ok(line)) => line,
                other => panic!(
                    "{name} {args:?} printed no listening line ({other:?}); stderr:\n{}",
                    example.log()
                ),
            };
            let words: Vec<&str> = line.split(' ').collect();
            let [listening, service, proto, addr] = words[..] else {
                panic!("malformed stdout line {line:?}");
            };
            assert_eq!(listening, "listening", "unexpected stdout line {line:?}");
            assert!(matches!(proto, "tcp" | "udp"), "{line:?}");
            let addr: SocketAddr = addr.parse().expect("listening line address");
            assert_ne!(addr.port(), 0, "the real port is announced, not 0");
            example.sockets.insert((service.into(), proto.into()), addr);
        }
        example
    }

    fn addr(&self, service: &str, proto: &str) -> SocketAddr {
        *self
            .sockets
            .get(&(service.to_string(), proto.to_string()))
            .unwrap_or_else(|| panic!("no {service} {proto} socket in {:?}", self.sockets))
    }

    /// The `Threads:` count of `/proc/<pid>/status`.
    fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("a Threads: line")
    }

    /// Waits until the process has `count` threads, for at most `IO_TIMEOUT`. A thread's exit
    /// sends nothing on any socket, so there are no bytes to wait on: this polls
    /// `/proc/<pid>/status`, the only place it shows.
    fn wait_for_threads(&self, count: usize) {
        wait_until(&format!("{count} threads"), || self.threads() == count);
    }

    /// Everything the server logged so far (its stderr).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- example stderr ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs a short-lived example to its end (killed after `IO_TIMEOUT`), capturing its output.
fn run_to_end(name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(example_path(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    // Both pipes reach EOF when the process exits (no example closes them earlier): wait for
    // that, each pipe read on its own thread so neither can fill up and stall the other.
    let stdout = read_to_eof(child.stdout.take().expect("stdout is piped"));
    let stderr = read_to_eof(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + IO_TIMEOUT;
    let collect = |pipe: mpsc::Receiver<Vec<u8>>| {
        pipe.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    };
    match (collect(stdout), collect(stderr)) {
        (Ok(stdout), Ok(stderr)) => Output {
            status: child.wait().expect("wait for the example"),
            stdout,
            stderr,
        },
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} still running after {IO_TIMEOUT:?}");
        }
    }
}

/// Reads `pipe` to its end on a thread; the bytes arrive on the returned channel.
fn read_to_eof(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// Polls `condition` until it holds, failing the test after `IO_TIMEOUT`: for a state that
/// shows in no socket, only in `/proc`.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "no {what} after {IO_TIMEOUT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Connects to a time server and sends the greeting line.
fn greet(addr: SocketAddr, greeting: &str) -> BufReader<TcpStream> {
    let stream = tcp(addr);
    (&stream)
        .write_all(format!("{greeting}\n").as_bytes())
        .expect("send greeting");
    BufReader::new(stream)
}

/// Reads a whole time-stream session: `ticks` ticks, `Au Revoir`, EOF. Returns the instants
/// the ticks arrived.
fn read_session(mut reader: BufReader<TcpStream>, ticks: usize) -> Vec<Instant> {
    let mut arrivals = Vec::new();
    for _ in 0..ticks {
        let line = read_line(&mut reader);
        arrivals.push(Instant::now());
        assert!(line.ends_with('\n'), "tick {line:?} has no newline");
        assert_tick(line.trim_end_matches('\n'));
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"", "EOF after Au Revoir");
    arrivals
}

/// Sends `data` to an echo server from one thread while reading it back on this one (so
/// neither side's buffers can fill up and stall the other), half-closes, and checks that
/// exactly `data` comes back, followed by EOF.
fn assert_echoes(addr: SocketAddr, data: &[u8]) {
    let stream = tcp(addr);
    let mut writer = stream.try_clone().expect("clone stream");
    let outgoing = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&outgoing).expect("send to echo");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let echoed = read_to_end(&mut &stream);
    sender.join().expect("sender thread");
    assert_eq!(echoed.len(), data.len(), "echoed byte count");
    assert!(echoed == data, "echoed bytes differ from the sent ones");
}

#[test]
fn a_missing_example_binary_is_reported_with_the_fix() {
    let panic = std::panic::catch_unwind(|| example_path("no_such_example"))
        .expect_err("a missing example must fail");
    let message = panic
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(message.contains("cargo build --examples"), "{message}");
}

/// The names of the examples: every `.rs` file directly in `examples/`.
fn all_examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 7, "examples found: {names:?}");
    names
}

#[test]
fn every_example_answers_help_and_refuses_an_unknown_flag() {
    for name in all_examples() {
        let step = name
            .split('_')
            .next()
            .expect("NN_ prefix")
            .trim_start_matches('0');
        for help in ["--help", "-h"] {
            let output = run_to_end(&name, &[help]);
            let text = String::from_utf8_lossy(&output.stdout);
            assert_eq!(output.status.code(), Some(0), "{name} {help}: {text}");
            assert!(output.stderr.is_empty(), "{name} {help} wrote on stderr");
            // What it teaches, and how to try it: the file's own doc, plain text.
            assert!(
                text.starts_with(&format!("Step {step}: ")),
                "{name}: {text}"
            );
            for part in [
                "What it teaches.",
                "Run it.",
                "Try",
                &format!("--example {name}"),
            ] {
                assert!(text.contains(part), "{name} {help} lacks {part:?}:\n{text}");
            }
            assert!(
                !text.contains("```") && !text.contains("**"),
                "{name}: {text}"
            );
        }
        // After a subcommand too (step 2): --help wins over everything else on the line.
        let output = run_to_end(&name, &["server", "--port", "0", "--help"]);
        assert_eq!(output.status.code(), Some(0), "{name} server --help");

        let args: &[&str] = if name == "02_udp_time" {
            &["server", "--no-such-flag"]
        } else {
            &["--no-such-flag"]
        };
        let output = run_to_end(&name, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("{name}: unexpected argument '--no-such-flag' (see --help)"),
            "{name} {args:?}"
        );
        assert!(
            output.stdout.is_empty(),
            "{name} {args:?} printed on stdout"
        );
    }
}

#[test]
fn bad_command_lines_exit_2_with_one_line_on_stderr() {
    let cases: [(&str, &[&str]); 9] = [
        ("01_blocking_time_server", &["--port", "http"]),
        ("02_udp_time", &[]),
        ("02_udp_time", &["server", "--ticks", "-1"]),
        ("02_udp_time", &["serve"]),
        ("03_thread_per_client", &["--time", "off", "--echo", "off"]),
        ("04_poll_two_listeners", &["--echo", "99999"]),
        ("05_edge_triggered_echo", &["--one-read-per-evnt"]),
        ("06_timers_in_the_loop", &["--interval-ms", "soon"]),
        ("07_full_reactor", &["--time"]),
    ];
    for (name, args) in cases {
        let output = run_to_end(name, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name} {args:?}: {stderr}");
        assert!(stderr.starts_with(name), "{name} {args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{name} {args:?} printed on stdout"
        );
    }
}

#[test]
fn step1_blocking_server_makes_the_second_client_wait_for_the_first() {
    const INTERVAL: Duration = Duration::from_millis(100);
    let server = Example::start(
        "01_blocking_time_server",
        &["--port", "0", "--ticks", "3", "--interval-ms", "100"],
        1,
    );
    let addr = server.addr("time", "tcp");
    // Both connect and greet at once: the kernel completes both handshakes (the listen
    // backlog, first come first served), but the server accepts the second only after the
    // first session.
    let first = greet(addr, "first");
    let second = greet(addr, "second");
    let first = thread::spawn(move || read_session(first, 3));
    let second = thread::spawn(move || read_session(second, 3));
    let first = first.join().expect("first client");
    let second = second.join().expect("second client");

    // The first session spans two intervals from its first tick; the second's first tick can
    // only be written after it. (One interval of slack for a slow wakeup of the first reader;
    // a concurrent server would send both first ticks at once.)
    let waited = second[0].saturating_duration_since(first[0]);
    assert!(
        waited >= INTERVAL,
        "second client's first tick came {waited:?} after the first client's"
    );
    // The server's own log settles the order: it read the second greeting only after the
    // first session was over.
    let log = server.log();
    let first_over = log.find(": session over").expect("first session logged");
    let second_greeted = log
        .find("greeting \"second\"")
        .expect("second greeting logged");
    assert!(first_over < second_greeted, "log:\n{log}");
}

#[test]
fn step2_udp_time_server_and_client_end_to_end() {
    let server = Example::start(
        "02_udp_time",
        &[
            "server",
            "--port",
            "0",
            "--ticks",
            "3",
            "--interval-ms",
            "50",
        ],
        1,
    );
    let addr = server.addr("time", "udp");

    // The example's own client against its server.
    let output = run_to_end(
        "02_udp_time",
        &["client", "--interval-ms", "50", &addr.to_string()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "3 ticks and Au Revoir: {stdout:?}");
    lines[..3].iter().for_each(|tick| assert_tick(tick));
    assert_eq!(lines[3], "Au Revoir");

    // A raw socket sees the wire format: each tick one datagram, the time text only.
    let socket = udp(addr);
    socket.send(b"raw").expect("send greeting");
    for _ in 0..3 {
        assert_tick(&recv_text(&socket)); // no newline: parsing would reject one
    }
    assert_eq!(recv_text(&socket), "Au Revoir");
    let log = server.log();
    assert!(log.contains("greeting \"Bonjour\"") && log.contains("greeting \"raw\""));
}

#[test]
fn step2_udp_client_gives_up_when_nobody_answers() {
    // A socket that receives the greeting but never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    let addr = silent.local_addr().expect("local addr").to_string();
    let started = Instant::now();
    let output = run_to_end("02_udp_time", &["client", "--interval-ms", "10", &addr]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no datagram from"), "{stderr}");
    // Patience is 2 × interval + 500 ms.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(recv_text(&silent), "Bonjour");
}

#[test]
fn step3_thread_per_client_serves_20_time_clients_at_once_and_echoes_1_mib() {
    let server = Example::start(
        "03_thread_per_client",
        &[
            "--time",
            "0",
            "--echo",
            "0",
            "--ticks",
            "3",
            "--interval-ms",
            "100",
        ],
        2,
    );
    let (time, echo) = (server.addr("time", "tcp"), server.addr("echo", "tcp"));
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| thread::spawn(move || read_session(greet(time, &format!("client {i}")), 3)))
        .collect();
    assert_echoes(echo, &random_bytes(1024 * 1024, 3));
    for client in clients {
        client.join().expect("time client");
    }
    // Each session lasts 200 ms; one after the other, 20 would take 4 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "20 sessions took {elapsed:?}"
    );
}

#[test]
fn step3_a_client_that_leaves_ends_its_thread() {
    let server = Example::start(
        "03_thread_per_client",
        &["--time", "0", "--echo", "0", "--interval-ms", "20"],
        2,
    );
    // The main thread and one acceptor per listener (started just after the announcement).
    let baseline = 3;
    server.wait_for_threads(baseline);

    // A time client that leaves after its first tick (its session had 60 ticks to go):
    // the next write fails (EPIPE or ECONNRESET) and its thread ends.
    let stream = tcp(server.addr("time", "tcp"));
    (&stream).write_all(b"hello\n").expect("greet");
    let mut reader = BufReader::new(stream);
    assert_tick(read_line(&mut reader).trim_end_matches('\n'));
    assert_eq!(server.threads(), baseline + 1);
    drop(reader);
    server.wait_for_threads(baseline);

    // An echo client that closes: its thread reads EOF and ends.
    let mut stream = tcp(server.addr("echo", "tcp"));
    stream.write_all(b"x").expect("send");
    stream.read_exact(&mut [0u8; 1]).expect("echo");
    assert_eq!(server.threads(), baseline + 1);
    drop(stream);
    server.wait_for_threads(baseline);
}

#[test]
fn step4_one_thread_serves_echo_and_daytime() {
    let server = Example::start(
        "04_poll_two_listeners",
        &["--echo", "0", "--daytime", "0"],
        2,
    );
    let (echo, daytime) = (server.addr("echo", "tcp"), server.addr("daytime", "tcp"));
    // An echo client stays connected, idle, while daytime clients come and go.
    let mut idle = tcp(echo);
    for _ in 0..3 {
        let line = read_to_end(&mut tcp(daytime));
        let line = String::from_utf8(line).expect("utf-8");
        let text = line.strip_suffix("\r\n").expect("line ends in CRLF");
        chrono::NaiveDateTime::parse_from_str(text, DAYTIME_FORMAT)
            .unwrap_or_else(|e| panic!("{text:?} is not a daytime line: {e}"));
    }
    idle.write_all(b"still here\n").expect("send");
    let mut reply = [0u8; 11];
    idle.read_exact(&mut reply).expect("echo reply");
    assert_eq!(&reply, b"still here\n");
    assert_echoes(echo, &random_bytes(256 * 1024, 4));
}

#[test]
fn step5_reading_until_would_block_echoes_100_kib_exactly() {
    let server = Example::start("05_edge_triggered_echo", &["--port", "0"], 1);
    assert_echoes(server.addr("echo", "tcp"), &random_bytes(100 * 1024, 5));
}

#[test]
fn step5_one_read_per_event_strands_input_until_the_client_sends_again() {
    let server = Example::start(
        "05_edge_triggered_echo",
        &["--port", "0", "--one-read-per-event"],
        1,
    );
    let stream = tcp(server.addr("echo", "tcp"));
    let mut writer = stream.try_clone().expect("clone stream");
    let sender = thread::spawn(move || {
        // May never finish if the server's window closes; the write timeout bounds it.
        let _ = writer.write_all(&random_bytes(100 * 1024, 6));
    });

    let echoed_within = |window: Duration| {
        let deadline = Instant::now() + window;
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match (&stream).read(&mut buf) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => total += n,
                Err(_) => break, // the window is over
            }
        }
        total
    };
    // Each event moves one 1 KiB read; the 100 KiB arrive in a few segments, so a few events.
    let first = echoed_within(Duration::from_millis(300));
    assert!(
        first < 100 * 1024,
        "all 100 KiB came back in 300 ms: the bug did not show"
    );
    // The rest is still in the server's socket: a new byte is a new event, one more read.
    (&stream).write_all(b"!").expect("nudge");
    let more = echoed_within(Duration::from_millis(300));
    assert!(more > 0, "nothing more after sending again");
    assert!(
        first + more < 100 * 1024 + 1,
        "the nudge released everything"
    );
    // Wakes the sender if it is still blocked in write (the socket, not just this handle).
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
}

#[test]
fn step6_timer_heap_spaces_ticks_by_the_interval_for_overlapping_sessions() {
    const INTERVAL: Duration = Duration::from_millis(100);
    let server = Example::start(
        "06_timers_in_the_loop",
        &["--port", "0", "--ticks", "4", "--interval-ms", "100"],
        1,
    );
    let addr = server.addr("time", "tcp");
    let sessions: Vec<_> = (0..2)
        .map(|i| {
            thread::spawn(move || {
                // The scenario, not a wait for the server: the second client arrives half an
                // interval after the first, so the two sessions' deadlines interleave and the
                // heap's earliest one (the poll timeout) alternates between them.
                thread::sleep(INTERVAL / 2 * i);
                let greeted = Instant::now();
                (
                    greeted,
                    read_session(greet(addr, &format!("client {i}")), 4),
                )
            })
        })
        .collect();
    let sessions: Vec<_> = sessions
        .into_iter()
        .map(|s| s.join().expect("client"))
        .collect();
    for (greeted, arrivals) in &sessions {
        for (k, arrived) in arrivals.iter().enumerate() {
            let at = *arrived - *greeted;
            let due = INTERVAL * k as u32;
            // Never early (tick k is due at greeting + k × interval), and never so late
            // that it ran into the next one: the schedule does not drift.
            assert!(at >= due, "tick {k} at {at:?}, due at {due:?}");
            assert!(at < due + INTERVAL, "tick {k} at {at:?}, due at {due:?}");
        }
    }
    // One thread, yet both sessions ran at the same time.
    let (first_end, second_start) = (sessions[0].1[3], sessions[1].1[0]);
    assert!(second_start < first_end, "the sessions did not overlap");
    let log = server.log();
    assert!(log.contains("wakeup: timeout"), "log:\n{log}");
    assert!(log.contains("wakeup: 1 event(s)"), "log:\n{log}");
}

#[test]
fn step7_full_reactor_through_the_library() {
    let server = Example::start(
        "07_full_reactor",
        &[
            "--time",
            "0",
            "--echo",
            "0",
            "--ticks",
            "3",
            "--interval-ms",
            "50",
        ],
        4,
    );
    read_session(greet(server.addr("time", "tcp"), "Bonjour"), 3);
    assert_echoes(server.addr("echo", "tcp"), &random_bytes(512 * 1024, 7));
    let socket = udp(server.addr("echo", "udp"));
    socket.send(b"ping").expect("send datagram");
    assert_eq!(recv_text(&socket), "ping");
}
