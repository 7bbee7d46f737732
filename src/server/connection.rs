//! The TCP plumbing: one accepted connection, its output buffer and its service.
//!
//! Everything every TCP service needs is done here once, the way the service's entry points
//! cannot get wrong:
//!
//! - **Reading** (`read(2)`): on a readable event, read until `WouldBlock`, or until a short
//!   read proves the socket drained (a new edge comes with the next byte) — but never more than
//!   the service has room for. With no room (echo's output is full) the bytes stay in the
//!   kernel, TCP's window closes, and the peer's writes block: that is backpressure. When room
//!   comes back the connection reads again on its own, since no new readable edge will come for
//!   bytes that were already waiting.
//! - **Writing** (`write(2)`): a service's output is written at once, straight from the
//!   service's bytes while nothing is queued; what the socket does not take waits in a bounded
//!   [`OutBuf`] until the next writable edge. No `write` is tried in between (`write_ready`):
//!   the kernel would only say `WouldBlock` again.
//! - **Interest, registered once**: `READABLE | WRITABLE` at the accept, never changed
//!   (edge-triggered, as tokio does). The other design — add `WRITABLE` with
//!   `epoll_ctl(EPOLL_CTL_MOD)` when a write blocks, remove it when the queue drains — costs two
//!   `epoll_ctl` per blocked episode, and an edge-triggered `WRITABLE` that nobody waits for
//!   costs almost nothing: the kernel raises it only after a write was refused
//!   (`SOCK_NOSPACE`), and otherwise it rides along on the readable events. Measured with
//!   `perf stat` on streaming echo (50 connections, 16 KiB writes): toggling made 35.8
//!   syscalls per MB echoed (1,400 `epoll_ctl` a second, and a `write` after each round of
//!   reading that could only be refused), registered-once 32.1, tokio 31.0; ping-pong makes
//!   2.0 per message either way. Throughput: README, Performance.
//! - **Closing**: when the service is done, the rest of the output is flushed, then
//!   `shutdown(SHUT_WR)` sends FIN after the last byte. The connection then lingers, discarding
//!   input, until the peer's FIN or [`LINGER`]: closing a socket with unread input makes the
//!   kernel send RST instead of FIN, and a RST can destroy the last bytes before the peer
//!   reads them.
//! - **Idle timeout**: one housekeeping timer per connection (in the plumbing's own tag space,
//!   so it cannot collide with the service's timers) closes it after `--idle-timeout-ms` without
//!   a byte read or written.
//! - **Fairness**: at most [`PUMP_BUDGET`] read/write rounds per turn; a connection with more
//!   input than that yields, and the loop comes back to it after serving the others.
//! - **PROXY header** (`--proxy-from`): a connection from a trusted load balancer starts in a
//!   phase of its own, before any service exists. Its input is read under the same discipline
//!   (until `WouldBlock` or a short read), but each read is sized to what may still be header
//!   ([`HeaderReader::room`]), and fed to the parser (`proxy_header.rs`). Once the header is
//!   complete, the client it names (the balancer itself for LOCAL and UNKNOWN) becomes the
//!   connection's peer: the access lists and the per-source limit are applied to it (admitted
//!   now, released at close), and only then is the service created and started, with the bytes
//!   that came after the header in the same read as its first input. A malformed header, an end
//!   of input before a complete one, or no complete header `--greeting-timeout-ms` after the
//!   accept closes the connection, logged (boundedly) as the balancer's failure.
//! - **Accounting**: bytes read and written are counted as they move (an integer add each, in
//!   the connection and in its service's counters, `totals.rs`), and when the connection
//!   closes it is counted under why it ended, and one line at info level says what it was,
//!   for how long, how many bytes went each way, and why it ended (`End`):
//!   `echo tcp 127.0.0.1:53122: closed after 1.204 s, 12 bytes in, 12 bytes out (peer closed)`,
//!   with `via BALANCER` after the peer behind a `--proxy-from` balancer. A connection that never
//!   reached a service (no valid PROXY header, or its client refused) logs that line at debug
//!   level only: its failure was already logged in bounded form, and a flood of them must not
//!   cost a line each.
//! - **Output larger than the buffer**: when the queue drains while the service is still
//!   serving, the service is told (`on_output_drained`), so it can go on writing (the metrics
//!   endpoint's pages).

use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, log, warn};
use mio::Token;
use mio::net::TcpStream;

