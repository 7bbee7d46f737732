//! Daytime (RFC 867): the local time as one human-readable line, then close.
//!
//! The RFC leaves the format open; like inetd's built-in daytime (`ctime(3)`) we send
//! `Wed Nov 25 19:21:36 2026\r\n`. TCP: written on accept, then the connection closes — once
//! the line is flushed, so even a one-message service goes through the same `WouldBlock`-aware
//! output path and FIN-after-data order as the others. UDP: any datagram, even an empty one, gets
//! the line back.

use std::net::SocketAddr;

use super::contract::{Env, Next, Outbox, Output, TcpService, UdpService};

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
    fn on_datagram(
        &mut self,
        _payload: &[u8],
        peer: SocketAddr,
        env: &mut Env,
        out: &mut dyn Outbox,
    ) {
        out.send_to(env.clock.daytime_text().as_bytes(), peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::DAYTIME_FORMAT;
    use crate::services::contract::{Sent, ServiceSettings, TestEnv};

    #[test]
    fn any_datagram_even_empty_gets_one_daytime_line() {
        let mut harness = TestEnv::new(ServiceSettings::default());
        let mut env = harness.env();
        let mut out = Sent::new();
        let peer: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
        UdpDaytime.on_datagram(b"", peer, &mut env, &mut out);
        let [(to, line)] = &out[..] else {
            panic!("one reply: {out:?}")
        };
        assert_eq!(*to, peer);
        let text = std::str::from_utf8(line).unwrap();
        let bare = text.strip_suffix("\r\n").expect("ends in CRLF");
        let parsed = chrono::NaiveDateTime::parse_from_str(bare, DAYTIME_FORMAT).unwrap();
        let drift = chrono::Local::now().naive_local() - parsed;
        assert!(drift.num_seconds().abs() <= 2, "{text:?} is not now");
    }
}
