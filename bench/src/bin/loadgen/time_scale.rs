//! Time-stream scale: thousands of concurrent time-stream sessions over TCP and UDP; counts the
//! ticks delivered against those expected and measures each tick's lateness.
//!
//! Lateness of tick `k` (0-based) = its arrival − (when the greeting was sent + k × interval):
//! the server schedules tick `k` at `greeting received + k × interval`, so lateness is the
//! greeting's trip, the server's delay in firing its timer, the tick's trip back and this
//! client's own delay in reading it. Tick 0 goes out as soon as the greeting is read: its
//! lateness is that round trip alone, with no timer in it. So the report gives, beside every
//! tick's percentiles, those of the first ticks (`p50_ms_first`, `p99_ms_first`) and of the
//! others, the ones a timer sent (`p50_ms_timed`, `p99_ms_timed`): how much later the timed
//! ones are is what the server's timers add.
//!
//! **Processes.** A process may hold at most its hard `RLIMIT_NOFILE` descriptors (20,000 on the
//! bench machine, and not raisable there), and every session, TCP or UDP, needs one. So
//! `time-scale` is a coordinator: it starts one `time-scale-worker` process per protocol, or as
//! many as it takes for each to hold its share under that limit (`scripts/bench.sh`'s 100,000
//! sessions: 19,900 TCP in one worker, 80,100 UDP in five), each a single-threaded mio loop over
//! its sessions, and merges their one-line reports (histograms travel as `value:count` text).
//! Each worker learns the number of its first session among its protocol's (`--first`), so
//! session numbers, and the source addresses they pick, run on across workers.
//!
//! **Ramp.** Sessions are opened while fewer than `--window` of them are still waiting for their
//! first tick. 10,000 simultaneous SYNs would overflow the server's listen backlog and 10,000
//! simultaneous greetings its UDP receive buffer; the dropped ones come back a second or more
//! later (TCP's SYN retransmit, our greeting resend), which would be counted as lateness that
//! is the client's doing. The window keeps the ramp as fast as the server accepts. Its default,
//! 100, stays below the listen backlog of 128 that mio (like std) gives a listener — the
//! baselines' (tokio, thread-per-client) — while the reactor's is 1024 (`LISTEN_BACKLOG`): a
//! window of 256 overflowed 128 (`TcpExtListenOverflows`) and the ramp stalled for the 1 s SYN
//! retransmit.
//! Sessions are also spread evenly over `--ramp-ms` (default: one interval), so that, as with
//! clients arriving at random, ticks fall due evenly through each interval instead of all in
//! the same few hundred milliseconds; `--ramp-ms 0` opens them as fast as the window allows.
//!
//! **Source addresses.** Sessions are spread over `--src-ips` loopback addresses (127.0.0.1,
//! 127.0.0.2, … on through 127.0.0.0/8, which Linux routes to `lo` whole): session `n` of a
//! protocol comes from address `n mod --src-ips`. TCP sockets are bound to theirs before they
//! connect (`bind` then a non-blocking `connect`, through socket2), UDP sockets by `bind`. This
//! matters twice. The reactor caps what one source holds (`--max-conns-per-ip`, 100 TCP
//! connections; `--max-udp-sessions-per-ip`, 100 UDP sessions; `--udp-rate-per-ip`, 100
//! datagrams a second each way), so 10,000 sessions from one address would measure the caps,
//! not the server; over 2,000 addresses, 100,000 sessions stay within every per-source default.
//! And a source address has about 28,000 ephemeral ports (`net.ipv4.ip_local_port_range`,
//! 32768–60999), which one address cannot stretch to 100,000 sessions.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, Failures, Report};