use super::access::Decision;
use super::config::Settings;
use super::handler::{Accepted, Context, Handler, Shared};
use super::listen::Proto;
use super::proxy_header::{HeaderReader, PROXY_HEADER_MAX, Progress};
use super::readiness::{Readiness, Verdict};
use super::timer::Tag;
use super::totals::{CloseReason, Refused};
use super::trace::{Act, Tracer};
use crate::nonblocking::{interrupted, would_block};
use crate::services::ServiceKind;
use crate::services::contract::{Env, Next, OutBuf, Output, TcpService};
use crate::services::output::Flushed;

/// Output a connection may hold unsent. For echo this is the backpressure threshold; for the
/// others it is far more than they ever queue for a peer that reads.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// How long a closing connection waits for the peer's FIN after sending its own.
pub const LINGER: Duration = Duration::from_secs(2);
/// Read/write rounds per turn (each read is at most the loop's 64 KiB scratch buffer).
pub const PUMP_BUDGET: usize = 16;

// What follows a PROXY header in its last read is handed to the new service at once: it must fit
// the room any service has when it starts (echo's is its whole output buffer).
const _: () = assert!(PROXY_HEADER_MAX <= OUTPUT_LIMIT);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// From a `--proxy-from` balancer: reading the PROXY header; no service yet.
    AwaitingHeader,
    /// The service is talking to the peer.
    Serving,
    /// The service is done: flush the output, then send FIN.
    Closing,
    /// FIN sent: discard input until the peer's FIN (or [`LINGER`]).
    Lingering,
}

/// What a connection's one housekeeping timer is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Housekeeping {
    /// `--idle-timeout-ms` after the last byte read or written.
    Idle,
    /// `--send-timeout-ms` after output started waiting for a peer that takes none.
    Send,
    /// The PROXY header's deadline (`--greeting-timeout-ms` after the accept).
    Header,
    /// [`LINGER`] after our FIN.
    Linger,
}

/// Why a connection ended, for its log line. The first three say who finished the
/// conversation (the close then went as planned); the others say what cut it short, and
/// replace any of the first three: a service done whose peer then never sent its FIN ended
/// with [`End::LingerExpired`].
#[derive(Debug)]
enum End {
    /// The service finished: daytime and RFC 868 after their reply, the time stream after
    /// `Au Revoir` (or after its own `error: …` line, which it logs itself).
    ServiceDone,
    /// The peer sent FIN and the service had nothing more to say.
    PeerClosed,
    /// The server is stopping.
    Shutdown,
    /// Nothing was read or written for `--idle-timeout-ms`.
    IdleTimeout(Duration),
    /// Output waited this long (`--send-timeout-ms`) with the peer taking none of it.
    SendTimeout(Duration),
    /// After our FIN, the peer sent none of its own within [`LINGER`].
    LingerExpired,
    /// A read, a write or a registration failed: the peer reset, a broken pipe…
    Failed(io::Error),
    /// From a `--proxy-from` balancer: no valid PROXY header (malformed, cut short, late).
    ProxyHeader(String),
    /// The client a PROXY header named was refused: by the access lists, or over its
    /// source's `--max-conns-per-ip`.
    Refused(String),
}

impl End {
    /// Whether this says what cut the connection short (then it replaces an earlier reason).
    fn is_abrupt(&self) -> bool {
        !matches!(self, End::ServiceDone | End::PeerClosed | End::Shutdown)
    }

