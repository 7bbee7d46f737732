//! Hostile clients, against the real binary: one test per attack, named after it.
//!
//! - slowloris: a greeting dripped a byte at a time must not hold a time-stream slot forever
//!   (`--greeting-timeout-ms`, default 5000);
//! - one source opening many connections (`--max-conns-per-ip`, default 100; IPv4 per address);
//! - UDP reflection through the ticks a forged greeting starts (`--udp-rate-per-ip` budgets what
//!   is sent to each destination IP too) and through reply sizes;
//! - kernel memory pinned by a client that never reads (`--sndbuf`, `--rcvbuf`,
//!   `--send-timeout-ms`);
//! - a UDP session table filled from one /24 (admission is fair between prefixes);
//! - SIGHUP (graceful, like SIGTERM), a closed stdout, and numbers too big for any flag.
//!
//! Every wait is on bytes or on a bounded poll of a condition; the only deliberate pauses are
//! the attacker's own (the slow drip) and fixed measurement windows (the UDP rate count).
//! Source addresses are loopback ones (127.0.0.0/8 can be bound directly on Linux).
//!
//! The tests take a common lock: several of them measure rates and delays, and the machine
//! they run on may have only two cores.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use common::{Reactor, assert_daytime_line, assert_tick, greeted_tcp, greeted_udp, tcp, tcp_from};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One test at a time (see the module comment); a failed test does not block the others.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A UDP socket bound to `source` (port chosen by the OS), non-blocking.
fn udp_from(source: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("bind udp {source}:0: {e}"));
    socket.set_nonblocking(true).unwrap();
    socket
}

/// How a read loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The peer closed (FIN).
    Eof,
    /// The connection was reset / aborted.
    Reset(ErrorKind),
    /// Nothing ended it before the deadline.
    StillOpen,
}

fn is_reset(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Reads until EOF, a reset or `deadline`; sets `got_data` as soon as any byte arrives.
fn read_until(stream: &TcpStream, deadline: Instant, got_data: &AtomicBool) -> (Vec<u8>, End) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return (all, End::StillOpen);
        }
        stream.set_read_timeout(Some(deadline - now)).unwrap();
        match (&*stream).read(&mut buf) {
            Ok(0) => return (all, End::Eof),
            Ok(n) => {
                got_data.store(true, Ordering::SeqCst);
                all.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (all, End::Reset(e.kind())),
        }
    }
}

/// What a slowloris client saw: the bytes, how it ended, and when (from connecting).
struct Dripped {
    reply: Vec<u8>,
    end: End,
    after: Duration,
    dripped: usize,
}

/// Connects to a time-stream port and drips a greeting that never ends (no newline), one byte
/// every 300 ms, until the server says something or closes, or `limit` passes.
fn slowloris(addr: SocketAddr, limit: Duration) -> Dripped {
    let stream = tcp(addr);
    let connected = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let stop = Arc::clone(&stop);
        let mut writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut dripped = 0;
            for byte in b"Bonjour, je suis un client tres lent ".iter().cycle() {
                if stop.load(Ordering::SeqCst) || writer.write_all(&[*byte]).is_err() {
                    break;
                }
                dripped += 1;
                // The attack itself: a byte now and then, so the connection is never idle.
                std::thread::sleep(Duration::from_millis(300));
            }
            dripped
        })
    };
    let (reply, end) = read_until(&stream, connected + limit, &stop);
    let after = connected.elapsed();
    stop.store(true, Ordering::SeqCst);
    let dripped = dripper.join().unwrap();
    Dripped {
        reply,
        end,
        after,
        dripped,
    }
}

