//! Access lists: who may use a service at all, decided from the peer's IP address alone.
//!
//! Like xinetd's `only_from` and `no_access`, `--allow CIDR` and `--deny CIDR` (each
//! repeatable) name blocks of addresses; `--allow echo=CIDR` limits a rule to one service. A
//! CIDR is an IPv4 or IPv6 address with an optional `/prefix` (a bare address is a /32 or a
//! /128; `[::1]` is accepted as `--bind` accepts it). Only addresses: no name is ever looked
//! up, so no DNS answer can open a door and no slow resolver can stall the loop.
//!
//! # The decision, for one peer address and one service
//!
//! 1. The rules that apply are the global ones and that service's own.
//! 2. Among those whose block holds the address, the **most specific** (longest prefix) decides;
//!    at equal length, `--deny` wins. The order of the flags does not matter.
//! 3. If none holds the address: the peer is allowed if no `--allow` rule applies to the service
//!    at all, refused otherwise — once an allow list is given, it is the whole list, as with
//!    xinetd's `only_from`.
//!
//! An IPv4 peer seen through an IPv6 socket (`::ffff:192.0.2.1`) is matched as the IPv4 address
//! it is, and a rule written in that form (`::ffff:10.0.0.0/104`) is read as the IPv4 rule
//! (`10.0.0.0/8`); any other IPv6 rule, `::/0` included, never matches an IPv4 peer.
//!
//! The decision is made before a byte is sent and before anything is counted for the peer: the
//! listener closes a refused connection straight after `accept` (before the per-source limit,
//! so refused peers never take a share of it), the UDP port drops a refused datagram straight
//! after `recv_from` (before the rate limiter and before the service sees it). See
//! `Context::access_allows` in `handler.rs`.
//!
//! Everything here is pure: [`AccessList::decide`] is a function of the rules, the address and
//! the service, and [`RefusalLog`] is told the time, so both are tested without a socket.
//!
//! # Logging refusals without being flooded
//!
//! Each (peer, service, transport) is named in the log once per episode (until it has been
//! quiet for [`EPISODE`]), at most [`LINES_PER_SECOND`] such lines a second; every other
//! refusal is only counted, and the count is logged as one summary line at most once a second.
//! The memory of who was named is bounded ([`REMEMBERED`]): forged UDP sources by the million
//! cost one summary line a second, never a line or an entry each.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::listen::Proto;
use crate::services::ServiceKind;

/// What a rule does to the peers it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    /// The command-line flag that writes such a rule.
    pub fn flag(self) -> &'static str {
        match self {
            Action::Allow => "--allow",
            Action::Deny => "--deny",
        }
    }
}

/// A block of addresses: those whose first `len` bits are the first `len` bits of `bits` (the
/// bits past `len` are zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cidr {
    V4 { bits: u32, len: u8 },
    V6 { bits: u128, len: u8 },
}

/// The mask of an IPv4 prefix of `len` bits (0 to 32).
fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// The mask of an IPv6 prefix of `len` bits (0 to 128).
fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// An IPv4 address carried in an IPv6 one (`::ffff:a.b.c.d`, what a dual-stack socket
/// reports) as the IPv4 address it is; any other address as is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// Whether `ip` (an IPv4-mapped address counting as IPv4) lies in this block.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (Cidr::V4 { bits, len }, IpAddr::V4(ip)) => u32::from(ip) & mask_v4(len) == bits,
            (Cidr::V6 { bits, len }, IpAddr::V6(ip)) => u128::from(ip) & mask_v6(len) == bits,
            _ => false,
        }
    }

    /// The prefix length: how specific the block is.
    pub fn prefix_len(self) -> u8 {
        match self {
            Cidr::V4 { len, .. } | Cidr::V6 { len, .. } => len,
        }
    }
}

impl std::fmt::Display for Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cidr::V4 { bits, len } => write!(f, "{}/{len}", Ipv4Addr::from(bits)),
            Cidr::V6 { bits, len } => write!(f, "{}/{len}", Ipv6Addr::from(bits)),
        }
    }
}

