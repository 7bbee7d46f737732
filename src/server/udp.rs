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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, warn};
use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::handler::{ACCESS_REPORT, Context, Handler, Shared};
use super::listen::Proto;
use super::rate_limit::{Admission, RateLimiter};
use super::readiness::{Readiness, Verdict};
use super::timer::Tag;
use crate::nonblocking::{interrupted, would_block};
use crate::services::ServiceKind;
use crate::services::contract::{Env, Outbox, UdpService};
use crate::slots::KeyLabel;
use crate::source::Source;

/// Datagrams read per readable event before the port yields to the other sockets.
pub const RECV_BUDGET: usize = 256;
/// Bytes of replies allowed to wait for the send buffer; beyond it replies are dropped.
pub const SEND_QUEUE_LIMIT: usize = 256 * 1024;

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
    fn flush(&mut self, socket: &UdpSocket, trace: Trace) {
        while let Some((peer, payload)) = self.datagrams.front() {
            match send_now(socket, payload, *peer, trace) {
                Sent::Blocked => return,
                Sent::Done => {
                    self.bytes -= payload.len();
                    self.datagrams.pop_front();
                }
            }
        }
        self.drop_logged = false;
    }
}

/// Whether to trace sends (`--trace-events`), and under which token.
#[derive(Clone, Copy)]
struct Trace {
    on: bool,
    label: KeyLabel,
}

impl Trace {
    fn of(cx: &Context) -> Self {
        Trace {
            on: cx.tracing(),
            label: cx.label(),
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
    now: Instant,
    trace: Trace,
}

impl Outbox for SocketOutbox<'_> {
    /// Sends one datagram to `peer` now, or queues it; drops it if `peer` has had its share of
    /// datagrams this second or the queue is full.
    fn send_to(&mut self, payload: &[u8], peer: SocketAddr) {
        if let Admission::Refused { first } = self.budget.check(peer.ip(), self.now) {
            if first {
                warn!(
                    "{} udp: {} was sent its share of datagrams this second; dropping more (--udp-rate-per-ip)",
                    self.kind.name(),
                    Source::of(peer.ip())
                );
            }
            trace_event!(
                self.trace.on,
                "{}: not sent to {peer}: over its budget",
                self.trace.label
            );
            return;
        }
        if self.queue.is_empty() && send_now(self.socket, payload, peer, self.trace) == Sent::Done {
            return;
        }
        if self.queue.bytes + payload.len() > SEND_QUEUE_LIMIT {
            if !self.queue.drop_logged {
                warn!("udp send queue full ({SEND_QUEUE_LIMIT} bytes): dropping replies");
                self.queue.drop_logged = true;
            }
            return;
        }
        self.queue.bytes += payload.len();
        self.queue.datagrams.push_back((peer, payload.into()));
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Sent, or failed for good (then dropped and logged): either way, not to be retried.
    Done,
    /// The send buffer is full: retry when writable.
    Blocked,
}

fn send_now(socket: &UdpSocket, payload: &[u8], peer: SocketAddr, trace: Trace) -> Sent {
    let Trace { on, label } = trace;
    loop {
        match socket.send_to(payload, peer) {
            Ok(n) => {
                trace_event!(on, "{label}: sent {n} bytes to {peer}");
                return Sent::Done;
            }
            Err(e) if would_block(&e) => {
                trace_event!(on, "{label}: send to {peer}: WouldBlock, queueing");
                return Sent::Blocked;
            }
            Err(e) if interrupted(&e) => continue,
            Err(e) => {
                // E.g. ENETUNREACH for a peer we cannot reach: that reply is lost, nothing else.
                debug!("udp send to {peer}: {e}");
                return Sent::Done;
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
}

impl UdpPort {
    pub fn new(socket: UdpSocket, kind: ServiceKind) -> Self {
        UdpPort {
            socket,
            kind,
            service: kind.udp_service(),
            queue: SendQueue::default(),
            writable_registered: false,
            closing: false,
        }
    }

    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    fn receive(&mut self, cx: &mut Context) -> Verdict {
        let (trace, label) = (cx.tracing(), cx.label());
        for _ in 0..RECV_BUDGET {
            match self.socket.recv_from(cx.scratch) {
                // An empty datagram is a datagram (daytime and RFC 868 requests often are).
                Ok((n, peer)) => {
                    trace_event!(trace, "{label}: read {n} bytes from {peer}");
                    if self.closing
                        || !cx.access_allows(self.kind, Proto::Udp, peer)
                        || !self.admit(peer, cx)
                    {
                        continue;
                    }
                    let datagram = cx.scratch.get(..n).unwrap_or_default();
                    self.serve_with(
                        cx.shared,
                        cx.token,
                        Trace { on: trace, label },
                        |service, env, out| service.on_datagram(datagram, peer, env, out),
                    );
                }
                // Drained: the next datagram will raise a new readable edge.
                Err(e) if would_block(&e) => {
                    trace_event!(trace, "{label}: recv WouldBlock");
                    return Verdict::Keep;
                }
                Err(e) if interrupted(&e) => continue,
                // A pending error (e.g. an ICMP report) is consumed by reporting it: go on.
                Err(e) => debug!("{} udp recv: {e}", self.kind.name()),
            }
        }
        Verdict::Yield
    }

    /// Whether `peer`'s source still has budget this second (see `rate_limit.rs`).
    fn admit(&self, peer: SocketAddr, cx: &mut Context) -> bool {
        match cx.shared.udp_in.check(peer.ip(), cx.shared.now) {
            Admission::Allowed => true,
            Admission::Refused { first } => {
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
    }

    fn serve_with(
        &mut self,
        shared: &mut Shared,
        token: Token,
        trace: Trace,
        call: impl FnOnce(&mut dyn UdpService, &mut Env, &mut dyn Outbox),
    ) {
        let now = shared.now;
        let (socket, kind, queue) = (&self.socket, self.kind, &mut self.queue);
        let service = self.service.as_mut();
        shared.with_env_and_budget(token, |env, budget| {
            let mut out = SocketOutbox {
                socket,
                kind,
                queue,
                budget,
                now,
                trace,
            };
            call(service, env, &mut out)
        });
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
            Ok(()) => self.writable_registered = want_writable,
            Err(e) => warn!("{} udp: reregister: {e}", self.kind.name()),
        }
    }
}

impl Handler for UdpPort {
    /// Flushes queued replies, then serves incoming datagrams.
    fn on_ready(&mut self, ready: Readiness, cx: &mut Context) -> Verdict {
        if ready.writable {
            self.queue.flush(&self.socket, Trace::of(cx));
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
            Tag::Plumbing(_) => {}
        }
        Verdict::Keep
    }

    fn timer_is_live(&self, tag: Tag) -> bool {
        match tag {
            Tag::Service(tag) => self.service.timer_is_live(tag),
            // The port's only own timer: a summary of access refusals is due.
            Tag::Plumbing(number) => number == ACCESS_REPORT,
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
}
