//! A TCP listener as an entry of the loop: accept until `WouldBlock`, a limit, or a budget.
//!
//! `accept(2)` (`accept4` with `SOCK_CLOEXEC | SOCK_NONBLOCK` on Linux, via mio) takes one
//! connection the kernel has already completed from the listen backlog. Edge-triggered: one
//! readable event may stand for many queued connections, so the listener accepts until the
//! kernel says `WouldBlock`. Accepted streams are handed to the reactor ([`Shared::accepted`]),
//! which files each under a token of its own.
//!
//! Two checks come between `accept` and the reactor, in this order: the access list
//! (`--allow`/`--deny`, `access.rs`), then the per-source limit (`per_source.rs`). A connection
//! either check refuses is dropped at once — `close(2)` before a byte is written — so its
//! client sees EOF (or a reset, if it had already sent bytes we will never read). A peer the
//! access list refuses is never counted against its source's share.
//!
//! A connection from a `--proxy-from` balancer skips both: the balancer's address says nothing
//! about the client it relays. Its connection goes to the reactor marked `proxied`, and the
//! connection applies both checks to the client its PROXY header names (`connection.rs`).

use std::io;

use log::{debug, warn};
use mio::net::TcpListener;

use super::handler::{ACCESS_REPORT, Accepted, Context, Handler, PROXY_REPORT, Shared};
use super::listen::Proto;
use super::readiness::{Readiness, Verdict};
use super::timer::Tag;
use super::totals::Refused;
use super::trace::Act;
use crate::nonblocking::{interrupted, would_block};
use crate::services::ServiceKind;

/// Connections accepted per listener per turn before the others get a go.
pub const ACCEPT_BUDGET: usize = 64;
/// After `accept` failed for lack of descriptors (`EMFILE`), wait this long before trying again
/// (unless a connection closes first). Retrying at once would spin: the pending connection keeps
/// the listener readable.
pub const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// A bound, listening TCP socket and the service its connections get.
pub struct Listener {
    socket: TcpListener,
    kind: ServiceKind,
}

impl Listener {
    pub fn new(socket: TcpListener, kind: ServiceKind) -> Self {
        Listener { socket, kind }
    }

    pub fn socket_mut(&mut self) -> &mut TcpListener {
        &mut self.socket
    }
}

/// Whether another connection may be accepted now: below `--max-conns` (counting the ones
/// accepted but not filed yet) and not pausing after descriptor exhaustion.
pub fn may_accept(shared: &Shared) -> bool {
    shared.connections + shared.accepted.len() < shared.settings.max_conns
        && shared.accept.retry_at.is_none_or(|at| shared.now >= at)
}