    /// The reason it is counted under.
    fn reason(&self) -> CloseReason {
        match self {
            End::ServiceDone => CloseReason::ServiceDone,
            End::PeerClosed => CloseReason::PeerClosed,
            End::Shutdown => CloseReason::Shutdown,
            End::IdleTimeout(_) => CloseReason::IdleTimeout,
            End::SendTimeout(_) => CloseReason::SendTimeout,
            End::LingerExpired => CloseReason::LingerExpired,
            End::Failed(e) => match e.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => CloseReason::PeerReset,
                _ => CloseReason::IoError,
            },
            End::ProxyHeader(_) => CloseReason::ProxyHeader,
            End::Refused(_) => CloseReason::Refused,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::ServiceDone => f.write_str("service done"),
            End::PeerClosed => f.write_str("peer closed"),
            End::Shutdown => f.write_str("shutdown"),
            End::IdleTimeout(idle) => {
                write!(f, "idle timeout: nothing sent or received for {idle:?}")
            }
            End::SendTimeout(limit) => write!(f, "send timeout: peer took no output for {limit:?}"),
            End::LingerExpired => write!(f, "linger expired: no FIN from peer within {LINGER:?}"),
            End::Failed(e) => match e.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => write!(f, "peer reset: {e}"),
                _ => write!(f, "I/O error: {e}"),
            },
            End::ProxyHeader(why) => f.write_str(why),
            End::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// One accepted TCP connection.
pub struct Connection {
    stream: TcpStream,
    /// Whom the connection is for: the address `accept` gave, or, behind a balancer, the
    /// client its PROXY header named.
    peer: SocketAddr,
    kind: ServiceKind,
    /// Created once the peer is known: at once, or after the PROXY header.
    service: Option<Box<dyn TcpService>>,
    out: OutBuf,
    phase: Phase,
    /// The PROXY header read so far, while [`Phase::AwaitingHeader`].
    header: Option<Box<HeaderReader>>,
    /// When the PROXY header must be complete: `--greeting-timeout-ms` after the accept.
    header_deadline: Option<Instant>,
    /// The balancer a proxied connection came through, once its header was read.
    via: Option<SocketAddr>,
    /// Counted in the per-source table (released at close exactly when true).
    admitted: bool,
    /// The listener that accepted it: reports summaries this connection leaves pending.
    listener: Token,
    /// The socket may hold unread input: set by readable events, cleared by `WouldBlock`,
    /// a short read or end of input. Stays set while backpressure leaves input in the kernel.
    input_ready: bool,
    /// The peer's FIN was read.
    input_closed: bool,
    /// An event reported the peer's FIN: read on past short reads until `read` returns 0.
    peer_closed_hint: bool,
    /// The send buffer had room at the last `write` or writable event. Cleared only by
    /// `WouldBlock` (so the queue is never empty while it is clear); while it is clear, no
    /// `write` is tried: the writable edge will say when room comes back.
    write_ready: bool,
    /// Output is waiting for the peer (the queue is not empty): for the send timeout, and the
    /// trace's `output waits for WRITABLE`.
    output_waiting: bool,
    /// When a byte was last read or written, for the idle timeout.
    last_activity: Instant,
    /// Since when output has been waiting with the peer taking none of it, for the send
    /// timeout; `None` while nothing waits.
    output_stalled_since: Option<Instant>,
    /// Which housekeeping timer is current; earlier ones are stale and ignored.
    housekeeping: u64,
    /// When the current housekeeping timer is due.
    housekeeping_at: Option<Instant>,
    /// What the current housekeeping timer is for (its name in `--trace-events`).
    housekeeping_for: Housekeeping,
    /// When the connection was filed (the turn it was accepted in), for its log line.
    opened: Instant,
    /// Bytes read from the socket, discarded ones included.
    bytes_in: u64,
    /// Bytes written to the socket, straight through or from the queue.
    bytes_out: u64,
    /// Why it ended (or is ending), once known.
    end: Option<End>,
}

impl Connection {
    /// A connection already registered for `READABLE` under `cx.token`: counts it, starts the
    /// idle timer and the service (daytime speaks at once) — or, from a `--proxy-from`
    /// balancer, starts waiting for the PROXY header. Returns the first verdict too.
    pub fn open(accepted: Accepted, cx: &mut Context) -> (Self, Verdict) {
        let Accepted {
            stream,
            peer,
            kind,
            proxied,
            listener,
        } = accepted;
        let mut conn = Connection {
            stream,
            peer,
            kind,
            service: None,
            out: OutBuf::new(OUTPUT_LIMIT),
            phase: Phase::Serving,
            header: None,
            header_deadline: None,
            via: None,
            // The listener counted it, unless the header must first say whom to count.
            admitted: !proxied,
            listener,
            input_ready: false,
            input_closed: false,
            peer_closed_hint: false,
            write_ready: true,
            output_waiting: false,
            last_activity: cx.shared.now,
            output_stalled_since: None,
            housekeeping: 0,
            housekeeping_at: None,
            housekeeping_for: Housekeeping::Idle,
            opened: cx.shared.now,
            bytes_in: 0,
            bytes_out: 0,
            end: None,
        };
        cx.shared.connections += 1;
        cx.shared.totals.of(kind).tcp.accepted.add(1);
        trace_event!(
            cx.shared.trace,
            cx.token,
            Act::Accepted {
                service: kind.name(),
                peer
            }
        );
        if proxied {
            // Activity is not progress: the header, however it dribbles in, must be complete
            // within the greeting's time, counted from the accept.
            conn.phase = Phase::AwaitingHeader;
            conn.header = Some(Box::default());
            conn.header_deadline =
                Some(cx.shared.now + cx.shared.settings.service.greeting_timeout);
            debug!(
                "{} tcp {peer}: open, awaiting its PROXY header ({})",
                kind.name(),
                cx.label()
            );
        }
        if let Some(deadline) = conn.next_timeout(&cx.shared.settings) {
            conn.arm_housekeeping(cx, deadline);
        }
        if proxied {
            return (conn, Verdict::Keep);
        }
        debug!("{} tcp {peer}: open ({})", kind.name(), cx.label());
        let verdict = match conn.start_service(cx.shared, cx.token) {
            Ok(()) => conn.settle(cx),
            Err(e) => conn.fail(e),
        };
        (conn, verdict)
    }

