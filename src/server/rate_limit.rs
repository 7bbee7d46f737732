//! A per-source rate limit for UDP, so this server cannot be used as a reflector.
//!
//! UDP source addresses are trivially forged: a datagram "from" a victim makes a UDP server
//! send its reply to the victim. Each admitted datagram here triggers at most one immediate
//! reply (echo, daytime, RFC 868) or starts one capped time-stream session, so bounding the
//! datagrams served per source IP bounds the replies each source can trigger, across every UDP
//! service of the reactor.
//!
//! The limiter is a token bucket per source (burst = one second's worth), kept in a fixed table
//! indexed by a keyed hash of the IP: constant memory however many addresses an attacker forges.
//! Two sources that share a slot share a budget — that only ever makes the limit stricter.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

/// Slots in the table (a few dozen KiB).
const SLOTS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Datagrams this slot may still serve; refills at `rate` per second up to `rate`.
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` = never used (full).
    updated: Option<Instant>,
    /// Whether running dry was logged in this episode (log once, not per datagram).
    logged: bool,
}

/// What [`RateLimiter::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over budget; `first` is true the first time in an episode (the moment to log it).
    Refused {
        first: bool,
    },
}

/// Datagrams served per source IP per second, all UDP services together.
pub struct RateLimiter {
    /// 0 = no limit.
    rate: u32,
    buckets: Box<[Bucket]>,
    /// Keyed per process, so nobody can aim forged addresses at one slot.
    hasher: RandomState,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32) -> Self {
        let buckets = if rate_per_second == 0 {
            Box::default()
        } else {
            vec![Bucket::default(); SLOTS].into_boxed_slice()
        };
        RateLimiter {
            rate: rate_per_second,
            buckets,
            hasher: RandomState::new(),
        }
    }

    /// Takes one datagram's worth of budget from `source`, if it has any left.
    pub fn check(&mut self, source: IpAddr, now: Instant) -> Admission {
        if self.rate == 0 {
            return Admission::Allowed;
        }
        let rate = f64::from(self.rate);
        let slot = self.hasher.hash_one(source) as usize % SLOTS;
        let Some(bucket) = self.buckets.get_mut(slot) else {
            return Admission::Allowed;
        };
        bucket.tokens = match bucket.updated {
            None => rate,
            Some(then) => (bucket.tokens + (now - then).as_secs_f64() * rate).min(rate),
        };
        bucket.updated = Some(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.logged = false;
            Admission::Allowed
        } else {
            let first = !bucket.logged;
            bucket.logged = true;
            Admission::Refused { first }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_rate_per_second_and_no_more() {
        let mut limiter = RateLimiter::new(10);
        let start = Instant::now();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..100)
            .filter(|_| limiter.check(source, start) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 10, "a burst is one second's worth");
        assert_eq!(
            limiter.check(source, start),
            Admission::Refused { first: false },
            "the refusal was already reported"
        );
        // Half a second later, half the budget is back.
        let later = start + Duration::from_millis(500);
        let allowed = (0..100)
            .filter(|_| limiter.check(source, later) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn sources_have_separate_budgets_and_zero_means_unlimited() {
        let mut limiter = RateLimiter::new(1);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(limiter.check(a, now), Admission::Allowed);
        assert_eq!(limiter.check(a, now), Admission::Refused { first: true });
        // b may collide with a in the table (1 in 4096); that would only make it stricter.
        let b_allowed = limiter.check(b, now) == Admission::Allowed;
        let same_slot = limiter.hasher.hash_one(a) as usize % SLOTS
            == limiter.hasher.hash_one(b) as usize % SLOTS;
        assert_eq!(b_allowed, !same_slot);

        let mut unlimited = RateLimiter::new(0);
        assert!((0..10_000).all(|_| unlimited.check(a, now) == Admission::Allowed));
    }
}