/// A TCP connection still connecting after this long has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// With no first tick this long after the greeting, a UDP greeting is sent again.
const GREETING_RESEND: Duration = Duration::from_secs(1);
/// Greeting resends before a UDP session counts as failed.
const GREETING_TRIES: u32 = 3;
/// A session whose last tick or `Au Revoir` is this late has failed.
const GRACE: Duration = Duration::from_secs(3);
/// How long to wait for the server's FIN after `Au Revoir`.
const FIN_WAIT: Duration = Duration::from_secs(2);
/// How often sessions are checked against their deadlines.
const SWEEP: Duration = Duration::from_millis(100);
/// Descriptors a worker keeps for itself (epoll, stdio, …) besides its sessions.
const SPARE_FDS: u64 = 64;

pub struct Args {
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    sessions_tcp: usize,
    sessions_udp: usize,
    ticks: u32,
    interval_ms: u64,
    src_ips: u32,
    window: usize,
    ramp_ms: Option<u64>,
}

impl Args {
    pub fn parse(mut args: pico_args::Arguments) -> Result<Self, String> {
        let parsed = Args {
            tcp: common::optional_addr(&mut args, "--tcp")?,
            udp: common::optional_addr(&mut args, "--udp")?,
            sessions_tcp: common::opt(&mut args, "--sessions-tcp", 10_000)?,
            sessions_udp: common::opt(&mut args, "--sessions-udp", 10_000)?,
            ticks: common::opt(&mut args, "--ticks", 10)?,
            interval_ms: common::opt(&mut args, "--interval-ms", 1000)?,
            src_ips: common::opt(&mut args, "--src-ips", 100)?,
            window: common::opt(&mut args, "--window", 100)?,
            ramp_ms: args
                .opt_value_from_str("--ramp-ms")
                .map_err(|e| e.to_string())?,
        };
        common::finish(args)?;
        if parsed.ticks == 0 || parsed.interval_ms == 0 || parsed.src_ips == 0 || parsed.window == 0
        {
            return Err("--ticks, --interval-ms, --src-ips and --window must be positive".into());
        }
        if parsed.src_ips > common::MAX_SRC_IPS {
            return Err(format!(
                "--src-ips: at most {} (127.0.0.1 to 127.255.255.254)",
                common::MAX_SRC_IPS
            ));
        }
        if parsed.tcp.is_none() && parsed.udp.is_none() {
            return Err("nothing to do: give --tcp or --udp".into());
        }
        Ok(parsed)
    }
}

/// One worker's share.
pub struct WorkerArgs {
    proto: Proto,
    addr: SocketAddr,
    /// The number of this worker's first session among all of its protocol's.
    first: usize,
    sessions: usize,
    ticks: u32,
    interval: Duration,
    src_ips: u32,
    window: usize,
    ramp: Duration,
}