    /// Creates the service for the peer, now known, and lets it speak first (daytime does).
    fn start_service(&mut self, shared: &mut Shared, token: Token) -> io::Result<()> {
        self.service = Some(self.kind.tcp_session(self.peer));
        self.phase = Phase::Serving;
        self.call_service(shared, token, End::ServiceDone, |service, env, out| {
            service.on_open(env, out)
        })
    }

    /// Takes the bytes of one read while the PROXY header is awaited. When the header is
    /// complete: the client it names becomes the peer, is checked and counted, the service
    /// starts, and the bytes after the header are its first input.
    fn on_header_input(
        &mut self,
        input: &[u8],
        shared: &mut Shared,
        token: Token,
    ) -> io::Result<()> {
        let Some(reader) = self.header.as_mut() else {
            return Ok(());
        };
        let (header, consumed) = match reader.feed(input) {
            Progress::NeedMore => return Ok(()),
            Progress::Malformed(why) => {
                self.header_failed(shared, format!("malformed PROXY header: {why}"));
                return Ok(());
            }
            Progress::Done { header, consumed } => (header, consumed),
        };
        self.header = None;
        self.header_deadline = None;
        let balancer = self.peer;
        // LOCAL (a health check) and UNKNOWN: the balancer's own connection is the peer.
        let peer = header.client().unwrap_or(balancer);
        let name = self.kind.name();
        // Named in the close line from now on, but counted for its source only once admitted.
        self.peer = peer;
        self.via = Some(balancer);
        // The checks the listener skipped, now on the client: closed before a byte if refused.
        if !shared.access_allows(self.kind, Proto::Tcp, peer, self.listener) {
            let why = match shared.settings.access.decide(peer.ip(), self.kind) {
                Decision::Refused(why) => why.to_string(),
                Decision::Allowed => String::from("access lists"),
            };
            self.phase = Phase::Closing;
            self.ending(End::Refused(why));
            return Ok(());
        }
        let limit = shared.settings.max_conns_per_ip;
        if let Err(refusal) = shared.by_source.admit(peer.ip(), limit) {
            if refusal.first {
                warn!(
                    "{name} tcp: {} holds {limit} connections (--max-conns-per-ip); closing its new ones (via {balancer})",
                    refusal.source
                );
            }
            shared
                .totals
                .of(self.kind)
                .tcp
                .refuse(Refused::MaxConnsPerIp);
            self.phase = Phase::Closing;
            self.ending(End::Refused(format!(
                "{} holds {limit} connections (--max-conns-per-ip)",
                refusal.source
            )));
            return Ok(());
        }
        self.admitted = true;
        let label = crate::slots::KeyLabel(token.0);
        match header.client() {
            Some(_) => debug!("{name} tcp {peer}: open via {balancer} ({header}) ({label})"),
            None => debug!("{name} tcp {peer}: open, the balancer's own ({header}) ({label})"),
        }
        self.start_service(shared, token)?;
        let rest = input.get(consumed..).unwrap_or_default();
        if !rest.is_empty() {
            self.call_service(shared, token, End::ServiceDone, |service, env, out| {
                service.on_input(rest, env, out)
            })?;
        }
        Ok(())
    }

    /// No valid PROXY header from a balancer: logged (boundedly) and closed, no byte sent.
    fn header_failed(&mut self, shared: &mut Shared, why: String) {
        self.header = None;
        self.header_deadline = None;
        self.phase = Phase::Closing;
        shared.proxy_header_failed(self.kind, self.peer, &why, self.listener);
        self.ending(End::ProxyHeader(why));
    }