impl Handler for Listener {
    fn on_ready(&mut self, _ready: Readiness, cx: &mut Context) -> Verdict {
        let name = self.kind.name();
        for _ in 0..ACCEPT_BUDGET {
            if !may_accept(cx.shared) {
                cx.shared.accept.backlog_waiting = true;
                return Verdict::Keep;
            }
            match self.socket.accept() {
                Ok((stream, peer)) => {
                    cx.shared.accept.exhaustion_logged = false;
                    // From a balancer: who the client is, and so whether it may come in, is
                    // known only once the PROXY header is read.
                    let settings = &cx.shared.settings;
                    if settings
                        .proxy_from
                        .iter()
                        .any(|cidr| cidr.contains(peer.ip()))
                    {
                        trace_event!(cx.shared.trace, cx.token, Act::Balancer { peer });
                        cx.shared.accepted.push(Accepted {
                            stream,
                            peer,
                            kind: self.kind,
                            proxied: true,
                            listener: cx.token,
                        });
                        continue;
                    }
                    // Refused by the access list: closed at once (the drop), before a byte is
                    // written and before the per-source count sees it.
                    if !cx.access_allows(self.kind, Proto::Tcp, peer) {
                        drop(stream);
                        continue;
                    }
                    let limit = cx.shared.settings.max_conns_per_ip;
                    match cx.shared.by_source.admit(peer.ip(), limit) {
                        Ok(()) => cx.shared.accepted.push(Accepted {
                            stream,
                            peer,
                            kind: self.kind,
                            proxied: false,
                            listener: cx.token,
                        }),
                        // Over its source's share: closed at once (the drop), so the client
                        // sees a clean end instead of waiting in the backlog.
                        Err(refusal) => {
                            cx.shared
                                .totals
                                .of(self.kind)
                                .tcp
                                .refuse(Refused::MaxConnsPerIp);
                            if refusal.first {
                                warn!(
                                    "{name} tcp: {} holds {limit} connections (--max-conns-per-ip); closing its new ones",
                                    refusal.source
                                );
                            }
                            trace_event!(
                                cx.shared.trace,
                                cx.token,
                                Act::Refused {
                                    peer,
                                    why: &"over its source's limit, --max-conns-per-ip"
                                }
                            );
                        }
                    }
                }
                // The backlog is empty: the next connection raises a new edge.
                Err(e) if would_block(&e) => {
                    trace_event!(cx.shared.trace, cx.token, Act::AcceptDrained);
                    return Verdict::Keep;
                }
                Err(e) if interrupted(&e) => {}
                // The peer gave up between SYN and accept: that connection only.
                Err(e) if is_per_connection(&e) => debug!("{name} accept: {e}"),
                // EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything unexpected: trying again at once
                // would fail again and spin, so pause; a closing connection or ACCEPT_RETRY
                // resumes accepting, and the queued connections are served then.
                Err(e) => {
                    cx.shared.totals.turns.accept_pauses.add(1);
                    let gate = &mut cx.shared.accept;
                    if !gate.exhaustion_logged {
                        warn!("{name} accept: {e}; pausing accepts");
                        gate.exhaustion_logged = true;
                    }
                    gate.retry_at = Some(cx.shared.now + ACCEPT_RETRY);
                    gate.backlog_waiting = true;
                    return Verdict::Keep;
                }
            }
        }
        Verdict::Yield // budget spent; more may be waiting
    }

    /// The only timers a listener has: a summary of access refusals, or of PROXY header
    /// failures, is due (its own, or left pending by one of its connections).
    fn on_timer(&mut self, tag: Tag, cx: &mut Context) -> Verdict {
        match tag {
            Tag::Plumbing(ACCESS_REPORT) => cx.report_access_refusals(),
            Tag::Plumbing(PROXY_REPORT) => cx.shared.report_proxy_header_failures(),
            _ => {}
        }
        Verdict::Keep
    }

    fn timer_is_live(&self, tag: Tag) -> bool {
        matches!(tag, Tag::Plumbing(ACCESS_REPORT | PROXY_REPORT))
    }

    /// Stop accepting: the listener closes, and new clients are refused by the kernel.
    fn on_shutdown(&mut self, _cx: &mut Context) -> Verdict {
        Verdict::Close
    }

    fn on_close(&mut self, cx: &mut Context) {
        if let Err(e) = cx.registry.deregister(&mut self.socket) {
            debug!("{}: deregister: {e}", cx.label());
        }
    }

    fn describe(&self) -> String {
        format!("{} listener", self.kind.name())
    }

    fn describe_timer(&self, tag: Tag) -> String {
        match tag {
            Tag::Plumbing(ACCESS_REPORT) => String::from("summary of access-list refusals"),
            Tag::Plumbing(PROXY_REPORT) => String::from("summary of PROXY header failures"),
            other => other.to_string(),
        }
    }
}

/// Errors of `accept` that concern one connection only: the peer gave up between its SYN and
/// our `accept` (`ECONNABORTED`), or Linux reports a protocol error of that connection (`EPROTO`).
fn is_per_connection(err: &io::Error) -> bool {
    const EPROTO: i32 = 71;
    err.kind() == io::ErrorKind::ConnectionAborted || err.raw_os_error() == Some(EPROTO)
}
