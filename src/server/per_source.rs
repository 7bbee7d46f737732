//! Open TCP connections per source, so one address cannot take every slot.
//!
//! A global cap alone (`--max-conns`) hands the whole server to whoever opens connections
//! fastest: one host with 10,000 silent connections shuts everybody else out. Like xinetd's
//! `per_source` and nginx's `limit_conn`, each [`Source`] (an IPv4 address or an IPv6 /64) may
//! hold at most `--max-conns-per-ip` connections; one more is accepted and closed at once, so
//! its client sees a clean close instead of a hang in the listen backlog, and the refusal is
//! logged once per episode (until one of that source's connections closes).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::source::Source;

#[derive(Default)]
struct Held {
    open: usize,
    /// A refusal was logged since this source last closed a connection.
    refusal_logged: bool,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub source: Source,
    /// The first refusal of this episode: the one to log.
    pub first: bool,
}

/// Open connections by source. Only sources with an open connection are kept, so the table is
/// never larger than the connections themselves.
#[derive(Default)]
pub struct ConnectionsBySource {
    held: HashMap<Source, Held>,
}

impl ConnectionsBySource {
    /// Counts a new connection from `ip`, unless its source already holds `limit`.
    pub fn admit(&mut self, ip: IpAddr, limit: usize) -> Result<(), OverLimit> {
        let source = Source::of(ip);
        let held = self.held.entry(source).or_default();
        if held.open >= limit {
            let first = !held.refusal_logged;
            held.refusal_logged = true;
            return Err(OverLimit { source, first });
        }
        held.open += 1;
        Ok(())
    }

    /// A connection from `ip` has closed.
    pub fn release(&mut self, ip: IpAddr) {
        let source = Source::of(ip);
        if let Some(held) = self.held.get_mut(&source) {
            held.open = held.open.saturating_sub(1);
            held.refusal_logged = false;
            if held.open == 0 {
                self.held.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_its_limit_and_the_refusal_is_reported_once_per_episode() {
        let mut by_source = ConnectionsBySource::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(by_source.admit(a, 2).is_ok());
        assert!(by_source.admit(a, 2).is_ok());
        assert_eq!(by_source.admit(a, 2).map_err(|e| e.first), Err(true));
        assert_eq!(by_source.admit(a, 2).map_err(|e| e.first), Err(false));
        assert!(
            by_source.admit(b, 2).is_ok(),
            "another source is not affected"
        );
        by_source.release(a);
        assert!(
            by_source.admit(a, 2).is_ok(),
            "a freed slot is usable again"
        );
        assert_eq!(
            by_source.admit(a, 2).map_err(|e| e.first),
            Err(true),
            "a new episode"
        );
        by_source.release(a);
        by_source.release(a);
        by_source.release(b);
        assert!(
            by_source.held.is_empty(),
            "nothing kept for sources with no connection"
        );
    }

    #[test]
    fn an_ipv6_host_cannot_escape_its_limit_by_changing_address_within_its_64() {
        let mut by_source = ConnectionsBySource::default();
        for n in 1..=3u32 {
            let ip: IpAddr = format!("2001:db8:0:1::{n}").parse().unwrap();
            let result = by_source.admit(ip, 2);
            assert_eq!(result.is_ok(), n <= 2, "address {n}");
        }
    }
}
