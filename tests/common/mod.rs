//! Test harness: start the real `reactor` binary on loopback with OS-chosen ports, and talk to
//! it with real sockets. Every socket gets a timeout, so a hang fails the test instead of
//! stalling it.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod json;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use inetloop::services::clock::{DAYTIME_FORMAT, TICK_FORMAT};

/// Longest any single socket operation in a test may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

const SERVICE_FLAGS: [&str; 4] = ["--time", "--echo", "--daytime", "--rfc868"];

/// The `reactor` command with every service on port 0, then `args`, stdin closed: for tests
/// that watch the process itself (how it starts, or refuses to) rather than talk to it.
pub fn reactor_on_port_0(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reactor"));
    for flag in SERVICE_FLAGS {
        command.args([flag, "0"]);
    }
    command.args(args).stdin(Stdio::null());
    command
}

/// A running `reactor` process, killed when dropped.
pub struct Reactor {
    child: Child,
    sockets: HashMap<(String, String), SocketAddr>,
    /// stdout lines after the `listening …` ones (the contract says there are none).
    more_stdout: mpsc::Receiver<std::io::Result<String>>,
    log: PathBuf,
}

impl Reactor {
    /// Starts `reactor` with `args`; every service not named in `args` gets port 0.
    pub fn start(args: &[&str]) -> Reactor {
        Self::start_with(args, |_| {})
    }

    /// Like [`Reactor::start`], letting the caller adjust the command (e.g. resource limits).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Reactor {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for flag in SERVICE_FLAGS {
            if !args.contains(&flag) {
                all.extend([flag.to_string(), "0".to_string()]);
            }
        }
        let services_on = SERVICE_FLAGS
            .iter()
            .filter(|flag| {
                let value = all.iter().position(|a| a == *flag).map(|i| &all[i + 1]);
                value.is_some_and(|v| v != "off")
            })
            .count();
        // `--metrics ADDR:PORT` adds one `listening metrics tcp …` line (no UDP socket).
        let metrics_on = all
            .iter()
            .position(|a| a == "--metrics")
            .and_then(|i| all.get(i + 1))
            .is_some_and(|v| !v.eq_ignore_ascii_case("off"));
        let expected_lines = services_on * 2 + usize::from(metrics_on);

        let log = std::env::temp_dir().join(format!(
            "inetloop-test-{}-{}.log",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_reactor"));
        command
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create log file"));
        adjust(&mut command);
        let mut child = command.spawn().expect("spawn reactor");

        // Read the `listening …` lines on a thread, so a silent reactor fails within a timeout.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sockets = HashMap::new();
        for _ in 0..expected_lines {
            let line = match lines_rx.recv_timeout(IO_TIMEOUT) {
                Ok(Ok(line)) => line,
                other => {
                    let _ = child.kill();
                    panic!(
                        "reactor {all:?} printed no listening line ({other:?}); stderr:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 4, "malformed stdout line {line:?}");
            assert_eq!(words[0], "listening", "unexpected stdout line {line:?}");
            let addr: SocketAddr = words[3].parse().expect("listening line address");
            sockets.insert((words[1].to_string(), words[2].to_string()), addr);
        }
        Reactor {
            child,
            sockets,
            more_stdout: lines_rx,
            log,
        }
    }

    /// The address of `service` (`time`, `echo`, …) over `proto` (`tcp` or `udp`).
    pub fn addr(&self, service: &str, proto: &str) -> SocketAddr {
        *self
            .sockets
            .get(&(service.to_string(), proto.to_string()))
            .unwrap_or_else(|| panic!("no {service} {proto} socket in {:?}", self.sockets))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_for(timeout, || self.child.try_wait().expect("try_wait"))
    }

    /// After a shutdown signal sent at `signalled`: the process exits with status 0, the loop's
    /// own measure of its shutdown (the `stopped: shutdown took N ms` log line, from the signal
    /// to the end of the loop) is at most 1000 ms, and the exit seen from here, which includes
    /// this machine's scheduling, came within a generous 5 s.
    pub fn assert_stops_within_a_second(&mut self, signalled: Instant) {
        let status = self.wait_exit(IO_TIMEOUT).expect("the reactor exits");
        let seen = signalled.elapsed();
        assert!(status.success(), "exit status {status}");
        let took = self.shutdown_took_ms();
        assert!(took <= 1000, "the loop says its shutdown took {took} ms");
        assert!(seen <= Duration::from_secs(5), "exit seen after {seen:?}");
    }

    /// N from the `stopped: shutdown took N ms` line the reactor logs (at info level) when its
    /// loop ends after a shutdown signal. Call after the process exited.
    pub fn shutdown_took_ms(&self) -> u64 {
        let log = self.log();
        log.lines()
            .find_map(|line| {
                let rest = line.split_once("stopped: shutdown took ")?.1;
                rest.strip_suffix(" ms")?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no `stopped: shutdown took N ms` line in:\n{log}"))
    }

    /// Waits until the log satisfies `done` (e.g. a line the reactor writes after the event a
    /// test needs); returns that log. Fails after [`IO_TIMEOUT`].
    pub fn log_when(&self, what: &str, mut done: impl FnMut(&str) -> bool) -> String {
        poll_for(IO_TIMEOUT, || {
            let log = self.log();
            if done(&log) {
                return Some(log);
            }
            assert!(
                !self.exited(),
                "the reactor exited before: {what}; log:\n{log}"
            );
            None
        })
        .unwrap_or_else(|| {
            panic!(
                "timed out waiting for the log: {what}; log:\n{}",
                self.log()
            )
        })
    }

    /// Lines printed on stdout after the `listening …` lines (call after the process exited).
    pub fn extra_stdout(&self) -> Vec<String> {
        self.more_stdout.try_iter().filter_map(Result::ok).collect()
    }

    /// Everything the reactor logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has ended (a zombie not yet reaped counts as ended).
    pub fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|stat| Some(stat.get(stat.rfind(')')? + 2..)?.starts_with('Z')))
            .unwrap_or(true)
    }

    /// A numeric field of `/proc/<pid>/status` (e.g. `VmRSS` in kB, `Threads`).
    pub fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS")
    }

    /// Open descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/<pid>/fd")
            .count()
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/<pid>/stat");
        // Fields after the ")" that ends the command name; utime and stime are fields 14, 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- reactor stderr ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A TCP connection with read and write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream
}

/// A UDP socket on the loopback of `addr`'s family, connected to `addr`, with timeouts.
pub fn udp(addr: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local).expect("bind udp");
    socket.connect(addr).expect("connect udp");
    socket
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    socket
}

/// Receives one datagram as text.
pub fn recv_text(socket: &UdpSocket) -> String {
    let mut buf = [0u8; 2048];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("recv on {:?}: {e}", socket.local_addr()));
    String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram")
}

