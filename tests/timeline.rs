//! The timeline page (`scripts/timeline.sh`), drawn by a real browser: the real reactor runs
//! with `--trace-events=json` through a small exchange — a TCP time session of two ticks, an
//! echo that the client reads only once the server's writes block (backpressure: `WouldBlock`,
//! `WRITABLE` on and off), a UDP datagram — its stderr becomes the page, and headless Chromium
//! loads it. Checked: the page runs without an error (its own error catcher and Chromium's
//! console log), it drew exactly one mark per record of the trace, it is self-contained, and a
//! screenshot is taken (`target/tmp/timeline/timeline.png`; with `UPDATE_DOCS_SCREENSHOT=1` it
//! also replaces `docs/timeline.png`). An empty trace and a hostile one are drawn too.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); without it these tests fail and say so.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::json::{self, Json};
use common::{IO_TIMEOUT, Reactor, recv_text, udp};

/// Where the pages, traces and screenshots of these tests go.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Chromium binary, or a failure that says how to install it.
fn chromium() -> PathBuf {
    common::need("chromium", "chromium")
}

/// What one headless Chromium run left: stdout (the DOM with `--dump-dom`) and stderr (its
/// log, the page's console messages included).
struct Browser {
    stdout: String,
    stderr: String,
}

/// Loads `page` in headless Chromium with a fresh profile, plus `extra` flags.
fn browse(page: &Path, extra: &[&str]) -> Browser {
    let profile = page.with_extension("profile");
    let _ = std::fs::remove_dir_all(&profile);
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        // The page's console messages, errors included, go to stderr.
        "--enable-logging=stderr".into(),
        "--v=0".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(format!("file://{}", page.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let chromium = chromium();
    let output = common::run(chromium.to_str().unwrap(), &args, b"");
    let _ = std::fs::remove_dir_all(&profile);
    let browser = Browser {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.success(),
        "chromium {args:?}: {}\n{}",
        output.status,
        browser.stderr
    );
    browser
}

/// The page's own console lines (`…:CONSOLE…] "message", source: …`) from Chromium's log.
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(":CONSOLE"))
        .collect()
}

/// The text of the element `id="…"` in a dumped DOM (no nested elements).
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\"");
    let start = dom
        .find(&open)
        .and_then(|at| dom[at..].find('>').map(|gt| at + gt + 1))
        .unwrap_or_else(|| panic!("no element {open} in the page:\n{dom}"));
    let end = dom[start..].find('<').map_or(dom.len(), |lt| start + lt);
    &dom[start..end]
}

/// What a drawn page says about itself.
struct Drawn {
    records: usize,
    marks: usize,
    dom: String,
}

/// Builds the page from `trace` with `scripts/timeline.sh`, loads it, and reads the counts it
/// wrote into its DOM. The page must have caught no error (its own catcher also takes console
/// errors and warnings), and Chromium's log must hold the page's console line and no error.
fn draw(trace: &Path) -> (PathBuf, Drawn) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/timeline.sh");
    let built = Command::new(&script).arg(trace).output().unwrap();
    assert!(
        built.status.success() && built.stderr.is_empty(),
        "timeline.sh {}: {}\n{}",
        trace.display(),
        built.status,
        String::from_utf8_lossy(&built.stderr)
    );
    let page = trace.with_extension("html");
    std::fs::write(&page, &built.stdout).unwrap();
    let html = String::from_utf8(built.stdout).unwrap();
    // Self-contained: nothing to fetch (the only URL is the SVG namespace, a name).
    let urls = html.replace("http://www.w3.org/2000/svg", "");
    for outside in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(!urls.contains(outside), "the page refers to {outside:?}");
    }

    let browser = browse(&page, &["--dump-dom", "--virtual-time-budget=2000"]);
    let dom = browser.stdout;
    // What the page caught itself: its errors, and any console error or warning.
    let errors = element_text(&dom, "errors").to_string();
    assert_eq!(errors, "", "the page caught errors");
    let console = console_lines(&browser.stderr);
    assert!(
        console.iter().any(|line| line.contains("timeline: drew ")),
        "the page's console line was not seen (is console capture working?):\n{}",
        browser.stderr
    );
    let bad: Vec<&&str> = console
        .iter()
        .filter(|line| {
            line.contains(":ERROR:") || line.contains("Uncaught") || line.contains("Error")
        })
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:?}");
    let count = |id| {
        element_text(&dom, id)
            .trim()
            .parse::<usize>()
            .unwrap_or_else(|e| panic!("{id}: {e}"))
    };
    let drawn = Drawn {
        records: count("record-count"),
        marks: count("drawn-count"),
        dom: dom.clone(),
    };
    (page, drawn)
}

