//! The event loop: one thread, one `mio::Poll`, every socket of every service.
//!
//! One turn of the loop, like redis's `aeProcessEvents`:
//!
//! 1. **Timeout**: the earliest live timer becomes the `epoll_wait` timeout (no timer, no
//!    timeout: an idle server sleeps in the kernel until a packet or a signal arrives).
//! 2. **Poll**: `epoll_wait` (`kevent` on BSD/macOS) returns the sockets whose readiness changed.
//! 3. **Dispatch**: each event's token is looked up in the slab of [`Entry`]s: a listener
//!    accepts, a UDP port receives, a connection pumps bytes through its service. Tokens carry a
//!    generation ([`Slots`]), so an event for a connection closed earlier in the same batch
//!    finds nothing, even if a new connection took its slot.
//! 4. **Replay**: sockets that stopped early on purpose (a per-turn budget) are served again,
//!    since edge-triggered readiness will not report their leftover input a second time.
//! 5. **Timers**: every timer due now fires (ticks, idle timeouts, lingering closes).
//!
//! Everything else lives in `connection.rs` (TCP plumbing), `udp.rs` (UDP plumbing) and
//! `services/` (the protocols).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::nonblocking::{interrupted, would_block};
use crate::server::config::Settings;
use crate::server::connection::Connection;
use crate::server::listen::{BindError, BoundSocket, Proto, bind_pair};
use crate::server::readiness::{Readiness, Verdict};
use crate::server::timer::Timer;
use crate::server::udp::UdpPort;
use crate::services::{Env, ServiceKind, Shared};
use crate::slots::{KeyLabel, Slots};

/// The signal source's token. Slab tokens are never this small (see [`Slots`]).
pub const SIGNALS: Token = Token(0);
/// Events taken from the kernel per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// The one read buffer of the loop, lent to whichever socket is being read. 64 KiB holds the
/// largest UDP datagram.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Connections accepted per listener per turn before the others get a go.
pub const ACCEPT_BUDGET: usize = 64;
/// After `accept` failed for lack of descriptors (`EMFILE`), wait this long before trying again
/// (unless a connection closes first). Retrying at once would spin: the pending connection keeps
/// the listener readable.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// After SIGINT/SIGTERM, how long goodbyes may take to flush before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(750);

/// What a token stands for.
enum Entry {
    Listener(Listener),
    Udp(UdpPort),
    Conn(Connection),
}

struct Listener {
    socket: TcpListener,
    kind: ServiceKind,
}

/// Why accepting may be on hold.
#[derive(Default)]
struct AcceptGate {
    /// Connections may wait in a listen backlog that was left undrained (at `--max-conns`, out
    /// of descriptors, or shutting down): with edge-triggering no new event will say so.
    backlog_waiting: bool,
    /// Out of descriptors: no `accept` before this instant.
    retry_at: Option<Instant>,
    /// Whether descriptor exhaustion was logged in this episode.
    exhaustion_logged: bool,
}

/// The whole server: the poller, every socket, every timer.
pub struct Reactor {
    poll: Poll,
    entries: Slots<Entry>,
    /// Time, settings, clock and timers, lent to handlers as an [`Env`].
    shared: Shared,
    scratch: Box<[u8]>,
    listeners: Vec<Token>,
    bound: Vec<BoundSocket>,
    /// Open TCP connections, for `--max-conns`.
    connections: usize,
    /// Sockets to serve again next turn (they yielded with input left).
    replay: Vec<Token>,
    accept: AcceptGate,
    signals: Option<Signals>,
    /// Set by SIGINT/SIGTERM: the loop ends when everything is flushed or at this instant.
    shutdown_deadline: Option<Instant>,
    /// When the shutdown began, to report how long it took.
    shutdown_began: Option<Instant>,
}

impl Reactor {
    pub fn new(settings: Settings) -> io::Result<Self> {
        Ok(Reactor {
            poll: Poll::new()?,
            entries: Slots::default(),
            shared: Shared::new(settings),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            listeners: Vec::new(),
            bound: Vec::new(),
            connections: 0,
            replay: Vec::new(),
            accept: AcceptGate::default(),
            signals: None,
            shutdown_deadline: None,
            shutdown_began: None,
        })
    }

