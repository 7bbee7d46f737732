//! Echo ping-pong: `--conns` connections, one `--size`-byte message in flight on each; a
//! message is sent as soon as the previous one came back whole. Measures completed round trips
//! per second and their latency (write of the message → last byte of its echo read).
//!
//! Per message the client makes one `write` and one `read` (plus its share of `epoll_wait`):
//! once the whole echo is in, there can be nothing more to read until the next message is sent,
//! so the `read` that would only say `WouldBlock` is skipped, exactly as the reactor does.
//! Its cost per message is therefore about the server's, which is why the report includes the
//! client's own CPU use: a client at ~100 % of a core while the server is not is the bottleneck.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, Failures, Report};

/// How long a connection may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After the run, how long in-flight messages may take to come back.
const DRAIN: Duration = Duration::from_secs(2);

pub struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    secs: f64,
    threads: usize,
}

impl Args {
    pub fn parse(mut args: pico_args::Arguments) -> Result<Self, String> {
        let parsed = Args {
            addr: common::addr(&mut args, "--addr")?,
            conns: common::opt(&mut args, "--conns", 100)?,
            size: common::opt(&mut args, "--size", 64)?,
            secs: common::opt(&mut args, "--secs", 10.0)?,
            threads: common::opt(&mut args, "--threads", 1)?,
        };
        common::finish(args)?;
        if parsed.conns == 0 || parsed.size == 0 || parsed.threads == 0 || parsed.secs <= 0.0 {
            return Err("--conns, --size, --threads and --secs must be positive".into());
        }
        Ok(parsed)
    }
}

/// What one client thread measured.
struct Outcome {
    hist: Histogram<u64>,
    msgs: u64,
    failures: Failures,
    last_reply: Option<Instant>,
}

pub fn run(args: Args) -> Result<Report, String> {
    common::raise_nofile();
    let threads = args.threads.min(args.conns);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for t in 0..threads {
        // Connections dealt out as evenly as possible.
        let conns = args.conns / threads + usize::from(t < args.conns % threads);
        let barrier = Arc::clone(&barrier);
        let (addr, size, secs) = (args.addr, args.size, args.secs);
        handles.push(std::thread::spawn(move || {
            client(addr, conns, size, Duration::from_secs_f64(secs), &barrier)
        }));
    }
    barrier.wait(); // every thread has connected (or given up): the clock starts now
    let start = Instant::now();
    let cpu_start = common::cpu_time();
    let mut hist = common::histogram();
    let mut msgs = 0;
    let mut failures = Failures::default();
    let mut last_reply = start;
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        hist.add(&outcome.hist).map_err(|e| e.to_string())?;
        msgs += outcome.msgs;
        failures.merge_text(&outcome.failures.to_string());
        last_reply = last_reply.max(outcome.last_reply.unwrap_or(start));
    }
    let cpu = common::cpu_time().saturating_sub(cpu_start);
    // The run lasts until the last echo came back (or, with none, until every thread gave up).
    if msgs == 0 {
        last_reply = Instant::now();
    }
    let elapsed = last_reply.duration_since(start).as_secs_f64().max(1e-3);
    let mut report = Report::new("pingpong");
    report
        .put("conns", args.conns)
        .put("size", args.size)
        .put("threads", threads)
        .num("secs", elapsed, 3)
        .put("msgs", msgs)
        .num("msgs_per_s", msgs as f64 / elapsed, 0)
        .num("p50_us", common::percentile(&hist, 0.50, 1e3), 1)
        .num("p90_us", common::percentile(&hist, 0.90, 1e3), 1)
        .num("p99_us", common::percentile(&hist, 0.99, 1e3), 1)
        .num("p999_us", common::percentile(&hist, 0.999, 1e3), 1)
        .num("max_us", common::percentile(&hist, 1.0, 1e3), 1)
        .put("failed", failures.total())
        .put("failures", &failures)
        .num("client_cpu_s", cpu.as_secs_f64(), 3)
        .num("client_cpu_pct", cpu.as_secs_f64() / elapsed * 100.0, 1);
    Ok(report)
}

/// One connection of a client thread.
struct Conn {
    stream: TcpStream,
    token: Token,
    /// The message in flight (its first byte is a sequence number).
    msg: Vec<u8>,
    /// Bytes of `msg` written so far.
    written: usize,
    /// The echo so far.
    echo: Vec<u8>,
    got: usize,
    sent_at: Instant,
    in_flight: bool,
    writable_registered: bool,
    open: bool,
}

