//! One handler shape for every socket the loop owns, and what handlers share.
//!
//! The slab behind the tokens holds three kinds of entries — a TCP listener, a UDP port, a TCP
//! connection — and the loop talks to all three through the same [`Handler`] calls, each
//! answering with a [`Verdict`] (keep, replay next turn, close). That is ae.c's one
//! `rfileProc` signature and mio's one `handle_connection_event`: the reactor needs one `match`
//! to find the handler, and none to decide what to do with its answer.
//!
//! A handler gets a [`Context`]: its own token, the registry (to change its interest), the
//! loop's one scratch buffer, and [`Shared`] — the loop's state that handlers may touch (time,
//! settings, wall clock, timers, the UDP budget, the accept gate). Services never see any of it:
//! the plumbing lends them the narrow `Env` of the contract through [`Shared::with_env`].
//!
//! [`Context::access_allows`] is where the listener and the UDP port ask the access list
//! (`access.rs`) about a peer, and where a refusal is counted and logged; a connection from a
//! `--proxy-from` balancer asks [`Shared::access_allows`] once its PROXY header has named the
//! client, and reports a missing or malformed header through [`Shared::proxy_header_failed`].
//!
//! What the loop counts lives in [`Shared::totals`] (`totals.rs`): this loop's counters, which
//! the metrics endpoint reads from any loop. A service's own figures reach them through the
//! `Env` that [`Shared::with_env`] lends, whose observer is the service's [`Cell`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::warn;
use mio::net::TcpStream;
use mio::{Registry, Token};

use super::access::{Decision, Note, RefusalLog, canonical};
use super::config::Settings;
use super::listen::Proto;
use super::metrics::Board;
use super::per_source::ConnectionsBySource;
use super::rate_limit::RateLimiter;
use super::readiness::{Readiness, Verdict};
use super::timer::{Tag, TimerHeap};
use super::totals::{Cell, Dropped, Refused, Totals, UdpTotals};
use super::trace::{Act, Tracer};
use crate::services::ServiceKind;
use crate::services::clock::WallClock;
use crate::services::contract::{Env, TimerTag, Timers};
use crate::slots::KeyLabel;

/// The plumbing timer a listener or a UDP port gets when a summary of access refusals becomes
/// pending (see [`Context::access_allows`]). Connections number their own plumbing timers;
/// listeners and UDP ports have no other but [`PROXY_REPORT`].
pub const ACCESS_REPORT: u64 = 0;
/// The plumbing timer a listener gets when a summary of PROXY header failures of its
/// connections becomes pending (see [`Shared::proxy_header_failed`]).
pub const PROXY_REPORT: u64 = 1;

/// The calls every entry of the slab answers.
pub trait Handler {
    /// A readiness event (or a replayed one, see [`Verdict::Yield`]).
    fn on_ready(&mut self, ready: Readiness, cx: &mut Context) -> Verdict;
    /// One of this entry's timers is due.
    fn on_timer(&mut self, tag: Tag, cx: &mut Context) -> Verdict;
    /// Whether a timer still matters; stale ones are dropped before they can wake the loop.
    fn timer_is_live(&self, tag: Tag) -> bool;
    /// The server is stopping: say goodbye, stop taking new work.
    fn on_shutdown(&mut self, cx: &mut Context) -> Verdict;
    /// The loop is about to drop this entry: deregister its socket (dropping alone leaves the
    /// registration to the kernel's cleanup, mio #1269) and settle any accounts.
    fn on_close(&mut self, cx: &mut Context);
    /// Nothing is left to send; a shutdown waits for every entry to be drained.
    fn is_drained(&self) -> bool {
        true
    }
    /// What this entry is, for logs and traces, e.g. `echo tcp 127.0.0.1:5123`.
    fn describe(&self) -> String;
    /// What to call one of this entry's timers in `--trace-events`: `tick 3/5`, `idle
    /// timeout`, `linger`. Called only while tracing.
    fn describe_timer(&self, tag: Tag) -> String {
        tag.to_string()
    }
}

/// A connection just accepted, waiting for the reactor to file it under a token.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub kind: ServiceKind,
    /// From a `--proxy-from` balancer: not yet checked against the access lists nor counted for
    /// its source; the PROXY header will say who the peer is. Otherwise the listener has done
    /// both.
    pub proxied: bool,
    /// The listener that accepted it, which reports the summaries of refusals its connections
    /// leave pending when they close.
    pub listener: Token,
}

/// Why accepting may be on hold.
#[derive(Default)]
pub struct AcceptGate {
    /// Connections may wait in a listen backlog that was left undrained (at `--max-conns`, out
    /// of descriptors): with edge-triggering no new event will say so.
    pub backlog_waiting: bool,
    /// Out of descriptors: no `accept` before this instant.
    pub retry_at: Option<Instant>,
    /// Whether descriptor exhaustion was logged in this episode.
    pub exhaustion_logged: bool,
}

