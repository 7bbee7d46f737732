//! Per-source rate limits for UDP, both ways, so this server can be neither flooded through one
//! socket nor used as a reflector.
//!
//! UDP source addresses are trivially forged: a datagram "from" a victim makes a UDP server
//! send its reply to the victim. Two budgets per [`Source`] (an IPv4 address or an IPv6 /64)
//! bound that, across every UDP service of the loop:
//!
//! - **in**: datagrams served from a source per second. Each admitted datagram triggers at most
//!   one immediate reply (echo, daytime, RFC 868) or starts one capped time-stream session;
//! - **out**: datagrams sent to a destination per second, ticks included — however many
//!   sessions were opened in a victim's name and whatever the tick interval, the victim gets
//!   no more than this from us.
//!
//! Each budget is a token bucket (burst = one second's worth) in an exact table: one source can
//! never spend another's budget, as it could with hashed, shared buckets. The table is bounded
//! ([`TABLE_LIMIT`] sources): a source whose bucket has refilled is forgotten (it is exactly as
//! if it had never been seen), and when the table is full of sources that are all still
//! spending, a new source is refused until room comes back — an attacker who keeps that many
//! sources busy every second can make newcomers wait, never make us send more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::source::Source;

/// Sources tracked at once per budget (a few MiB at most, and only under such a flood).
pub const TABLE_LIMIT: usize = 65_536;
/// New episodes reported per second, all sources together: a flood from (or aimed at) many
/// forged addresses starts an episode for each of them, and the log must stay readable.
pub const REPORTS_PER_SECOND: u32 = 10;
/// After a sweep of a full table freed nothing, how long before the next one (a sweep walks the
/// whole table; doing it for every datagram of a flood would cost more than the flood).
const SWEEP_PAUSE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
struct Bucket {
    /// Datagrams this source may still send or receive; refills at `rate` per second up to
    /// `rate`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// Whether running dry was reported in this episode. The episode ends when the bucket is
    /// full again (a second within budget), not at the next datagram that fits: under a steady
    /// flood a token comes back every 1/rate s, and each would otherwise start a new episode.
    logged: bool,
}

/// What [`RateLimiter::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over budget (or no room to track a new source); `first` is true the first time in an
    /// episode, the moment to log it.
    Refused {
        first: bool,
    },
}

/// Datagrams per source per second, in one direction, all UDP services together.
pub struct RateLimiter {
    /// 0 = no limit.
    rate: u32,
    buckets: HashMap<Source, Bucket>,
    /// No sweep of a full table before this instant.
    next_sweep: Option<Instant>,
    /// Whether refusing new sources for a full table was reported in this episode.
    full_logged: bool,
    /// The second reports are being counted in, and how many were made in it.
    reports: (Option<Instant>, u32),
}

impl RateLimiter {
    pub fn new(rate_per_second: u32) -> Self {
        RateLimiter {
            rate: rate_per_second,
            buckets: HashMap::new(),
            next_sweep: None,
            full_logged: false,
            reports: (None, 0),
        }
    }

    /// Takes one datagram's worth of budget from `ip`'s source, if it has any left.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Admission {
        if self.rate == 0 {
            return Admission::Allowed;
        }
        let rate = f64::from(self.rate);
        let source = Source::of(ip);
        if !self.buckets.contains_key(&source) && !self.make_room(now) {
            let first = !self.full_logged;
            self.full_logged = true;
            return Admission::Refused { first };
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: rate,
            updated: now,
            logged: false,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= rate {
            bucket.logged = false; // a whole second within budget: the episode is over
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Admission::Allowed;
        }
        let new_episode = !bucket.logged;
        bucket.logged = true;
        let first = new_episode && self.may_report(now);
        Admission::Refused { first }
    }