fn client(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    secs: Duration,
    barrier: &Barrier,
) -> Outcome {
    let mut outcome = Outcome {
        hist: common::histogram(),
        msgs: 0,
        failures: Failures::default(),
        last_reply: None,
    };
    let poll = Poll::new();
    let mut events = Events::with_capacity(1024);
    let mut list = Vec::with_capacity(conns);
    if let Ok(poll) = &poll {
        for _ in 0..conns {
            // Tokens are indexes into `list`.
            let token = Token(list.len());
            match connect(addr, poll, token) {
                Ok(stream) => list.push(Conn {
                    stream,
                    token,
                    msg: (0..size).map(|b| b as u8).collect(),
                    written: 0,
                    echo: vec![0; size],
                    got: 0,
                    sent_at: Instant::now(),
                    in_flight: false,
                    writable_registered: false,
                    open: true,
                }),
                Err(e) => outcome.failures.add(format!("connect: {e}")),
            }
        }
    }
    barrier.wait();
    let mut poll = match poll {
        Ok(poll) => poll,
        Err(e) => {
            outcome.failures.add(format!("poll: {e}"));
            return outcome;
        }
    };
    let start = Instant::now();
    let end = start + secs;
    for conn in &mut list {
        if let Err(e) = conn.send(poll.registry(), start) {
            conn.fail(&mut outcome.failures, "write", &e);
        }
    }
    loop {
        let now = Instant::now();
        if now >= end {
            // Counted only once the run is over: no new message starts after `end`.
            let in_flight = list.iter().filter(|c| c.open && c.in_flight).count();
            if in_flight == 0 || now >= end + DRAIN {
                for _ in 0..in_flight {
                    outcome.failures.add("no echo within the drain period");
                }
                return outcome;
            }
        }
        let until = if now < end { end } else { end + DRAIN };
        if let Err(e) = poll.poll(&mut events, Some(until - now))
            && e.kind() != io::ErrorKind::Interrupted
        {
            outcome.failures.add(format!("poll: {e}"));
            return outcome;
        }
        for event in events.iter() {
            let Some(conn) = list.get_mut(event.token().0) else {
                continue;
            };
            if !conn.open {
                continue;
            }
            if event.is_writable()
                && let Err(e) = conn.write_rest(poll.registry())
            {
                conn.fail(&mut outcome.failures, "write", &e);
                continue;
            }
            if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
                continue;
            }
            match conn.read_echo() {
                Ok(false) => {}
                Ok(true) => {
                    let now = Instant::now();
                    if conn.echo != conn.msg {
                        outcome.failures.add("echo differs from the message");
                        conn.open = false;
                        continue;
                    }
                    common::record(&mut outcome.hist, now - conn.sent_at);
                    outcome.msgs += 1;
                    outcome.last_reply = Some(now);
                    if now < end
                        && let Err(e) = conn.send(poll.registry(), now)
                    {
                        conn.fail(&mut outcome.failures, "write", &e);
                    }
                }
                Err(e) => conn.fail(&mut outcome.failures, "read", &e),
            }
        }
    }
}

fn connect(addr: SocketAddr, poll: &Poll, token: Token) -> io::Result<TcpStream> {
    let std = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    std.set_nodelay(true)?;
    std.set_nonblocking(true)?;
    let mut stream = TcpStream::from_std(std);
    poll.registry()
        .register(&mut stream, token, Interest::READABLE)?;
    Ok(stream)
}

impl Conn {
    fn fail(&mut self, failures: &mut Failures, what: &str, e: &io::Error) {
        failures.add(format!("{what}: {e}"));
        self.open = false;
    }

    /// Starts the next message.
    fn send(&mut self, registry: &mio::Registry, now: Instant) -> io::Result<()> {
        self.msg[0] = self.msg[0].wrapping_add(1);
        self.written = 0;
        self.got = 0;
        self.sent_at = now;
        self.in_flight = true;
        self.write_rest(registry)
    }

    /// Writes what is left of the message; asks for `WRITABLE` only if the kernel is full.
    fn write_rest(&mut self, registry: &mio::Registry) -> io::Result<()> {
        while self.written < self.msg.len() {
            match self.stream.write(&self.msg[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let want = self.written < self.msg.len();
        if want != self.writable_registered {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, self.token, interest)?;
            self.writable_registered = want;
        }
        Ok(())
    }

    /// Reads until the echo is whole (`true`) or the socket is drained (`false`).
    fn read_echo(&mut self) -> io::Result<bool> {
        while self.got < self.echo.len() {
            match self.stream.read(&mut self.echo[self.got..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed",
                    ));
                }
                Ok(n) => self.got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Whole: nothing more can arrive until the next message goes out.
        self.in_flight = false;
        Ok(true)
    }
}
