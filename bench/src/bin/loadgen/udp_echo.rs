//! UDP echo: `--peers` UDP sockets, each keeping `--inflight` datagrams of `--size` bytes
//! outstanding; a datagram is sent as soon as the echo of another one of its peer comes back.
//! Measures echoed datagrams per second and their round-trip time (`send` → `recv` of the echo).
//!
//! **Matching.** The first 8 bytes of a datagram are its peer's sequence number (little-endian),
//! the rest a fixed pattern; an echo is matched to its datagram by the number, and one of the
//! wrong size or with a changed pattern counts as `bad`.
//!
//! **Loss.** UDP may drop a datagram anywhere (a full receive buffer on either side is the usual
//! place on loopback), and the echo would then never come: a datagram unanswered after
//! [`LOSS_TIMEOUT`] counts as `lost` and a new one (with a new number) takes its place, so a
//! peer never stalls for good. An echo that turns up after that counts as `late`, not as a reply.
//!
//! **Sockets.** Each peer is a socket of its own, bound to one of `--src-ips` loopback addresses
//! (127.0.0.1, 127.0.0.2, …) and connected to the server: the reactor limits UDP per source IP
//! (`--udp-rate-per-ip`), and the figures should be the server's, not a limit's.
//!
//! Per echo the client makes one `recv` and one `send` (`recvfrom`/`sendto` without an address),
//! plus on each readable event the `recv` that says `WouldBlock` and its share of `epoll_wait`:
//! about what a server makes per datagram, which is why the report has the client's CPU too.
//! One thread, one mio loop.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, Failures, Report};

/// A datagram unanswered this long is lost; another takes its place. Loopback round trips
/// under this load are about a millisecond at p99 and a few at worst, so a reply still on its
/// way is rarely this late (and then counts as `late`, seen). Losses are ordinary here: 400
/// datagrams in flight are more than a server's default receive buffer holds (212,992 bytes of
/// `rmem_default` at ~768 bytes of kernel memory per small datagram), so whenever the server
/// falls behind, the kernel drops the excess (`RcvbufErrors` in `/proc/net/snmp`). Each loss
/// idles one of its peer's slots until this timeout: measured against the C server, 200 ms
/// idled a fifth of the slots (1,700 losses in 2 s) and 20 ms kept them full at the price of
/// 2 % of datagrams dropped, at the same replies/s (both sides at a full core); 50 ms is between.
const LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// How often outstanding datagrams are checked against [`LOSS_TIMEOUT`].
const SWEEP: Duration = Duration::from_millis(10);
/// Bytes at the start of each datagram that carry its sequence number.
const SEQ_BYTES: usize = 8;
/// The largest UDP payload over IPv4 (65,535 − 8 bytes of UDP header − 20 of IP header).
const MAX_DATAGRAM: usize = 65_507;

pub struct Args {
    addr: SocketAddr,
    peers: usize,
    inflight: usize,
    size: usize,
    secs: f64,
    src_ips: u8,
}

impl Args {
    pub fn parse(mut args: pico_args::Arguments) -> Result<Self, String> {
        let parsed = Args {
            addr: common::addr(&mut args, "--addr")?,
            peers: common::opt(&mut args, "--peers", 100)?,
            inflight: common::opt(&mut args, "--inflight", 4)?,
            size: common::opt(&mut args, "--size", 64)?,
            secs: common::opt(&mut args, "--secs", 10.0)?,
            src_ips: common::opt(&mut args, "--src-ips", 100)?,
        };
        common::finish(args)?;
        if parsed.peers == 0 || parsed.inflight == 0 || parsed.src_ips == 0 || parsed.secs <= 0.0 {
            return Err("--peers, --inflight, --src-ips and --secs must be positive".into());
        }
        if !(SEQ_BYTES..=MAX_DATAGRAM).contains(&parsed.size) {
            return Err(format!(
                "--size must be {SEQ_BYTES} to {MAX_DATAGRAM} (a datagram carries an {SEQ_BYTES}-byte sequence number)"
            ));
        }
        Ok(parsed)
    }
}

/// One peer: a socket and the datagrams it has out.
struct Peer {
    socket: UdpSocket,
    /// The number of the next datagram.
    next_seq: u64,
    /// Datagrams sent and not yet answered: number and time sent (at most `--inflight`).
    outstanding: Vec<(u64, Instant)>,
    /// False once the socket failed (the failure is counted).
    open: bool,
}

/// The run's figures.
struct Tally {
    hist: Histogram<u64>,
    replies: u64,
    lost: u64,
    late: u64,
    bad: u64,
    /// Sends that said `WouldBlock` (the datagram never left; it is then counted as lost).
    send_blocked: u64,
    failures: Failures,
    last_reply: Option<Instant>,
}