/// Reads one `\n`-terminated line (with its `\n`); "" at EOF.
pub fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read line: {e} (after {line:?})"));
    line
}

/// Reads until EOF.
pub fn read_to_end(stream: &mut impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .unwrap_or_else(|e| panic!("read to end: {e} (after {} bytes)", all.len()));
    all
}

/// Asserts that `text` is a time-stream tick for about now.
pub fn assert_tick(text: &str) {
    let parsed = chrono::NaiveDateTime::parse_from_str(text, TICK_FORMAT)
        .unwrap_or_else(|e| panic!("{text:?} is not a tick: {e}"));
    let skew = (chrono::Local::now().naive_local() - parsed)
        .num_seconds()
        .abs();
    assert!(skew <= 5, "tick {text:?} is {skew} s away from now");
}

/// Calls `check` until it returns `Some`, for at most `limit` (it is called once more at the
/// deadline); `None` if it never did.
///
/// The one place where the tests sleep while waiting for the server: a back-off between checks
/// of a condition (1 ms, doubling up to 20 ms), never a fixed time "to let the server catch up".
pub fn poll_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Waits until `done` holds, polling; fails after `limit`.
pub fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    if poll_for(limit, || done().then_some(())).is_none() {
        panic!("timed out waiting for: {what}");
    }
}

/// How long a write may make no progress before the peer counts as no longer reading.
pub const STALL: Duration = Duration::from_millis(500);

/// Writes 0xA5 bytes without reading until the server stops taking them, or until `limit`
/// bytes are written; returns how many it took. "Stopped" means a write made no progress for
/// [`STALL`]: the write blocks in the kernel until there is room (no polling), and its timeout
/// ends the filling.
pub fn fill_until_stalled(stream: &mut TcpStream, limit: usize) -> usize {
    stream
        .set_write_timeout(Some(STALL))
        .expect("write timeout");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut accepted = 0;
    while accepted < limit {
        let room = chunk.len().min(limit - accepted);
        match std::io::Write::write(stream, &chunk[..room]) {
            Ok(n) => accepted += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write after {accepted} bytes: {e}"),
        }
    }
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    accepted
}

