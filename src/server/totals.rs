//! What each loop has done since it started: the one set of counters behind the SIGUSR1 status
//! line, the status page (`GET /`) and `/metrics`.
//!
//! Counting is done where the work is done — the listener counts what it refuses, a connection
//! its bytes and why it closed, a UDP port its datagrams and what it dropped, the loop its
//! wakeups — and a service reports what only it knows (tick lateness, live sessions, whom it
//! turned away) through the contract's `Env::observe`, which lands in [`Cell`].
//!
//! # One writer, any reader: Relaxed loads and stores
//!
//! Each loop owns one [`Totals`] behind an `Arc`, and only that loop's thread writes it. A
//! [`Counter`] is an `AtomicU64` the writer updates with a Relaxed load and a Relaxed store,
//! not `fetch_add`: with a single writer no update can be lost, and on x86-64 and arm64 a
//! Relaxed load and store are the plain `mov`/`ldr`/`str` a `u64 +=` compiles to — no `lock`
//! prefix, no fence, no allocation, no lock. The loop serving `/metrics` (with `--threads`,
//! loop 1, for every loop) reads each counter with a Relaxed load: some recent value, never a
//! torn one. What a reader does not get is one instant for all counters at once (a scrape may
//! see a connection accepted and not yet its first bytes); Prometheus needs no more, since
//! counters only grow and the next scrape sees the rest.
//!
//! Why not publish snapshots instead? A copy of every counter taken under a lock each turn
//! costs a lock and a copy per turn whether anyone reads them or not, and a copy every N
//! milliseconds needs a timer that would wake an idle loop (which today sleeps in
//! `epoll_wait` until a packet comes). Why not `fetch_add`? It is a `lock xadd` per message,
//! paid for a guarantee a single writer does not need. Each loop's `Totals` is aligned to 128
//! bytes so two loops' counters never share a cache line.
//!
//! Gauges are stored the same way: live UDP sessions when the service reports them, timers
//! pending once per turn. Open connections are not stored at all: they are accepted − closed.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::listen::Proto;
use crate::services::ServiceKind;
use crate::services::contract::{Observation, Observer, Rejection};

/// A count that only grows (or a gauge, with [`Counter::set`]), written by its loop alone.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Only the owning loop calls this (a load and a store: see the module doc).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge. Only the owning loop calls this.
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    /// The value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Observations sorted into buckets by upper bound (inclusive), Prometheus-style. Buckets are
/// stored one by one (an observation adds to one bucket); the exposition adds them up.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    /// Upper bounds, ascending, in the unit observed (nanoseconds, events).
    bounds: [u64; N],
    /// `buckets[i]`: observations in `(bounds[i - 1], bounds[i]]`.
    buckets: [Counter; N],
    /// Observations above the last bound.
    over: Counter,
    /// The sum of every observation.
    sum: Counter,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [u64; N]) -> Self {
        Histogram {
            bounds,
            buckets: [const { Counter::new() }; N],
            over: Counter::new(),
            sum: Counter::new(),
        }
    }

    /// Counts one observation: a short scan of the bounds, an add to one bucket and to the sum.
    #[inline]
    pub fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .and_then(|i| self.buckets.get(i))
            .unwrap_or(&self.over);
        bucket.add(1);
        self.sum.add(value);
    }

    pub fn bounds(&self) -> &[u64; N] {
        &self.bounds
    }

    /// Each bucket's own count (not cumulative), then the count above the last bound.
    pub fn counts(&self) -> ([u64; N], u64) {
        (self.buckets.each_ref().map(Counter::get), self.over.get())
    }

    /// How many observations, from the buckets (so it always agrees with them).
    pub fn count(&self) -> u64 {
        let (buckets, over) = self.counts();
        buckets.iter().sum::<u64>() + over
    }

    pub fn sum(&self) -> u64 {
        self.sum.get()
    }
}

