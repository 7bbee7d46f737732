//! Echo (RFC 862): every byte comes back, in order, unchanged.
//!
//! TCP echo is the service where backpressure matters: a client can write far faster than it
//! reads. Input is taken only while the output buffer has room ([`TcpService::input_room`]);
//! when it is full the connection stops reading, the kernel's receive buffer fills, TCP's window
//! closes, and the client's writes block — memory stays at the buffer's limit per connection.
//! UDP echo answers each datagram once, except to source ports below 1024: those are where
//! other UDP services live (echo, chargen, daytime), and a forged datagram from one of them would
//! start a reply loop between two servers.

use std::net::SocketAddr;

use log::debug;

use super::contract::{
    Env, Next, Observation, OutBuf, Outbox, Output, Rejection, TcpService, UdpService,
};

/// Source ports below this get no UDP echo (reflection-loop guard).
pub const LOWEST_ECHOED_PORT: u16 = 1024;

/// One TCP echo connection. It needs no state of its own: the pending output is its state.
pub struct TcpEcho;

impl TcpService for TcpEcho {
    fn on_open(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }

    fn on_input(&mut self, input: &[u8], _env: &mut Env, out: &mut Output) -> Next {
        match out.push(input) {
            Ok(()) => Next::Continue,
            // Cannot happen: the plumbing reads at most `input_room` bytes.
            Err(_) => Next::Close,
        }
    }

    fn input_room(&self, out: &OutBuf) -> usize {
        out.room()
    }
}

/// The echo service's UDP socket.
pub struct UdpEcho;

impl UdpService for UdpEcho {
    fn on_datagram(
        &mut self,
        payload: &[u8],
        peer: SocketAddr,
        env: &mut Env,
        out: &mut dyn Outbox,
    ) {
        if peer.port() < LOWEST_ECHOED_PORT {
            debug!("echo udp {peer}: privileged source port, not answering");
            env.observe(Observation::Rejected(Rejection::PrivilegedPort));
            return;
        }
        out.send_to(payload, peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::contract::{Sent, ServiceSettings, TestEnv};

    #[test]
    fn udp_echo_answers_each_datagram_but_never_a_privileged_source_port() {
        let mut harness = TestEnv::new(ServiceSettings::default());
        let mut env = harness.env();
        let mut out = Sent::new();
        let client: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let chargen: SocketAddr = "192.0.2.1:19".parse().unwrap();
        UdpEcho.on_datagram(b"\0binary\xff", client, &mut env, &mut out);
        UdpEcho.on_datagram(b"", client, &mut env, &mut out);
        UdpEcho.on_datagram(b"loop?", chargen, &mut env, &mut out);
        assert_eq!(
            out,
            vec![(client, b"\0binary\xff".to_vec()), (client, Vec::new())]
        );
        assert!(harness.timers.is_empty());
    }
}