/// Waits (at most `limit`) until at least `want` of `streams` were closed by the server (EOF or
/// reset), waiting on the sockets themselves; returns which ones were closed. Any data received
/// on them is a failure: these connections never sent anything.
fn wait_for_closes(streams: &[TcpStream], want: usize, limit: Duration) -> Vec<bool> {
    for stream in streams {
        stream.set_nonblocking(true).unwrap();
    }
    let deadline = Instant::now() + limit;
    let mut closed = vec![false; streams.len()];
    loop {
        for (i, stream) in streams.iter().enumerate() {
            if closed[i] {
                continue;
            }
            let mut byte = [0u8; 1];
            match (&*stream).read(&mut byte) {
                Ok(0) => closed[i] = true,
                Ok(_) => panic!("connection {i} received data without sending any"),
                Err(e) if is_reset(e.kind()) => closed[i] = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("connection {i}: {e}"),
            }
        }
        let now = Instant::now();
        if closed.iter().filter(|c| **c).count() >= want || now >= deadline {
            break;
        }
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .zip(&closed)
            .filter(|(_, closed)| !**closed)
            .map(|(s, _)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            })
            .collect();
        let wait_ms = (deadline - now).as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
    }
    for stream in streams {
        stream.set_nonblocking(false).unwrap();
    }
    closed
}

/// One echo round trip on `stream` within `limit`.
fn echo_round_trip(stream: &TcpStream, message: &[u8], limit: Duration) -> Result<(), String> {
    (&*stream)
        .write_all(message)
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; message.len()];
    stream.set_read_timeout(Some(limit)).unwrap();
    (&*stream)
        .read_exact(&mut back)
        .map_err(|e| format!("no echo within {limit:?}: {e}"))?;
    if back != message {
        return Err(format!("echoed {back:?}, not {message:?}"));
    }
    Ok(())
}

/// Counts datagrams arriving on `sockets` (non-blocking) until `deadline`, waiting with poll(2).
fn count_datagrams(sockets: &[UdpSocket], deadline: Instant) -> usize {
    let mut count = 0;
    let mut buf = [0u8; 2048];
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return count;
        }
        let wait_ms = (deadline - now).as_millis().max(1) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if ready <= 0 {
            continue;
        }
        for (socket, fd) in sockets.iter().zip(&mut fds) {
            if fd.revents == 0 {
                continue;
            }
            fd.revents = 0;
            while socket.recv(&mut buf).is_ok() {
                count += 1;
            }
        }
    }
}

/// The `skmem` counters of one socket, as `ss -m` prints them (bytes).
#[derive(Debug, Default, Clone, Copy)]
struct SkMem {
    /// Receive queue (`sk_rmem_alloc`).
    r: u64,
    /// Receive buffer size (`sk_rcvbuf`).
    rb: u64,
    /// Transmit memory in flight (`sk_wmem_alloc`).
    t: u64,
    /// Send buffer size (`sk_sndbuf`).
    tb: u64,
    /// Send queue (`sk_wmem_queued`).
    w: u64,
}

impl SkMem {
    fn pinned(&self) -> u64 {
        self.r + self.w + self.t
    }
}