/// Bounds of the tick-lateness histograms, in nanoseconds: 0.1 ms to 1 s.
pub const LATENESS_BOUNDS_NS: [u64; 13] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];
/// Bounds of the events-per-wakeup histogram (a wakeup with 0 events is a timer's).
pub const EVENTS_BOUNDS: [u64; 12] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A yes/no published by its loop (whether a socket of this kind was bound).
#[derive(Debug, Default)]
pub struct Flag(AtomicBool);

impl Flag {
    pub fn raise(&self) {
        self.0.store(true, Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Relaxed)
    }
}

/// Declares a reason enum: its variants, their label values, `ALL` and `COUNT`.
macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub const COUNT: usize = $name::ALL.len();

            /// The `reason` label value.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }
    };
}

reasons! {
    /// Why a TCP connection ended (each closed connection counts under exactly one).
    CloseReason {
        /// The service finished (daytime, RFC 868, `Au Revoir`, an HTTP `Connection: close`).
        ServiceDone => "service_done",
        /// The peer sent FIN and the service had nothing more to say.
        PeerClosed => "peer_closed",
        /// The server was stopping.
        Shutdown => "shutdown",
        /// `--idle-timeout-ms`.
        IdleTimeout => "idle_timeout",
        /// `--send-timeout-ms`.
        SendTimeout => "send_timeout",
        /// No FIN from the peer within `LINGER` after ours.
        LingerExpired => "linger_expired",
        /// A reset or broken pipe.
        PeerReset => "peer_reset",
        /// Any other I/O error.
        IoError => "io_error",
        /// From a `--proxy-from` balancer, without a valid PROXY header.
        ProxyHeader => "proxy_header",
        /// The client a PROXY header named was refused (access lists, per-source limit).
        Refused => "refused",
    }
}

reasons! {
    /// Why the plumbing closed a TCP connection right after `accept`, before any byte.
    Refused {
        /// `--allow`/`--deny`.
        AccessList => "access_list",
        /// `--max-conns-per-ip`.
        MaxConnsPerIp => "max_conns_per_ip",
        /// It could not be registered with the poller (or no token was left).
        RegisterFailed => "register_failed",
        /// From a `--proxy-from` balancer, closed without a valid PROXY header (counted as
        /// accepted too: the header is read by the connection).
        ProxyHeader => "proxy_header",
    }
}

reasons! {
    /// Why the plumbing dropped a UDP datagram: one received and not served, or a reply not sent.
    Dropped {
        /// Received from a peer `--allow`/`--deny` refuses.
        AccessList => "access_list",
        /// Received from a source over `--udp-rate-per-ip`.
        RateIn => "rate_in",
        /// A reply to a destination over `--udp-rate-per-ip`.
        RateOut => "rate_out",
        /// A reply that found `SEND_QUEUE_LIMIT` reached.
        QueueFull => "queue_full",
        /// A reply `sendto` failed for (e.g. `ENETUNREACH`).
        SendFailed => "send_failed",
        /// Received while shutting down.
        Shutdown => "shutdown",
    }
}

/// Adds one to the counter of `index` in `counters` (indexes come from the enums above, so the
/// counter is always there).
fn bump(counters: &[Counter], index: usize) {
    if let Some(counter) = counters.get(index) {
        counter.add(1);
    }
}

/// One service's TCP side in one loop.
#[derive(Debug)]
pub struct TcpTotals {
    /// Whether this loop has a listener for it.
    pub served: Flag,
    /// Connections accepted and served (filed under a token).
    pub accepted: Counter,
    /// Connections closed, by [`CloseReason`].
    closed: [Counter; CloseReason::COUNT],
    /// Connections closed right after `accept`, by [`Refused`] (never counted as accepted).
    refused: [Counter; Refused::COUNT],
    /// Connections the service turned away, by [`Rejection`] (accepted, and closed too).
    rejected: [Counter; Rejection::ALL.len()],
    /// Bytes read (discarded input included).
    pub bytes_in: Counter,
    /// Bytes written.
    pub bytes_out: Counter,
    /// How late scheduled messages went out (the time stream's ticks).
    pub lateness: Histogram<13>,
}