/// The loop's state that handlers share. The reactor owns one.
pub struct Shared {
    /// Taken once per loop turn, so everything done in one turn agrees on the time.
    pub now: Instant,
    pub settings: Settings,
    pub clock: WallClock,
    pub timers: TimerHeap,
    /// Datagrams served per source, every UDP service together.
    pub udp_in: RateLimiter,
    /// Datagrams sent per destination, every UDP service together (no reflection).
    pub udp_out: RateLimiter,
    pub accept: AcceptGate,
    /// Filled by listeners, emptied by the reactor after each handler call.
    pub accepted: Vec<Accepted>,
    /// Open TCP connections, for `--max-conns`.
    pub connections: usize,
    /// Open TCP connections by source, for `--max-conns-per-ip`: counted when a listener
    /// accepts, released when the connection closes.
    pub by_source: ConnectionsBySource,
    /// Which refusals of the access lists the log names, and the pending summary of the
    /// others (they are counted in [`Shared::totals`]).
    pub refusal_log: RefusalLog,
    /// Which connections from `--proxy-from` balancers closed without a valid PROXY header
    /// the log names, and the pending summary of the others (counted in the totals too).
    pub proxy_log: RefusalLog,
    /// This loop's counters since it started (this loop is their only writer).
    pub totals: Arc<Totals>,
    /// Every loop's counters, for the pages of the metrics endpoint.
    pub board: Arc<Board>,
    /// `--trace-events`: off, or the loop's narrator.
    pub trace: Tracer,
}

impl Shared {
    /// The state of a loop counting into `totals`, one of `board`'s.
    pub fn new(settings: Settings, board: Arc<Board>, totals: Arc<Totals>) -> Self {
        let now = Instant::now();
        Shared {
            now,
            trace: Tracer::new(settings.trace, now),
            udp_in: RateLimiter::new(settings.udp_rate_per_ip),
            udp_out: RateLimiter::new(settings.udp_rate_per_ip),
            settings,
            clock: WallClock::default(),
            timers: TimerHeap::default(),
            accept: AcceptGate::default(),
            accepted: Vec::new(),
            connections: 0,
            by_source: ConnectionsBySource::default(),
            refusal_log: RefusalLog::default(),
            proxy_log: RefusalLog::default(),
            totals,
            board,
        }
    }

    /// Whether the access list lets `peer` use `kind` over `proto` (see
    /// [`Context::access_allows`]); a pending summary of refusals is reported by the entry
    /// `owner` (a listener or a UDP port, which outlive the connections they accept), through an
    /// [`ACCESS_REPORT`] timer.
    pub fn access_allows(
        &mut self,
        kind: ServiceKind,
        proto: Proto,
        peer: SocketAddr,
        owner: Token,
    ) -> bool {
        let Decision::Refused(why) = self.settings.access.decide(peer.ip(), kind) else {
            return true;
        };
        let counted = self.totals.of(kind);
        match proto {
            Proto::Tcp => counted.tcp.refuse(Refused::AccessList),
            Proto::Udp => counted.udp.drop_one(Dropped::AccessList),
        }
        let ip = canonical(peer.ip());
        let (service, transport) = (kind.name(), proto.name());
        trace_event!(self.trace, owner, Act::Refused { peer, why: &why });
        self.report_access_refusals();
        match self.refusal_log.refused((ip, kind, proto), self.now) {
            Note::Line => warn!(
                "{service} {transport}: refused {ip} ({why}); its next refusals are counted, not logged"
            ),
            Note::Counted {
                report_at: Some(at),
            } => self
                .timers
                .schedule(at, owner, Tag::Plumbing(ACCESS_REPORT)),
            Note::Counted { report_at: None } => {}
        }
        false
    }

    /// Logs the summary of the access refusals not named one by one, if one is due.
    pub fn report_access_refusals(&mut self) {
        report_summary(&mut self.refusal_log, self.now, "access lists", "refused");
    }