    /// Binds a service on TCP and UDP with the same port number and registers both sockets.
    /// Port 0 lets the OS choose a port that is free for both. `reuse_port` lets other loops
    /// (`--threads`) bind the same port (see [`bind_pair`]).
    pub fn bind_service(
        &mut self,
        ip: IpAddr,
        kind: ServiceKind,
        port: u16,
        reuse_port: bool,
    ) -> Result<(), BindError> {
        let (listener, udp) = bind_pair(ip, kind, port, reuse_port)?;
        // The addresses the sockets really got (the port the OS chose, for port 0).
        let addr_error = |source| BindError {
            what: format!("{} {ip}", kind.name()),
            source,
        };
        let tcp_addr = listener.local_addr().map_err(addr_error)?;
        let udp_addr = udp.local_addr().map_err(addr_error)?;
        let mut listener = Listener {
            socket: listener,
            kind,
        };
        let token = self.register(tcp_addr, kind, |registry, token| {
            registry
                .register(&mut listener.socket, token, Interest::READABLE)
                .map(|()| Entry::Listener(listener))
        })?;
        self.listeners.push(token);
        let mut port = UdpPort::new(udp, kind);
        self.register(udp_addr, kind, |registry, token| {
            registry
                .register(port.socket_mut(), token, Interest::READABLE)
                .map(|()| Entry::Udp(port))
        })?;
        self.bound.push(BoundSocket {
            kind,
            proto: Proto::Tcp,
            addr: tcp_addr,
        });
        self.bound.push(BoundSocket {
            kind,
            proto: Proto::Udp,
            addr: udp_addr,
        });
        Ok(())
    }

    /// Files a new bound socket under a fresh token.
    fn register(
        &mut self,
        addr: SocketAddr,
        kind: ServiceKind,
        make: impl FnOnce(&Registry, Token) -> io::Result<Entry>,
    ) -> Result<Token, BindError> {
        let registry = self.poll.registry();
        let error = |source| BindError {
            what: format!("{} {addr}", kind.name()),
            source,
        };
        match self.entries.insert_with(|key| make(registry, Token(key))) {
            Ok(Some(key)) => Ok(Token(key)),
            Ok(None) => Err(error(io::ErrorKind::OutOfMemory.into())),
            Err(e) => Err(error(e)),
        }
    }

    /// Every socket bound so far, in bind order.
    pub fn bound(&self) -> &[BoundSocket] {
        &self.bound
    }