/// The JSON records of a trace (the reactor's stderr), each checked to parse.
fn records_of(log: &str) -> Vec<Json> {
    log.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| json::parse(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn count_of(records: &[Json], what: &str) -> usize {
    records
        .iter()
        .filter(|r| r.get("what").and_then(Json::as_str) == Some(what))
        .count()
}

/// A client socket whose receive buffer is small, so the server's writes block soon.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Bytes sent through echo before the client reads any: more than the socket buffers on both
/// sides hold, so the server sees `WouldBlock` on its writes.
const ECHOED: usize = 32 * 1024;

#[test]
fn the_timeline_of_a_real_trace_draws_one_mark_per_record_in_chromium() {
    chromium();
    let reactor = Reactor::start(&[
        "--ticks",
        "2",
        "--interval-ms",
        "50",
        "--sndbuf",
        "4096",
        "--rcvbuf",
        "4096",
        "--trace-events=json",
    ]);

    // A time session: greeting, two ticks, Au Revoir, FIN both ways.
    common::whole_tcp_session(reactor.addr("time", "tcp"), 2);

    // Echo, read only once the server's writes block: backpressure on the page.
    let mut echo = slow_reader(reactor.addr("echo", "tcp"));
    let mut sender = echo.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        sender.write_all(&vec![b'e'; ECHOED]).unwrap();
        sender.shutdown(Shutdown::Write).unwrap();
    });
    reactor.log_when("the echo's write blocked", |log| {
        log.contains("\"what\":\"write_blocked\"")
    });
    let mut back = Vec::new();
    echo.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), ECHOED);
    drop(echo);

    // One datagram.
    let socket = udp(reactor.addr("echo", "udp"));
    socket.send(b"hi!").unwrap();
    assert_eq!(recv_text(&socket), "hi!");

    let log = reactor.log_when("both connections closed and the datagram drained", |log| {
        let records = records_of(log);
        count_of(&records, "closed") >= 2 && count_of(&records, "recv_drained") >= 1
    });
    let records = records_of(&log);
    // (`WRITABLE` goes off again only if the output drains before the connection closes.)
    for what in ["write_blocked", "writable_on", "fin", "eof", "short_read"] {
        assert!(count_of(&records, what) > 0, "no {what:?} in the trace");
    }
    assert!(
        records.iter().any(|r| {
            r.get("kind").and_then(Json::as_str) == Some("timer")
                && r.get("name").and_then(Json::as_str) == Some("tick 2/2")
        }),
        "the tick timer is in the trace"
    );

    let dir = out_dir("timeline");
    let trace = dir.join("trace.jsonl");
    // The whole stderr, dated log lines and all: the script keeps only the records.
    std::fs::write(&trace, &log).unwrap();
    let (page, drawn) = draw(&trace);
    assert_eq!(drawn.records, records.len(), "records the page read");
    assert_eq!(drawn.marks, records.len(), "one mark per record");

    let screenshot = dir.join("timeline.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &page,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,900",
        ],
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (1400, 900), "IHDR width and height");
    assert!(
        png.len() > 20_000,
        "a screenshot of a drawn page, not a blank one"
    );
    eprintln!(
        "timeline: {} records drawn; page {}, screenshot {}",
        records.len(),
        page.display(),
        screenshot.display()
    );
    if std::env::var_os("UPDATE_DOCS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/timeline.png");
        std::fs::copy(&screenshot, docs).unwrap();
    }
}

#[test]
fn an_empty_trace_gets_a_note_and_no_marks() {
    chromium();
    let dir = out_dir("timeline-empty");
    let trace = dir.join("trace.jsonl");
    std::fs::write(
        &trace,
        "2026-11-26 00:12:23.945 [INFO] serving with 1 event loop(s)\n",
    )
    .unwrap();
    let (_, drawn) = draw(&trace);
    assert_eq!((drawn.records, drawn.marks), (0, 0));
    assert!(
        drawn.dom.contains("This trace has no records"),
        "the note is in the page"
    );
    let note = drawn.dom.split("id=\"empty\"").nth(1).unwrap();
    assert!(
        note.starts_with(" style=\"display: block;\""),
        "the note is shown: {}",
        &note[..60]
    );
}

#[test]
fn strings_in_a_trace_are_drawn_as_text_never_as_markup() {
    chromium();
    let dir = out_dir("timeline-hostile");
    let trace = dir.join("trace.jsonl");
    // Hand-made records (the reactor never writes these): markup and script in every string.
    let evil = r#"</script><img src=x onerror=\"window.timelineErrors.push('xss')\"><b>"#;
    let lines = [
        format!(
            r#"{{"t_us":1,"wakeup":1,"kind":"wakeup","slept_us":5,"events":1,"interrupted":false,"timeout_us":null,"why":"none","text":"{evil}"}}"#
        ),
        format!(
            r#"{{"t_us":2,"wakeup":1,"kind":"event","token":"{evil}","desc":"{evil}","what":"{evil}","flags":"R----","text":"{evil}"}}"#
        ),
        format!(
            r#"{{"t_us":3,"wakeup":1,"kind":"action","token":"\u2028#1.1","what":"read","bytes":"{evil}","text":"{evil}"}}"#
        ),
        "{\"not\": \"a record\"}".to_string(),
        "{broken".to_string(),
    ];
    std::fs::write(&trace, lines.join("\n")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/timeline.sh");
    let built = Command::new(&script).arg(&trace).output().unwrap();
    let warnings = String::from_utf8_lossy(&built.stderr);
    assert!(
        warnings.contains("line 4: not a trace record") && warnings.contains("line 5: not JSON"),
        "{warnings}"
    );
    let page = trace.with_extension("html");
    std::fs::write(&page, &built.stdout).unwrap();
    let browser = browse(&page, &["--dump-dom", "--virtual-time-budget=2000"]);
    let dom = browser.stdout;
    assert_eq!(
        element_text(&dom, "errors"),
        "",
        "no error, no injected script"
    );
    assert_eq!(element_text(&dom, "record-count"), "3");
    assert_eq!(element_text(&dom, "drawn-count"), "3");
    assert!(!dom.contains("<img"), "an element was injected:\n{dom}");
    assert!(!dom.contains("<b>"), "an element was injected:\n{dom}");
}