    /// Looks at pending input without taking it (`recv(MSG_PEEK)`), for tests that must know
    /// bytes have reached this socket before they craft an event.
    #[cfg(test)]
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.peek(buf)
    }

    /// Calls one entry point of the service, if it is still serving, with an [`Output`] that
    /// writes straight to the socket while nothing is queued. If the service is done after it,
    /// `done` is why the connection ends. Returns the error a direct write met, for which the
    /// connection must close.
    fn call_service(
        &mut self,
        shared: &mut Shared,
        token: Token,
        done: End,
        call: impl FnOnce(&mut dyn TcpService, &mut Env, &mut Output) -> Next,
    ) -> io::Result<()> {
        if self.phase != Phase::Serving {
            return Ok(());
        }
        let Some(service) = self.service.as_deref_mut() else {
            return Ok(());
        };
        let queued_before = self.out.len();
        let mut out = Output::new(&mut self.out, Some(&mut self.stream));
        let next = shared.with_env(token, self.kind, Proto::Tcp, |env| {
            call(service, env, &mut out)
        });
        let (written, error) = out.finish();
        if queued_before == 0 && !self.out.is_empty() {
            // A direct write said `WouldBlock` (it writes until then): no room until an edge.
            self.write_ready = false;
        }
        if shared.trace.on() {
            self.trace_output(shared.trace, token, written, queued_before, error.is_some());
        }
        if written > 0 {
            self.last_activity = shared.now;
            self.count_out(written, shared);
        }
        if next == Next::Close {
            self.phase = Phase::Closing;
            self.ending(done);
        }
        error.map_or(Ok(()), Err)
    }

    /// Traces a service's output (`--trace-events`): what went straight to the socket, and
    /// what stayed queued — because the socket said `WouldBlock`, or behind output already
    /// waiting (no `write` then). Nothing more if a write failed: the connection closes.
    fn trace_output(
        &self,
        trace: Tracer,
        token: Token,
        written: usize,
        queued_before: usize,
        failed: bool,
    ) {
        if written > 0 {
            trace.action(token, Act::Wrote(written));
        }
        let pending = self.out.len();
        let queued = pending.saturating_sub(queued_before);
        if queued == 0 || failed {
            return;
        }
        if queued_before == 0 {
            trace.action(token, Act::WriteBlocked { pending });
        } else {
            trace.action(
                token,
                Act::Queued {
                    bytes: queued,
                    pending,
                },
            );
        }
    }

    /// Records why the connection ends: the first reason, unless a later one says what cut it
    /// short.
    fn ending(&mut self, why: End) {
        if self.end.is_none() || why.is_abrupt() {
            self.end = Some(why);
        }
    }

    /// Records the error for which the connection must close, and says so.
    fn fail(&mut self, error: io::Error) -> Verdict {
        // ECONNRESET, EPIPE (SIGPIPE is ignored, so a write to a closed peer returns an error
        // instead of killing us), ETIMEDOUT…: this connection only.
        self.ending(End::Failed(error));
        Verdict::Close
    }

    /// Why the connection ended, for its log line.
    fn why(&self) -> &dyn fmt::Display {
        match &self.end {
            Some(end) => end,
            // Every path to a close records a reason; this would be a bug, said plainly.
            None => &"reason not recorded",
        }
    }

    fn count_out(&mut self, written: usize, shared: &mut Shared) {
        self.bytes_out += written as u64;
        shared
            .totals
            .of(self.kind)
            .tcp
            .bytes_out
            .add(written as u64);
    }

    /// Makes `deadline` the one housekeeping timer (earlier ones go stale); `what` names it in
    /// `--trace-events`.
    fn arm_housekeeping(&mut self, cx: &mut Context, (deadline, what): (Instant, Housekeeping)) {
        self.housekeeping += 1;
        self.housekeeping_at = Some(deadline);
        self.housekeeping_for = what;
        cx.set_plumbing_timer(deadline, self.housekeeping);
    }

    /// The earliest moment the idle or the send timeout, or the PROXY header's deadline, could
    /// close this connection, and which of them it is.
    fn next_timeout(&self, settings: &Settings) -> Option<(Instant, Housekeeping)> {
        let idle = settings
            .idle_timeout
            .map(|idle| (self.last_activity + idle, Housekeeping::Idle));
        let send = self
            .output_stalled_since
            .zip(settings.send_timeout)
            .map(|(since, limit)| (since + limit, Housekeeping::Send));
        let header = self.header_deadline.map(|at| (at, Housekeeping::Header));
        idle.into_iter()
            .chain(send)
            .chain(header)
            .min_by_key(|&(at, _)| at)
    }