/// One service's UDP side in one loop.
#[derive(Debug)]
pub struct UdpTotals {
    /// Whether this loop has a socket for it.
    pub served: Flag,
    /// Datagrams received (those dropped at once included).
    pub datagrams_in: Counter,
    /// Datagrams sent (not those still queued, dropped or failed).
    pub datagrams_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Datagrams the plumbing dropped, by [`Dropped`].
    dropped: [Counter; Dropped::COUNT],
    /// Datagrams the service left unanswered, by [`Rejection`].
    rejected: [Counter; Rejection::ALL.len()],
    /// Live sessions, as the service last reported them (a gauge).
    pub sessions: Counter,
    pub lateness: Histogram<13>,
}

impl Default for TcpTotals {
    fn default() -> Self {
        TcpTotals {
            served: Flag::default(),
            accepted: Counter::new(),
            closed: Default::default(),
            refused: Default::default(),
            rejected: Default::default(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            lateness: Histogram::new(LATENESS_BOUNDS_NS),
        }
    }
}

impl Default for UdpTotals {
    fn default() -> Self {
        UdpTotals {
            served: Flag::default(),
            datagrams_in: Counter::new(),
            datagrams_out: Counter::new(),
            bytes_in: Counter::new(),
            bytes_out: Counter::new(),
            dropped: Default::default(),
            rejected: Default::default(),
            sessions: Counter::new(),
            lateness: Histogram::new(LATENESS_BOUNDS_NS),
        }
    }
}

fn rejection_index(why: Rejection) -> usize {
    Rejection::ALL
        .iter()
        .position(|&r| r == why)
        .unwrap_or(usize::MAX)
}

impl TcpTotals {
    pub fn close(&self, why: CloseReason) {
        bump(&self.closed, why as usize);
    }

    pub fn refuse(&self, why: Refused) {
        bump(&self.refused, why as usize);
    }

    pub fn reject(&self, why: Rejection) {
        bump(&self.rejected, rejection_index(why));
    }

    pub fn closed(&self, why: CloseReason) -> u64 {
        self.closed.get(why as usize).map_or(0, Counter::get)
    }

    pub fn closed_total(&self) -> u64 {
        self.closed.iter().map(Counter::get).sum()
    }

    pub fn refused(&self, why: Refused) -> u64 {
        self.refused.get(why as usize).map_or(0, Counter::get)
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected
            .get(rejection_index(why))
            .map_or(0, Counter::get)
    }

    /// Open now: accepted − closed (read in that order, so never below 0 on one thread; across
    /// threads saturating at 0 for a moment's disagreement).
    pub fn open(&self) -> u64 {
        let accepted = self.accepted.get();
        accepted.saturating_sub(self.closed_total())
    }
}

impl UdpTotals {
    pub fn drop_one(&self, why: Dropped) {
        bump(&self.dropped, why as usize);
    }

    pub fn reject(&self, why: Rejection) {
        bump(&self.rejected, rejection_index(why));
    }

    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped.get(why as usize).map_or(0, Counter::get)
    }

    pub fn rejected(&self, why: Rejection) -> u64 {
        self.rejected
            .get(rejection_index(why))
            .map_or(0, Counter::get)
    }

    /// Counts one datagram sent.
    pub fn sent(&self, bytes: usize) {
        self.datagrams_out.add(1);
        self.bytes_out.add(bytes as u64);
    }
}

/// One service in one loop: its TCP side and its UDP side.
#[derive(Debug, Default)]
pub struct ServiceTotals {
    pub tcp: TcpTotals,
    pub udp: UdpTotals,
}

