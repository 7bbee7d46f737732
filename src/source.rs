//! Who a peer is, for limits: its address, or the network it sends from.
//!
//! Per-source limits are only as good as the key they count by. An IPv4 host usually has one
//! address, but an IPv6 host is handed a whole /64 and can pick a new address for every
//! connection: counting IPv6 peers by address would give an attacker 2^64 budgets. So a
//! [`Source`] is an IPv4 address or an IPv6 /64 (xinetd's `per_source` counts addresses; nginx's
//! `limit_conn` counts whatever key it is given). A [`Network`] is the wider group used to keep
//! one network from crowding out the others when a table is full: an IPv4 /24 or an IPv6 /48.

use std::net::IpAddr;

/// One source for per-source limits: an IPv4 address, or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(Key);

/// The network a source sends from: an IPv4 /24, or an IPv6 /48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(Key);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    V4(u32),
    V6(u128),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        Source(masked(ip, 32, 64))
    }
}

impl Network {
    pub fn of(ip: IpAddr) -> Self {
        Network(masked(ip, 24, 48))
    }
}

/// `ip` with all but its first `v4_bits` (IPv4) or `v6_bits` (IPv6) bits cleared. An
/// IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports) counts as the
/// IPv4 address it carries.
fn masked(ip: IpAddr, v4_bits: u32, v6_bits: u32) -> Key {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => Key::V4(u32::from(v4) & (u32::MAX << (32 - v4_bits))),
        IpAddr::V6(v6) => Key::V6(u128::from(v6) & (u128::MAX << (128 - v6_bits))),
    }
}

impl std::fmt::Display for Source {
    /// `192.0.2.1`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Key::V4(v4) => write!(f, "{}", std::net::Ipv4Addr::from(v4)),
            Key::V6(v6) => write!(f, "{}/64", std::net::Ipv6Addr::from(v6)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_counts_by_address_and_ipv6_by_its_64() {
        assert_ne!(Source::of(ip("192.0.2.1")), Source::of(ip("192.0.2.2")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1")),
            "a mapped address is its IPv4 address"
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::9")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(Source::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
    }

    #[test]
    fn networks_are_ipv4_24s_and_ipv6_48s() {
        assert_eq!(Network::of(ip("127.0.0.1")), Network::of(ip("127.0.0.200")));
        assert_ne!(Network::of(ip("127.0.0.1")), Network::of(ip("127.0.1.1")));
        assert_eq!(
            Network::of(ip("2001:db8:1:2::1")),
            Network::of(ip("2001:db8:1:ffff::1"))
        );
        assert_ne!(
            Network::of(ip("2001:db8:1::1")),
            Network::of(ip("2001:db8:2::1"))
        );
    }
}