    /// Closes a connection that lingered too long, went idle, or whose peer stopped taking its
    /// output; otherwise re-arms for the next of those moments.
    fn on_housekeeping(&mut self, cx: &mut Context) -> Verdict {
        if self.phase == Phase::AwaitingHeader
            && self.header_deadline.is_some_and(|at| cx.shared.now >= at)
        {
            let limit = cx.shared.settings.service.greeting_timeout;
            let why = format!(
                "no complete PROXY header {} ms after the accept (--greeting-timeout-ms)",
                limit.as_millis()
            );
            self.header_failed(cx.shared, why);
            return self.settle(cx);
        }
        let (now, settings) = (cx.shared.now, &cx.shared.settings);
        let why = if self.phase == Phase::Lingering {
            Some(End::LingerExpired)
        } else if let Some(limit) = settings.send_timeout
            && self
                .output_stalled_since
                .is_some_and(|since| now >= since + limit)
        {
            Some(End::SendTimeout(limit))
        } else if let Some(idle) = settings.idle_timeout
            && now >= self.last_activity + idle
        {
            Some(End::IdleTimeout(idle))
        } else {
            None
        };
        if let Some(why) = why {
            self.ending(why);
            return Verdict::Close;
        }
        self.housekeeping_at = None;
        if let Some(deadline) = self.next_timeout(settings) {
            self.arm_housekeeping(cx, deadline);
        }
        Verdict::Keep
    }

    /// Moves bytes as far as they go, then fixes the registered interest.
    fn settle(&mut self, cx: &mut Context) -> Verdict {
        let verdict = match self.pump(cx) {
            Ok(verdict) => verdict,
            Err(e) => return self.fail(e),
        };
        if verdict == Verdict::Close {
            return verdict;
        }
        self.watch_output(cx);
        verdict
    }

    /// Alternates reading and writing until neither makes progress, within [`PUMP_BUDGET`].
    fn pump(&mut self, cx: &mut Context) -> io::Result<Verdict> {
        for _ in 0..PUMP_BUDGET {
            let mut progress = false;
            if self.input_ready {
                progress |= self.read_once(cx)?;
            }
            let flushed = self.flush(cx)?;
            progress |= flushed;
            if flushed && self.out.is_empty() && self.phase == Phase::Serving {
                // The queue has drained: a service with more to say goes on.
                self.call_service(
                    cx.shared,
                    cx.token,
                    End::ServiceDone,
                    |service, env, out| service.on_output_drained(env, out),
                )?;
            }
            if self.phase == Phase::Closing && self.out.is_empty() {
                // FIN goes out after the last byte of output.
                self.stream.shutdown(Shutdown::Write)?;
                trace_event!(cx.shared.trace, cx.token, Act::Fin);
                self.phase = Phase::Lingering;
                let deadline = cx.shared.now + LINGER;
                self.arm_housekeeping(cx, (deadline, Housekeeping::Linger));
                progress = true;
            }
            if self.phase == Phase::Lingering && self.input_closed {
                return Ok(Verdict::Close);
            }
            if !progress {
                return Ok(Verdict::Keep);
            }
        }
        Ok(if self.input_ready {
            Verdict::Yield
        } else {
            Verdict::Keep
        })
    }

