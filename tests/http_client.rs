//! End-to-end tests of the `http-client` binary, run as a user runs it: a real process, its
//! stdout compared byte for byte, its stderr and exit status checked.
//!
//! Two kinds of server answer it:
//! - Python's `http.server`, a server nobody here wrote, for ordinary traffic: files (text and
//!   5 MiB of binary), a 404, a directory listing, `HEAD`, interactive mode. python3 is
//!   required: without it these tests fail and say so, rather than pass without testing.
//! - One-connection fixture servers on `127.0.0.1:0`, for what `http.server` never sends:
//!   chunked bodies, 1-byte writes, `100 Continue`, truncated and malformed responses, a huge
//!   head, a server that never answers.
//!
//! Nothing here can hang: the client runs under a deadline and is killed past it, and every
//! fixture socket has a timeout. Nothing waits a fixed time for something to happen either:
//! the tests wait for the event itself (a pipe's end, a connection) with a bound. The only
//! sleeps are the ones a fixture server uses to be slow on purpose.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const CLIENT: &str = env!("CARGO_BIN_EXE_http-client");

/// The longest one client run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Timeout for every socket operation of the fixture servers, and for waiting on a client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Running the client

/// What one run of the client produced.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "exit {}; stderr: {}",
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts a failure with exit status `code` and exactly one stderr line, `line`.
    fn assert_failure(&self, code: i32, line: &str) {
        assert_eq!(self.status.code(), Some(code), "stderr: {}", self.stderr);
        assert_eq!(self.stderr, format!("http-client: {line}\n"));
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `http-client args`, feeding it `stdin`, under [`RUN_LIMIT`].
fn run_client(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(CLIENT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start http-client");
    // Read both pipes in threads: a 5 MiB stdout would otherwise fill the pipe and stall it.
    let (closed, pipe_closed) = mpsc::channel();
    let stdout = read_all_in_thread(child.stdout.take(), closed.clone());
    let stderr = read_all_in_thread(child.stderr.take(), closed);
    if let Some(mut input) = child.stdin.take() {
        // A client that does not read stdin may already be gone: a broken pipe is fine here.
        let _ = input.write_all(stdin);
    }
    // Both pipes end when the client exits (no one else holds them): wait for that, not for
    // a guessed time, and for no longer than RUN_LIMIT.
    let deadline = Instant::now() + RUN_LIMIT;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if pipe_closed.recv_timeout(left).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("http-client {args:?} ran longer than {RUN_LIMIT:?}");
        }
    }
    let status = child.wait().expect("wait for http-client");
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}

/// Reads `pipe` to its end on a thread, then says so on `closed`.
fn read_all_in_thread(
    pipe: Option<impl Read + Send + 'static>,
    closed: mpsc::Sender<()>,
) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_end(&mut bytes).expect("read child output");
        }
        let _ = closed.send(());
        bytes
    })
}

/// Splits `-i` output into head (through the blank line) and body.
fn split_head(output: &[u8]) -> (&[u8], &[u8]) {
    let end = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the head")
        + 4;
    output.split_at(end)
}

// ---------------------------------------------------------------------------------------------
// Python's http.server

/// A running `python3 -m http.server` serving a fresh directory; killed on drop.
struct PythonServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PythonServer {
    /// Serves `files` (name, content) on a port the OS chooses.
    fn start(files: &[(&str, &[u8])]) -> Self {
        let dir = fresh_dir("www");
        for (name, content) in files {
            fs::write(dir.join(name), content).expect("write a file to serve");
        }
        // -u: unbuffered stdout, or the "Serving HTTP on ... port N" line sits in Python's
        // buffer and never reaches the pipe.
        let child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                let _ = fs::remove_dir_all(&dir);
                panic!("python3 is needed for these tests (they run python3 -m http.server): {err}")
            });
        // From here on, a panic drops the guard, which kills Python.
        let mut server = PythonServer {
            child,
            dir,
            port: 0,
        };
        let stdout = server.child.stdout.take().expect("python stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("python3 -m http.server did not say which port it serves on");
        server.port = line
            .split_once(" port ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from http.server: {line:?}"));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// An empty directory of its own under cargo's scratch space for integration tests.
