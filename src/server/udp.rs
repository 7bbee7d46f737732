//! The UDP plumbing: one socket per service, written once for all UDP services.
//!
//! UDP has no connections, so there is no `listen` and no `accept`: one socket receives every
//! peer's datagrams, and `recv_from` (`recvfrom(2)`) says who sent each one. On a readable event
//! the port reads datagrams until `WouldBlock` (edge-triggered), at most [`RECV_BUDGET`] per turn
//! so a flood on one socket cannot starve the others, and hands each to its service.
//!
//! Replies go out through an [`Outbox`]: `sendto(2)` at once; if the kernel's send buffer is
//! full (`WouldBlock`, which a UDP socket does report) the datagram waits in a bounded queue and
//! the socket asks for `WRITABLE` until the queue is empty. What does not fit in the queue is
//! dropped — UDP promises nothing more, and a server must never stop for a slow sender.
//!
//! Each datagram received passes two checks before its service sees it: the access list
//! (`--allow`/`--deny`, `access.rs`), then the per-source rate limit (`rate_limit.rs`). A
//! datagram either check refuses is dropped unanswered; one the access list refuses spends no
//! budget.
//!
//! Logs: one line at info per exchange of a one-shot service
//! (`daytime udp 127.0.0.1:40000: answered, 0 bytes in, 26 bytes out`); a service with
//! sessions (the time stream) logs its sessions itself through [`Outbox::log`]. Either way the
//! lines go through the socket's `LogBudget`: a datagram costs an attacker nothing and may
//! carry any source address, so the per-source budgets cannot bound the log — at most
//! [`UDP_LOG_BUDGET`] lines a second per socket are written, and one more line sums up the
//! rest.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::handler::{ACCESS_REPORT, Context, Handler, Shared};
use super::listen::Proto;
use super::rate_limit::{Admission, RateLimiter};
use super::readiness::{Readiness, Verdict};
use super::timer::Tag;
use super::totals::{Dropped, UdpTotals};
use super::trace::{Act, Tracer};
use crate::nonblocking::{interrupted, would_block};
use crate::services::ServiceKind;
use crate::services::contract::{Env, Outbox, UdpService};
use crate::source::Source;

/// Datagrams read per readable event before the port yields to the other sockets.
pub const RECV_BUDGET: usize = 256;
/// The port's plumbing timer for the log budget's summary (`ACCESS_REPORT` is the other).
const LOG_SUMMARY: u64 = 1;
/// Bytes of replies allowed to wait for the send buffer; beyond it replies are dropped.
pub const SEND_QUEUE_LIMIT: usize = 256 * 1024;
/// Lines about UDP peers logged per socket per second. Beyond it lines are only counted, and
/// one line at the end of the second says how many were not logged: a flood from any number
/// of forged sources writes at most this many lines (plus one) a second per UDP socket.
pub const UDP_LOG_BUDGET: u32 = 50;
/// The period of [`UDP_LOG_BUDGET`].
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Rations the lines logged about UDP peers on one socket: [`UDP_LOG_BUDGET`] per window of
/// [`LOG_WINDOW`], which starts at the first line after a quiet spell.
#[derive(Default)]
struct LogBudget {
    /// When the current window began; `None` between windows.
    window: Option<Instant>,
    /// Lines logged in the current window.
    logged: u32,
    /// Lines not logged in the current window.
    unlogged: u64,
    /// When the timer that writes the summary line is due, if one is set.
    summary_at: Option<Instant>,
}

impl LogBudget {
    /// Logs `<service> udp <peer>: <line>` at info if the window has room; counts it if not.
    fn log(&mut self, kind: ServiceKind, now: Instant, peer: SocketAddr, line: fmt::Arguments) {
        self.summarize(kind, now, false);
        self.window.get_or_insert(now);
        if self.logged < UDP_LOG_BUDGET {
            self.logged += 1;
            info!("{} udp {peer}: {line}", kind.name());
        } else {
            self.unlogged += 1;
        }
    }