/// One `--allow` or `--deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    /// `None`: every service (a global rule).
    pub service: Option<ServiceKind>,
    pub cidr: Cidr,
}

impl Rule {
    fn applies_to(&self, service: ServiceKind) -> bool {
        self.service.is_none_or(|own| own == service)
    }
}

impl std::fmt::Display for Rule {
    /// The rule as it would be written on the command line: `--deny echo=127.0.0.3/32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.action.flag())?;
        if let Some(service) = self.service {
            write!(f, "{}=", service.name())?;
        }
        write!(f, "{}", self.cidr)
    }
}

/// Why a peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This `--deny` was the most specific rule holding the address.
    Denied(Rule),
    /// No rule holds the address, and an allow list applies to the service.
    NotAllowed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Denied(rule) => write!(f, "{rule}"),
            Refusal::NotAllowed => f.write_str("no --allow matches"),
        }
    }
}

/// What [`AccessList::decide`] answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Refused(Refusal),
}

/// Every `--allow` and `--deny` of the command line. Empty: everyone is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessList {
    rules: Vec<Rule>,
}

impl AccessList {
    pub fn new(rules: Vec<Rule>) -> Self {
        AccessList { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether `ip` may use `service` (see the module doc for the rule). One pass over the
    /// rules: they come from the command line, so there are few, and a refused flood costs no
    /// more than an allowed one.
    pub fn decide(&self, ip: IpAddr, service: ServiceKind) -> Decision {
        let ip = canonical(ip);
        let mut best: Option<&Rule> = None;
        let mut allow_applies = false;
        for rule in self.rules.iter().filter(|rule| rule.applies_to(service)) {
            allow_applies |= rule.action == Action::Allow;
            if !rule.cidr.contains(ip) {
                continue;
            }
            // Longer prefix first; at equal length a deny (true) beats an allow (false).
            let rank = |rule: &Rule| (rule.cidr.prefix_len(), rule.action == Action::Deny);
            if best.is_none_or(|best| rank(rule) > rank(best)) {
                best = Some(rule);
            }
        }
        match best {
            Some(rule) if rule.action == Action::Deny => Decision::Refused(Refusal::Denied(*rule)),
            Some(_) => Decision::Allowed,
            None if allow_applies => Decision::Refused(Refusal::NotAllowed),
            None => Decision::Allowed,
        }
    }
}

/// Parses the value of `--allow`/`--deny`: `[SERVICE=]CIDR`. The error is the part of a usage
/// line after the flag's name.
pub fn parse_rule(action: Action, text: &str) -> Result<Rule, String> {
    let (service, cidr) = match text.split_once('=') {
        Some((name, cidr)) => {
            let service = ServiceKind::EVERY
                .into_iter()
                .find(|kind| kind.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!("'{name}' is not a service (time, echo, daytime, rfc868 or metrics)")
                })?;
            (Some(service), cidr)
        }
        None => (None, text),
    };
    Ok(Rule {
        action,
        service,
        cidr: parse_cidr(cidr)?,
    })
}

/// Parses `ADDRESS[/PREFIX]`, the address maybe in brackets (`[::1]`, `[2001:db8::]/32`).
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let not_cidr = || {
        format!(
            "'{text}' is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, \
             2001:db8::/32, [::1], echo=10.0.0.0/8)"
        )
    };
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let ip = IpAddr::from_str(bare).map_err(|_| not_cidr())?;
    let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => width,
        // Digits only: `u8::from_str` would take "+8".
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let len = u8::from_str(p).map_err(|_| not_cidr())?;
            if len > width {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(format!("'{text}': an {family} prefix is at most /{width}"));
            }
            len
        }
        Some(_) => return Err(not_cidr()),
    };
    let cidr = match ip {
        IpAddr::V4(v4) => Cidr::V4 {
            bits: u32::from(v4),
            len,
        },
        // `::ffff:a.b.c.d/N` with N ≥ 96 names IPv4 addresses: keep it as the IPv4 rule, since
        // mapped peers are matched as IPv4.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if len >= 96 => Cidr::V4 {
                bits: u32::from(v4),
                len: len - 96,
            },
            _ => Cidr::V6 {
                bits: u128::from(v6),
                len,
            },
        },
    };
    // Bits past the prefix are most likely a typo (10.0.0.1/8 for 10.0.0.0/8, or /8 for /32):
    // say so rather than guess which was meant.
    let network = match cidr {
        Cidr::V4 { bits, len } => Cidr::V4 {
            bits: bits & mask_v4(len),
            len,
        },
        Cidr::V6 { bits, len } => Cidr::V6 {
            bits: bits & mask_v6(len),
            len,
        },
    };
    if network != cidr {
        return Err(format!(
            "'{text}' has address bits set past its prefix (the network is {network})"
        ));
    }
    Ok(cidr)
}