fn fresh_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// `len` bytes that cover every byte value in no particular order (xorshift64), so a body
/// mangled anywhere — a lost CR, a NUL, a UTF-8 conversion — cannot compare equal.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

const HELLO: &[u8] = b"hello, world\r\nsecond line\n";

#[test]
fn python_text_file_is_printed() {
    let server = PythonServer::start(&[("hello.txt", HELLO)]);
    let run = run_client(&[&server.url("/hello.txt")], b"");
    run.assert_success();
    assert_eq!(run.stdout, HELLO);
    assert_eq!(run.stderr, "");
}

#[test]
fn python_binary_file_is_byte_identical() {
    let data = random_bytes(5 * 1024 * 1024);
    let server = PythonServer::start(&[("random.bin", &data)]);
    let run = run_client(&[&server.url("/random.bin")], b"");
    run.assert_success();
    assert!(
        run.stdout == data,
        "the 5 MiB body differs ({} bytes)",
        run.stdout.len()
    );
}

#[test]
fn python_404_is_a_response_not_a_failure() {
    let server = PythonServer::start(&[]);
    let run = run_client(&["-i", &server.url("/missing")], b"");
    run.assert_success();
    let (head, body) = split_head(&run.stdout);
    assert!(head.starts_with(b"HTTP/1.0 404 "), "{}", run.stdout_text());
    assert!(String::from_utf8_lossy(body).contains("404"));
}

#[test]
fn python_directory_listing() {
    let server = PythonServer::start(&[("hello.txt", HELLO), ("other.bin", b"\0")]);
    let run = run_client(&[&server.url("/")], b"");
    run.assert_success();
    let listing = run.stdout_text();
    assert!(listing.contains("href=\"hello.txt\""), "{listing}");
    assert!(listing.contains("href=\"other.bin\""), "{listing}");
}

#[test]
fn python_head_request_has_no_body() {
    let server = PythonServer::start(&[("hello.txt", HELLO)]);
    let run = run_client(&["-X", "HEAD", &server.url("/hello.txt")], b"");
    run.assert_success();
    assert_eq!(run.stdout, b"");

    let run = run_client(&["-X", "HEAD", "-i", &server.url("/hello.txt")], b"");
    run.assert_success();
    let (head, body) = split_head(&run.stdout);
    let head = String::from_utf8_lossy(head);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", HELLO.len())),
        "{head}"
    );
    assert_eq!(body, b"");
}

#[test]
fn python_include_prints_head_then_body() {
    let server = PythonServer::start(&[("hello.txt", HELLO)]);
    let run = run_client(&["-i", &server.url("/hello.txt")], b"");
    run.assert_success();
    let (head, body) = split_head(&run.stdout);
    assert!(head.starts_with(b"HTTP/1.0 200 OK\r\n"));
    assert_eq!(body, HELLO);
}

#[test]
fn python_interactive_mode_prints_the_whole_response() {
    let server = PythonServer::start(&[("hello.txt", HELLO)]);
    let answers = format!("GET\n/hello.txt\nHTTP/1.0\n127.0.0.1:{}\n", server.port);
    let run = run_client(&[], answers.as_bytes());
    run.assert_success();
    let (head, body) = split_head(&run.stdout);
    assert!(
        head.starts_with(b"HTTP/1.0 200 OK\r\n"),
        "{}",
        run.stdout_text()
    );
    assert_eq!(body, HELLO);
    for prompt in [
        "method [GET]: ",
        "target [/]: ",
        "version [HTTP/1.1]: ",
        "host ",
    ] {
        assert!(run.stderr.contains(prompt), "{}", run.stderr);
    }

    // Empty answers take the defaults: GET / HTTP/1.1.
    let answers = format!("\n\n\n127.0.0.1:{}\n", server.port);
    let run = run_client(&[], answers.as_bytes());
    run.assert_success();
    assert!(run.stdout_text().contains("href=\"hello.txt\""));
}