    /// One `read`, sized to what the service can take. Returns whether anything happened.
    fn read_once(&mut self, cx: &mut Context) -> io::Result<bool> {
        let (trace, token) = (cx.shared.trace, cx.token);
        let room = match self.phase {
            // Never a byte past what may still be header: the rest stays for the service.
            Phase::AwaitingHeader => self.header.as_ref().map_or(0, |reader| reader.room()),
            Phase::Serving => self
                .service
                .as_ref()
                .map_or(0, |service| service.input_room(&self.out)),
            // A finished service's input is read only to be discarded.
            Phase::Closing | Phase::Lingering => usize::MAX,
        };
        if room == 0 {
            // Backpressure: leave the bytes in the kernel until output drains.
            trace_event!(trace, token, Act::NoRoom);
            return Ok(false);
        }
        // `want` ≤ the scratch length, so the slice is never the empty default.
        let buf = cx
            .scratch
            .get_mut(..room.min(cx.scratch.len()))
            .unwrap_or_default();
        let want = buf.len();
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    trace_event!(trace, token, Act::ReadEof);
                    self.input_ready = false;
                    self.input_closed = true;
                    if self.phase == Phase::AwaitingHeader {
                        self.header_failed(
                            cx.shared,
                            "end of input before a complete PROXY header".to_owned(),
                        );
                        return Ok(true);
                    }
                    self.call_service(
                        cx.shared,
                        cx.token,
                        End::PeerClosed,
                        |service, env, out| service.on_input_closed(env, out),
                    )?;
                    return Ok(true);
                }
                Ok(n) => {
                    trace_event!(trace, token, Act::Read(n));
                    self.last_activity = cx.shared.now;
                    self.bytes_in += n as u64;
                    cx.shared.totals.of(self.kind).tcp.bytes_in.add(n as u64);
                    if n < want && !self.peer_closed_hint {
                        // A short read emptied the receive queue: skip the `read` that would
                        // only say WouldBlock. Any new byte raises a new edge.
                        trace_event!(trace, token, Act::ShortRead);
                        self.input_ready = false;
                    }
                    let input = buf.get(..n).unwrap_or_default();
                    if self.phase == Phase::AwaitingHeader {
                        self.on_header_input(input, cx.shared, cx.token)?;
                        return Ok(true);
                    }
                    self.call_service(
                        cx.shared,
                        cx.token,
                        End::ServiceDone,
                        |service, env, out| service.on_input(input, env, out),
                    )?;
                    return Ok(true);
                }
                // Drained: nothing more until the next readable edge.
                Err(e) if would_block(&e) => {
                    trace_event!(trace, token, Act::ReadDrained);
                    self.input_ready = false;
                    return Ok(false);
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes pending output until done or `WouldBlock`. Returns whether a byte went out.
    fn flush(&mut self, cx: &mut Context) -> io::Result<bool> {
        if self.out.is_empty() || !self.write_ready {
            return Ok(false);
        }
        let (flushed, written) = self.out.write_to(&mut self.stream)?;
        if flushed == Flushed::Blocked {
            self.write_ready = false;
        }
        let (trace, token) = (cx.shared.trace, cx.token);
        if trace.on() {
            if written > 0 {
                trace.action(token, Act::Wrote(written));
            }
            if flushed == Flushed::Blocked {
                let pending = self.out.len();
                trace.action(token, Act::WriteBlocked { pending });
            }
        }
        if written > 0 {
            self.last_activity = cx.shared.now;
            self.count_out(written, cx.shared);
            // The peer took something: a stall, if any, starts again from now.
            if self.output_stalled_since.is_some() {
                self.output_stalled_since = Some(cx.shared.now);
            }
        }
        Ok(written > 0)
    }

    /// Notes when output starts or stops waiting for the peer, and times how long it waits.
    /// The interest itself never changes: `WRITABLE` is registered with `READABLE` at the
    /// accept (see the module doc), so no `epoll_ctl` is needed here.
    fn watch_output(&mut self, cx: &mut Context) {
        let waiting = !self.out.is_empty();
        if waiting == self.output_waiting {
            return;
        }
        self.watch_stall(waiting, cx);
        trace_event!(cx.shared.trace, cx.token, Act::Writable(waiting));
        self.output_waiting = waiting;
    }
}

impl Connection {
    /// Output started or stopped waiting for the peer: start or stop the send timeout's
    /// clock, and make sure a housekeeping timer comes no later than its deadline.
    fn watch_stall(&mut self, waiting: bool, cx: &mut Context) {
        if !waiting {
            self.output_stalled_since = None;
            return;
        }
        let now = cx.shared.now;
        self.output_stalled_since = Some(now);
        if self.phase == Phase::Lingering {
            return; // the linger timer closes it soon anyway
        }
        if let Some(limit) = cx.shared.settings.send_timeout {
            let deadline = now + limit;
            if self.housekeeping_at.is_none_or(|at| deadline < at) {
                self.arm_housekeeping(cx, (deadline, Housekeeping::Send));
            }
        }
    }
}

impl Handler for Connection {
    fn on_ready(&mut self, ready: Readiness, cx: &mut Context) -> Verdict {
        self.peer_closed_hint |= ready.read_closed;
        if ready.wants_read() {
            self.input_ready = true;
        }
        // Room again — or an error or hang-up, which the next `write` reports.
        if ready.writable || ready.write_closed || ready.error {
            self.write_ready = true;
        }
        // Writable or not, `pump` tries to flush: it costs nothing when the buffer is empty.
        self.settle(cx)
    }