    /// Whether a new source can be tracked: below the limit, or after forgetting the sources
    /// whose buckets are full again (they are as good as unseen).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.buckets.len() < TABLE_LIMIT {
            return true;
        }
        if self.next_sweep.is_some_and(|at| now < at) {
            return false;
        }
        let refill = Duration::from_secs(1);
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < refill);
        let room = self.buckets.len() < TABLE_LIMIT;
        self.next_sweep = (!room).then(|| now + SWEEP_PAUSE);
        if room {
            self.full_logged = false;
        }
        room
    }

    /// Whether one more new episode may be reported this second ([`REPORTS_PER_SECOND`]).
    fn may_report(&mut self, now: Instant) -> bool {
        let (since, count) = &mut self.reports;
        if since.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
            *since = Some(now);
            *count = 0;
        }
        *count += 1;
        *count <= REPORTS_PER_SECOND
    }

    /// Sources tracked right now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
    fn a_flooding_source_never_spends_another_sources_budget() {
        let mut limiter = RateLimiter::new(5);
        let now = Instant::now();
        let flooder: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10_000 {
            limiter.check(flooder, now);
        }
        // Every other source, whatever its address, still has its whole budget.
        for n in 0..1000u32 {
            let innocent = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            let allowed = (0..5)
                .filter(|_| limiter.check(innocent, now) == Admission::Allowed)
                .count();
            assert_eq!(allowed, 5, "{innocent} lost budget to the flooder");
        }
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_budget() {
        let mut limiter = RateLimiter::new(3);
        let now = Instant::now();
        let allowed = (0..100u32)
            .filter(|n| {
                let ip: IpAddr = format!("2001:db8:0:1::{n:x}").parse().unwrap();
                limiter.check(ip, now) == Admission::Allowed
            })
            .count();
        assert_eq!(allowed, 3, "a new address in the same /64 is no new budget");
        let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(limiter.check(other, now), Admission::Allowed);
    }

    #[test]
    fn the_table_is_bounded_refills_are_forgotten_and_a_full_table_refuses_newcomers() {
        let mut limiter = RateLimiter::new(2);
        let start = Instant::now();
        let ip = |n: usize| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n as u32));
        for n in 0..TABLE_LIMIT {
            assert_eq!(limiter.check(ip(n), start), Admission::Allowed);
        }
        assert_eq!(limiter.tracked(), TABLE_LIMIT);
        // Every source is still spending: a newcomer waits (reported once), nothing grows.
        let newcomer = ip(TABLE_LIMIT);
        assert_eq!(
            limiter.check(newcomer, start),
            Admission::Refused { first: true }
        );
        assert_eq!(
            limiter.check(newcomer, start + Duration::from_millis(10)),
            Admission::Refused { first: false }
        );
        assert_eq!(limiter.tracked(), TABLE_LIMIT);
        // A second later every bucket has refilled: they are forgotten, the newcomer is served.
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.check(newcomer, later), Admission::Allowed);
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn a_steady_flood_is_one_episode_reported_once_and_many_sources_do_not_flood_the_log() {
        let mut limiter = RateLimiter::new(100);
        let start = Instant::now();
        let victim: IpAddr = "192.0.2.1".parse().unwrap();
        // 50 sessions ticking every 20 ms aimed at one victim: 2,500 datagrams a second.
        let mut reports = 0;
        let mut allowed = 0;
        for ms in 0..3000u64 {
            let now = start + Duration::from_millis(ms);
            for _ in 0..(if ms % 20 == 0 { 50 } else { 0 }) {
                match limiter.check(victim, now) {
                    Admission::Allowed => allowed += 1,
                    Admission::Refused { first } => reports += usize::from(first),
                }
            }
        }
        assert_eq!(reports, 1, "one episode, reported once");
        assert!(
            (390..=410).contains(&allowed),
            "{allowed} sent in 3 s: a burst of 100, then 100/s"
        );
        // Quiet for a second: the episode is over, the next one is reported again.
        let later = start + Duration::from_secs(5);
        for _ in 0..100 {
            assert_eq!(limiter.check(victim, later), Admission::Allowed);
        }
        assert_eq!(
            limiter.check(victim, later),
            Admission::Refused { first: true }
        );

        // A thousand sources running dry in the same second: at most REPORTS_PER_SECOND lines.
        let mut many = RateLimiter::new(1);
        let now = Instant::now();
        let reported = (0..1000u32)
            .filter(|n| {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
                many.check(ip, now);
                many.check(ip, now) == Admission::Refused { first: true }
            })
            .count();
        assert_eq!(reported, REPORTS_PER_SECOND as usize);
    }

    #[test]
    fn zero_means_unlimited() {
        let mut unlimited = RateLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!((0..10_000).all(|_| unlimited.check(a, now) == Admission::Allowed));
        assert_eq!(unlimited.tracked(), 0);
    }
}