// ---------------------------------------------------------------------------------------------
// Fixture servers

/// A server for one connection on 127.0.0.1: it reads the request head, hands the stream to
/// `respond`, then closes. Joining it gives the request head as received.
struct Fixture {
    port: u16,
    request: JoinHandle<Vec<u8>>,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn request(self) -> String {
        String::from_utf8_lossy(&self.request.join().expect("fixture thread")).into_owned()
    }
}

fn serve(respond: impl FnOnce(&mut TcpStream) + Send + 'static) -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fixture port");
    let port = listener.local_addr().expect("fixture address").port();
    let request = thread::spawn(move || {
        let Some(mut stream) = accept_within(&listener, IO_TIMEOUT) else {
            return Vec::new();
        };
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set timeout");
        let mut request = Vec::new();
        let mut byte = [0];
        while !request.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
            request.push(byte[0]);
        }
        respond(&mut stream);
        request
    });
    Fixture { port, request }
}

/// A fixture that writes each of `pieces` with its own `write` call.
fn serve_pieces(pieces: Vec<Vec<u8>>) -> Fixture {
    serve(move |stream| {
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        for piece in pieces {
            // The client may have given up (that is what some tests check): ignore errors.
            if stream.write_all(&piece).is_err() {
                break;
            }
        }
    })
}

fn serve_bytes(response: &[u8]) -> Fixture {
    serve_pieces(vec![response.to_vec()])
}

/// `accept` with a deadline, so a client that never connects cannot hang the fixture. On
/// Linux `SO_RCVTIMEO` bounds a blocking `accept` too (socket(7)): this waits for the
/// connection itself, at most `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> Option<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket2::SockRef::from(listener)
            .set_read_timeout(Some(left))
            .expect("accept timeout");
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            // A signal cut the wait short: wait for the rest of the time.
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn request_on_the_wire_has_host_close_and_extra_headers() {
    let fixture = serve_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let port = fixture.port;
    let url = fixture.url("/p/q?x=1&y=2");
    let run = run_client(&["-X", "PUT", "-H", "X-One: 1", "-H", "X-Two:2", &url], b"");
    run.assert_success();
    assert_eq!(
        fixture.request(),
        format!(
            "PUT /p/q?x=1&y=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             X-One: 1\r\nX-Two: 2\r\n\r\n"
        )
    );

    let fixture = serve_bytes(b"HTTP/1.0 200 OK\r\n\r\n");
    let run = run_client(&["--http1.0", &fixture.url("")], b"");
    run.assert_success();
    assert!(fixture.request().starts_with("GET / HTTP/1.0\r\n"));
}

#[test]
fn chunked_body_with_extensions_and_trailers_is_decoded() {
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let pieces = vec![
        head.clone(),
        b"4;name=value\r\nWiki\r\n".to_vec(),
        b"5\r\npedia\r\nE; quoted=\"a;b\"\r\n in\r\n".to_vec(),
        b"\r\nchunks.\r\n0\r\nExpires: never\r\nX-Trailer: yes\r\n\r\n".to_vec(),
    ];
    let run = run_client(&[&serve_pieces(pieces.clone()).url("/")], b"");
    run.assert_success();
    assert_eq!(run.stdout, b"Wikipedia in\r\n\r\nchunks.");

    // -i shows the head as received (it still says chunked), then the decoded body.
    let run = run_client(&["-i", &serve_pieces(pieces).url("/")], b"");
    run.assert_success();
    assert_eq!(
        run.stdout,
        [&head[..], b"Wikipedia in\r\n\r\nchunks."].concat()
    );
}

#[test]
fn response_written_one_byte_at_a_time() {
    let response =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nbyte a time";
    let pieces = response.iter().map(|&b| vec![b]).collect();
    let run = run_client(&["-i", &serve_pieces(pieces).url("/")], b"");
    run.assert_success();
    assert_eq!(run.stdout, response);
}