    /// Ends the window if it is over (or at once if `now_or_never`: the socket is closing),
    /// with a line saying how many lines it did not log.
    fn summarize(&mut self, kind: ServiceKind, now: Instant, now_or_never: bool) {
        let Some(began) = self.window else {
            return;
        };
        if !now_or_never && now < began + LOG_WINDOW {
            return;
        }
        if self.unlogged > 0 {
            info!(
                "{} udp: {} more UDP exchanges not logged individually (log budget: {UDP_LOG_BUDGET} lines a second per UDP socket)",
                kind.name(),
                self.unlogged
            );
        }
        self.window = None;
        self.logged = 0;
        self.unlogged = 0;
    }

    /// When the summary line is due: the end of a window with lines not logged.
    fn summary_due(&self) -> Option<Instant> {
        self.window
            .filter(|_| self.unlogged > 0)
            .map(|began| began + LOG_WINDOW)
    }
}

/// What one call of a service sent, for the exchange's log line.
#[derive(Clone, Copy, Default)]
struct Tally {
    /// Datagrams sent or queued.
    datagrams: u32,
    /// Their bytes.
    bytes: u64,
    /// Datagrams not sent: their destination was over its budget.
    over_budget: u32,
    /// Datagrams not sent: the send queue was full.
    queue_full: u32,
}

/// Replies that `sendto` could not take yet.
#[derive(Default)]
struct SendQueue {
    datagrams: VecDeque<(SocketAddr, Box<[u8]>)>,
    bytes: usize,
    /// Whether dropping has been logged in the current episode (log once, not per datagram).
    drop_logged: bool,
}

impl SendQueue {
    fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Sends queued datagrams until the queue is empty or the kernel would block.
    fn flush(&mut self, socket: &UdpSocket, trace: Trace, totals: &UdpTotals) {
        while let Some((peer, payload)) = self.datagrams.front() {
            match send_now(socket, payload, *peer, trace) {
                Sent::Blocked => return,
                sent => {
                    sent.count(totals);
                    self.bytes -= payload.len();
                    self.datagrams.pop_front();
                }
            }
        }
        self.drop_logged = false;
    }
}

/// The loop's tracer (`--trace-events`) and the token to trace sends under.
#[derive(Clone, Copy)]
struct Trace {
    tracer: Tracer,
    token: Token,
}

impl Trace {
    fn of(cx: &Context) -> Self {
        Trace {
            tracer: cx.shared.trace,
            token: cx.token,
        }
    }
}

/// The contract's [`Outbox`] on a real socket: send now, or queue, or drop.
struct SocketOutbox<'a> {
    socket: &'a UdpSocket,
    kind: ServiceKind,
    queue: &'a mut SendQueue,
    /// What each destination may still receive this second, every UDP service together.
    budget: &'a mut RateLimiter,
    log_budget: &'a mut LogBudget,
    totals: &'a UdpTotals,
    /// What this call sent.
    tally: Tally,
    now: Instant,
    trace: Trace,
}

impl Outbox for SocketOutbox<'_> {
    /// Sends one datagram to `peer` now, or queues it; drops it if `peer` has had its share of
    /// datagrams this second or the queue is full.
    fn send_to(&mut self, payload: &[u8], peer: SocketAddr) -> bool {
        if let Admission::Refused { first } = self.budget.check(peer.ip(), self.now) {
            if first {
                warn!(
                    "{} udp: {} was sent its share of datagrams this second; dropping more (--udp-rate-per-ip)",
                    self.kind.name(),
                    Source::of(peer.ip())
                );
            }
            trace_event!(
                self.trace.tracer,
                self.trace.token,
                Act::NotSent { to: peer }
            );
            self.tally.over_budget += 1;
            self.totals.drop_one(Dropped::RateOut);
            return false;
        }
        if self.queue.is_empty() {
            match send_now(self.socket, payload, peer, self.trace) {
                Sent::Blocked => {} // queued below
                Sent::Lost => {
                    self.totals.drop_one(Dropped::SendFailed);
                    return false;
                }
                sent => {
                    sent.count(self.totals);
                    self.tally.datagrams += 1;
                    self.tally.bytes += payload.len() as u64;
                    return true;
                }
            }
        }
        if self.queue.bytes + payload.len() > SEND_QUEUE_LIMIT {
            if !self.queue.drop_logged {
                warn!("udp send queue full ({SEND_QUEUE_LIMIT} bytes): dropping replies");
                self.queue.drop_logged = true;
            }
            self.tally.queue_full += 1;
            self.totals.drop_one(Dropped::QueueFull);
            return false;
        }
        self.queue.bytes += payload.len();
        self.queue.datagrams.push_back((peer, payload.into()));
        self.tally.datagrams += 1;
        self.tally.bytes += payload.len() as u64;
        true
    }

    fn log(&mut self, peer: SocketAddr, line: fmt::Arguments<'_>) {
        self.log_budget.log(self.kind, self.now, peer, line);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Sent: this many bytes.
    Out(usize),
    /// Failed for good (logged at debug): dropped, not to be retried.
    Lost,
    /// The send buffer is full: retry when writable.
    Blocked,
}