pub fn run(args: Args) -> Result<Report, String> {
    common::raise_nofile();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let mut tally = Tally {
        hist: common::histogram(),
        replies: 0,
        lost: 0,
        late: 0,
        bad: 0,
        send_blocked: 0,
        failures: Failures::default(),
        last_reply: None,
    };
    let mut peers = Vec::with_capacity(args.peers);
    for i in 0..args.peers {
        // Tokens are indexes into `peers`.
        let opened =
            common::udp_socket(args.addr, u32::from(args.src_ips), i).and_then(|mut socket| {
                poll.registry()
                    .register(&mut socket, Token(peers.len()), Interest::READABLE)?;
                Ok(socket)
            });
        match opened {
            Ok(socket) => peers.push(Peer {
                socket,
                next_seq: 0,
                outstanding: Vec::with_capacity(args.inflight),
                open: true,
            }),
            Err(e) => tally.failures.add(format!("open: {e}")),
        }
    }
    let mut datagram: Vec<u8> = (0..args.size).map(pattern).collect();
    let mut scratch = vec![0u8; MAX_DATAGRAM];
    let cpu_start = common::cpu_time();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    for peer in &mut peers {
        for _ in 0..args.inflight {
            peer.send(&mut datagram, start, &mut tally);
        }
    }
    let mut next_sweep = start + SWEEP;
    loop {
        let now = Instant::now();
        // After `end` nothing new is sent; the run is over when every datagram out has been
        // answered or declared lost (at most LOSS_TIMEOUT + SWEEP later).
        if now >= end && peers.iter().all(|p| p.outstanding.is_empty() || !p.open) {
            break;
        }
        let wake = if now < end {
            next_sweep.min(end)
        } else {
            next_sweep
        };
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let Some(peer) = peers.get_mut(event.token().0) else {
                continue;
            };
            if peer.open {
                peer.receive(&mut scratch, &mut datagram, end, &mut tally);
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            for peer in peers.iter_mut().filter(|p| p.open) {
                peer.replace_lost(now, &mut datagram, end, &mut tally);
            }
        }
    }
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    // The run lasts until the last echo came back (or, with none, until the end).
    let elapsed = tally
        .last_reply
        .unwrap_or_else(Instant::now)
        .duration_since(start)
        .as_secs_f64()
        .max(1e-3);
    let hist = &tally.hist;
    let mut report = Report::new("udp-echo");
    report
        .put("peers", args.peers)
        .put("inflight", args.inflight)
        .put("size", args.size)
        .put("src_ips", args.src_ips)
        .num("secs", elapsed, 3)
        .put("replies", tally.replies)
        .num("replies_per_s", tally.replies as f64 / elapsed, 0)
        .num("p50_us", common::percentile(hist, 0.50, 1e3), 1)
        .num("p90_us", common::percentile(hist, 0.90, 1e3), 1)
        .num("p99_us", common::percentile(hist, 0.99, 1e3), 1)
        .num("p999_us", common::percentile(hist, 0.999, 1e3), 1)
        .num("max_us", common::percentile(hist, 1.0, 1e3), 1)
        .put("lost", tally.lost)
        .put("late", tally.late)
        .put("bad", tally.bad)
        .put("send_blocked", tally.send_blocked)
        .put("failed", tally.failures.total())
        .put("failures", &tally.failures)
        .num("client_cpu_s", cpu.as_secs_f64(), 3)
        .num("client_cpu_pct", cpu.as_secs_f64() / elapsed * 100.0, 1);
    Ok(report)
}

/// Byte `i` of every datagram (bytes 0..8 are then overwritten by the sequence number).
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

impl Peer {
    /// Sends the next datagram; it counts as outstanding even if the kernel would not take it
    /// (then it is lost in [`LOSS_TIMEOUT`], like any other, and a new one replaces it).
    fn send(&mut self, datagram: &mut [u8], now: Instant, tally: &mut Tally) {
        if !self.open {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        datagram[..SEQ_BYTES].copy_from_slice(&seq.to_le_bytes());
        loop {
            match self.socket.send(datagram) {
                Ok(_) => break,
                // The socket's send buffer is full: the datagram did not leave.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tally.send_blocked += 1;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(tally, "send", &e),
            }
        }
        self.outstanding.push((seq, now));
    }

    /// Reads echoes until `WouldBlock`; each one answered is replaced by a new datagram until
    /// `end`.
    fn receive(
        &mut self,
        scratch: &mut [u8],
        datagram: &mut [u8],
        end: Instant,
        tally: &mut Tally,
    ) {
        while self.open {
            let n = match self.socket.recv(scratch) {
                Ok(n) => n,
                // Drained: the next echo raises a new readable edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // E.g. ECONNREFUSED: the server's port is closed (ICMP port unreachable).
                Err(e) => return self.fail(tally, "recv", &e),
            };
            let echo = &scratch[..n];
            if n != datagram.len() || echo[SEQ_BYTES..] != datagram[SEQ_BYTES..] {
                tally.bad += 1;
                continue;
            }
            let mut seq = [0; SEQ_BYTES];
            seq.copy_from_slice(&echo[..SEQ_BYTES]);
            let seq = u64::from_le_bytes(seq);
            let Some(at) = self.outstanding.iter().position(|&(s, _)| s == seq) else {
                tally.late += 1; // declared lost already (or a duplicate)
                continue;
            };
            let (_, sent_at) = self.outstanding.swap_remove(at);
            let now = Instant::now();
            common::record(&mut tally.hist, now - sent_at);
            tally.replies += 1;
            tally.last_reply = Some(now);
            if now < end {
                self.send(datagram, now, tally);
            }
        }
    }

    /// Declares datagrams older than [`LOSS_TIMEOUT`] lost and, until `end`, sends new ones in
    /// their place.
    fn replace_lost(&mut self, now: Instant, datagram: &mut [u8], end: Instant, tally: &mut Tally) {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|&(_, sent_at)| now.saturating_duration_since(sent_at) < LOSS_TIMEOUT);
        let lost = before - self.outstanding.len();
        tally.lost += lost as u64;
        if now < end {
            for _ in 0..lost {
                self.send(datagram, now, tally);
            }
        }
    }

    fn fail(&mut self, tally: &mut Tally, what: &str, e: &io::Error) {
        tally.failures.add(format!("{what}: {e}"));
        self.open = false;
    }
}