impl WorkerArgs {
    pub fn parse(mut args: pico_args::Arguments) -> Result<Self, String> {
        let proto: String = args.value_from_str("--proto").map_err(|e| e.to_string())?;
        let parsed = WorkerArgs {
            proto: match proto.as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => return Err(format!("--proto: '{other}' is not tcp or udp")),
            },
            addr: common::addr(&mut args, "--addr")?,
            first: common::opt(&mut args, "--first", 0)?,
            sessions: common::opt(&mut args, "--sessions", 1)?,
            ticks: common::opt(&mut args, "--ticks", 10)?,
            interval: Duration::from_millis(common::opt(&mut args, "--interval-ms", 1000)?),
            src_ips: common::opt(&mut args, "--src-ips", 1)?,
            window: common::opt(&mut args, "--window", 100)?,
            ramp: Duration::from_millis(common::opt(&mut args, "--ramp-ms", 0)?),
        };
        common::finish(args)?;
        Ok(parsed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The coordinator

/// The merged figures of one protocol.
#[derive(Default)]
struct Totals {
    sessions: u64,
    ok: u64,
    ticks: u64,
    expected: u64,
    early: u64,
    resends: u64,
    no_fin: u64,
    peak_live: u64,
    ramp_s: f64,
    failures: Failures,
    /// Lateness of every tick.
    hist: Option<Histogram<u64>>,
    /// Lateness of each session's first tick, sent as the greeting is read: a round trip with
    /// no timer in it.
    first: Option<Histogram<u64>>,
}

impl Totals {
    fn merge(&mut self, line: &str) -> Result<(), String> {
        let mut hist = self.hist.take().unwrap_or_else(common::histogram);
        let mut first = self.first.take().unwrap_or_else(common::histogram);
        for pair in line.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let number = || value.parse::<u64>().unwrap_or(0);
            match key {
                "sessions" => self.sessions += number(),
                "ok" => self.ok += number(),
                "ticks" => self.ticks += number(),
                "expected" => self.expected += number(),
                "early" => self.early += number(),
                "resends" => self.resends += number(),
                "no_fin" => self.no_fin += number(),
                "peak_live" => self.peak_live += number(),
                "ramp_s" => self.ramp_s = self.ramp_s.max(value.parse().unwrap_or(0.0)),
                "failures" => self.failures.merge_text(value),
                "hist" => common::decode_into(&mut hist, value)?,
                "hist_first" => common::decode_into(&mut first, value)?,
                _ => {}
            }
        }
        self.hist = Some(hist);
        self.first = Some(first);
        Ok(())
    }

    fn put(&self, report: &mut Report, suffix: &str) {
        let hist = self.hist.clone().unwrap_or_else(common::histogram);
        let first = self.first.clone().unwrap_or_else(common::histogram);
        // The ticks a timer sent: all of them but the first of each session.
        let mut timed = hist.clone();
        if timed.subtract(&first).is_err() {
            timed.reset(); // cannot happen: the first ticks are among all the ticks
        }
        let key = |name: &str| format!("{name}{suffix}");
        report
            .put(&key("sessions"), self.sessions)
            .put(&key("ok"), self.ok)
            .put(&key("failed"), self.sessions - self.ok.min(self.sessions))
            .put(&key("ticks"), self.ticks)
            .put(&key("expected"), self.expected)
            .num(&key("p50_ms"), common::percentile(&hist, 0.50, 1e6), 2)
            .num(&key("p99_ms"), common::percentile(&hist, 0.99, 1e6), 2)
            .num(&key("max_ms"), common::percentile(&hist, 1.0, 1e6), 2)
            .num(&key("p50_ms_first"), common::percentile(&first, 0.50, 1e6), 2)
            .num(&key("p99_ms_first"), common::percentile(&first, 0.99, 1e6), 2)
            .num(&key("p50_ms_timed"), common::percentile(&timed, 0.50, 1e6), 2)
            .num(&key("p99_ms_timed"), common::percentile(&timed, 0.99, 1e6), 2)
            .put(&key("peak_live"), self.peak_live)
            .num(&key("ramp_s"), self.ramp_s, 2)
            .put(&key("early"), self.early)
            .put(&key("resends"), self.resends)
            .put(&key("no_fin"), self.no_fin)
            .put(&key("failures"), &self.failures);
    }
}

pub fn run(args: Args) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let ramp_ms = args.ramp_ms.unwrap_or(args.interval_ms);
    let per_process = (common::nofile_hard().saturating_sub(SPARE_FDS)).max(1) as usize;
    let mut children: Vec<(Proto, Child)> = Vec::new();
    let mut spawn_error = None;
    for (proto, addr, sessions) in [
        (Proto::Tcp, args.tcp, args.sessions_tcp),
        (Proto::Udp, args.udp, args.sessions_udp),
    ] {
        let Some(addr) = addr else { continue };
        let shards = sessions.div_ceil(per_process).max(1);
        let mut first = 0;
        for shard in 0..shards {
            let share = sessions / shards + usize::from(shard < sessions % shards);
            let spawned = Command::new(&exe)
                .arg("time-scale-worker")
                .args(["--proto", proto.name()])
                .args(["--addr", &addr.to_string()])
                .args(["--first", &first.to_string()])
                .args(["--sessions", &share.to_string()])
                .args(["--ticks", &args.ticks.to_string()])
                .args(["--interval-ms", &args.interval_ms.to_string()])
                .args(["--src-ips", &args.src_ips.to_string()])
                .args(["--window", &args.window.to_string()])
                .args(["--ramp-ms", &ramp_ms.to_string()])
                .stdout(Stdio::piped())
                .spawn();
            first += share;
            match spawned {
                Ok(child) => children.push((proto, child)),
                Err(e) => spawn_error = Some(format!("cannot start a worker: {e}")),
            }
        }
    }
    // Every worker ends on its own (its waits are bounded); this is the backstop.
    let ticks_time = Duration::from_millis(args.interval_ms) * args.ticks;
    let hard_deadline = Instant::now() + ticks_time * 2 + Duration::from_secs(60);
    let mut totals = [Totals::default(), Totals::default()];
    let mut worker_errors = Vec::new();
    for (proto, child) in children {
        match collect(child, hard_deadline) {
            Ok(line) => totals[proto as usize].merge(&line)?,
            Err(e) => worker_errors.push(format!("{} worker: {e}", proto.name())),
        }
    }
    if let Some(e) = spawn_error {
        worker_errors.push(e);
    }
    let mut all = Totals::default();
    let mut hist = common::histogram();
    for t in &totals {
        if let Some(h) = &t.hist {
            hist.add(h).map_err(|e| e.to_string())?;
        }
        all.sessions += t.sessions;
        all.ok += t.ok;
        all.ticks += t.ticks;
        all.expected += t.expected;
        all.early += t.early;
        all.resends += t.resends;
        all.no_fin += t.no_fin;
        all.peak_live += t.peak_live;
        all.ramp_s = all.ramp_s.max(t.ramp_s);
        all.failures.merge_text(&t.failures.to_string());
    }
    all.hist = Some(hist);
    let mut first = common::histogram();
    for h in totals.iter().filter_map(|t| t.first.as_ref()) {
        first.add(h).map_err(|e| e.to_string())?;
    }
    all.first = Some(first);
    let mut report = Report::new("time-scale");
    report
        .put("ticks_per_session", args.ticks)
        .put("interval_ms", args.interval_ms)
        .put("ramp_ms", ramp_ms);
    all.put(&mut report, "");
    totals[Proto::Tcp as usize].put(&mut report, "_tcp");
    totals[Proto::Udp as usize].put(&mut report, "_udp");
    report.num("client_cpu_s", children_cpu().as_secs_f64(), 3);
    report.put(
        "worker_errors",
        if worker_errors.is_empty() {
            "-".to_owned()
        } else {
            worker_errors.join(";")
        },
    );
    Ok(report)
}