impl Sent {
    fn count(&self, totals: &UdpTotals) {
        match self {
            Sent::Out(n) => totals.sent(*n),
            Sent::Lost => totals.drop_one(Dropped::SendFailed),
            Sent::Blocked => {}
        }
    }
}

fn send_now(socket: &UdpSocket, payload: &[u8], peer: SocketAddr, trace: Trace) -> Sent {
    let Trace { tracer, token } = trace;
    loop {
        match socket.send_to(payload, peer) {
            Ok(n) => {
                trace_event!(tracer, token, Act::Sent { bytes: n, to: peer });
                return Sent::Out(n);
            }
            // The send buffer is full: the datagram waits in the queue for WRITABLE.
            Err(e) if would_block(&e) => {
                trace_event!(tracer, token, Act::SendBlocked { to: peer });
                return Sent::Blocked;
            }
            Err(e) if interrupted(&e) => continue,
            Err(e) => {
                // E.g. ENETUNREACH for a peer we cannot reach: that reply is lost, nothing else.
                debug!("udp send to {peer}: {e}");
                return Sent::Lost;
            }
        }
    }
}

/// A bound UDP socket and the service behind it.
pub struct UdpPort {
    socket: UdpSocket,
    kind: ServiceKind,
    service: Box<dyn UdpService>,
    queue: SendQueue,
    /// Whether `WRITABLE` is part of the registered interest (only while the queue is non-empty).
    writable_registered: bool,
    /// Shutting down: say goodbye, flush, but start nothing new.
    closing: bool,
    /// Whether the service logs its own sessions (else the port logs each exchange).
    keeps_sessions: bool,
    /// Rations the lines about peers.
    log_budget: LogBudget,
}

impl UdpPort {
    /// The port of `kind` on `socket`; `None` if the service has no UDP side (metrics).
    pub fn new(socket: UdpSocket, kind: ServiceKind) -> Option<Self> {
        let service = kind.udp_service()?;
        Some(UdpPort {
            socket,
            kind,
            keeps_sessions: service.keeps_sessions(),
            service,
            queue: SendQueue::default(),
            writable_registered: false,
            closing: false,
            log_budget: LogBudget::default(),
        })
    }

    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// Receives and serves datagrams until `WouldBlock` or [`RECV_BUDGET`].
    fn receive(&mut self, cx: &mut Context) -> Verdict {
        let verdict = self.receive_some(cx);
        self.arm_log_summary(cx);
        verdict
    }

    fn receive_some(&mut self, cx: &mut Context) -> Verdict {
        let trace = Trace::of(cx);
        let (tracer, token) = (trace.tracer, trace.token);
        for _ in 0..RECV_BUDGET {
            match self.socket.recv_from(cx.scratch) {
                // An empty datagram is a datagram (daytime and RFC 868 requests often are).
                Ok((n, peer)) => {
                    trace_event!(
                        tracer,
                        token,
                        Act::Received {
                            bytes: n,
                            from: peer
                        }
                    );
                    let counted = &cx.shared.totals.of(self.kind).udp;
                    counted.datagrams_in.add(1);
                    counted.bytes_in.add(n as u64);
                    if self.closing {
                        counted.drop_one(Dropped::Shutdown);
                        continue;
                    }
                    if !cx.access_allows(self.kind, Proto::Udp, peer) || !self.admit(peer, cx) {
                        continue;
                    }
                    let datagram = cx.scratch.get(..n).unwrap_or_default();
                    let sent = self.serve_with(cx.shared, cx.token, trace, |service, env, out| {
                        service.on_datagram(datagram, peer, env, out)
                    });
                    if !self.keeps_sessions {
                        self.log_exchange(cx.shared.now, peer, n, sent);
                    }
                }
                // Drained: the next datagram will raise a new readable edge.
                Err(e) if would_block(&e) => {
                    trace_event!(tracer, token, Act::RecvDrained);
                    return Verdict::Keep;
                }
                Err(e) if interrupted(&e) => continue,
                // A pending error (e.g. an ICMP report) is consumed by reporting it: go on.
                Err(e) => debug!("{} udp recv: {e}", self.kind.name()),
            }
        }
        Verdict::Yield
    }

