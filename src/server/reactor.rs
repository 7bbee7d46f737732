//! The event loop: one thread, one `mio::Poll`, every socket of every service.
//!
//! One turn of the loop, like redis's `aeProcessEvents`:
//!
//! 1. **Timeout**: the earliest live timer becomes the `epoll_wait` timeout (no timer, no
//!    timeout: an idle server sleeps in the kernel until a packet or a signal arrives).
//! 2. **Poll**: `epoll_wait` (`kevent` on BSD/macOS) returns the sockets whose readiness changed.
//! 3. **Dispatch**: each event's token is looked up in the slab of [`Entry`]s, and the entry's
//!    [`Handler`] is called — a listener accepts, a UDP port receives, a connection pumps bytes
//!    through its service. Tokens carry a generation ([`Slots`]), so an event for a connection
//!    closed earlier in the same batch finds nothing, even if a new connection took its slot.
//! 4. **Replay**: sockets that stopped early on purpose (a per-turn budget) are served again,
//!    since edge-triggered readiness will not report their leftover input a second time.
//! 5. **Timers**: every timer due now fires (ticks, idle timeouts, lingering closes).
//!
//! The loop counts its own work into its `Totals` (`totals.rs`) as it goes — one wakeup and
//! the events it brought, replays, timers fired, time blocked in `epoll_wait` and time spent
//! working — with one clock read per turn that the timeout computation needed anyway.
//!
//! Every handler answers the same calls with a [`Verdict`] (`handler.rs`); the plumbing lives
//! in `listener.rs`, `connection.rs` (TCP) and `udp.rs` (UDP), the protocols in `services/`.
//!
//! With `--trace-events` the loop narrates each turn (`trace.rs`): the wakeup — how long it
//! slept and why that timeout (`Wait`: the next timer, named by its owner, a replay, the
//! accept retry, the shutdown, or nothing due) — then every event, action and timer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use super::config::Settings;
use super::connection::Connection;
use super::handler::{Context, Handler, Shared};
use super::listen::{BindError, BoundSocket, ListenOptions, Proto, bind_pair, bind_tcp};
use super::listener::{Listener, may_accept};
use super::metrics::Board;
use super::readiness::{Readiness, Verdict};
use super::timer::Timer;
use super::totals::{Live, Refused, Totals};
use super::trace::{Act, Cause, Fate, Wakeup, Why};
use super::udp::UdpPort;
use crate::nonblocking::interrupted;
use crate::services::ServiceKind;
use crate::slots::Slots;

mod alarm;
mod setup;
mod wait;

use alarm::{ALARM, Alarm};
use wait::Wait;

/// The signal source's token. Slab tokens are never this small (see [`Slots`]).
pub const SIGNALS: Token = Token(0);
/// Events taken from the kernel per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// The one read buffer of the loop, lent to whichever socket is being read. 64 KiB holds the
/// largest UDP datagram.
const SCRATCH_SIZE: usize = 64 * 1024;
/// After SIGINT/SIGTERM, how long goodbyes may take to flush before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(750);

/// What a token stands for.
enum Entry {
    Listener(Listener),
    Udp(UdpPort),
    Conn(Connection),
}

impl Entry {
    /// The one place that looks inside an entry: every call goes through the same [`Handler`].
    fn handler(&mut self) -> &mut dyn Handler {
        match self {
            Entry::Listener(listener) => listener,
            Entry::Udp(port) => port,
            Entry::Conn(conn) => conn,
        }
    }
}

/// The whole server: the poller, every socket, every timer.
pub struct Reactor {
    poll: Poll,
    entries: Slots<Entry>,
    /// Time, settings, clock, timers, budgets: what every handler may touch.
    shared: Shared,
    scratch: Box<[u8]>,
    listeners: Vec<Token>,
    bound: Vec<BoundSocket>,
    /// Sockets to serve again next turn (they yielded with input left).
    replay: Vec<Token>,
    signals: Option<Signals>,
    /// Set by SIGINT/SIGTERM: the loop ends when everything is flushed or at this instant.
    shutdown_deadline: Option<Instant>,
    /// When the shutdown began, to report how long it took.
    shutdown_began: Option<Instant>,
    /// Which loop this is (from 1) of the board's (`--threads`), for the status line.
    number: usize,
    /// When the last `epoll_wait` returned: the loop has been working since.
    woke: Option<Instant>,
    /// Wakes `epoll_wait` at the next deadline, to the tenth of a millisecond (`alarm.rs`).
    alarm: Alarm,
}