    /// Open TCP connections.
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// Makes SIGINT, SIGTERM (graceful shutdown) and SIGUSR1 (log a status line) events of this
    /// loop: signal-hook's handler writes to a self-pipe registered under [`SIGNALS`].
    pub fn watch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs until a shutdown has completed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.is_finished() {
            self.turn(&mut events)?;
        }
        Ok(())
    }

    /// One turn of the loop: wait for events or the next deadline, then serve.
    pub fn turn(&mut self, events: &mut Events) -> io::Result<()> {
        let timeout = self.poll_timeout();
        let replay = std::mem::take(&mut self.replay);
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            // A signal interrupted the wait: nothing is lost, the next turn recomputes the timeout.
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
        self.shared.now = Instant::now();
        for event in events.iter() {
            self.dispatch(event.token(), Readiness::from(event));
        }
        for token in replay {
            self.dispatch(token, Readiness::READABLE);
        }
        self.fire_due_timers();
        self.resume_accepting();
        Ok(())
    }

    /// Hands one event to the owner of `token`. An event whose owner is gone (closed earlier in
    /// this batch, slot possibly reused) is ignored: its generation no longer matches.
    pub fn dispatch(&mut self, token: Token, ready: Readiness) {
        if token == SIGNALS {
            return self.on_signals();
        }
        let trace = self.shared.settings.trace_events;
        let label = KeyLabel(token.0);
        let registry = self.poll.registry();
        let mut env = Env::new(&mut self.shared, token);
        let verdict = match self.entries.get_mut(token.0) {
            None => {
                trace_event!(trace, "{label}: {ready} for a closed token, ignored");
                return;
            }
            Some(Entry::Listener(listener)) => {
                trace_event!(trace, "{label}: {ready} {} listener", listener.kind.name());
                return self.accept_from(token);
            }
            Some(Entry::Udp(port)) => {
                trace_event!(trace, "{label}: {ready} {} udp", port.kind().name());
                port.on_ready(ready, &mut env, registry, &mut self.scratch)
            }
            Some(Entry::Conn(conn)) => {
                let (kind, peer) = (conn.kind().name(), conn.peer());
                trace_event!(trace, "{label}: {ready} {kind} tcp {peer}");
                conn.on_ready(ready, &mut env, registry, &mut self.scratch)
            }
        };
        self.apply(token, verdict);
    }

    /// Starts a graceful shutdown: stop accepting, let every service say goodbye, flush.
    /// A second call (a second Ctrl-C) ends the loop at once.
    pub fn begin_shutdown(&mut self) {
        let now = self.shared.now;
        if self.shutdown_deadline.is_some() {
            self.shutdown_deadline = Some(now);
            return;
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
        self.shutdown_began = Some(now);
        for token in std::mem::take(&mut self.listeners) {
            self.close(token);
        }
        for key in self.entries.keys() {
            let token = Token(key);
            let registry = self.poll.registry();
            let mut env = Env::new(&mut self.shared, token);
            let verdict = match self.entries.get_mut(key) {
                Some(Entry::Conn(conn)) => conn.on_shutdown(&mut env, registry, &mut self.scratch),
                Some(Entry::Udp(port)) => {
                    port.on_shutdown(&mut env, registry);
                    Verdict::Keep
                }
                Some(Entry::Listener(_)) | None => Verdict::Keep,
            };
            self.apply(token, verdict);
        }
    }

    /// How long the shutdown took, from the signal to the end of the loop (measured by the loop
    /// itself, so a test can check the promise without trusting its own machine's timing).
    pub fn shutdown_took(&self) -> Option<Duration> {
        self.shutdown_began.map(|began| began.elapsed())
    }

    /// Whether a shutdown is complete: everything flushed, or the grace period is over.
    pub fn is_finished(&self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        self.shared.now >= deadline || (self.connections == 0 && self.udp_drained())
    }

    fn udp_drained(&self) -> bool {
        self.entries.values().all(|entry| match entry {
            Entry::Udp(port) => port.is_drained(),
            Entry::Listener(_) | Entry::Conn(_) => true,
        })
    }

    fn apply(&mut self, token: Token, verdict: Verdict) {
        match verdict {
            Verdict::Keep => {}
            Verdict::Yield => self.replay.push(token),
            Verdict::Close => self.close(token),
        }
    }

    /// Deregisters, then drops (which closes the descriptor). Deregistering first matters:
    /// dropping alone leaves the registration to the kernel's cleanup (mio #1269).
    fn close(&mut self, token: Token) {
        let registry = self.poll.registry();
        let label = KeyLabel(token.0);
        let result = match self.entries.remove(token.0) {
            Some(Entry::Conn(mut conn)) => {
                self.connections -= 1;
                debug!(
                    "{} tcp {}: closed ({label})",
                    conn.kind().name(),
                    conn.peer()
                );
                registry.deregister(conn.stream_mut())
            }
            Some(Entry::Udp(mut port)) => registry.deregister(port.socket_mut()),
            Some(Entry::Listener(mut listener)) => registry.deregister(&mut listener.socket),
            None => Ok(()),
        };
        if let Err(e) = result {
            debug!("{label}: deregister: {e}");
        }
        trace_event!(
            self.shared.settings.trace_events,
            "{label}: deregistered and closed"
        );
    }

    /// Accepts until `WouldBlock`, a limit, or [`ACCEPT_BUDGET`].
    fn accept_from(&mut self, token: Token) {
        for _ in 0..ACCEPT_BUDGET {
            if !self.may_accept() {
                self.accept.backlog_waiting = true;
                return;
            }
            let Some(Entry::Listener(listener)) = self.entries.get(token.0) else {
                return;
            };
            let kind = listener.kind;
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    self.accept.exhaustion_logged = false;
                    self.open_connection(stream, peer, kind);
                }
                // The backlog is empty: the next connection raises a new edge.
                Err(e) if would_block(&e) => {
                    let label = KeyLabel(token.0);
                    trace_event!(
                        self.shared.settings.trace_events,
                        "{label}: accept WouldBlock"
                    );
                    return;
                }
                Err(e) if interrupted(&e) => {}
                // The peer gave up between SYN and accept: that connection only.
                Err(e) if is_per_connection(&e) => debug!("{} accept: {e}", kind.name()),
                // EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything unexpected: trying again at once
                // would fail again and spin, so pause; a closing connection or ACCEPT_RETRY
                // resumes accepting, and the queued connections are served then.
                Err(e) => {
                    if !self.accept.exhaustion_logged {
                        warn!("{} accept: {e}; pausing accepts", kind.name());
                        self.accept.exhaustion_logged = true;
                    }
                    self.accept.retry_at = Some(self.shared.now + ACCEPT_RETRY);
                    self.accept.backlog_waiting = true;
                    return;
                }
            }
        }
        self.replay.push(token); // budget spent; more may be waiting
    }

    fn may_accept(&self) -> bool {
        self.shutdown_deadline.is_none()
            && self.connections < self.shared.settings.max_conns
            && self.accept.retry_at.is_none_or(|at| self.shared.now >= at)
    }

    /// Once a slot or a descriptor is free again, serve the backlogs left waiting.
    fn resume_accepting(&mut self) {
        if self.accept.backlog_waiting && self.may_accept() {
            self.accept.backlog_waiting = false;
            self.accept.retry_at = None;
            self.replay.extend_from_slice(&self.listeners);
        }
    }

    fn open_connection(&mut self, mut stream: TcpStream, peer: SocketAddr, kind: ServiceKind) {
        // Replies are written whole, so Nagle's delay would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{} tcp {peer}: TCP_NODELAY: {e}", kind.name());
        }
        let now = self.shared.now;
        let registry = self.poll.registry();
        let key = match self.entries.insert_with(|key| {
            registry
                .register(&mut stream, Token(key), Interest::READABLE)
                .map(|()| Entry::Conn(Connection::new(stream, peer, kind, now)))
        }) {
            Ok(Some(key)) => key,
            Ok(None) => return warn!("{} tcp {peer}: no token left", kind.name()),
            Err(e) => return warn!("{} tcp {peer}: register: {e}", kind.name()),
        };
        let (token, label) = (Token(key), KeyLabel(key));
        self.connections += 1;
        debug!("{} tcp {peer}: open ({label})", kind.name());
        let trace = self.shared.settings.trace_events;
        trace_event!(trace, "{label}: accepted {} tcp {peer}", kind.name());
        let mut env = Env::new(&mut self.shared, token);
        let verdict = match self.entries.get_mut(key) {
            Some(Entry::Conn(conn)) => conn.open(&mut env, registry, &mut self.scratch),
            _ => Verdict::Keep,
        };
        self.apply(token, verdict);
    }

    fn on_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        // Drain every pending signal: the self-pipe raised one edge for all of them.
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            if signal == SIGUSR1 {
                info!("{}", self.status());
            } else {
                info!("signal {signal}: shutting down");
                self.begin_shutdown();
            }
        }
    }

    /// One line for SIGUSR1: what the loop holds right now.
    fn status(&self) -> String {
        let udp_queued = self
            .entries
            .values()
            .filter(|entry| matches!(entry, Entry::Udp(port) if !port.is_drained()))
            .count();
        format!(
            "status: {} TCP connections, {} timers pending, {} UDP sockets with queued replies, {} sockets to replay",
            self.connections,
            self.shared.timers.len(),
            udp_queued,
            self.replay.len()
        )
    }

    /// Fires the timers due now. Only those already in the heap: a timer set by a handler for
    /// a deadline already past (a late session catching up) fires next turn, so a burst of
    /// timers cannot starve the sockets.
    fn fire_due_timers(&mut self) {
        for _ in 0..self.shared.timers.len() {
            let Some(Timer { token, tag, .. }) = self.shared.timers.pop_due(self.shared.now) else {
                break;
            };
            let label = KeyLabel(token.0);
            trace_event!(
                self.shared.settings.trace_events,
                "{label}: timer {tag:#x} fired"
            );
            let registry = self.poll.registry();
            let mut env = Env::new(&mut self.shared, token);
            let verdict = match self.entries.get_mut(token.0) {
                Some(Entry::Conn(conn)) => {
                    conn.on_timer(tag, &mut env, registry, &mut self.scratch)
                }
                Some(Entry::Udp(port)) => {
                    port.on_timer(tag, &mut env, registry);
                    Verdict::Keep
                }
                Some(Entry::Listener(_)) | None => Verdict::Keep,
            };
            self.apply(token, verdict);
        }
    }

    /// Drops timers whose owner is gone from the top of the heap, so they never set a timeout.
    fn drop_stale_timers(&mut self) {
        while let Some(timer) = self.shared.timers.peek() {
            let live = match self.entries.get(timer.token.0) {
                Some(Entry::Conn(conn)) => conn.timer_is_live(timer.tag),
                Some(Entry::Udp(port)) => port.timer_is_live(timer.tag),
                Some(Entry::Listener(_)) | None => false,
            };
            if live {
                break;
            }
            self.shared.timers.pop();
        }
    }

    /// How long `epoll_wait` may sleep: until the next live timer, the accept retry or the end
    /// of the shutdown grace — or not at all if sockets wait for a replay; `None` = forever.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.replay.is_empty() {
            return Some(Duration::ZERO);
        }
        self.drop_stale_timers();
        let retry = self.accept.retry_at.filter(|_| self.accept.backlog_waiting);
        [
            self.shared.timers.peek().map(|t| t.deadline),
            retry,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}