    /// The line of one exchange of a one-shot service (within the log budget).
    fn log_exchange(&mut self, now: Instant, peer: SocketAddr, bytes_in: usize, sent: Tally) {
        let outcome = if sent.datagrams > 0 {
            "answered"
        } else {
            "not answered"
        };
        let why = if sent.over_budget > 0 {
            " (destination over --udp-rate-per-ip)"
        } else if sent.queue_full > 0 {
            " (send queue full)"
        } else if sent.datagrams == 0 {
            " (the service sent nothing)"
        } else {
            ""
        };
        let bytes_out = sent.bytes;
        self.log_budget.log(
            self.kind,
            now,
            peer,
            format_args!("{outcome}, {bytes_in} bytes in, {bytes_out} bytes out{why}"),
        );
    }

    /// Makes sure a timer writes the log budget's summary line when it is due, even if no
    /// datagram comes after the flood.
    fn arm_log_summary(&mut self, cx: &mut Context) {
        if self.log_budget.summary_at.is_some() {
            return; // when it fires, it arms the next one if need be
        }
        if let Some(due) = self.log_budget.summary_due() {
            self.log_budget.summary_at = Some(due);
            cx.set_plumbing_timer(due, LOG_SUMMARY);
        }
    }

    /// Whether `peer`'s source still has budget this second (see `rate_limit.rs`).
    fn admit(&self, peer: SocketAddr, cx: &mut Context) -> bool {
        match cx.shared.udp_in.check(peer.ip(), cx.shared.now) {
            Admission::Allowed => true,
            Admission::Refused { first } => {
                cx.shared.totals.of(self.kind).udp.drop_one(Dropped::RateIn);
                if first {
                    warn!(
                        "{} udp: {} sends more than {} datagrams/s; dropping the excess",
                        self.kind.name(),
                        Source::of(peer.ip()),
                        cx.shared.settings.udp_rate_per_ip
                    );
                }
                false
            }
        }
    }

    /// Calls one entry point of the service with an outbox on this socket.
    fn serve(
        &mut self,
        cx: &mut Context,
        call: impl FnOnce(&mut dyn UdpService, &mut Env, &mut dyn Outbox),
    ) {
        let trace = Trace::of(cx);
        self.serve_with(cx.shared, cx.token, trace, call);
        self.arm_log_summary(cx);
    }

    /// Calls one entry point of the service; returns what it sent.
    fn serve_with(
        &mut self,
        shared: &mut Shared,
        token: Token,
        trace: Trace,
        call: impl FnOnce(&mut dyn UdpService, &mut Env, &mut dyn Outbox),
    ) -> Tally {
        let now = shared.now;
        let (socket, kind, queue) = (&self.socket, self.kind, &mut self.queue);
        let log_budget = &mut self.log_budget;
        let service = self.service.as_mut();
        shared.with_env_and_budget(token, kind, |env, budget, totals| {
            let mut out = SocketOutbox {
                socket,
                kind,
                queue,
                budget,
                log_budget,
                totals,
                tally: Tally::default(),
                now,
                trace,
            };
            call(service, env, &mut out);
            out.tally
        })
    }

    /// Asks for `WRITABLE` exactly while replies are queued.
    fn update_interest(&mut self, cx: &Context) {
        let want_writable = !self.queue.is_empty();
        if want_writable == self.writable_registered {
            return;
        }
        let interest = if want_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match cx.registry.reregister(&mut self.socket, cx.token, interest) {
            Ok(()) => {
                trace_event!(cx.shared.trace, cx.token, Act::Writable(want_writable));
                self.writable_registered = want_writable;
            }
            Err(e) => warn!("{} udp: reregister: {e}", self.kind.name()),
        }
    }
}