/// The loop itself.
#[derive(Debug)]
pub struct LoopTotals {
    /// Events per `epoll_wait` return: its count is the wakeups, its sum the events.
    pub events_per_wakeup: Histogram<12>,
    /// Sockets served again after yielding (a budget was spent).
    pub replays: Counter,
    /// Timers that fired (live ones, handed to their owner).
    pub timers_fired: Counter,
    /// Timers in the heap at the end of the last turn (a gauge; stale ones included until they
    /// reach the top).
    pub timers_pending: Counter,
    /// Times accepting paused on an error such as `EMFILE`.
    pub accept_pauses: Counter,
    /// Nanoseconds spent blocked in `epoll_wait`.
    pub poll_nanos: Counter,
    /// Nanoseconds spent between `epoll_wait` returns and the next call: the loop's work.
    pub work_nanos: Counter,
}

impl Default for LoopTotals {
    fn default() -> Self {
        LoopTotals {
            events_per_wakeup: Histogram::new(EVENTS_BOUNDS),
            replays: Counter::new(),
            timers_fired: Counter::new(),
            timers_pending: Counter::new(),
            accept_pauses: Counter::new(),
            poll_nanos: Counter::new(),
            work_nanos: Counter::new(),
        }
    }
}

/// Everything one loop counts. The loop holds it in an `Arc` and is its only writer.
#[derive(Debug)]
#[repr(align(128))]
pub struct Totals {
    time: ServiceTotals,
    echo: ServiceTotals,
    daytime: ServiceTotals,
    rfc868: ServiceTotals,
    metrics: ServiceTotals,
    /// The loop's own work.
    pub turns: LoopTotals,
    /// When the loop was made, for its uptime.
    started: Instant,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            time: ServiceTotals::default(),
            echo: ServiceTotals::default(),
            daytime: ServiceTotals::default(),
            rfc868: ServiceTotals::default(),
            metrics: ServiceTotals::default(),
            turns: LoopTotals::default(),
            started: Instant::now(),
        }
    }
}

/// What one loop has done, added up over its services: the figures of the status line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub tcp_open: u64,
    pub tcp_accepted: u64,
    pub tcp_closed: u64,
    /// Closed right after `accept` for a limit (not by the access lists, nor for a PROXY header,
    /// both counted apart). Behind a `--proxy-from` balancer, refused once its header named
    /// the client.
    pub tcp_refused: u64,
    pub tcp_bytes_in: u64,
    pub tcp_bytes_out: u64,
    pub udp_datagrams_in: u64,
    pub udp_datagrams_out: u64,
    pub udp_bytes_in: u64,
    pub udp_bytes_out: u64,
    pub tcp_refused_by_access: u64,
    pub udp_refused_by_access: u64,
    /// Connections from `--proxy-from` balancers closed without a valid PROXY header.
    pub proxy_header_failures: u64,
    pub timers_pending: u64,
}

/// What only the loop itself can see, right now: for the SIGUSR1 line.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub sockets_with_queued_output: usize,
    pub sockets_to_replay: usize,
}

impl Totals {
    /// The counters of `kind`.
    pub fn of(&self, kind: ServiceKind) -> &ServiceTotals {
        match kind {
            ServiceKind::TimeStream => &self.time,
            ServiceKind::Echo => &self.echo,
            ServiceKind::Daytime => &self.daytime,
            ServiceKind::Rfc868 => &self.rfc868,
            ServiceKind::Metrics => &self.metrics,
        }
    }