#[test]
fn interim_100_continue_is_skipped() {
    let fixture = serve_pieces(vec![
        b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ]);
    let run = run_client(&["-i", &fixture.url("/")], b"");
    run.assert_success();
    assert_eq!(
        run.stdout,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    );
}

#[test]
fn truncated_content_length_body_is_an_error() {
    let fixture = serve_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    let run = run_client(&[&fixture.url("/")], b"");
    run.assert_failure(1, "connection closed after 5 of 10 body bytes");
    assert_eq!(run.stdout, b"hello");
}

#[test]
fn truncated_chunked_body_is_an_error() {
    let fixture =
        serve_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nwor");
    let run = run_client(&[&fixture.url("/")], b"");
    run.assert_failure(
        1,
        "connection closed before the end of the chunked body (after 8 body bytes)",
    );
    assert_eq!(run.stdout, b"hellowor");
}

#[test]
fn garbage_status_line_is_an_error() {
    let fixture = serve_bytes(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    let run = run_client(&[&fixture.url("/")], b"");
    run.assert_failure(1, "malformed response head: invalid HTTP version");
    assert_eq!(run.stdout, b"");
}

#[test]
fn head_over_64_kib_is_an_error() {
    let mut response = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..1000 {
        response.extend_from_slice(format!("X-Filler-{i:04}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    response.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let run = run_client(&[&serve_bytes(&response).url("/")], b"");
    run.assert_failure(1, "response head exceeds 64 KiB");
}

#[test]
fn silent_server_times_out_naming_the_address() {
    // The fixture holds the connection until the client gives up and closes it.
    let fixture = serve(|stream| {
        let _ = stream.read(&mut [0; 1]);
    });
    let started = Instant::now();
    let run = run_client(&["--timeout", "0.3", &fixture.url("/")], b"");
    run.assert_failure(
        1,
        &format!("read from 127.0.0.1:{}: timed out", fixture.port),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn connection_refused_names_the_address() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port();
    let run = run_client(&[&format!("http://127.0.0.1:{port}/")], b"");
    run.assert_failure(
        1,
        &format!("connect to 127.0.0.1:{port}: connection refused"),
    );
}

#[test]
fn https_url_is_refused() {
    let run = run_client(&["https://example.org/"], b"");
    run.assert_failure(
        2,
        "https is not supported: https://example.org/ (this client speaks plain http:// only, no TLS)",
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 6] = [
        (&["--bogus"], "unknown option --bogus (see --help)"),
        (
            &["http://a/", "http://b/"],
            "unexpected argument \"http://b/\" after the URL (see --help)",
        ),
        (
            &["http://a/", "-X"],
            "the '-X' option doesn't have an associated value (see --help)",
        ),
        (
            &["ftp://a/"],
            "invalid URL \"ftp://a/\": unsupported scheme \"ftp\" (expected http://host[:port][/path])",
        ),
        (
            &["-H", "NoColon", "http://a/"],
            "invalid header \"NoColon\": expected 'Name: value'",
        ),
        (
            &["-X", "GET /", "http://a/"],
            "invalid method \"GET /\": letters, digits and !#$%&'*+-.^_`|~ only",
        ),
    ];
    for (args, line) in cases {
        run_client(args, b"").assert_failure(2, line);
    }
    let help = run_client(&["--help"], b"");
    help.assert_success();
    assert!(help.stdout_text().starts_with("usage: http-client"));
}

#[test]
fn interactive_mode_without_a_host_is_a_usage_error() {
    let run = run_client(&[], b"GET\n/\n\n");
    assert_eq!(run.status.code(), Some(2));
    assert!(
        run.stderr
            .ends_with("\nhttp-client: no host given (see --help)\n"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// --max-time: one deadline for the whole exchange

/// The head of a response whose body never ends: the client can only stop by giving up.
const ENDLESS_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";

/// A fixture that sends [`ENDLESS_HEAD`], then one body byte every 300 ms until the client
/// goes away (or 100 bytes, a bound so the thread cannot outlive the test run by much). Every
/// read of the client succeeds well within its `--timeout`: only `--max-time` can stop it.
fn serve_drip() -> Fixture {
    serve(|stream| {
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        if stream.write_all(ENDLESS_HEAD).is_err() {
            return;
        }
        for _ in 0..100 {
            if stream.write_all(b"x").is_err() {
                return;
            }
            // Deliberate: the slowness is what this server is for.
            thread::sleep(Duration::from_millis(300));
        }
    })
}

/// Asserts `started.elapsed()` is at least `limit` (the client cannot give up early) and at
/// most 2.5 s, far less than the `--timeout` of every test that calls it.
fn assert_ended_soon_after(started: Instant, limit: Duration) {
    let elapsed = started.elapsed();
    assert!(
        elapsed >= limit && elapsed < Duration::from_millis(2500),
        "the client ran {elapsed:?} with --max-time {limit:?}"
    );
}

#[test]
fn dripping_server_is_cut_off_by_max_time() {
    let fixture = serve_drip();
    let started = Instant::now();
    let run = run_client(
        &["--max-time", "1", "--timeout", "10", &fixture.url("/")],
        b"",
    );
    assert_ended_soon_after(started, Duration::from_secs(1));
    run.assert_failure(1, "no complete response within 1 s (--max-time)");
    // The bytes that came in time were printed, and stay printed.
    assert!(
        !run.stdout.is_empty() && run.stdout.iter().all(|&b| b == b'x'),
        "{:?}",
        run.stdout_text()
    );
}

#[test]
fn max_time_is_kept_within_a_read() {
    // The head and a little body, then silence: the client's one read may wait 10 s
    // (--timeout), but must give up when --max-time says, in the middle of that read.
    let fixture = serve(|stream| {
        let _ = stream.write_all(ENDLESS_HEAD);
        let _ = stream.write_all(b"partial");
        // Holds the connection until the client closes it.
        let _ = stream.read(&mut [0; 1]);
    });
    let started = Instant::now();
    let run = run_client(&["-m", "0.5", "--timeout", "10", &fixture.url("/")], b"");
    assert_ended_soon_after(started, Duration::from_millis(500));
    run.assert_failure(1, "no complete response within 0.5 s (--max-time)");
    assert_eq!(run.stdout, b"partial");
}

#[test]
fn max_time_covers_connecting() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // hangs. Fill the queue (length 1 for a backlog of 0 on Linux) with connections nobody
    // accepts, until one of them no longer completes.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an IP address");
    let mut queued = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        queued.push(stream);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let started = Instant::now();
    let run = run_client(
        &["-m", "1", "--timeout", "10", &format!("http://{addr}/")],
        b"",
    );
    assert_ended_soon_after(started, Duration::from_secs(1));
    run.assert_failure(1, "no complete response within 1 s (--max-time)");
    drop(queued);
}

#[test]
fn interactive_mode_respects_max_time() {
    let fixture = serve_drip();
    let answers = format!("GET\n/\nHTTP/1.1\n127.0.0.1:{}\n", fixture.port);
    let started = Instant::now();
    let run = run_client(&["-m", "1", "--timeout", "10"], answers.as_bytes());
    assert_ended_soon_after(started, Duration::from_secs(1));
    assert_eq!(run.status.code(), Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr
            .ends_with(": \nhttp-client: no complete response within 1 s (--max-time)\n"),
        "{}",
        run.stderr
    );
    // Interactive mode prints the head, then the body bytes that came in time.
    let body = run
        .stdout
        .strip_prefix(ENDLESS_HEAD)
        .expect("the head first");
    assert!(!body.is_empty() && body.iter().all(|&b| b == b'x'));
}

#[test]
fn fractional_max_time_that_is_long_enough_succeeds() {
    let fixture = serve_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let run = run_client(&["-m", "0.5", &fixture.url("/")], b"");
    run.assert_success();
    assert_eq!(run.stdout, b"ok");
}

#[test]
fn bad_time_limits_are_usage_errors() {
    let expected = |flag: &str, value: &str| {
        format!("{flag} {value:?}: expected more than 0 and at most 86400 seconds (see --help)")
    };
    for value in ["0", "-1", "NaN", "inf", "86400.5", "1e-12", "abc", ""] {
        run_client(&["--max-time", value, "http://127.0.0.1:9/"], b"")
            .assert_failure(2, &expected("--max-time", value));
        run_client(&["--timeout", value, "http://127.0.0.1:9/"], b"")
            .assert_failure(2, &expected("--timeout", value));
    }
    run_client(&["-m", "0", "http://127.0.0.1:9/"], b"")
        .assert_failure(2, &expected("--max-time", "0"));
    run_client(&["http://127.0.0.1:9/", "-m"], b"").assert_failure(
        2,
        "the '-m' option doesn't have an associated value (see --help)",
    );
}

// ---------------------------------------------------------------------------------------------
// Control characters from the server

/// Asserts that `head`, split into lines at LF (a CR right before the LF belongs to the line
/// ending), holds no control byte: none below 0x20, no DEL, no C1 byte 0x80-0x9f.
fn assert_printable_lines(head: &[u8]) {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line
                .iter()
                .any(|&b| b < 0x20 || b == 0x7f || (0x80..=0x9f).contains(&b)),
            "control byte in printed line {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn include_escapes_control_characters_in_the_head() {
    // What the HTTP parser lets through: bytes 0x80-0xff (obs-text) anywhere in the reason
    // phrase or a value, so a raw C1 byte (0x9b is CSI on 8-bit terminals) and the UTF-8 form
    // of U+009B (CSI on UTF-8 terminals), and tabs. The body passes through untouched.
    let response = b"HTTP/1.1 200 \x9b31mOK\r\n\
        X-Evil: \x9b2J\xc2\x9b0;title\x9c\ttab caf\xc3\xa9\r\n\
        Content-Length: 9\r\n\r\n\x1b[31mb\x9bdy";
    let run = run_client(&["-i", &serve_bytes(response).url("/")], b"");
    run.assert_success();
    let (head, body) = split_head(&run.stdout);
    assert_eq!(
        String::from_utf8_lossy(head),
        "HTTP/1.1 200 \\x9b31mOK\r\n\
         X-Evil: \\x9b2J\\u{9b}0;title\\x9c\\x09tab caf\\u{e9}\r\n\
         Content-Length: 9\r\n\r\n"
    );
    assert_printable_lines(head);
    assert_eq!(body, b"\x1b[31mb\x9bdy", "the body is printed as received");
}

#[test]
fn head_with_esc_or_bel_is_refused_and_nothing_raw_is_printed() {
    // The HTTP parser refuses C0 controls and DEL in a head outright, so ESC [31m and BEL
    // never reach the printing: the response is an error, with nothing on stdout.
    let cases: [(&[u8], &str); 3] = [
        (
            b"HTTP/1.1 200 OK\r\nX-Evil: \x1b[31mred\x07\r\nContent-Length: 0\r\n\r\n",
            "malformed response head: invalid header value",
        ),
        (
            b"HTTP/1.1 200 \x1b]0;pwned\x07\r\nContent-Length: 0\r\n\r\n",
            "malformed response head: invalid response status",
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n",
            "malformed response head: invalid header value",
        ),
    ];
    for (response, line) in cases {
        let run = run_client(&["-i", &serve_bytes(response).url("/")], b"");
        run.assert_failure(1, line);
        assert_eq!(run.stdout, b"");
    }
}

#[test]
fn error_messages_escape_what_they_quote() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 1\x9b2J\xc2\x9b\r\n\r\nx";
    let run = run_client(&[&serve_bytes(response).url("/")], b"");
    run.assert_failure(1, r#"invalid Content-Length "1\x9b2J\u{9b}""#);
    assert_printable_lines(run.stderr.as_bytes());
}