    /// A connection from a `--proxy-from` balancer is closed without a valid PROXY header
    /// (malformed, missing at EOF, or late): counted, and logged in the bounded way of the
    /// access lists' refusals — once per (balancer, service) episode, the rest summed at most
    /// once a second by the listener `owner` through a [`PROXY_REPORT`] timer — so a balancer
    /// gone wrong, or a flood through it, costs a few lines a second.
    pub fn proxy_header_failed(
        &mut self,
        kind: ServiceKind,
        balancer: SocketAddr,
        why: &str,
        owner: Token,
    ) {
        self.totals.of(kind).tcp.refuse(Refused::ProxyHeader);
        self.report_proxy_header_failures();
        let ip = canonical(balancer.ip());
        match self.proxy_log.refused((ip, kind, Proto::Tcp), self.now) {
            Note::Line => warn!(
                "{} tcp {balancer}: {why}; closing (--proxy-from requires a PROXY header; \
                 its next failures are counted, not logged)",
                kind.name()
            ),
            Note::Counted {
                report_at: Some(at),
            } => self.timers.schedule(at, owner, Tag::Plumbing(PROXY_REPORT)),
            Note::Counted { report_at: None } => {}
        }
    }

    /// Logs the summary of the PROXY header failures not named one by one, if one is due.
    pub fn report_proxy_header_failures(&mut self) {
        report_summary(
            &mut self.proxy_log,
            self.now,
            "PROXY headers",
            "connections from --proxy-from balancers closed without a valid one",
        );
    }

    /// Calls an entry point of service `kind` over `proto` with the contract's `Env`, filing
    /// the timers it sets under `token` in the service's tag space, and its observations in
    /// its counters.
    pub fn with_env<R>(
        &mut self,
        token: Token,
        kind: ServiceKind,
        proto: Proto,
        call: impl FnOnce(&mut Env) -> R,
    ) -> R {
        let mut timers = OwnerTimers {
            heap: &mut self.timers,
            token,
        };
        let mut observer = Cell::of(&self.totals, kind, proto);
        let mut env = Env::new(
            self.now,
            &self.settings.service,
            &mut self.clock,
            &mut timers,
            &mut observer,
            self.board.as_ref(),
        );
        call(&mut env)
    }

    /// [`Shared::with_env`] for a UDP service, whose outbox also needs the outgoing budget and
    /// the counters it adds to.
    pub fn with_env_and_budget<R>(
        &mut self,
        token: Token,
        kind: ServiceKind,
        call: impl FnOnce(&mut Env, &mut RateLimiter, &UdpTotals) -> R,
    ) -> R {
        let mut timers = OwnerTimers {
            heap: &mut self.timers,
            token,
        };
        let totals = &self.totals.of(kind).udp;
        let mut observer = Cell::Udp(totals);
        let mut env = Env::new(
            self.now,
            &self.settings.service,
            &mut self.clock,
            &mut timers,
            &mut observer,
            self.board.as_ref(),
        );
        call(&mut env, &mut self.udp_out, totals)
    }
}

/// The loop's heap seen from one owner's service.
struct OwnerTimers<'a> {
    heap: &'a mut TimerHeap,
    token: Token,
}

impl Timers for OwnerTimers<'_> {
    fn set(&mut self, deadline: Instant, tag: TimerTag) {
        self.heap.schedule(deadline, self.token, Tag::Service(tag));
    }
}

/// What a handler call may use.
pub struct Context<'a> {
    /// The token of the entry being called.
    pub token: Token,
    pub registry: &'a Registry,
    /// The loop's one read buffer, lent to whichever socket is being read.
    pub scratch: &'a mut [u8],
    pub shared: &'a mut Shared,
}

impl Context<'_> {
    /// The token as `#slot.generation`, for log lines.
    pub fn label(&self) -> KeyLabel {
        KeyLabel(self.token.0)
    }

    /// Whether the access list lets `peer` use `kind` over `proto`. A refusal is counted, named
    /// in the log if it is the first of its episode, and otherwise left to a summary line: this
    /// entry gets an [`ACCESS_REPORT`] timer for it, and must call
    /// [`Context::report_access_refusals`] when it fires.
    pub fn access_allows(&mut self, kind: ServiceKind, proto: Proto, peer: SocketAddr) -> bool {
        let owner = self.token;
        self.shared.access_allows(kind, proto, peer, owner)
    }

    /// Logs the summary of the refusals not named one by one, if one is due.
    pub fn report_access_refusals(&mut self) {
        self.shared.report_access_refusals();
    }

    /// Sets one of the plumbing's own timers for this entry.
    pub fn set_plumbing_timer(&mut self, deadline: Instant, number: u64) {
        self.shared
            .timers
            .schedule(deadline, self.token, Tag::Plumbing(number));
    }
}

/// One summary line for the refusals of `log` not named one by one, if one is due:
/// `WHAT: N more WHICH in the last S s, not logged one by one`.
fn report_summary(log: &mut RefusalLog, now: Instant, what: &str, which: &str) {
    if let Some(summary) = log.due_summary(now) {
        warn!(
            "{what}: {} more {which} in the last {:.1} s, not logged one by one",
            summary.count,
            now.saturating_duration_since(summary.since).as_secs_f64()
        );
    }
}