/// Errors of `accept` that concern one connection only: the peer gave up between its SYN and
/// our `accept` (`ECONNABORTED`), or Linux reports a protocol error of that connection (`EPROTO`).
fn is_per_connection(err: &io::Error) -> bool {
    const EPROTO: i32 = 71;
    err.kind() == io::ErrorKind::ConnectionAborted || err.raw_os_error() == Some(EPROTO)
}

#[cfg(test)]
mod tests {
    //! The dispatcher driven with crafted events: what the kernel cannot be made to do on
    //! demand (a stale event for a reused slot) is done here by hand.

    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream as StdTcpStream};

    /// A reactor serving echo on an OS-chosen loopback port.
    fn echo_reactor() -> (Reactor, SocketAddr) {
        let mut reactor = Reactor::new(Settings::default()).unwrap();
        reactor
            .bind_service(Ipv4Addr::LOCALHOST.into(), ServiceKind::Echo, 0, false)
            .unwrap();
        let addr = reactor.bound()[0].addr;
        (reactor, addr)
    }

    /// Turns the loop until `done` holds (bounded, so a bug fails instead of hanging).
    fn turn_until(reactor: &mut Reactor, mut done: impl FnMut(&Reactor) -> bool) {
        let mut events = Events::with_capacity(64);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(reactor) {
            assert!(Instant::now() < deadline, "condition not reached");
            reactor.replay.push(SIGNALS); // bound each poll: a no-op token forces timeout 0
            reactor.turn(&mut events).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn connection_tokens(reactor: &Reactor) -> Vec<Token> {
        reactor
            .entries
            .keys()
            .into_iter()
            .filter(|&key| matches!(reactor.entries.get(key), Some(Entry::Conn(_))))
            .map(Token)
            .collect()
    }

    fn client(addr: SocketAddr) -> StdTcpStream {
        let stream = StdTcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
    }

    #[test]
    fn an_event_for_a_closed_token_never_reaches_the_connection_that_reused_its_slot() {
        let (mut reactor, addr) = echo_reactor();
        let a = client(addr);
        turn_until(&mut reactor, |r| r.connection_count() == 1);
        let [token_a] = connection_tokens(&reactor)[..] else {
            panic!("one connection")
        };
        drop(a);
        turn_until(&mut reactor, |r| r.connection_count() == 0);

        let mut b = client(addr);
        turn_until(&mut reactor, |r| r.connection_count() == 1);
        let [token_b] = connection_tokens(&reactor)[..] else {
            panic!("one connection")
        };
        assert_eq!(token_a.0 & 0xffff, token_b.0 & 0xffff, "B reuses A's slot");
        assert_ne!(token_a, token_b);

        // B's bytes wait in its socket; A's stale readable event arrives first.
        b.write_all(b"for B").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        reactor.dispatch(token_a, Readiness::READABLE);
        let mut buf = [0u8; 5];
        assert!(b.read(&mut buf).is_err(), "the stale event was served by B");

        reactor.dispatch(token_b, Readiness::READABLE);
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"for B");
    }

    #[test]
    fn a_closed_connections_timers_never_set_the_poll_timeout() {
        let (mut reactor, addr) = echo_reactor();
        assert_eq!(reactor.poll_timeout(), None, "idle: sleep forever");
        let a = client(addr);
        turn_until(&mut reactor, |r| r.connection_count() == 1);
        assert!(reactor.poll_timeout().is_some(), "the idle timer is armed");
        drop(a);
        turn_until(&mut reactor, |r| r.connection_count() == 0);
        assert!(
            !reactor.shared.timers.is_empty(),
            "timers are cancelled lazily"
        );
        assert_eq!(
            reactor.poll_timeout(),
            None,
            "stale timers do not wake the loop"
        );
        assert!(reactor.shared.timers.is_empty());
    }
}