/// The established TCP sockets of this host: (local, peer, skmem), from `ss -tmnH`.
fn ss_established() -> Vec<(SocketAddr, SocketAddr, SkMem)> {
    let output = Command::new("ss")
        .args(["-tmnH", "state", "established"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ss ({e}); it is in iproute2: apt-get install -y iproute2")
        });
    assert!(output.status.success(), "ss failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut sockets = Vec::new();
    let mut current: Option<(SocketAddr, SocketAddr)> = None;
    for line in text.lines() {
        if let Some(skmem) = line.trim_start().strip_prefix("skmem:(") {
            let Some((local, peer)) = current.take() else {
                continue;
            };
            let mut mem = SkMem::default();
            for field in skmem.trim_end_matches(')').split(',') {
                let split = field
                    .find(|c: char| c.is_ascii_digit())
                    .unwrap_or(field.len());
                let (name, value) = field.split_at(split);
                let value = value.parse().unwrap_or(0);
                match name {
                    "r" => mem.r = value,
                    "rb" => mem.rb = value,
                    "t" => mem.t = value,
                    "tb" => mem.tb = value,
                    "w" => mem.w = value,
                    _ => {}
                }
            }
            sockets.push((local, peer, mem));
        } else {
            // Recv-Q Send-Q Local Peer (the state column is left out with `state …`).
            let words: Vec<&str> = line.split_whitespace().collect();
            current = match words.as_slice() {
                [_, _, local, peer, ..] => local.parse().ok().zip(peer.parse().ok()),
                _ => None,
            };
        }
    }
    sockets
}

/// The server's side of `client` (local = the server's port, peer = the client), if established.
/// `None` once the connection is gone: `getpeername` itself fails (ENOTCONN) after the server's
/// close reset the client's socket.
fn server_side_of(client: &TcpStream) -> Option<SkMem> {
    let server = client.peer_addr().ok()?;
    let me = client.local_addr().ok()?;
    ss_established()
        .into_iter()
        .find(|(local, peer, _)| *local == server && *peer == me)
        .map(|(_, _, mem)| mem)
}

/// How a never-reading writer ended.
struct Written {
    bytes: usize,
    /// When the last write made progress.
    progress: Instant,
    /// The connection was reset or closed under the writer.
    error: Option<std::io::Error>,
}

/// Writes as fast as the socket takes it, never reading (100 ms write timeout, so a stalled
/// write never hangs), for `span`, or only until the first stall if `until_stall`.
fn write_without_reading(stream: &TcpStream, span: Duration, until_stall: bool) -> Written {
    stream
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let start = Instant::now();
    let mut written = Written {
        bytes: 0,
        progress: start,
        error: None,
    };
    while start.elapsed() < span {
        match (&*stream).write(&chunk) {
            Ok(n) => {
                written.bytes += n;
                written.progress = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if until_stall {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                written.error = Some(e);
                break;
            }
        }
    }
    written
}

/// The server's UDP socket bound to `addr` in /proc/net/udp: (rx_queue bytes, drops).
fn proc_net_udp(addr: SocketAddr) -> (u64, u64) {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only: {addr}")
    };
    // /proc/net/udp prints the address as the hex of its in-memory (network order) u32, read
    // as a host-order number: on little-endian machines 127.0.0.1 is 0100007F.
    let wanted = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(ip.octets()),
        addr.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
    for line in table.lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(1) == Some(&wanted.as_str()) {
            let rx_queue = words[4].split(':').nth(1).expect("tx:rx");
            let drops = words.last().expect("drops").parse().expect("drops");
            return (u64::from_str_radix(rx_queue, 16).expect("rx_queue"), drops);
        }
    }
    panic!("{addr} ({wanted}) not in /proc/net/udp");
}

/// Whether `done` comes to hold within `limit` (polled with common's back-off).
fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    common::poll_for(limit, || done().then_some(())).is_some()
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    common::poll_for(limit, || child.try_wait().expect("try_wait"))
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

// ---------------------------------------------------------------------------------------------
// 1. Slowloris greeting
// ---------------------------------------------------------------------------------------------

const GREETING_TIMEOUT: &[u8] = b"error: greeting timeout\n";

/// The server closed the dripping client (EOF) after exactly the timeout line; returns the
/// description for further assertions.
fn assert_cut_off_with_the_timeout_line(seen: &Dripped) -> String {
    let what = format!(
        "after {:?} and {} dripped bytes: got {:?} then {:?}",
        seen.after,
        seen.dripped,
        String::from_utf8_lossy(&seen.reply),
        seen.end
    );
    assert_eq!(seen.end, End::Eof, "not closed by the server: {what}");
    assert_eq!(seen.reply, GREETING_TIMEOUT, "{what}");
    what
}

#[test]
fn slowloris_greeting_dripped_a_byte_every_300_ms_is_cut_off_by_greeting_timeout_ms() {
    let _serial = serial();
    let reactor = Reactor::start(&["--greeting-timeout-ms", "1000"]);
    let seen = slowloris(reactor.addr("time", "tcp"), Duration::from_secs(4));
    let what = assert_cut_off_with_the_timeout_line(&seen);
    assert!(
        seen.after >= Duration::from_millis(900) && seen.after <= Duration::from_secs(3),
        "closed outside 1-3 s: {what}"
    );
}