    fn on_timer(&mut self, tag: Tag, cx: &mut Context) -> Verdict {
        match tag {
            Tag::Plumbing(_) if self.timer_is_live(tag) => self.on_housekeeping(cx),
            Tag::Plumbing(_) => Verdict::Keep,
            Tag::Service(tag) => {
                match self.call_service(
                    cx.shared,
                    cx.token,
                    End::ServiceDone,
                    |service, env, out| service.on_timer(tag, env, out),
                ) {
                    Ok(()) => self.settle(cx),
                    Err(e) => self.fail(e),
                }
            }
        }
    }

    fn timer_is_live(&self, tag: Tag) -> bool {
        match tag {
            Tag::Plumbing(number) => number == self.housekeeping,
            Tag::Service(tag) => {
                self.phase == Phase::Serving
                    && self
                        .service
                        .as_ref()
                        .is_some_and(|service| service.timer_is_live(tag))
            }
        }
    }

    /// The server is stopping: let the service say goodbye, then close as usual. A connection
    /// still awaiting its PROXY header has no service: it only gets FIN.
    fn on_shutdown(&mut self, cx: &mut Context) -> Verdict {
        if self.phase == Phase::AwaitingHeader {
            self.header = None;
            self.header_deadline = None;
            self.phase = Phase::Closing;
            self.ending(End::Shutdown);
            return self.settle(cx);
        }
        match self.call_service(cx.shared, cx.token, End::Shutdown, |service, env, out| {
            service.on_shutdown(env, out)
        }) {
            Ok(()) => self.settle(cx),
            Err(e) => self.fail(e),
        }
    }

    /// Logs the connection's one line: what, how long, bytes each way, why it ended.
    fn on_close(&mut self, cx: &mut Context) {
        cx.shared.connections -= 1;
        let reason = self.end.as_ref().map_or(CloseReason::IoError, End::reason);
        cx.shared.totals.of(self.kind).tcp.close(reason);
        // Only what was counted is released: a balancer's connection refused, or closed before
        // its header named a client, never took a share of anyone's limit.
        if self.admitted {
            cx.shared.by_source.release(self.peer.ip());
        }
        let lasted = cx.shared.now.saturating_duration_since(self.opened);
        let via = self
            .via
            .map_or_else(String::new, |balancer| format!(" via {balancer}"));
        // Never served: already logged, boundedly, where it failed (see the module doc).
        let level = if self.service.is_none() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log!(
            level,
            "{} tcp {}{via}: closed after {:.3} s, {} bytes in, {} bytes out ({})",
            self.kind.name(),
            self.peer,
            lasted.as_secs_f64(),
            self.bytes_in,
            self.bytes_out,
            self.why()
        );
        if let Err(e) = cx.registry.deregister(&mut self.stream) {
            debug!("{}: deregister: {e}", cx.label());
        }
    }

    /// Output waits in the queue (for the status line's count of sockets with queued output).
    fn is_drained(&self) -> bool {
        self.out.is_empty()
    }

    fn describe(&self) -> String {
        let name = self.kind.name();
        match (self.phase, self.via) {
            (Phase::AwaitingHeader, _) => {
                format!("{name} tcp {} (PROXY header awaited)", self.peer)
            }
            (_, Some(balancer)) => format!("{name} tcp {} via {balancer}", self.peer),
            (_, None) => format!("{name} tcp {}", self.peer),
        }
    }

    /// The housekeeping timer by what it is for now; the service's by the service's name.
    fn describe_timer(&self, tag: Tag) -> String {
        match tag {
            Tag::Service(tag) => self
                .service
                .as_ref()
                .map_or_else(|| tag.0.to_string(), |service| service.describe_timer(tag)),
            Tag::Plumbing(number) if number != self.housekeeping => {
                String::from("an earlier housekeeping timer")
            }
            Tag::Plumbing(_) => String::from(match self.housekeeping_for {
                Housekeeping::Idle => "idle timeout",
                Housekeeping::Send => "send timeout",
                Housekeeping::Header => "PROXY header deadline",
                Housekeeping::Linger => "linger",
            }),
        }
    }
}