/// How many refused (peer, service, transport) may be named in the log in one second; further
/// first refusals go into the summary.
pub const LINES_PER_SECOND: u32 = 10;
/// A (peer, service, transport) refused again within this time of its last refusal is in the
/// same episode: counted, not named again.
pub const EPISODE: Duration = Duration::from_secs(60);
/// How many named (peer, service, transport) are remembered (about 80 bytes each with the hash
/// table's slack: a third of a MiB at most). When full, those quiet for an [`EPISODE`] are
/// forgotten; if none is, new ones are counted, not named.
pub const REMEMBERED: usize = 4096;
/// The shortest time between two summary lines, and between two sweeps of a full memory.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What one refused attempt was: who, to which service, over what.
pub type Attempt = (IpAddr, ServiceKind, Proto);

/// What the caller should do about one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    /// Name this refusal in the log: the first of its episode.
    Line,
    /// Only counted. `report_at`: a summary became pending, due then; make sure something
    /// calls [`RefusalLog::due_summary`] at that time (a timer), or the count waits for the
    /// next refusal.
    Counted { report_at: Option<Instant> },
}

/// A summary line's content: refusals not named one by one since `since`.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub since: Instant,
}

/// Decides which refusals are named in the log (see the module doc); bounded in memory and in
/// lines per second, whatever the peers do.
#[derive(Default)]
pub struct RefusalLog {
    /// Attempts named in the log, with their last refusal.
    named: HashMap<Attempt, Instant>,
    /// Lines written in the current second, and when that second began.
    lines: u32,
    lines_since: Option<Instant>,
    /// Refusals not named since the last summary, and since when.
    unnamed: u64,
    unnamed_since: Option<Instant>,
    /// When the pending summary may be written (at least [`REPORT_EVERY`] after the last one).
    report_at: Option<Instant>,
    /// No sweep of a full memory before this instant.
    next_sweep: Option<Instant>,
}

impl RefusalLog {
    /// Notes one refusal of `attempt` at `now`.
    pub fn refused(&mut self, attempt: Attempt, now: Instant) -> Note {
        if let Some(last) = self.named.get_mut(&attempt) {
            let same_episode = now.saturating_duration_since(*last) < EPISODE;
            *last = now;
            if same_episode {
                return self.count(now);
            }
            return self.name(now).unwrap_or_else(|| self.count(now));
        }
        if !self.make_room(now) {
            return self.count(now);
        }
        match self.name(now) {
            Some(line) => {
                self.named.insert(attempt, now);
                line
            }
            None => self.count(now),
        }
    }

    /// The summary to write now, if one is due.
    pub fn due_summary(&mut self, now: Instant) -> Option<Summary> {
        let since = self.unnamed_since?;
        if self.report_at.is_some_and(|at| now < at) {
            return None;
        }
        let summary = Summary {
            count: self.unnamed,
            since,
        };
        self.unnamed = 0;
        self.unnamed_since = None;
        self.report_at = None;
        Some(summary)
    }