impl Handler for UdpPort {
    /// Flushes queued replies, then serves incoming datagrams.
    fn on_ready(&mut self, ready: Readiness, cx: &mut Context) -> Verdict {
        if ready.writable {
            let trace = Trace::of(cx);
            let totals = &cx.shared.totals.of(self.kind).udp;
            self.queue.flush(&self.socket, trace, totals);
        }
        let mut verdict = Verdict::Keep;
        if ready.wants_read() {
            verdict = self.receive(cx);
        }
        self.update_interest(cx);
        verdict
    }

    fn on_timer(&mut self, tag: Tag, cx: &mut Context) -> Verdict {
        match tag {
            Tag::Service(tag) => {
                self.serve(cx, |service, env, out| service.on_timer(tag, env, out));
                self.update_interest(cx);
            }
            Tag::Plumbing(ACCESS_REPORT) => cx.report_access_refusals(),
            // The log budget's summary is due.
            Tag::Plumbing(LOG_SUMMARY) => {
                self.log_budget.summary_at = None;
                self.log_budget.summarize(self.kind, cx.shared.now, false);
                self.arm_log_summary(cx);
            }
            Tag::Plumbing(_) => {}
        }
        Verdict::Keep
    }

    fn timer_is_live(&self, tag: Tag) -> bool {
        match tag {
            Tag::Service(tag) => self.service.timer_is_live(tag),
            // The port's own timers: summaries of access refusals and of the log budget.
            Tag::Plumbing(ACCESS_REPORT) => true,
            Tag::Plumbing(LOG_SUMMARY) => self.log_budget.summary_at.is_some(),
            Tag::Plumbing(_) => false,
        }
    }

    /// Says goodbye to every session and stops serving new datagrams; the port stays open
    /// until its queue is flushed.
    fn on_shutdown(&mut self, cx: &mut Context) -> Verdict {
        self.closing = true;
        self.serve(cx, |service, env, out| service.on_shutdown(env, out));
        self.update_interest(cx);
        Verdict::Keep
    }

    fn on_close(&mut self, cx: &mut Context) {
        self.log_budget.summarize(self.kind, cx.shared.now, true);
        if let Err(e) = cx.registry.deregister(&mut self.socket) {
            debug!("{}: deregister: {e}", cx.label());
        }
    }

    fn is_drained(&self) -> bool {
        self.queue.is_empty()
    }

    fn describe(&self) -> String {
        format!("{} udp", self.kind.name())
    }

    fn describe_timer(&self, tag: Tag) -> String {
        match tag {
            Tag::Service(tag) => self.service.describe_timer(tag),
            Tag::Plumbing(ACCESS_REPORT) => String::from("summary of access-list refusals"),
            Tag::Plumbing(LOG_SUMMARY) => String::from("summary of the UDP log budget"),
            Tag::Plumbing(_) => tag.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_logs_fifty_lines_a_second_and_sums_up_the_rest_when_the_second_ends() {
        let kind = ServiceKind::Daytime;
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let start = Instant::now();
        let mut budget = LogBudget::default();
        assert_eq!(budget.summary_due(), None);
        for _ in 0..60 {
            budget.log(kind, start, peer, format_args!("answered"));
        }
        assert_eq!((budget.logged, budget.unlogged), (UDP_LOG_BUDGET, 10));
        assert_eq!(budget.summary_due(), Some(start + LOG_WINDOW));

        // Not over yet: nothing changes.
        let almost = start + LOG_WINDOW - Duration::from_millis(1);
        budget.summarize(kind, almost, false);
        assert_eq!(budget.unlogged, 10);
        budget.log(kind, almost, peer, format_args!("answered"));
        assert_eq!(budget.unlogged, 11);

        // A line in the next second sums up the last one first, then starts a new window.
        let next = start + LOG_WINDOW;
        budget.log(kind, next, peer, format_args!("answered"));
        assert_eq!(
            (budget.window, budget.logged, budget.unlogged),
            (Some(next), 1, 0)
        );
        assert_eq!(budget.summary_due(), None, "nothing to sum up");

        // A closing socket sums up at once.
        for _ in 0..UDP_LOG_BUDGET {
            budget.log(kind, next, peer, format_args!("answered"));
        }
        budget.summarize(kind, next, true);
        assert_eq!(
            (budget.window, budget.logged, budget.unlogged),
            (None, 0, 0)
        );
    }
}