/// A TCP time-stream session that has greeted and received its first tick.
pub fn greeted_tcp(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = tcp(addr);
    std::io::Write::write_all(&mut &stream, b"Bonjour\n").expect("greet");
    let mut reader = BufReader::new(stream);
    assert_tick(read_line(&mut reader).trim_end());
    reader
}

/// One whole TCP time-stream session: greeting, `ticks` ticks, `Au Revoir`, the server's FIN,
/// then ours. Returns the client's address, the peer the server's log and trace name.
pub fn whole_tcp_session(addr: SocketAddr, ticks: usize) -> SocketAddr {
    let stream = tcp(addr);
    let me = stream.local_addr().expect("local address");
    std::io::Write::write_all(&mut &stream, b"Bonjour\n").expect("greet");
    let mut reader = BufReader::new(stream);
    for _ in 0..ticks {
        assert_tick(read_line(&mut reader).trim_end());
    }
    assert_eq!(read_line(&mut reader), "Au Revoir\n");
    assert_eq!(read_to_end(&mut reader), b"", "EOF after Au Revoir");
    me
}

/// A UDP time-stream session that has greeted and received its first tick.
pub fn greeted_udp(addr: SocketAddr) -> UdpSocket {
    let socket = udp(addr);
    socket.send(b"Bonjour").expect("greet");
    assert_tick(&recv_text(&socket));
    socket
}

/// After a shutdown signal: maybe ticks that raced it, then `Au Revoir`, then EOF.
pub fn expect_au_revoir_tcp(reader: &mut BufReader<TcpStream>) {
    let mut line = read_line(reader);
    while line != "Au Revoir\n" {
        assert_tick(line.trim_end());
        line = read_line(reader);
    }
    assert_eq!(read_to_end(reader), b"", "EOF after Au Revoir");
}

/// After a shutdown signal: maybe ticks that raced it, then `Au Revoir`.
pub fn expect_au_revoir_udp(socket: &UdpSocket) {
    let mut text = recv_text(socket);
    while text != "Au Revoir" {
        assert_tick(&text);
        text = recv_text(socket);
    }
}

/// Asserts that `reply` is one daytime line (RFC 867, `\r\n`-terminated) for about now.
pub fn assert_daytime_line(reply: &[u8]) {
    let text = std::str::from_utf8(reply).expect("a daytime reply is text");
    let line = text
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("{text:?} ends in CRLF"));
    assert!(!line.contains('\n'), "one line: {text:?}");
    let parsed = chrono::NaiveDateTime::parse_from_str(line, DAYTIME_FORMAT)
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let skew = (chrono::Local::now().naive_local() - parsed)
        .num_seconds()
        .abs();
    assert!(skew <= 5, "{line:?} is not now");
}

/// Seconds from 1900 (RFC 868's epoch) to 1970 (Unix's).
pub const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

/// Asserts that `reply` is an RFC 868 answer for about now: exactly 4 bytes, big-endian seconds
/// since 1900 (modulo 2^32), within 5 s of this machine's clock.
pub fn assert_rfc868_now(reply: &[u8]) {
    let seconds = u32::from_be_bytes(
        reply
            .try_into()
            .unwrap_or_else(|_| panic!("{reply:?} is not exactly 4 bytes")),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs();
    let expected = ((now + SECONDS_1900_TO_1970) % (1 << 32)) as i64;
    assert!(
        (i64::from(seconds) - expected).abs() <= 5,
        "{seconds} vs {expected}"
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `program` with `args`, feeding it `stdin`, and collects its output; the process is
/// killed if it runs longer than 20 s, so a hanging client fails the test instead of stalling it.
pub fn run(program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut input, &stdin);
    });
    let pid = child.id() as i32;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().expect("collect output");
    let _ = done_tx.send(());
    let _ = feeder.join();
    let _ = watchdog.join();
    output
}

/// The path of `tool` (searched in `PATH`, then `/usr/sbin`, `/sbin`); fails, saying how to
/// install it, when it is missing — a test that needs a real program never passes without it.
pub fn need(tool: &str, package: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("this test needs `{tool}`: apt-get update && apt-get install -y {package}")
        })
}

/// A loopback port that was free for TCP and UDP a moment ago.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A TCP connection to `addr` from `source` (a loopback address of the test's choosing, port
/// chosen by the OS), with a 5 s connect timeout and `IO_TIMEOUT` on reads and writes.
pub fn tcp_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("tcp socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}:0: {e}"));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {source} -> {addr}: {e}"));
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}
