//! The door between the loop and a protocol: everything a service may see and do.
//!
//! A service is a state machine that never touches a socket. The plumbing (`server/`) owns the
//! sockets and calls a service's entry points; the service answers with bytes and a [`Next`]:
//!
//! - a **TCP service** ([`TcpService`]), one per connection, hears about the connection opening,
//!   input, the end of input, its timers and shutdown, and writes to an [`Output`];
//! - a **UDP service** ([`UdpService`]), one per bound UDP socket, hears about datagrams, its
//!   timers and shutdown, and sends through an [`Outbox`].
//!
//! Each entry point also gets an [`Env`]: the time of this loop turn, the [`ServiceSettings`],
//! the wall clock, [`Env::set_timer`], [`Env::observe`] (a service's own figures for the
//! metrics: how late its ticks went out, how many sessions it holds, whom it turned away) and
//! [`Env::render`] (the pages of numbers the plumbing keeps, for the metrics endpoint). Nothing
//! else of the loop is reachable from here: no token, no registry, no rate limiter, no counter.
//! This module imports nothing from `server/`, so a service can be driven by hand in a unit
//! test — crafted input, a `Vec` as the outbox, the timer list and the observations, time
//! passed in — exactly as the loop drives it.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::clock::WallClock;
pub use super::output::{OutBuf, Output, OutputFull};

/// What the plumbing should do with a TCP connection after an entry point returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep serving.
    Continue,
    /// The service is done: write what is in the output buffer, then close (FIN).
    Close,
}

/// A service's name for one of its timers (which session, which step). Each owner has its own
/// tag space: the plumbing's housekeeping timers (idle timeout, linger) are kept apart by the
/// loop and never reach a service, so every `u64` is free for the service to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerTag(pub u64);

impl fmt::Display for TimerTag {
    /// A timer no one named: `service timer 0x2a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service timer {:#x}", self.0)
    }
}

/// Where [`Env::set_timer`] files a timer: the loop's heap under the owner's token, or, in a
/// unit test, a plain list.
pub trait Timers {
    fn set(&mut self, deadline: Instant, tag: TimerTag);
}

impl Timers for Vec<(Instant, TimerTag)> {
    fn set(&mut self, deadline: Instant, tag: TimerTag) {
        self.push((deadline, tag));
    }
}

/// What a service tells the plumbing about its own work, for the metrics ([`Env::observe`]).
/// The plumbing counts bytes, connections and datagrams itself; these are the figures only the
/// service knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A scheduled message went out this long after its deadline (a time-stream tick: the
    /// service knows the deadline, and `Env::now` is when the loop got to it). The service's
    /// own measure of its quality.
    Lateness(Duration),
    /// The service now holds this many live sessions (the UDP time stream's table).
    LiveSessions(usize),
    /// The service turned a client away: a connection it closes, or a datagram it leaves
    /// unanswered, for this reason.
    Rejected(Rejection),
}

/// Why a service turned a client away. Each is counted under its [`Rejection::name`] (the
/// `reason` label of the metrics), next to the reasons the plumbing counts itself (access
/// lists, per-source limits, rate limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A TCP time-stream client did not finish its greeting within `--greeting-timeout-ms`.
    GreetingTimeout,
    /// A TCP time-stream greeting longer than the service accepts.
    LineTooLong,
    /// A UDP time-stream peer found the session table full (`--max-udp-sessions`).
    SessionTableFull,
    /// A UDP time-stream peer whose source holds `--max-udp-sessions-per-ip` sessions.
    SourceSessionsFull,
    /// A UDP echo request from a privileged source port (the reflection-loop guard).
    PrivilegedPort,
    /// An HTTP client did not finish its request head in time.
    RequestTimeout,
    /// An HTTP request head over the size the endpoint reads.
    HeadTooLarge,
    /// An HTTP request that is not HTTP.
    BadRequest,
}

impl Rejection {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Rejection; 8] = [
        Rejection::GreetingTimeout,
        Rejection::LineTooLong,
        Rejection::SessionTableFull,
        Rejection::SourceSessionsFull,
        Rejection::PrivilegedPort,
        Rejection::RequestTimeout,
        Rejection::HeadTooLarge,
        Rejection::BadRequest,
    ];

    /// The reason as the metrics name it (a label value: lower case, no spaces).
    pub fn name(self) -> &'static str {
        match self {
            Rejection::GreetingTimeout => "greeting_timeout",
            Rejection::LineTooLong => "line_too_long",
            Rejection::SessionTableFull => "max_udp_sessions",
            Rejection::SourceSessionsFull => "max_udp_sessions_per_ip",
            Rejection::PrivilegedPort => "privileged_source_port",
            Rejection::RequestTimeout => "request_timeout",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::BadRequest => "bad_request",
        }
    }
}