    /// A line, if this second's lines are not spent.
    fn name(&mut self, now: Instant) -> Option<Note> {
        let new_second = self
            .lines_since
            .is_none_or(|since| now.saturating_duration_since(since) >= Duration::from_secs(1));
        if new_second {
            self.lines = 0;
            self.lines_since = Some(now);
        }
        if self.lines >= LINES_PER_SECOND {
            return None;
        }
        self.lines += 1;
        Some(Note::Line)
    }

    fn count(&mut self, now: Instant) -> Note {
        self.unnamed = self.unnamed.saturating_add(1);
        if self.unnamed_since.is_some() {
            return Note::Counted { report_at: None };
        }
        self.unnamed_since = Some(now);
        let at = now + REPORT_EVERY;
        self.report_at = Some(at);
        Note::Counted {
            report_at: Some(at),
        }
    }

    /// Whether one more attempt can be remembered: below [`REMEMBERED`], or after forgetting
    /// those quiet for an episode (one sweep per [`REPORT_EVERY`] at most: a sweep walks the
    /// whole memory, and a flood must not make us do it for every datagram).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.named.len() < REMEMBERED {
            return true;
        }
        if self.next_sweep.is_some_and(|at| now < at) {
            return false;
        }
        self.named
            .retain(|_, last| now.saturating_duration_since(*last) < EPISODE);
        self.next_sweep = Some(now + REPORT_EVERY);
        self.named.len() < REMEMBERED
    }

    /// Attempts remembered right now.
    pub fn remembered(&self) -> usize {
        self.named.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn list(rules: &[(Action, &str)]) -> AccessList {
        AccessList::new(
            rules
                .iter()
                .map(|(action, text)| parse_rule(*action, text).unwrap())
                .collect(),
        )
    }

    fn allowed(list: &AccessList, peer: &str, service: ServiceKind) -> bool {
        list.decide(ip(peer), service) == Decision::Allowed
    }

    use Action::{Allow, Deny};
    use ServiceKind::{Daytime, Echo};

    #[test]
    fn no_rules_allow_everyone() {
        let empty = AccessList::default();
        for peer in ["127.0.0.1", "::1", "203.0.113.9"] {
            assert!(allowed(&empty, peer, Echo));
        }
    }

    #[test]
    fn the_longest_prefix_decides_whatever_the_order_of_the_flags() {
        // The integration test's list: an allowed /24, a denied /29 in it, an allowed host in that.
        let rules = [
            (Allow, "127.0.0.0/24"),
            (Deny, "127.0.0.8/29"),
            (Allow, "127.0.0.9"),
        ];
        let mut reversed = rules;
        reversed.reverse();
        for list in [list(&rules), list(&reversed)] {
            assert!(allowed(&list, "127.0.0.2", Daytime));
            assert_eq!(
                list.decide(ip("127.0.0.10"), Daytime),
                Decision::Refused(Refusal::Denied(parse_rule(Deny, "127.0.0.8/29").unwrap()))
            );
            assert!(
                allowed(&list, "127.0.0.9", Daytime),
                "the /32 beats the /29"
            );
            assert_eq!(
                list.decide(ip("127.0.1.1"), Daytime),
                Decision::Refused(Refusal::NotAllowed),
                "no rule holds it and an allow list exists"
            );
            assert!(
                !allowed(&list, "::1", Daytime),
                "IPv6 is outside every allow"
            );
        }
    }

    #[test]
    fn at_equal_length_deny_wins() {
        let list = list(&[(Allow, "192.0.2.0/24"), (Deny, "192.0.2.0/24")]);
        assert!(!allowed(&list, "192.0.2.1", Echo));
        let list = self::list(&[(Deny, "192.0.2.1"), (Allow, "echo=192.0.2.1")]);
        assert!(!allowed(&list, "192.0.2.1", Echo), "global or not");
    }

    #[test]
    fn deny_only_lists_allow_the_rest() {
        let list = list(&[(Deny, "10.0.0.0/8")]);
        assert!(!allowed(&list, "10.1.2.3", Echo));
        assert!(allowed(&list, "11.0.0.1", Echo));
        assert!(allowed(&list, "2001:db8::1", Echo));
    }

    #[test]
    fn a_service_rule_applies_to_its_service_only() {
        let list = list(&[(Deny, "echo=127.0.0.3")]);
        assert!(!allowed(&list, "127.0.0.3", Echo));
        assert!(allowed(&list, "127.0.0.3", Daytime));
        // An allow for one service makes an allow list for that service only.
        let list = self::list(&[(Allow, "echo=10.0.0.0/8")]);
        assert!(allowed(&list, "10.0.0.1", Echo));
        assert!(!allowed(&list, "192.0.2.1", Echo));
        assert!(allowed(&list, "192.0.2.1", Daytime));
        // A service rule beats a wider global one.
        let list = self::list(&[(Deny, "0.0.0.0/0"), (Allow, "daytime=127.0.0.0/8")]);
        assert!(allowed(&list, "127.0.0.1", Daytime));
        assert!(!allowed(&list, "127.0.0.1", Echo));
    }

    #[test]
    fn ipv4_mapped_peers_and_rules_are_ipv4() {
        let list = list(&[(Deny, "192.0.2.0/24")]);
        assert!(!allowed(&list, "::ffff:192.0.2.7", Echo));
        let list = self::list(&[(Allow, "::ffff:10.0.0.0/104")]);
        assert_eq!(
            list.rules()[0].cidr,
            parse_cidr("10.0.0.0/8").unwrap(),
            "read as the IPv4 rule"
        );
        assert!(allowed(&list, "10.9.9.9", Echo));
        assert!(allowed(&list, "::ffff:10.9.9.9", Echo));
        let list = self::list(&[(Deny, "::/0")]);
        assert!(
            allowed(&list, "::ffff:10.9.9.9", Echo),
            "IPv6 rules miss IPv4"
        );
        assert!(!allowed(&list, "2001:db8::1", Echo));
    }

    #[test]
    fn parsing_accepts_brackets_prefixes_and_services() {
        let v6 = |text: &str, len| Cidr::V6 {
            bits: u128::from(text.parse::<Ipv6Addr>().unwrap()),
            len,
        };
        assert_eq!(parse_cidr("[::1]"), Ok(v6("::1", 128)));
        assert_eq!(parse_cidr("[2001:db8::]/32"), Ok(v6("2001:db8::", 32)));
        assert_eq!(parse_cidr("2001:db8::/32"), Ok(v6("2001:db8::", 32)));
        assert_eq!(parse_cidr("::/0"), Ok(v6("::", 0)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Ok(Cidr::V4 { bits: 0, len: 0 }));
        assert_eq!(
            parse_cidr("127.0.0.9"),
            Ok(Cidr::V4 {
                bits: 0x7f00_0009,
                len: 32
            })
        );
        let rule = parse_rule(Allow, "RFC868=[::1]").unwrap();
        assert_eq!(rule.service, Some(ServiceKind::Rfc868));
        assert_eq!(rule.to_string(), "--allow rfc868=::1/128");
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = |text| parse_rule(Deny, text).unwrap_err();
        assert!(err("localhost").contains("is not an IP address or CIDR"));
        assert!(err("").contains("is not an IP address or CIDR"));
        assert!(err("10.0.0.0/").contains("is not an IP address or CIDR"));
        assert!(err("10.0.0.0/+8").contains("is not an IP address or CIDR"));
        assert!(err("10.0.0.0/8/8").contains("is not an IP address or CIDR"));
        assert!(err("[10.0.0.0/8]").contains("is not an IP address or CIDR"));
        assert_eq!(
            err("10.0.0.0/33"),
            "'10.0.0.0/33': an IPv4 prefix is at most /32"
        );
        assert!(err("::/129").contains("an IPv6 prefix is at most /128"));
        assert!(err("10.0.0.0/999").contains("is not an IP address or CIDR"));
        assert_eq!(
            err("10.0.0.1/8"),
            "'10.0.0.1/8' has address bits set past its prefix (the network is 10.0.0.0/8)"
        );
        assert_eq!(
            err("ftp=10.0.0.0/8"),
            "'ftp' is not a service (time, echo, daytime, rfc868 or metrics)"
        );
        assert!(err("echo=").contains("is not an IP address or CIDR"));
    }

    fn attempt(n: u32) -> Attempt {
        (IpAddr::V4(Ipv4Addr::from(n)), Echo, Proto::Tcp)
    }

    #[test]
    fn a_refused_peer_is_named_once_per_episode_and_repeats_are_summed_once_a_second() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        let a = attempt(1);
        assert_eq!(log.refused(a, start), Note::Line);
        let due = start + REPORT_EVERY;
        assert_eq!(
            log.refused(a, start),
            Note::Counted {
                report_at: Some(due)
            },
            "a summary is now pending: set a timer"
        );
        assert_eq!(log.refused(a, start), Note::Counted { report_at: None });
        assert_eq!(
            log.refused((a.0, Echo, Proto::Udp), start),
            Note::Line,
            "another transport is another attempt"
        );
        assert_eq!(
            log.due_summary(start),
            None,
            "not before a second has passed"
        );
        assert_eq!(
            log.due_summary(due),
            Some(Summary {
                count: 2,
                since: start
            })
        );
        assert_eq!(log.due_summary(due), None, "written once");
        // Still refused a minute later: the episode goes on while the peer keeps trying...
        let later = start + EPISODE - Duration::from_secs(1);
        assert!(matches!(log.refused(a, later), Note::Counted { .. }));
        // ...and ends after a quiet minute: named again.
        assert_eq!(log.refused(a, later + EPISODE), Note::Line);
    }

    #[test]
    fn a_flood_of_forged_sources_costs_ten_lines_a_second_and_bounded_memory() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        let mut lines = 0;
        let mut timers = 0;
        for n in 0..100_000 {
            // 100,000 sources over 10 seconds.
            let now = start + Duration::from_micros(u64::from(n) * 100);
            match log.refused(attempt(n), now) {
                Note::Line => lines += 1,
                Note::Counted { report_at } => timers += usize::from(report_at.is_some()),
            }
            if let Some(summary) = log.due_summary(now) {
                assert!(summary.count > 0);
            }
        }
        assert!(
            lines <= 10 * LINES_PER_SECOND as usize + 10,
            "{lines} lines"
        );
        assert!(timers <= 11, "at most a summary a second: {timers}");
        assert!(log.remembered() <= REMEMBERED);
        // When the memory is full of recent sources, a new one is counted, not named...
        let mut full = RefusalLog::default();
        for n in 0..REMEMBERED as u32 {
            full.named.insert(attempt(n), start);
        }
        let newcomer = attempt(u32::MAX);
        let soon = start + Duration::from_secs(5);
        assert!(matches!(full.refused(newcomer, soon), Note::Counted { .. }));
        // ...until those sources have been quiet for an episode.
        assert_eq!(full.refused(newcomer, start + EPISODE), Note::Line);
        assert_eq!(full.remembered(), 1);
    }

    /// An IPv4 address in the block `bits/len`, `host` supplying the bits past the prefix.
    fn v4_inside(bits: u32, len: u8, host: u32) -> u32 {
        (bits & mask_v4(len)) | (host & !mask_v4(len))
    }

    fn v6_inside(bits: u128, len: u8, host: u128) -> u128 {
        (bits & mask_v6(len)) | (host & !mask_v6(len))
    }

    fn any_service() -> impl Strategy<Value = ServiceKind> {
        prop::sample::select(ServiceKind::ALL.to_vec())
    }

    /// Any address, IPv4, IPv6 or IPv4-mapped.
    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
            any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        ]
    }

    /// Text made of the pieces rules are made of, so parsing gets past its first checks.
    fn rule_like_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("echo=".to_string()),
            Just("=".to_string()),
            Just("/".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(":".to_string()),
            Just("::".to_string()),
            Just(".".to_string()),
            Just("ffff".to_string()),
            (0u16..1000).prop_map(|n| n.to_string()),
            "[0-9a-fA-F:.]{0,8}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn allowing_both_whole_families_allows_everything(
            peer in any_ip(), service in any_service(),
        ) {
            let list = list(&[(Allow, "0.0.0.0/0"), (Allow, "::/0")]);
            prop_assert_eq!(list.decide(peer, service), Decision::Allowed);
        }

        #[test]
        fn a_deny_inside_an_allow_refuses_exactly_its_range_ipv4(
            bits in any::<u32>(), len in 0u8..=32, extra in 0u8..=32, deny_host in any::<u32>(),
            peer in any::<u32>(), pick in 0u8..3, service in any_service(),
            reverse in any::<bool>(),
        ) {
            let allow = Cidr::V4 { bits: v4_inside(bits, len, 0), len };
            let deny_len = len.saturating_add(extra).min(32);
            let deny_bits = v4_inside(v4_inside(bits, len, deny_host), deny_len, 0);
            let deny = Cidr::V4 { bits: deny_bits, len: deny_len };
            // A third of the peers inside the deny, a third inside the allow, a third anywhere.
            let peer = IpAddr::V4(Ipv4Addr::from(match pick {
                0 => v4_inside(deny_bits, deny_len, peer),
                1 => v4_inside(bits, len, peer),
                _ => peer,
            }));
            let mut rules = vec![
                Rule { action: Allow, service: None, cidr: allow },
                Rule { action: Deny, service: None, cidr: deny },
            ];
            if reverse {
                rules.reverse();
            }
            let list = AccessList::new(rules);
            prop_assert_eq!(
                !allowed_ip(&list, peer, service),
                deny.contains(peer) || !allow.contains(peer)
            );
        }

        #[test]
        fn a_deny_inside_an_allow_refuses_exactly_its_range_ipv6(
            bits in any::<u128>(), len in 0u8..=128, extra in 0u8..=128, deny_host in any::<u128>(),
            peer in any::<u128>(), pick in 0u8..3,
        ) {
            let allow = Cidr::V6 { bits: v6_inside(bits, len, 0), len };
            let deny_len = len.saturating_add(extra).min(128);
            let deny_bits = v6_inside(v6_inside(bits, len, deny_host), deny_len, 0);
            let deny = Cidr::V6 { bits: deny_bits, len: deny_len };
            let peer = IpAddr::V6(Ipv6Addr::from(match pick {
                0 => v6_inside(deny_bits, deny_len, peer),
                1 => v6_inside(bits, len, peer),
                _ => peer,
            }));
            let list = AccessList::new(vec![
                Rule { action: Allow, service: None, cidr: allow },
                Rule { action: Deny, service: Some(Echo), cidr: deny },
            ]);
            // An IPv4-mapped peer is IPv4 and outside both blocks, so refused (an allow exists).
            prop_assert_eq!(
                !allowed_ip(&list, peer, Echo),
                deny.contains(peer) || !allow.contains(peer)
            );
            prop_assert_eq!(
                !allowed_ip(&list, peer, Daytime),
                !allow.contains(peer),
                "the deny is echo's only"
            );
        }

        #[test]
        fn parsing_never_panics(text in any::<String>(), pieces in rule_like_text()) {
            let _ = parse_rule(Allow, &text);
            let _ = parse_rule(Deny, &pieces);
        }

        #[test]
        fn a_parsed_rule_reads_back_the_same(text in rule_like_text()) {
            if let Ok(rule) = parse_rule(Deny, &text) {
                let written = rule.to_string();
                let value = written.strip_prefix("--deny ").unwrap();
                prop_assert_eq!(parse_rule(Deny, value), Ok(rule));
            }
        }
    }

    fn allowed_ip(list: &AccessList, peer: IpAddr, service: ServiceKind) -> bool {
        list.decide(peer, service) == Decision::Allowed
    }
}