    /// Marks `kind` over `proto` as served by this loop (its series appear in `/metrics`).
    pub fn serving(&self, kind: ServiceKind, proto: Proto) {
        let service = self.of(kind);
        match proto {
            Proto::Tcp => service.tcp.served.raise(),
            Proto::Udp => service.udp.served.raise(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every service's counters added up.
    pub fn summary(&self) -> Summary {
        let mut sum = Summary {
            timers_pending: self.turns.timers_pending.get(),
            ..Summary::default()
        };
        for kind in ServiceKind::EVERY {
            let ServiceTotals { tcp, udp } = self.of(kind);
            sum.tcp_open += tcp.open();
            sum.tcp_accepted += tcp.accepted.get();
            sum.tcp_closed += tcp.closed_total();
            sum.tcp_refused +=
                tcp.refused(Refused::MaxConnsPerIp) + tcp.refused(Refused::RegisterFailed);
            sum.tcp_refused_by_access += tcp.refused(Refused::AccessList);
            sum.proxy_header_failures += tcp.refused(Refused::ProxyHeader);
            sum.tcp_bytes_in += tcp.bytes_in.get();
            sum.tcp_bytes_out += tcp.bytes_out.get();
            sum.udp_datagrams_in += udp.datagrams_in.get();
            sum.udp_datagrams_out += udp.datagrams_out.get();
            sum.udp_bytes_in += udp.bytes_in.get();
            sum.udp_bytes_out += udp.bytes_out.get();
            sum.udp_refused_by_access += udp.dropped(Dropped::AccessList);
        }
        sum
    }

    /// The status line (SIGUSR1, and each loop's line on the status page): which loop, for how
    /// long, what it holds and what it has done since it started. `live` adds what only the
    /// loop itself can count right now.
    pub fn status_line(&self, number: (usize, usize), now: Instant, live: Option<Live>) -> String {
        let name = match number {
            (_, 1) => String::from("status"),
            (number, count) => format!("status loop {number}/{count}"),
        };
        let Summary {
            tcp_open,
            tcp_accepted,
            tcp_closed,
            tcp_refused,
            tcp_bytes_in,
            tcp_bytes_out,
            udp_datagrams_in,
            udp_datagrams_out,
            udp_bytes_in,
            udp_bytes_out,
            tcp_refused_by_access,
            udp_refused_by_access,
            proxy_header_failures,
            timers_pending,
        } = self.summary();
        let live = live.map_or(String::new(), |live| {
            format!(
                ", {} sockets with queued output, {} sockets to replay",
                live.sockets_with_queued_output, live.sockets_to_replay
            )
        });
        format!(
            "{name}: up {}; {tcp_open} TCP connections open, {timers_pending} timers pending{live}; \
             since start: TCP {tcp_accepted} accepted, {tcp_closed} closed, {tcp_refused} refused, \
             {tcp_bytes_in} bytes in, {tcp_bytes_out} bytes out; \
             UDP {udp_datagrams_in} datagrams in, {udp_datagrams_out} out, \
             {udp_bytes_in} bytes in, {udp_bytes_out} bytes out; \
             refused by access lists: {tcp_refused_by_access} tcp, {udp_refused_by_access} udp; \
             closed without a valid PROXY header: {proxy_header_failures}",
            Uptime(now.saturating_duration_since(self.started))
        )
    }
}

/// Where a service's observations land: the counters of its service over its transport.
pub enum Cell<'a> {
    Tcp(&'a TcpTotals),
    Udp(&'a UdpTotals),
}

impl<'a> Cell<'a> {
    pub fn of(totals: &'a Totals, kind: ServiceKind, proto: Proto) -> Self {
        let service = totals.of(kind);
        match proto {
            Proto::Tcp => Cell::Tcp(&service.tcp),
            Proto::Udp => Cell::Udp(&service.udp),
        }
    }
}

impl Observer for Cell<'_> {
    fn observe(&mut self, what: Observation) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match (self, what) {
            (Cell::Tcp(tcp), Observation::Lateness(late)) => tcp.lateness.observe(nanos(late)),
            (Cell::Udp(udp), Observation::Lateness(late)) => udp.lateness.observe(nanos(late)),
            (Cell::Udp(udp), Observation::LiveSessions(n)) => udp.sessions.set(n as u64),
            // A TCP service's sessions are its connections, which the plumbing counts.
            (Cell::Tcp(_), Observation::LiveSessions(_)) => {}
            (Cell::Tcp(tcp), Observation::Rejected(why)) => tcp.reject(why),
            (Cell::Udp(udp), Observation::Rejected(why)) => udp.reject(why),
        }
    }
}

/// An uptime as `[N d ]hh:mm:ss`, like `uptime(1)`.
pub struct Uptime(pub Duration);

impl fmt::Display for Uptime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.as_secs();
        let (days, rest) = (seconds / 86_400, seconds % 86_400);
        if days > 0 {
            write!(f, "{days} d ")?;
        }
        write!(
            f,
            "{:02}:{:02}:{:02}",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_uptime() {
        let up = |s| Uptime(Duration::from_secs(s)).to_string();
        assert_eq!(up(0), "00:00:00");
        assert_eq!(up(3723), "01:02:03");
        assert_eq!(up(86_400 * 3 + 59), "3 d 00:00:59");
    }

    #[test]
    fn a_histogram_puts_each_observation_in_the_first_bucket_whose_bound_holds_it() {
        let h = Histogram::new([1, 10, 100]);
        for value in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(value);
        }
        assert_eq!(h.counts(), ([2, 2, 2], 2));
        assert_eq!(h.count(), 8);
        assert_eq!(h.sum(), 5225);
    }

    #[test]
    fn observations_land_in_their_service_and_transport() {
        let totals = Totals::default();
        Cell::of(&totals, ServiceKind::TimeStream, Proto::Udp)
            .observe(Observation::Lateness(Duration::from_millis(3)));
        Cell::of(&totals, ServiceKind::TimeStream, Proto::Udp)
            .observe(Observation::LiveSessions(7));
        Cell::of(&totals, ServiceKind::TimeStream, Proto::Tcp)
            .observe(Observation::Rejected(Rejection::GreetingTimeout));
        let time = totals.of(ServiceKind::TimeStream);
        assert_eq!(time.udp.lateness.count(), 1);
        assert_eq!(time.udp.lateness.sum(), 3_000_000);
        assert_eq!(time.tcp.lateness.count(), 0);
        assert_eq!(time.udp.sessions.get(), 7);
        assert_eq!(time.tcp.rejected(Rejection::GreetingTimeout), 1);
        assert_eq!(time.udp.rejected(Rejection::GreetingTimeout), 0);
    }

    #[test]
    fn the_summary_adds_up_every_service_and_open_is_accepted_minus_closed() {
        let totals = Totals::default();
        let echo = &totals.of(ServiceKind::Echo).tcp;
        let daytime = &totals.of(ServiceKind::Daytime).tcp;
        echo.accepted.add(3);
        echo.close(CloseReason::PeerClosed);
        daytime.accepted.add(1);
        daytime.close(CloseReason::ServiceDone);
        echo.refuse(Refused::MaxConnsPerIp);
        echo.refuse(Refused::AccessList);
        totals.of(ServiceKind::Rfc868).udp.sent(4);
        totals
            .of(ServiceKind::Rfc868)
            .udp
            .drop_one(Dropped::AccessList);
        let sum = totals.summary();
        assert_eq!(
            (
                sum.tcp_open,
                sum.tcp_accepted,
                sum.tcp_closed,
                sum.tcp_refused
            ),
            (2, 4, 2, 1)
        );
        assert_eq!(
            (sum.tcp_refused_by_access, sum.udp_refused_by_access),
            (1, 1)
        );
        assert_eq!((sum.udp_datagrams_out, sum.udp_bytes_out), (1, 4));
        assert_eq!(echo.open(), 2);
        let line = totals.status_line((2, 3), totals.started(), None);
        assert!(
            line.starts_with("status loop 2/3: up 00:00:00; 2 TCP connections open, 0 timers pending; since start: TCP 4 accepted, 2 closed, 1 refused,"),
            "{line}"
        );
    }
}
