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
//! the wall clock, and [`Env::set_timer`]. Nothing else of the loop is reachable from here: no
//! token, no registry, no rate limiter. This module imports nothing from `server/`, so a service
//! can be driven by hand in a unit test — crafted input, a `Vec` as the outbox and as the timer
//! list, time passed in — exactly as the loop drives it.

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
}

impl<'a> Env<'a> {
    pub fn new(
        now: Instant,
        settings: &'a ServiceSettings,
        clock: &'a mut WallClock,
        timers: &'a mut dyn Timers,
    ) -> Self {
        Env {
            now,
            settings,
            clock,
            timers,
        }
    }

    /// Asks for `on_timer(tag)` at `deadline` (or as soon after as the loop gets to it).
    pub fn set_timer(&mut self, deadline: Instant, tag: TimerTag) {
        self.timers.set(deadline, tag);
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

/// What a unit test needs to call an entry point by hand: settings, a wall clock and a list
/// that collects the timers set, with the time in the test's hands.
#[cfg(test)]
pub struct TestEnv {
    pub now: Instant,
    pub settings: ServiceSettings,
    pub clock: WallClock,
    pub timers: Vec<(Instant, TimerTag)>,
}

#[cfg(test)]
impl TestEnv {
    pub fn new(settings: ServiceSettings) -> Self {
        TestEnv {
            now: Instant::now(),
            settings,
            clock: WallClock::default(),
            timers: Vec::new(),
        }
    }

    pub fn env(&mut self) -> Env<'_> {
        Env::new(self.now, &self.settings, &mut self.clock, &mut self.timers)
    }
}

/// The datagrams a UDP service sent in a unit test.
#[cfg(test)]
pub type Sent = Vec<(SocketAddr, Vec<u8>)>;