impl Reactor {
    /// Runs until a shutdown has completed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.is_finished() {
            self.turn(&mut events)?;
        }
        // What the grace period left open (a peer that never closes) is closed here, so every
        // connection still gets its log line and every socket is deregistered.
        for key in self.entries.keys() {
            self.close(Token(key));
        }
        Ok(())
    }

    /// One turn of the loop: wait for events or the next deadline, then serve.
    pub fn turn(&mut self, events: &mut Events) -> io::Result<()> {
        let before = Instant::now();
        let turns = &self.shared.totals.turns;
        if let Some(woke) = self.woke {
            turns
                .work_nanos
                .add(nanos(before.saturating_duration_since(woke)));
        }
        let wait = self.next_wait();
        // `timeout` goes to `epoll_wait`; `meant` is how long the loop means to sleep (the same,
        // unless the timerfd is to wake it: then `timeout` is none).
        let (timeout, meant) = match wait {
            Wait::Replay(_) => (Some(Duration::ZERO), Some(Duration::ZERO)),
            _ => self.alarm.prepare(wait.deadline(), before),
        };
        let replay = std::mem::take(&mut self.replay);
        let asleep_since = self.shared.trace.on().then(Instant::now);
        let cut_short = match self.poll.poll(events, timeout) {
            Ok(()) => false,
            // A signal interrupted the wait: nothing is lost, the next turn recomputes the timeout.
            Err(e) if interrupted(&e) => true,
            Err(e) => return Err(e),
        };
        self.shared.now = Instant::now();
        self.woke = Some(self.shared.now);
        let turns = &self.shared.totals.turns;
        turns
            .poll_nanos
            .add(nanos(self.shared.now.saturating_duration_since(before)));
        turns.replays.add(replay.len() as u64);
        if let Some(since) = asleep_since {
            let timerfd = timeout.is_none() && meant.is_some();
            let wakeup = (events.iter().count(), cut_short, meant, timerfd);
            self.trace_wakeup(since, wakeup, wait);
        }
        let mut handled = 0;
        for event in events.iter() {
            handled += 1;
            self.dispatch_as(event.token(), Readiness::from(event), Cause::Kernel);
        }
        self.shared.totals.turns.events_per_wakeup.observe(handled);
        for token in replay {
            self.dispatch_as(token, Readiness::READABLE, Cause::Replay);
        }
        self.fire_due_timers();
        self.resume_accepting();
        let turns = &self.shared.totals.turns;
        turns.timers_pending.set(self.shared.timers.len() as u64);
        Ok(())
    }

    /// Hands one event to the owner of `token`. An event whose owner is gone (closed earlier in
    /// this batch, slot possibly reused) is ignored: its generation no longer matches.
    pub fn dispatch(&mut self, token: Token, ready: Readiness) {
        self.dispatch_as(token, ready, Cause::Kernel);
    }

    /// [`Reactor::dispatch`], saying in the trace whether the kernel or a replay brought it.
    fn dispatch_as(&mut self, token: Token, ready: Readiness, cause: Cause) {
        let trace = self.shared.trace;
        if token == SIGNALS {
            if trace.on() {
                trace.event(token, Some("signals (self-pipe)"), ready, cause);
            }
            return self.on_signals();
        }
        if token == ALARM {
            if trace.on() {
                trace.event(token, Some("alarm (timerfd)"), ready, cause);
            }
            return self.alarm.rang();
        }
        let served = self.call(token, |handler, cx| {
            if trace.on() {
                trace.event(token, Some(&handler.describe()), ready, cause);
            }
            handler.on_ready(ready, cx)
        });
        if !served && trace.on() {
            trace.event(token, None, ready, cause);
        }
    }

    /// The wakeup's trace line: how long `epoll_wait` slept, how many events it brought, and
    /// the timeout it had been given and why (the timer by its owner's name for it).
    fn trace_wakeup(
        &mut self,
        asleep_since: Instant,
        (events, interrupted, timeout, timerfd): (usize, bool, Option<Duration>, bool),
        wait: Wait,
    ) {
        let timer_name;
        let why = match wait {
            Wait::Replay(sockets) => Why::Replay(sockets),
            Wait::Timer(Timer { token, tag, .. }) => {
                timer_name = match self.entries.get_mut(token.0) {
                    Some(entry) => entry.handler().describe_timer(tag),
                    None => tag.to_string(),
                };
                Why::Timer {
                    name: &timer_name,
                    owner: token,
                }
            }
            Wait::AcceptRetry(_) => Why::AcceptRetry,
            Wait::Shutdown(_) => Why::Shutdown,
            Wait::Event => Why::Event,
        };
        let slept = self.shared.now.saturating_duration_since(asleep_since);
        self.shared.trace.wakeup(&Wakeup {
            slept,
            events,
            interrupted,
            timeout,
            timerfd,
            why,
        });
    }

    /// Calls the handler behind `token` and carries out its verdict. Returns false when the
    /// token's owner is gone.
    fn call(
        &mut self,
        token: Token,
        call: impl FnOnce(&mut dyn Handler, &mut Context) -> Verdict,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(token.0) else {
            return false;
        };
        let mut cx = Context {
            token,
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            shared: &mut self.shared,
        };
        let verdict = call(entry.handler(), &mut cx);
        self.apply(token, verdict);
        self.open_accepted();
        true
    }

    /// Carries out what a handler answered.
    fn apply(&mut self, token: Token, verdict: Verdict) {
        match verdict {
            Verdict::Keep => {}
            Verdict::Yield => self.replay.push(token),
            Verdict::Close => self.close(token),
        }
    }

    /// Deregisters, then drops (which closes the descriptor).
    fn close(&mut self, token: Token) {
        let Some(mut entry) = self.entries.remove(token.0) else {
            return;
        };
        let mut cx = Context {
            token,
            registry: self.poll.registry(),
            scratch: &mut self.scratch,
            shared: &mut self.shared,
        };
        entry.handler().on_close(&mut cx);
        trace_event!(cx.shared.trace, token, Act::Closed);
    }

    /// Files the connections the listeners accepted, each under a token of its own.
    fn open_accepted(&mut self) {
        while let Some(mut accepted) = self.shared.accepted.pop() {
            let (peer, kind, proxied) = (accepted.peer, accepted.kind, accepted.proxied);
            // Replies are written whole, so Nagle's delay would only add latency.
            if let Err(e) = accepted.stream.set_nodelay(true) {
                log::debug!("{} tcp {peer}: TCP_NODELAY: {e}", kind.name());
            }
            let registry = self.poll.registry();
            let (scratch, shared) = (&mut self.scratch, &mut self.shared);
            let mut verdict = Verdict::Keep;
            let filed = self.entries.insert_with(|key| {
                let token = Token(key);
                // Both directions, once (edge-triggered): see `connection.rs` on writing.
                let interest = Interest::READABLE | Interest::WRITABLE;
                registry.register(&mut accepted.stream, token, interest)?;
                let mut cx = Context {
                    token,
                    registry,
                    scratch,
                    shared,
                };
                let (conn, first) = Connection::open(accepted, &mut cx);
                verdict = first;
                Ok::<_, io::Error>(Entry::Conn(conn))
            });
            let token = match filed {
                Ok(Some(key)) => Token(key),
                Ok(None) | Err(_) => {
                    if let Err(e) = filed {
                        warn!("{} tcp {peer}: register: {e}", kind.name());
                    } else {
                        warn!("{} tcp {peer}: no token left", kind.name());
                    }
                    // A balancer's connection was never counted for any source.
                    if !proxied {
                        self.shared.by_source.release(peer.ip());
                    }
                    self.shared
                        .totals
                        .of(kind)
                        .tcp
                        .refuse(Refused::RegisterFailed);
                    continue;
                }
            };
            self.apply(token, verdict);
        }
    }

    /// Starts a graceful shutdown: listeners close, every service says goodbye, output flushes.
    /// A second call (a second Ctrl-C) ends the loop at once.
    pub fn begin_shutdown(&mut self) {
        let now = self.shared.now;
        if self.shutdown_deadline.is_some() {
            self.shutdown_deadline = Some(now);
            return;
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
        self.shutdown_began = Some(now);
        self.listeners.clear();
        for key in self.entries.keys() {
            self.call(Token(key), |handler, cx| handler.on_shutdown(cx));
        }
    }

    /// How long the shutdown took, from the signal to the end of the loop (measured by the loop
    /// itself, so a test can check the promise without trusting its own machine's timing).
    pub fn shutdown_took(&self) -> Option<Duration> {
        self.shutdown_began.map(|began| began.elapsed())
    }

    /// Whether a shutdown is complete: everything flushed, or the grace period is over.
    pub fn is_finished(&mut self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        self.shared.now >= deadline
            || (self.shared.connections == 0
                && self
                    .entries
                    .values_mut()
                    .all(|entry| entry.handler().is_drained()))
    }

    /// Once a slot or a descriptor is free again, serve the backlogs left waiting.
    fn resume_accepting(&mut self) {
        let gate = &self.shared.accept;
        if gate.backlog_waiting && self.shutdown_deadline.is_none() && may_accept(&self.shared) {
            self.shared.accept.backlog_waiting = false;
            self.shared.accept.retry_at = None;
            self.replay.extend_from_slice(&self.listeners);
        }
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

    /// One line for SIGUSR1: which loop, for how long, what it holds right now and what it
    /// has done since it started — from the counters `/metrics` serves (`totals.rs`).
    fn status(&mut self) -> String {
        let sockets_with_queued_output = self
            .entries
            .values_mut()
            .filter_map(|entry| (!entry.handler().is_drained()).then_some(()))
            .count();
        let live = Live {
            sockets_with_queued_output,
            sockets_to_replay: self.replay.len(),
        };
        let totals = &self.shared.totals;
        totals
            .turns
            .timers_pending
            .set(self.shared.timers.len() as u64);
        let number = (self.number, self.shared.board.loops());
        totals.status_line(number, self.shared.now, Some(live))
    }

    /// Fires the timers due now, at most as many as the heap held when the pass began, so a
    /// burst of timers cannot hold the loop away from the sockets. A timer set during the pass
    /// for a deadline already past (a late session catching up) is due too and may pop in this
    /// same pass, ahead of an older one, which then waits for the next turn.
    fn fire_due_timers(&mut self) {
        for _ in 0..self.shared.timers.len() {
            let Some(Timer { token, tag, .. }) = self.shared.timers.pop_due(self.shared.now) else {
                break;
            };
            let trace = self.shared.trace;
            let served = self.call(token, |handler, cx| {
                let live = handler.timer_is_live(tag);
                if trace.on() {
                    let fate = if live { Fate::Fired } else { Fate::Stale };
                    let (desc, name) = (handler.describe(), handler.describe_timer(tag));
                    trace.timer(token, Some(&desc), &name, fate);
                }
                if live {
                    cx.shared.totals.turns.timers_fired.add(1);
                    handler.on_timer(tag, cx)
                } else {
                    Verdict::Keep
                }
            });
            if !served && trace.on() {
                trace.timer(token, None, &tag.to_string(), Fate::OwnerGone);
            }
        }
    }
}

/// A duration in nanoseconds, for the counters (saturating: 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

    impl Reactor {
        /// The `epoll_wait` timeout the next turn would use.
        fn poll_timeout(&mut self) -> Option<Duration> {
            let now = Instant::now();
            let deadline = self.next_wait().deadline();
            deadline.map(|deadline| deadline.saturating_duration_since(now))
        }

        fn connection(&self, token: Token) -> Option<&Connection> {
            match self.entries.get(token.0) {
                Some(Entry::Conn(conn)) => Some(conn),
                _ => None,
            }
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

        // B's bytes wait in its socket (checked, not assumed); A's stale readable event comes
        // first.
        b.write_all(b"for B").unwrap();
        // The loop is not turned while waiting, so B's own event stays in the kernel.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut peeked = [0u8; 5];
        while reactor.connection(token_b).unwrap().peek(&mut peeked).ok() != Some(5) {
            assert!(Instant::now() < deadline, "B's bytes never arrived");
            std::thread::yield_now();
        }
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
