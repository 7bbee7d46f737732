//! The services: state machines that never touch a socket.
//!
//! Every service has the same small set of entry points, called by the plumbing that owns the
//! socket: a TCP service ([`TcpService`]) hears about a new connection, input, end of input,
//! its timers and shutdown, and answers with bytes pushed to an [`Output`] plus a [`Next`]; a UDP
//! service ([`UdpService`]) hears about datagrams, its timers and shutdown, and answers through an
//! [`Outbox`]. Reading, writing, `WouldBlock`, interest and closing are done once, in
//! `connection.rs` and `udp.rs`. A new service is a new file here and a line in [`ServiceKind`];
//! the loop does not change.

pub mod clock;
pub mod daytime;
pub mod echo;
pub mod line;
pub mod output;
pub mod rfc868;
pub mod time_stream;

use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;

use crate::server::config::Settings;
use crate::server::rate_limit::RateLimiter;
use crate::server::timer::TimerHeap;
use crate::server::udp::Outbox;
use crate::services::clock::WallClock;
use crate::services::output::{OutBuf, Output};
use crate::slots::KeyLabel;

/// What the plumbing should do with a TCP connection after an entry point returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep serving.
    Continue,
    /// The service is done: write what is in the output buffer, then close (FIN).
    Close,
}

/// The loop's state that handlers share: the time of this turn, the settings, the wall clock
/// and the timer heap. The reactor owns one; each entry point gets an [`Env`] view of it.
pub struct Shared {
    /// Taken once per loop turn, so everything done in one turn agrees on the time.
    pub now: Instant,
    pub settings: Settings,
    pub clock: WallClock,
    pub timers: TimerHeap,
    /// One UDP budget per source IP, shared by every UDP service.
    pub udp_sources: RateLimiter,
}

impl Shared {
    pub fn new(settings: Settings) -> Self {
        Shared {
            now: Instant::now(),
            udp_sources: RateLimiter::new(settings.udp_rate_per_ip),
            settings,
            clock: WallClock::default(),
            timers: TimerHeap::default(),
        }
    }
}

/// What every entry point may use besides its own I/O: the current time, the settings, the
/// wall clock and a way to set a timer for itself.
pub struct Env<'a> {
    pub now: Instant,
    pub settings: &'a Settings,
    pub clock: &'a mut WallClock,
    /// The per-source UDP budget (the UDP plumbing checks it before a service sees a datagram).
    pub udp_sources: &'a mut RateLimiter,
    timers: &'a mut TimerHeap,
    /// The owner of the timers set through this `Env`.
    token: Token,
}

impl<'a> Env<'a> {
    /// The view of `shared` for the owner of `token`.
    pub fn new(shared: &'a mut Shared, token: Token) -> Self {
        Env {
            now: shared.now,
            settings: &shared.settings,
            clock: &mut shared.clock,
            udp_sources: &mut shared.udp_sources,
            timers: &mut shared.timers,
            token,
        }
    }

    /// Asks for `on_timer(tag)` at `deadline` (or as soon after as the loop gets to it).
    pub fn set_timer(&mut self, deadline: Instant, tag: u64) {
        self.timers.schedule(deadline, self.token, tag);
    }

    /// The token this environment acts for.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The token as `#slot.generation`, for log lines.
    pub fn label(&self) -> KeyLabel {
        KeyLabel(self.token.0)
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
    fn on_timer(&mut self, _tag: u64, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
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

/// A UDP service: one per bound UDP socket, keeping whatever per-peer state it needs.
pub trait UdpService: Send {
    /// A datagram (possibly empty) arrived from `peer`.
    fn on_datagram(&mut self, payload: &[u8], peer: SocketAddr, env: &mut Env, out: &mut Outbox);
    /// A timer set with [`Env::set_timer`] is due.
    fn on_timer(&mut self, _tag: u64, _env: &mut Env, _out: &mut Outbox) {}
    /// Whether the timer `tag` still matters; a stale one is dropped without waking the loop.
    fn timer_is_live(&self, _tag: u64) -> bool {
        false
    }
    /// The server is stopping: say goodbye to every session.
    fn on_shutdown(&mut self, _env: &mut Env, _out: &mut Outbox) {}
}

/// The services this server knows, each on TCP and UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    TimeStream,
    Echo,
    Daytime,
    Rfc868,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::TimeStream,
        ServiceKind::Echo,
        ServiceKind::Daytime,
        ServiceKind::Rfc868,
    ];

    /// The name used on the `listening …` lines and in logs.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::TimeStream => "time",
            ServiceKind::Echo => "echo",
            ServiceKind::Daytime => "daytime",
            ServiceKind::Rfc868 => "rfc868",
        }
    }

    /// The command-line flag that sets its port.
    pub fn flag(self) -> &'static str {
        match self {
            ServiceKind::TimeStream => "--time",
            ServiceKind::Echo => "--echo",
            ServiceKind::Daytime => "--daytime",
            ServiceKind::Rfc868 => "--rfc868",
        }
    }

    /// Unprivileged stand-ins for the well-known ports (13, 37, 7), so no root is needed.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::TimeStream => 8080,
            ServiceKind::Echo => 8081,
            ServiceKind::Daytime => 8013,
            ServiceKind::Rfc868 => 8037,
        }
    }

    /// A fresh state machine for the connection just accepted from `peer`.
    pub fn tcp_session(self, peer: SocketAddr) -> Box<dyn TcpService> {
        match self {
            ServiceKind::TimeStream => Box::new(time_stream::TcpTimeStream::new(peer)),
            ServiceKind::Echo => Box::new(echo::TcpEcho),
            ServiceKind::Daytime => Box::new(daytime::TcpDaytime),
            ServiceKind::Rfc868 => Box::new(rfc868::TcpRfc868),
        }
    }

    /// The state machine behind this service's UDP socket.
    pub fn udp_service(self) -> Box<dyn UdpService> {
        match self {
            ServiceKind::TimeStream => Box::new(time_stream::UdpTimeStream::default()),
            ServiceKind::Echo => Box::new(echo::UdpEcho),
            ServiceKind::Daytime => Box::new(daytime::UdpDaytime),
            ServiceKind::Rfc868 => Box::new(rfc868::UdpRfc868),
        }
    }
}
