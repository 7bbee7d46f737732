//! Time (RFC 868): the current time as 4 bytes, seconds since 1900-01-01 00:00 UTC, big-endian.
//!
//! 32 bits of seconds since 1900 run out on 2036-02-07 06:28:16 UTC. From then on we send the
//! count modulo 2^32 (the next "era" starts again at 0, as NTP's timestamps do); clients that
//! assume era 0, as `rdate` does, will read a date in 1900 — there is no way to say more in
//! 4 bytes. TCP: written on accept, then close after the flush. UDP: any datagram, even an empty
//! one, gets one 4-byte datagram.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::contract::{Env, Next, Outbox, Output, TcpService, UdpService};

/// Seconds from 1900-01-01 to 1970-01-01 (70 years, 17 of them leap years).
pub const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// RFC 868's value for a Unix time: seconds since 1900, modulo 2^32.
pub fn rfc868_seconds(unix_seconds: i64) -> u32 {
    (unix_seconds + SECONDS_1900_TO_1970).rem_euclid(1 << 32) as u32
}

/// The 4 bytes to send now.
pub fn rfc868_now() -> [u8; 4] {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc868_seconds(unix).to_be_bytes()
}

/// One TCP connection of the RFC 868 service: it speaks once.
pub struct TcpRfc868;

impl TcpService for TcpRfc868 {
    fn on_open(&mut self, _env: &mut Env, out: &mut Output) -> Next {
        let _ = out.push(&rfc868_now());
        Next::Close
    }

    fn on_input(&mut self, _input: &[u8], _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }
}

/// The RFC 868 service's UDP socket.
pub struct UdpRfc868;

impl UdpService for UdpRfc868 {
    fn on_datagram(
        &mut self,
        _payload: &[u8],
        peer: SocketAddr,
        _env: &mut Env,
        out: &mut dyn Outbox,
    ) {
        out.send_to(&rfc868_now(), peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // 1970-01-01T00:00:00Z
        assert_eq!(rfc868_seconds(0), 2_208_988_800);
        // 2000-01-01T00:00:00Z = Unix 946684800
        assert_eq!(rfc868_seconds(946_684_800), 3_155_673_600);
        // 1900-01-01T00:00:00Z
        assert_eq!(rfc868_seconds(-SECONDS_1900_TO_1970), 0);
    }

    #[test]
    fn any_datagram_even_empty_gets_four_bytes_of_now() {
        use crate::services::contract::{Sent, ServiceSettings, TestEnv};
        let mut harness = TestEnv::new(ServiceSettings::default());
        let mut env = harness.env();
        let mut out = Sent::new();
        let peer: SocketAddr = "192.0.2.9:37000".parse().unwrap();
        UdpRfc868.on_datagram(b"", peer, &mut env, &mut out);
        let [(to, bytes)] = &out[..] else {
            panic!("one reply: {out:?}")
        };
        assert_eq!(*to, peer);
        let seconds = u32::from_be_bytes(bytes[..].try_into().expect("4 bytes"));
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((i64::from(seconds) - i64::from(rfc868_seconds(unix))).abs() <= 2);
    }

    #[test]
    fn wraps_in_2036() {
        // 2036-02-07T06:28:15Z is the last second of era 0; the next one is 0 again.
        let last = 2_085_978_495;
        assert_eq!(rfc868_seconds(last), u32::MAX);
        assert_eq!(rfc868_seconds(last + 1), 0);
        assert_eq!(rfc868_seconds(last + 61), 60);
    }
}
