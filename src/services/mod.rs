//! The protocols: state machines that never touch a socket.
//!
//! [`contract`] is the door: the entry points every service implements and the plumbing calls
//! ([`contract::TcpService`], [`contract::UdpService`]), and the little a service may use
//! ([`contract::Env`], [`contract::Output`], [`contract::Outbox`]). Reading, writing,
//! `WouldBlock`, interest and closing are done once, in `server/`. A new service is a new file
//! here and a line in [`ServiceKind`]; the loop does not change.

pub mod clock;
pub mod contract;
pub mod daytime;
pub mod echo;
pub mod line;
pub mod output;
pub mod rfc868;
pub mod sessions;
pub mod time_stream;

use std::net::SocketAddr;

use contract::{TcpService, UdpService};

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