/// Where [`Env::observe`] sends a service's observations: the loop's counters, or, in a unit
/// test, a plain list.
pub trait Observer {
    fn observe(&mut self, what: Observation);
}

impl Observer for Vec<Observation> {
    fn observe(&mut self, what: Observation) {
        self.push(what);
    }
}

/// A page of the numbers the plumbing keeps, as the metrics endpoint serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// The Prometheus text exposition format (version 0.0.4), for `GET /metrics`.
    Metrics,
    /// A plain-text status page for people, for `GET /`.
    Status,
}

/// Draws a [`Page`] ([`Env::render`]): the plumbing owns the numbers, so it writes the text;
/// the service only answers requests and frames the response.
pub trait Pages {
    /// Appends the whole page to `out`.
    fn render(&self, page: Page, out: &mut String);
}

/// What the protocols need to know from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Lines per time-stream session before `Au Revoir`.
    pub ticks: u32,
    /// Time between two ticks of one session.
    pub interval: Duration,
    /// How long a time-stream client has, from accept, to finish its greeting line.
    pub greeting_timeout: Duration,
    /// Live UDP time-stream sessions in total.
    pub max_udp_sessions: usize,
    /// Live UDP time-stream sessions per source IP.
    pub max_udp_sessions_per_ip: usize,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            ticks: 60,
            interval: Duration::from_millis(1000),
            greeting_timeout: Duration::from_millis(5000),
            max_udp_sessions: 10_000,
            max_udp_sessions_per_ip: 100,
        }
    }
}

/// What every entry point may use besides its own input and output.
pub struct Env<'a> {
    /// The time of this loop turn: everything done in one turn agrees on it.
    pub now: Instant,
    pub settings: &'a ServiceSettings,
    pub clock: &'a mut WallClock,
    timers: &'a mut dyn Timers,
    observer: &'a mut dyn Observer,
    pages: &'a dyn Pages,
}

impl<'a> Env<'a> {
    pub fn new(
        now: Instant,
        settings: &'a ServiceSettings,
        clock: &'a mut WallClock,
        timers: &'a mut dyn Timers,
        observer: &'a mut dyn Observer,
        pages: &'a dyn Pages,
    ) -> Self {
        Env {
            now,
            settings,
            clock,
            timers,
            observer,
            pages,
        }
    }

    /// Asks for `on_timer(tag)` at `deadline` (or as soon after as the loop gets to it).
    pub fn set_timer(&mut self, deadline: Instant, tag: TimerTag) {
        self.timers.set(deadline, tag);
    }

    /// Reports one of the service's own figures for the metrics. It costs what the plumbing's
    /// own counting costs: an integer add, no allocation, no lock.
    pub fn observe(&mut self, what: Observation) {
        self.observer.observe(what);
    }

    /// Appends a page of the plumbing's numbers to `out` (the metrics endpoint's body).
    pub fn render(&self, page: Page, out: &mut String) {
        self.pages.render(page, out);
    }
}

/// A TCP service's per-connection state machine. Once an entry point returns [`Next::Close`]
/// the service is not called again; any input that still arrives is discarded by the plumbing.
pub trait TcpService: Send {
    /// The connection was just accepted.
    fn on_open(&mut self, env: &mut Env, out: &mut Output) -> Next;
    /// Bytes arrived: never more than [`TcpService::input_room`] allowed.
    fn on_input(&mut self, input: &[u8], env: &mut Env, out: &mut Output) -> Next;
    /// The peer sent FIN: no more input will come (it may still read). By default the
    /// service is done then.
    fn on_input_closed(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Close
    }
    /// A timer set with [`Env::set_timer`] is due.
    fn on_timer(&mut self, _tag: TimerTag, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }
    /// Whether the timer `tag` still matters. A stale one is dropped before it can wake the
    /// loop; when unsure, say `true` (the timer then fires and is ignored).
    fn timer_is_live(&self, _tag: TimerTag) -> bool {
        true
    }
    /// What to call the timer `tag` in `--trace-events` (`tick 3/5`, `greeting deadline`):
    /// the learner watching the loop reads its timers by these names. Called only while
    /// tracing.
    fn describe_timer(&self, tag: TimerTag) -> String {
        tag.to_string()
    }
    /// The server is stopping: say goodbye if the protocol has a goodbye.
    fn on_shutdown(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Close
    }
    /// How many input bytes the service can take now. 0 pauses reading (backpressure) until
    /// output drains; the plumbing then reads again on its own, since no new readable edge
    /// will come for bytes already waiting in the kernel.
    fn input_room(&self, _out: &OutBuf) -> usize {
        usize::MAX
    }
    /// Everything queued has been written and the connection is still serving. A service with
    /// more to say than the output buffer holds (the metrics endpoint's pages) goes on here,
    /// a buffer's worth at a time.
    fn on_output_drained(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }
}