/// Waits for a worker (killing it at `deadline`) and returns its report line.
fn collect(mut child: Child, deadline: Instant) -> Result<String, String> {
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not finish in time, killed".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let text = reader
        .join()
        .map_err(|_| "reader panicked".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    Ok(text.lines().last().unwrap_or_default().to_owned())
}

/// CPU time of the waited-for worker processes.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// A worker: one protocol, one mio loop

enum Sock {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not opened yet.
    Idle,
    /// TCP only: `connect` in progress.
    Connecting,
    /// Greeting sent, no tick yet.
    Greeted,
    /// At least one tick received.
    Streaming,
    /// `Au Revoir` after all ticks; TCP waits for the server's FIN.
    Finishing,
    Ok,
    Failed,
}

struct Session {
    sock: Option<Sock>,
    state: State,
    /// When `connect` started (TCP), then when the greeting was (last) sent.
    since: Instant,
    ticks: u32,
    /// A TCP line not yet complete.
    line: Vec<u8>,
    resends: u32,
}

/// The worker's running figures.
struct Tally {
    hist: Histogram<u64>,
    /// The first tick of each session (also in `hist`).
    first: Histogram<u64>,
    ticks: u64,
    ok: u64,
    early: u64,
    resends: u64,
    no_fin: u64,
    live: u64,
    peak_live: u64,
    /// Sessions opened and not yet past their first tick (the ramp window).
    pending: usize,
    failures: Failures,
    last_first_tick: Option<Instant>,
}

pub fn run_worker(args: WorkerArgs) -> Result<Report, String> {
    let limit = common::raise_nofile();
    if args.sessions as u64 + SPARE_FDS > limit {
        return Err(format!(
            "{} sessions need more descriptors than RLIMIT_NOFILE allows ({limit})",
            args.sessions
        ));
    }
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut scratch = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut sessions: Vec<Session> = (0..args.sessions)
        .map(|_| Session {
            sock: None,
            state: State::Idle,
            since: start,
            ticks: 0,
            line: Vec::new(),
            resends: 0,
        })
        .collect();
    let mut tally = Tally {
        hist: common::histogram(),
        first: common::histogram(),
        ticks: 0,
        ok: 0,
        early: 0,
        resends: 0,
        no_fin: 0,
        live: 0,
        peak_live: 0,
        pending: 0,
        failures: Failures::default(),
        last_first_tick: None,
    };
    let mut next = 0; // the next session to open
    let mut next_sweep = start + SWEEP;
    // Backstop: every session has its own deadline; this bounds the ramp.
    let hard_deadline = start + args.interval * args.ticks * 2 + Duration::from_secs(60);
    let mut done = 0;
    while done < args.sessions {
        // Session `i` opens no earlier than `i/n` of the way through the ramp.
        let due = |i: usize| start + args.ramp.mul_f64(i as f64 / args.sessions as f64);
        while tally.pending < args.window && next < args.sessions && due(next) <= Instant::now() {
            open(&args, next, &mut sessions[next], &poll, &mut tally);
            if matches!(sessions[next].state, State::Failed) {
                done += 1;
            }
            next += 1;
        }
        let now = Instant::now();
        if now >= hard_deadline {
            for s in sessions.iter_mut().filter(|s| !is_over(s.state)) {
                if s.state == State::Idle {
                    s.state = State::Failed; // never opened, so not in the ramp window
                    tally.failures.add("not opened by the run deadline");
                } else {
                    fail(s, &mut tally, "run deadline");
                }
            }
            break;
        }
        let mut wake = next_sweep;
        if next < args.sessions && tally.pending < args.window {
            wake = wake.min(due(next));
        }
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            let Some(session) = sessions.get_mut(i) else {
                continue;
            };
            if is_over(session.state) {
                continue;
            }
            on_event(&args, i, session, event, &mut scratch, &mut tally);
            if is_over(session.state) {
                close(session, &poll);
                done += 1;
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            for (i, session) in sessions.iter_mut().enumerate() {
                if is_over(session.state) || session.state == State::Idle {
                    continue;
                }
                sweep(&args, i, session, now, &mut tally);
                if is_over(session.state) {
                    close(session, &poll);
                    done += 1;
                }
            }
        }
    }
    let ramp = tally
        .last_first_tick
        .map_or(0.0, |at| at.duration_since(start).as_secs_f64());
    let mut report = Report::new("time-scale-worker");
    report
        .put("proto", args.proto.name())
        .put("sessions", args.sessions)
        .put("ok", tally.ok)
        .put("ticks", tally.ticks)
        .put("expected", args.sessions as u64 * u64::from(args.ticks))
        .put("early", tally.early)
        .put("resends", tally.resends)
        .put("no_fin", tally.no_fin)
        .put("peak_live", tally.peak_live)
        .num("ramp_s", ramp, 3)
        .put("failures", &tally.failures)
        .put("hist", common::encode(&tally.hist))
        .put("hist_first", common::encode(&tally.first));
    Ok(report)
}

fn is_over(state: State) -> bool {
    matches!(state, State::Ok | State::Failed)
}

/// The greeting of this worker's session `i`, numbered among all of its protocol's sessions.
fn greeting(args: &WorkerArgs, i: usize) -> String {
    format!("Bonjour {}\n", args.first + i)
}

/// Opens session `i`: starts a TCP connect, or binds a UDP socket and sends the greeting.
fn open(args: &WorkerArgs, i: usize, s: &mut Session, poll: &Poll, tally: &mut Tally) {
    let now = Instant::now();
    s.since = now;
    tally.pending += 1;
    let opened = match args.proto {
        Proto::Tcp => tcp_connect(args, i).and_then(|mut stream| {
            poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            s.state = State::Connecting;
            Ok(Sock::Tcp(stream))
        }),
        Proto::Udp => {
            common::udp_socket(args.addr, args.src_ips, args.first + i).and_then(|mut socket| {
                poll.registry()
                    .register(&mut socket, Token(i), Interest::READABLE)?;
                socket.send(greeting(args, i).trim_end().as_bytes())?;
                s.state = State::Greeted;
                tally.live += 1;
                tally.peak_live = tally.peak_live.max(tally.live);
                Ok(Sock::Udp(socket))
            })
        }
    };
    match opened {
        Ok(sock) => s.sock = Some(sock),
        Err(e) => fail(s, tally, &format!("open: {e}")),
    }
}

/// A non-blocking TCP connect from session `i`'s source address ([`common::source_addr`] of its
/// number): `bind`, then `connect`, which returns `EINPROGRESS` at once; the socket turns
/// writable when the handshake is done.
fn tcp_connect(args: &WorkerArgs, i: usize) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(args.addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&common::source_addr(args.addr, args.src_ips, args.first + i).into())?;
    match socket.connect(&args.addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

fn fail(s: &mut Session, tally: &mut Tally, reason: &str) {
    match s.state {
        State::Connecting | State::Idle => tally.pending -= 1,
        State::Greeted => {
            tally.pending -= 1;
            tally.live -= 1;
        }
        State::Streaming | State::Finishing => tally.live -= 1,
        State::Ok | State::Failed => return,
    }
    let reason = if s.ticks > 0 && s.state == State::Streaming {
        format!("{reason} (after some ticks)")
    } else {
        reason.to_owned()
    };
    tally.failures.add(reason);
    s.state = State::Failed;
}

fn succeed(s: &mut Session, tally: &mut Tally) {
    tally.live -= 1;
    tally.ok += 1;
    s.state = State::Ok;
}

fn close(s: &mut Session, poll: &Poll) {
    match s.sock.take() {
        Some(Sock::Tcp(mut stream)) => {
            let _ = poll.registry().deregister(&mut stream);
        }
        Some(Sock::Udp(mut socket)) => {
            let _ = poll.registry().deregister(&mut socket);
        }
        None => {}
    }
    s.line = Vec::new();
}

fn on_event(
    args: &WorkerArgs,
    i: usize,
    s: &mut Session,
    event: &mio::event::Event,
    scratch: &mut [u8],
    tally: &mut Tally,
) {
    if s.state == State::Connecting {
        let Some(Sock::Tcp(stream)) = &mut s.sock else {
            return;
        };
        if let Ok(Some(e)) | Err(e) = stream.take_error() {
            return fail(s, tally, &format!("connect: {e}"));
        }
        match stream.peer_addr() {
            Ok(_) => {}
            // Not connected yet: a later event will say so.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return fail(s, tally, &format!("connect: {e}")),
        }
        if let Err(e) = stream.set_nodelay(true) {
            return fail(s, tally, &format!("nodelay: {e}"));
        }
        let hello = greeting(args, i);
        match stream.write(hello.as_bytes()) {
            Ok(n) if n == hello.len() => {}
            Ok(_) => return fail(s, tally, "greeting written in part"),
            Err(e) => return fail(s, tally, &format!("greeting: {e}")),
        }
        s.state = State::Greeted;
        s.since = Instant::now();
        tally.live += 1;
        tally.peak_live = tally.peak_live.max(tally.live);
        // Data may already be waiting: fall through and read.
    }
    if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
        return;
    }
    match &mut s.sock {
        Some(Sock::Tcp(_)) => read_tcp(args, s, scratch, tally),
        Some(Sock::Udp(_)) => read_udp(args, s, scratch, tally),
        None => {}
    }
}

fn read_tcp(args: &WorkerArgs, s: &mut Session, scratch: &mut [u8], tally: &mut Tally) {
    loop {
        let Some(Sock::Tcp(stream)) = &mut s.sock else {
            return;
        };
        match stream.read(scratch) {
            Ok(0) => {
                return if s.state == State::Finishing {
                    succeed(s, tally)
                } else {
                    fail(s, tally, &format!("closed after {} ticks", s.ticks))
                };
            }
            Ok(n) => {
                let now = Instant::now();
                for &byte in &scratch[..n] {
                    if byte != b'\n' {
                        if s.line.len() < 256 {
                            s.line.push(byte);
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut s.line);
                    let text = line.strip_suffix(b"\r").unwrap_or(&line);
                    on_message(args, s, text, now, tally);
                    if is_over(s.state) {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return fail(s, tally, &format!("read: {e}")),
        }
    }
}

fn read_udp(args: &WorkerArgs, s: &mut Session, scratch: &mut [u8], tally: &mut Tally) {
    loop {
        let Some(Sock::Udp(socket)) = &mut s.sock else {
            return;
        };
        match socket.recv(scratch) {
            Ok(n) => {
                let now = Instant::now();
                on_message(args, s, &scratch[..n], now, tally);
                if is_over(s.state) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return fail(s, tally, &format!("recv: {e}")),
        }
    }
}

/// One tick line / datagram, or `Au Revoir`.
fn on_message(args: &WorkerArgs, s: &mut Session, text: &[u8], now: Instant, tally: &mut Tally) {
    if text == b"Au Revoir" {
        if s.ticks != args.ticks {
            return fail(s, tally, &format!("Au Revoir after {} ticks", s.ticks));
        }
        return match args.proto {
            Proto::Tcp => {
                s.state = State::Finishing;
                s.since = now;
            }
            Proto::Udp => succeed(s, tally),
        };
    }
    if !looks_like_time(text) {
        return fail(s, tally, "not a tick line");
    }
    if s.ticks >= args.ticks {
        return fail(s, tally, "more ticks than --ticks");
    }
    let due = s.since + args.interval * s.ticks;
    let late = now.checked_duration_since(due).unwrap_or_else(|| {
        tally.early += 1;
        Duration::ZERO
    });
    common::record(&mut tally.hist, late);
    if s.ticks == 0 {
        common::record(&mut tally.first, late);
    }
    if s.ticks == 0 {
        tally.pending -= 1;
        tally.last_first_tick = Some(now);
        s.state = State::Streaming;
    }
    s.ticks += 1;
    tally.ticks += 1;
}

/// `YYYY-MM-DD HH:MM:SS`.
fn looks_like_time(text: &[u8]) -> bool {
    text.len() == 19
        && text.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// Deadlines: connect, first tick (with UDP greeting resends), last tick, FIN.
fn sweep(args: &WorkerArgs, i: usize, s: &mut Session, now: Instant, tally: &mut Tally) {
    let waited = now.saturating_duration_since(s.since);
    match s.state {
        State::Connecting if waited > CONNECT_TIMEOUT => fail(s, tally, "connect timeout"),
        State::Greeted if args.proto == Proto::Udp && waited > GREETING_RESEND => {
            if s.resends >= GREETING_TRIES {
                return fail(s, tally, "no first tick (greeting resent)");
            }
            if let Some(Sock::Udp(socket)) = &s.sock {
                let _ = socket.send(greeting(args, i).trim_end().as_bytes());
            }
            s.resends += 1;
            tally.resends += 1;
            // Lateness is measured from the greeting that started the session: the last one.
            s.since = now;
        }
        State::Greeted if waited > CONNECT_TIMEOUT => fail(s, tally, "no first tick"),
        State::Streaming if waited > args.interval * (args.ticks - 1) + GRACE => {
            fail(s, tally, "ticks missing at the deadline")
        }
        State::Finishing if waited > FIN_WAIT => {
            tally.no_fin += 1;
            succeed(s, tally);
        }
        _ => {}
    }
}
