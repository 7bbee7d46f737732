//! The protocols: state machines that never touch a socket.
//!
//! [`contract`] is the door: the entry points every service implements and the plumbing calls
//! ([`contract::TcpService`], [`contract::UdpService`]), and the little a service may use
//! ([`contract::Env`], [`contract::Output`], [`contract::Outbox`]). Reading, writing,
//! `WouldBlock`, interest and closing are done once, in `server/`. A new service is a new file
//! here and a line in [`ServiceKind`]; the loop does not change. The metrics endpoint
//! ([`metrics`], HTTP/1.1) is one more TCP service: it parses requests and frames responses,
//! and asks the plumbing for the page through [`contract::Env::render`].

pub mod clock;
pub mod contract;
pub mod daytime;
pub mod echo;
pub mod line;
pub mod metrics;
pub mod output;
pub mod rfc868;
pub mod sessions;
pub mod time_stream;

use std::net::SocketAddr;

use contract::{Rejection, TcpService, UdpService};

/// The services this server knows: the four inetd services, each on TCP and UDP, and the
/// metrics endpoint (HTTP, TCP only, `--metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    TimeStream,
    Echo,
    Daytime,
    Rfc868,
    Metrics,
}

impl ServiceKind {
    /// The inetd services: one flag and one port each, on every `--bind` address, TCP and UDP.
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::TimeStream,
        ServiceKind::Echo,
        ServiceKind::Daytime,
        ServiceKind::Rfc868,
    ];
    /// Every service, the metrics endpoint included (access lists name any of them).
    pub const EVERY: [ServiceKind; 5] = [
        ServiceKind::TimeStream,
        ServiceKind::Echo,
        ServiceKind::Daytime,
        ServiceKind::Rfc868,
        ServiceKind::Metrics,
    ];

    /// The name used on the `listening …` lines, in logs, in access rules and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::TimeStream => "time",
            ServiceKind::Echo => "echo",
            ServiceKind::Daytime => "daytime",
            ServiceKind::Rfc868 => "rfc868",
            ServiceKind::Metrics => "metrics",
        }
    }

    /// A fresh state machine for the connection just accepted from `peer`.
    pub fn tcp_session(self, peer: SocketAddr) -> Box<dyn TcpService> {
        match self {
            ServiceKind::TimeStream => Box::new(time_stream::TcpTimeStream::new(peer)),
            ServiceKind::Echo => Box::new(echo::TcpEcho),
            ServiceKind::Daytime => Box::new(daytime::TcpDaytime),
            ServiceKind::Rfc868 => Box::new(rfc868::TcpRfc868),
            ServiceKind::Metrics => Box::new(metrics::HttpSession::new(peer)),
        }
    }

    /// The state machine behind this service's UDP socket; `None` for the metrics endpoint,
    /// which has none.
    pub fn udp_service(self) -> Option<Box<dyn UdpService>> {
        Some(match self {
            ServiceKind::TimeStream => Box::new(time_stream::UdpTimeStream::default()),
            ServiceKind::Echo => Box::new(echo::UdpEcho),
            ServiceKind::Daytime => Box::new(daytime::UdpDaytime),
            ServiceKind::Rfc868 => Box::new(rfc868::UdpRfc868),
            ServiceKind::Metrics => return None,
        })
    }

    /// Why this service may turn a TCP client away ([`contract::Env::observe`]).
    pub fn tcp_rejections(self) -> &'static [Rejection] {
        match self {
            ServiceKind::TimeStream => &[Rejection::GreetingTimeout, Rejection::LineTooLong],
            ServiceKind::Metrics => &[
                Rejection::RequestTimeout,
                Rejection::HeadTooLarge,
                Rejection::BadRequest,
            ],
            ServiceKind::Echo | ServiceKind::Daytime | ServiceKind::Rfc868 => &[],
        }
    }

    /// Why this service may leave a datagram unanswered.
    pub fn udp_rejections(self) -> &'static [Rejection] {
        match self {
            ServiceKind::TimeStream => {
                &[Rejection::SessionTableFull, Rejection::SourceSessionsFull]
            }
            ServiceKind::Echo => &[Rejection::PrivilegedPort],
            ServiceKind::Daytime | ServiceKind::Rfc868 | ServiceKind::Metrics => &[],
        }
    }

    /// Whether its UDP side keeps per-peer sessions (and reports how many are live).
    pub fn keeps_udp_sessions(self) -> bool {
        self == ServiceKind::TimeStream
    }

    /// Whether it sends on a schedule (and reports how late each message went out).
    pub fn sends_on_schedule(self) -> bool {
        self == ServiceKind::TimeStream
    }
}