/// Where a UDP service's datagrams go: the plumbing sends each one (`sendto(2)`), queues it
/// while the kernel's buffer is full, or drops it (a full queue, a destination over its
/// budget); a unit test keeps them in a `Vec`.
pub trait Outbox {
    /// Sends `payload` to `peer`, or queues it; returns false if it was dropped.
    fn send_to(&mut self, payload: &[u8], peer: SocketAddr) -> bool;
    /// Logs one line about `peer` at info level (`<service> udp <peer>: <line>`) if the
    /// socket's log budget allows: a datagram costs an attacker nothing and can carry any
    /// source address, so lines about UDP peers are rationed; those over the budget are
    /// counted and summed up in one line a second. Whatever came from the peer must be
    /// escaped in `line` (`{:?}`).
    fn log(&mut self, peer: SocketAddr, line: fmt::Arguments<'_>);
}

impl Outbox for Vec<(SocketAddr, Vec<u8>)> {
    fn send_to(&mut self, payload: &[u8], peer: SocketAddr) -> bool {
        self.push((peer, payload.to_vec()));
        true
    }

    /// A unit test's outbox logs without a budget.
    fn log(&mut self, peer: SocketAddr, line: fmt::Arguments<'_>) {
        log::info!("udp {peer}: {line}");
    }
}

/// A UDP service: one per bound UDP socket, keeping whatever per-peer state it needs.
pub trait UdpService: Send {
    /// A datagram (possibly empty) arrived from `peer`.
    fn on_datagram(
        &mut self,
        payload: &[u8],
        peer: SocketAddr,
        env: &mut Env,
        out: &mut dyn Outbox,
    );
    /// A timer set with [`Env::set_timer`] is due.
    fn on_timer(&mut self, _tag: TimerTag, _env: &mut Env, _out: &mut dyn Outbox) {}
    /// Whether the timer `tag` still matters (as for [`TcpService::timer_is_live`]: when
    /// unsure, `true`; a forgotten override costs a wakeup, never a lost timer).
    fn timer_is_live(&self, _tag: TimerTag) -> bool {
        true
    }
    /// What to call the timer `tag` in `--trace-events` (as for
    /// [`TcpService::describe_timer`]: `tick 2/3 to 192.0.2.7:4000`).
    fn describe_timer(&self, tag: TimerTag) -> String {
        tag.to_string()
    }
    /// The server is stopping: say goodbye to every session.
    fn on_shutdown(&mut self, _env: &mut Env, _out: &mut dyn Outbox) {}
    /// Whether the service keeps per-peer sessions, and logs each one itself (with
    /// [`Outbox::log`]). For a service that answers each datagram on its own, the plumbing
    /// logs one line per exchange: what came in, what went out.
    fn keeps_sessions(&self) -> bool {
        false
    }
}

/// What a unit test needs to call an entry point by hand: settings, a wall clock, lists that
/// collect the timers set and the observations made, and pages of fixed text, with the time in
/// the test's hands.
#[cfg(test)]
pub struct TestEnv {
    pub now: Instant,
    pub settings: ServiceSettings,
    pub clock: WallClock,
    pub timers: Vec<(Instant, TimerTag)>,
    pub observed: Vec<Observation>,
    pub pages: TestPages,
}

/// Pages of fixed text for a unit test.
#[cfg(test)]
#[derive(Default)]
pub struct TestPages {
    pub metrics: String,
    pub status: String,
}

#[cfg(test)]
impl Pages for TestPages {
    fn render(&self, page: Page, out: &mut String) {
        out.push_str(match page {
            Page::Metrics => &self.metrics,
            Page::Status => &self.status,
        });
    }
}

#[cfg(test)]
impl TestEnv {
    pub fn new(settings: ServiceSettings) -> Self {
        TestEnv {
            now: Instant::now(),
            settings,
            clock: WallClock::default(),
            timers: Vec::new(),
            observed: Vec::new(),
            pages: TestPages::default(),
        }
    }

    pub fn env(&mut self) -> Env<'_> {
        Env::new(
            self.now,
            &self.settings,
            &mut self.clock,
            &mut self.timers,
            &mut self.observed,
            &self.pages,
        )
    }
}

/// The datagrams a UDP service sent in a unit test.
#[cfg(test)]
pub type Sent = Vec<(SocketAddr, Vec<u8>)>;