#[test]
fn slowloris_greeting_is_cut_off_within_8_s_at_the_default_greeting_timeout() {
    let _serial = serial();
    let reactor = Reactor::start(&[]);
    let seen = slowloris(reactor.addr("time", "tcp"), Duration::from_secs(8));
    let what = assert_cut_off_with_the_timeout_line(&seen);
    assert!(
        seen.after >= Duration::from_millis(4500),
        "the default greeting timeout is 5 s: {what}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Per-source TCP limit
// ---------------------------------------------------------------------------------------------

#[test]
fn connection_flood_from_one_address_is_cut_at_100_and_other_addresses_are_still_served() {
    let _serial = serial();
    let reactor = Reactor::start(&["--max-conns", "200", "-q"]);
    let echo = reactor.addr("echo", "tcp");
    let flood: Vec<TcpStream> = (0..200).map(|_| tcp_from(v4(127, 0, 0, 1), echo)).collect();
    // Over the limit: accepted and closed at once, so within a second of connecting.
    let closed = wait_for_closes(&flood, 100, Duration::from_secs(1));
    let closed_count = closed.iter().filter(|c| **c).count();
    let closed_within_first_100 = closed[..100].iter().filter(|c| **c).count();

    let other = tcp_from(v4(127, 0, 0, 2), echo);
    let served = echo_round_trip(&other, b"from another source\n", Duration::from_secs(2));

    assert!(
        closed_count == 100 && closed_within_first_100 == 0 && served.is_ok(),
        "200 silent connections from 127.0.0.1: {closed_count} closed by the server within 1 s \
         ({closed_within_first_100} of them among the first 100), expected the 100 beyond the \
         100th; echo for 127.0.0.2: {served:?}"
    );
}

#[test]
fn sixth_connection_from_one_address_gets_no_daytime_line_at_max_conns_per_ip_5() {
    let _serial = serial();
    let reactor = Reactor::start(&["--max-conns-per-ip", "5"]);
    let echo = reactor.addr("echo", "tcp");
    let daytime = reactor.addr("daytime", "tcp");
    // Five connections the server holds (echo keeps them open); each proves it was accepted.
    let held: Vec<TcpStream> = (0..5)
        .map(|i| {
            let stream = tcp_from(v4(127, 0, 0, 1), echo);
            let message = format!("held {i}\n");
            echo_round_trip(&stream, message.as_bytes(), Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connection {i} of 5 from 127.0.0.1: {e}"));
            stream
        })
        .collect();

    let sixth = tcp_from(v4(127, 0, 0, 1), daytime);
    let flag = AtomicBool::new(false);
    let (reply, end) = read_until(&sixth, Instant::now() + Duration::from_secs(1), &flag);

    let other = tcp_from(v4(127, 0, 0, 3), daytime);
    let (other_reply, other_end) =
        read_until(&other, Instant::now() + Duration::from_secs(2), &flag);

    assert!(
        reply.is_empty() && end != End::StillOpen,
        "6th connection from 127.0.0.1 (5 held): got {:?} then {end:?}; expected no data and a \
         close within 1 s",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(other_end, End::Eof, "127.0.0.3: {other_reply:?}");
    assert_daytime_line(&other_reply);
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// 3. UDP reflection
// ---------------------------------------------------------------------------------------------

#[test]
fn udp_reflection_via_50_forged_time_stream_sessions_is_held_to_the_per_ip_rate() {
    let _serial = serial();
    let reactor = Reactor::start(&[
        "--ticks",
        "1000",
        "--interval-ms",
        "20",
        "--max-udp-sessions-per-ip",
        "100",
        "-q",
    ]);
    let time = reactor.addr("time", "udp");
    // The "victim": 50 sockets on one address, each greeted once, as forged datagrams would.
    let victim: Vec<UdpSocket> = (0..50).map(|_| udp_from(v4(127, 0, 0, 5))).collect();
    for socket in &victim {
        socket.send_to(b"Bonjour", time).expect("greet");
    }
    let start = Instant::now();
    // Fixed measurement windows: the first second (burst), then two seconds of steady rate.
    let first_second = count_datagrams(&victim, start + Duration::from_secs(1));
    let window = count_datagrams(&victim, start + Duration::from_secs(3));
    assert!(
        first_second + window > 0,
        "the victim address got nothing at all: is the time stream served?"
    );
    assert!(
        window <= 260,
        "127.0.0.5 received {window} datagrams in the 2 s after the first second ({}/s; {} in \
         the first second); expected at most ~100/s (130/s allowed)",
        window / 2,
        first_second
    );
}

#[test]
fn udp_daytime_and_rfc868_replies_to_an_empty_request_are_at_most_twice_its_size() {
    let _serial = serial();
    let reactor = Reactor::start(&[]);
    const HEADERS: usize = 28; // IPv4 20 + UDP 8
    for service in ["daytime", "rfc868"] {
        let socket = udp_from(v4(127, 0, 0, 6));
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket.send_to(b"", reactor.addr(service, "udp")).unwrap();
        let mut buf = [0u8; 2048];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{service} udp: no reply: {e}"));
        assert!(
            HEADERS + n <= 2 * HEADERS,
            "{service} udp: a {HEADERS}-byte request got a {}-byte reply",
            HEADERS + n
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Kernel memory per never-reading client
// ---------------------------------------------------------------------------------------------

/// r (receive queue) + w (send queue) + t (in flight) of the server's socket. Note for the
/// defaults: Linux doubles what SO_SNDBUF/SO_RCVBUF are set to (`rb`/`tb` in `ss`), and both
/// queues can fill up to those doubled sizes, so 256 KiB each is right at this 1 MiB bound.
#[test]
fn never_reading_echo_client_pins_at_most_1_mib_of_server_socket_memory() {
    let _serial = serial();
    let reactor = Reactor::start(&[]);
    let stream = tcp(reactor.addr("echo", "tcp"));
    // The attack: write for 2 s as fast as the kernel takes it, never read.
    let written = write_without_reading(&stream, Duration::from_secs(2), false);
    assert!(
        written.error.is_none(),
        "the default send timeout is 60 s, yet: {:?}",
        written.error
    );
    let mem = server_side_of(&stream).expect("the server's side of the echo connection in ss");
    assert!(
        mem.pinned() <= 1 << 20,
        "server socket holds r+w+t = {} bytes ({mem:?}) after the client wrote {} bytes \
         without reading; expected at most 1 MiB",
        mem.pinned(),
        written.bytes
    );
}

#[test]
fn never_reading_echo_client_is_closed_after_send_timeout_ms() {
    let _serial = serial();
    let reactor = Reactor::start(&["--send-timeout-ms", "1000", "--idle-timeout-ms", "0"]);
    let stream = tcp(reactor.addr("echo", "tcp"));
    // Fill every buffer on the way; the writes stall once the server stops reading.
    let written = write_without_reading(&stream, Duration::from_secs(5), true);
    assert!(
        written.error.is_none(),
        "closed before the output stalled: {:?}",
        written.error
    );
    let (written, stalled_at) = (written.bytes, written.progress);
    assert!(
        server_side_of(&stream).is_some(),
        "premise: the server holds the connection"
    );
    let chunk = [b'y'; 1024];
    let mut how = String::new();
    // Bounded poll: the server-side socket leaves `ss`, or the client's write is refused.
    let closed = poll_until(stalled_at + Duration::from_secs(4) - Instant::now(), || {
        if server_side_of(&stream).is_none() {
            how = "server-side socket gone".into();
            return true;
        }
        match (&stream).write(&chunk) {
            Err(e) if is_reset(e.kind()) => {
                how = format!("client write: {e}");
                true
            }
            _ => false,
        }
    });
    let after = stalled_at.elapsed();
    assert!(
        closed,
        "after {written} bytes, output stalled {after:?} ago and the server still holds the \
         connection (ss: {:?}); expected a close within ~1-4 s",
        server_side_of(&stream)
    );
    eprintln!("closed {after:?} after the output stalled ({how})");
}

// ---------------------------------------------------------------------------------------------
// 5. Fair UDP session admission
// ---------------------------------------------------------------------------------------------

#[test]
fn udp_session_table_filled_from_one_slash24_still_admits_a_newcomer_from_another_prefix() {
    let _serial = serial();
    let reactor = Reactor::start(&[
        "--max-udp-sessions",
        "300",
        "--max-udp-sessions-per-ip",
        "3",
        "--ticks",
        "1000",
        "--interval-ms",
        "1000",
        "--udp-rate-per-ip",
        "0",
        "-q",
    ]);
    let time = reactor.addr("time", "udp");
    // 120 addresses of 127.0.0.0/24, 3 sessions each: 360 > 300, the table fills.
    let flood: Vec<UdpSocket> = (10..130u8)
        .flat_map(|last| (0..3).map(move |_| udp_from(v4(127, 0, 0, last))))
        .collect();
    for batch in flood.chunks(30) {
        for socket in batch {
            socket.send_to(b"Bonjour", time).expect("greet");
        }
        // Let the server drain its socket, so no greeting is lost to a full receive buffer.
        assert!(
            poll_until(Duration::from_secs(5), || proc_net_udp(time).0 == 0),
            "the server does not read its time udp socket"
        );
    }
    let (_, drops) = proc_net_udp(time);
    assert_eq!(drops, 0, "premise: every greeting reached the server");
    // How many flood sessions were admitted (each gets its first tick at once); 300 today.
    let mut ticked = vec![false; flood.len()];
    poll_until(Duration::from_secs(2), || {
        let mut buf = [0u8; 64];
        for (socket, ticked) in flood.iter().zip(&mut ticked) {
            while socket.recv(&mut buf).is_ok() {
                *ticked = true;
            }
        }
        ticked.iter().filter(|t| **t).count() >= 300
    });
    let ticked = ticked.iter().filter(|t| **t).count();

    let newcomer = udp_from(v4(127, 0, 1, 1));
    newcomer.set_nonblocking(false).unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    newcomer.send_to(b"Bonjour", time).expect("greet");
    let mut buf = [0u8; 2048];
    match newcomer.recv(&mut buf) {
        Ok(n) => assert_tick(std::str::from_utf8(&buf[..n]).expect("utf-8 tick")),
        Err(e) => panic!(
            "127.0.1.1 got no first tick within 1 s ({e}); {ticked} of the 360 flood sessions \
             from 127.0.0.0/24 were admitted"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// 6. SIGHUP
// ---------------------------------------------------------------------------------------------

/// After a shutdown signal: maybe ticks, then `Au Revoir`, then EOF (2 s per read).
fn tcp_goodbye(reader: &mut BufReader<TcpStream>) -> Result<(), String> {
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("EOF without Au Revoir".into()),
            Ok(_) if line == "Au Revoir\n" => break,
            Ok(_) => assert_tick(line.trim_end()),
            Err(e) => return Err(format!("{e} before Au Revoir (after {line:?})")),
        }
    }
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("{rest:?} after Au Revoir")),
        Err(e) => Err(format!("{e} after Au Revoir instead of EOF")),
    }
}

/// After a shutdown signal: maybe ticks, then `Au Revoir` (2 s per datagram).
fn udp_goodbye(socket: &UdpSocket) -> Result<(), String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let n = socket
            .recv(&mut buf)
            .map_err(|e| format!("{e} before Au Revoir"))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        if text == "Au Revoir" {
            return Ok(());
        }
        assert_tick(&text);
    }
}

#[test]
fn sighup_stops_gracefully_like_sigterm_au_revoir_to_every_session_and_status_0() {
    let _serial = serial();
    let mut reactor = Reactor::start(&[]);
    let mut tcp_session = greeted_tcp(reactor.addr("time", "tcp"));
    let udp_session = greeted_udp(reactor.addr("time", "udp"));
    reactor.signal(libc::SIGHUP);
    let status = reactor.wait_exit(Duration::from_secs(3));
    let tcp_end = tcp_goodbye(&mut tcp_session);
    let udp_end = udp_goodbye(&udp_session);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)) && tcp_end.is_ok() && udp_end.is_ok(),
        "after SIGHUP: {}; tcp session: {tcp_end:?}; udp session: {udp_end:?}",
        status.map_or("still running after 3 s".into(), |s| s.to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Broken stdout
// ---------------------------------------------------------------------------------------------

#[test]
fn closed_stdout_does_not_kill_a_server_that_has_bound_its_sockets() {
    let _serial = serial();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::new(v4(127, 0, 0, 1), port);

    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: `ends` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: pipe(2) just returned these two descriptors, and nothing else owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    drop(read_end); // every write to stdout now fails with EPIPE

    let stderr_path =
        std::env::temp_dir().join(format!("inetloop-abuse-stdout-{}.log", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_reactor"))
        .args(["--time", &port.to_string()])
        .args(["--echo", "off", "--daytime", "off", "--rfc868", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn reactor");
    let mut child = Killed(child);
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // Bounded retry until the port answers (or the process is gone).
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "the reactor exited ({status}) before serving; stderr: {}",
                stderr()
            );
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => {
                panic!(
                    "cannot connect to {addr} within 5 s: {e}; stderr: {}",
                    stderr()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    (&stream).write_all(b"Bonjour\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    assert!(
        matches!(read, Ok(n) if n > 0),
        "no first tick ({read:?}); reactor: {:?}; stderr: {}",
        child.0.try_wait(),
        stderr()
    );
    assert_tick(line.trim_end());

    signal(&child.0, libc::SIGTERM);
    let status = wait_child(&mut child.0, Duration::from_secs(3));
    let _ = std::fs::remove_file(&stderr_path);
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "after SIGTERM: {status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The command line cannot panic
// ---------------------------------------------------------------------------------------------

/// What one command line did.
enum Outcome {
    /// Exit 2 with one `reactor: …` line on stderr and no panic.
    UsageError(String),
    /// Printed its `listening` lines and stopped cleanly on SIGTERM.
    Started,
    /// Anything else: a crash, a panic, a wrong status, silence.
    Bad(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::UsageError(line) => write!(f, "usage error: {line}"),
            Outcome::Started => f.write_str("started, stopped cleanly on SIGTERM"),
            Outcome::Bad(what) => write!(f, "BAD: {what}"),
        }
    }
}

/// Runs `reactor` (every service on port 0) with `args`, for at most a few seconds.
fn outcome(args: &[&str]) -> Outcome {
    let child = common::reactor_on_port_0(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reactor");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // Either it exits (a usage error takes milliseconds) or it announces 8 sockets.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut listening = 0;
    let mut exited = None;
    while listening < 8 && exited.is_none() && Instant::now() < deadline {
        match lines_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line.starts_with("listening ") => listening += 1,
            Ok(line) => return Outcome::Bad(format!("unexpected stdout {line:?}")),
            Err(mpsc::RecvTimeoutError::Timeout) => exited = child.0.try_wait().unwrap(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                exited = wait_child(&mut child.0, Duration::from_secs(3));
                break;
            }
        }
    }
    let started = listening == 8;
    if started {
        signal(&child.0, libc::SIGTERM);
    }
    let status = exited.or_else(|| wait_child(&mut child.0, Duration::from_secs(3)));
    let Some(status) = status else {
        return Outcome::Bad(format!(
            "still running after 5 s with {listening} listening lines"
        ));
    };
    let stderr = stderr_reader.join().unwrap();
    // The gist of stderr (a backtrace, if any, would bury the message).
    let gist = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ");
    if stderr.contains("panicked") {
        return Outcome::Bad(format!("{status}: {gist}"));
    }
    match (started, status.code()) {
        (true, Some(0)) => Outcome::Started,
        (false, Some(2)) if stderr.lines().count() == 1 && stderr.starts_with("reactor: ") => {
            Outcome::UsageError(stderr.trim_end().to_string())
        }
        _ => Outcome::Bad(format!("{status}: {gist}")),
    }
}

const HUGE: [&str; 5] = [
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "999999999999999999999999999999",
];

#[test]
fn huge_thread_counts_on_the_command_line_are_a_usage_error_not_a_panic() {
    let _serial = serial();
    let bad: Vec<String> = ["4294967296", "18446744073709551615"]
        .into_iter()
        .map(|value| (value, outcome(&["--threads", value])))
        .filter(|(_, got)| !matches!(got, Outcome::UsageError(_)))
        .map(|(value, got)| format!("--threads {value}: {got}"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn huge_values_of_every_numeric_flag_never_panic_or_crash() {
    let _serial = serial();
    let mut bad = Vec::new();
    for flag in [
        "--ticks",
        "--max-conns",
        "--max-udp-sessions",
        "--max-udp-sessions-per-ip",
        "--udp-rate-per-ip",
        "--interval-ms",
        "--idle-timeout-ms",
        // The new flags of the abuse defences (today: unknown, so usage errors).
        "--greeting-timeout-ms",
        "--max-conns-per-ip",
        "--send-timeout-ms",
        "--sndbuf",
        "--rcvbuf",
    ] {
        for value in HUGE {
            let got = outcome(&[flag, value]);
            eprintln!("{flag} {value}: {got}");
            if let Outcome::Bad(_) = got {
                bad.push(format!("{flag} {value}: {got}"));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
