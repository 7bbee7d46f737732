//! Daytime (RFC 867): the local time as one human-readable line, then close.
//!
//! The RFC leaves the format open; like inetd's built-in daytime (`ctime(3)`) we send
//! `Wed Nov 25 19:21:36 2026\r\n`. TCP: written on accept, then the connection closes — once
//! the line is flushed, so even a one-message service goes through the same `WouldBlock`-aware
//! output path and FIN-after-data order as the others. UDP: any datagram, even an empty one, gets
//! the line back.

use std::net::SocketAddr;

use super::{Env, Next, TcpService, UdpService};
use crate::server::udp::Outbox;
use crate::services::output::Output;

/// One TCP daytime connection: it speaks once.
pub struct TcpDaytime;

impl TcpService for TcpDaytime {
    fn on_open(&mut self, env: &mut Env, out: &mut Output) -> Next {
        let _ = out.push(env.clock.daytime_text().as_bytes());
        Next::Close
    }

    fn on_input(&mut self, _input: &[u8], _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }
}

/// The daytime service's UDP socket.
pub struct UdpDaytime;

impl UdpService for UdpDaytime {
    fn on_datagram(&mut self, _payload: &[u8], peer: SocketAddr, env: &mut Env, out: &mut Outbox) {
        out.send_to(env.clock.daytime_text().as_bytes(), peer);
    }
}
