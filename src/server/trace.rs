//! `--trace-events`: the loop telling what it does, one line per step, so a learner can *see* it.
//!
//! Four kinds of record, each one line:
//!
//! - a **wakeup**: `epoll_wait` returned — after how long, with how many events, and which
//!   timeout the loop had chosen and why (the next timer, by name; sockets to replay; the
//!   accept retry; the end of a shutdown; or none: sleep until an event);
//! - an **event**: one readiness event, in words, for the entry its token names (or a replay
//!   the loop made up for a socket it left unfinished, see `Verdict::Yield`);
//! - an **action**: what the plumbing did about it — each `read` until `WouldBlock` or a short
//!   read, each `write`, `WRITABLE` interest on and off, FIN, accept, close ([`Act`]);
//! - a **timer**: one due timer, by the name its owner gives it (`tick 2/3 of #4.9`,
//!   `idle timeout of #7.2`), or dropped because it no longer matters.
//!
//! In words (the default form, `--trace-events`), times in seconds since the loop started:
//!
//! ```text
//! +0.151203 s wakeup #9 after 50.01 ms: 1 event, timeout was 49.97 ms on the timerfd (next timer: tick 2/2 of #5.6)
//! +0.151209 s   #1.0 alarm (timerfd): readable
//! +0.151219 s   timer fired: tick 2/2 of #5.6 (time tcp 127.0.0.1:40312)
//! +0.151260 s     #5.6: wrote 30 bytes
//! +0.151266 s     #5.6: sent FIN
//! ```
//!
//! The same records as JSON objects, one per line (`--trace-events=json`), are what
//! `scripts/timeline.sh` draws; `--trace-events=compact` keeps the terse form of old
//! (`#5.6: R-C-- time tcp …`, no wakeup lines).
//!
//! **Cost.** Off, every trace point is one branch ([`Tracer::on`]): the record, the entry's
//! description and every string are made only inside it. The lines go to the log under
//! [`TARGET`] at info level; the `reactor` binary prints them bare (no date, no level), so a
//! JSON line is nothing but its object. Nothing a peer sent is ever part of a record: only
//! addresses, counts and the loop's own words.

use std::fmt::{self, Display, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Token;

use super::readiness::Readiness;
use crate::slots::KeyLabel;

/// The log target of every trace line.
pub const TARGET: &str = "inetloop::trace";

/// Which form the trace takes (`--trace-events[=compact|json]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceMode {
    /// No trace (the default).
    #[default]
    Off,
    /// Sentences a learner reads: wakeups, events in words, actions, timers by name.
    Words,
    /// One terse line per event (`R-C--` flags), action and timer; no wakeup lines.
    Compact,
    /// One JSON object per line, for programs (`scripts/timeline.sh`).
    Json,
}

impl TraceMode {
    /// The value after `--trace-events=` (nothing after a bare `--trace-events`).
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("words") => Ok(TraceMode::Words),
            Some("compact") => Ok(TraceMode::Compact),
            Some("json") => Ok(TraceMode::Json),
            Some(other) => Err(format!(
                "'{other}' is not a trace form (words, compact or json)"
            )),
        }
    }
}

/// Why the loop chose the timeout it slept with.
#[derive(Clone, Copy, Debug)]
pub enum Why<'a> {
    /// Sockets left input unread on purpose last turn: do not sleep at all.
    Replay(usize),
    /// The earliest live timer, named by its owner.
    Timer { name: &'a str, owner: Token },
    /// Accepting paused for lack of descriptors; it is retried then.
    AcceptRetry,
    /// A shutdown's grace period ends then.
    Shutdown,
    /// Nothing is due: sleep until an event.
    Event,
}

/// One return of `epoll_wait`.
#[derive(Clone, Copy, Debug)]
pub struct Wakeup<'a> {
    /// How long the loop was blocked in `epoll_wait`.
    pub slept: Duration,
    pub events: usize,
    /// A signal cut the wait short (`EINTR`).
    pub interrupted: bool,
    /// The timeout it was given; `None` = none (sleep until an event).
    pub timeout: Option<Duration>,
    /// The timerfd, not `epoll_wait`'s own timeout, was to end the sleep (Linux).
    pub timerfd: bool,
    pub why: Why<'a>,
}

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The kernel reported it.
    Kernel,
    /// The loop made it up: the socket yielded with input left (edge-triggered readiness will
    /// not report that input again), or accepting resumed.
    Replay,
}

/// What became of a due timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Its owner was called.
    Fired,
    /// Its owner says it no longer matters (cancelled lazily): dropped.
    Stale,
    /// Its owner is gone (the token's generation no longer matches): dropped.
    OwnerGone,
}

/// One thing the plumbing did, as a trace point names it.
#[derive(Clone, Copy)]
pub enum Act<'a> {
    /// A listener's connection, filed under a token of its own (traced on that token).
    Accepted {
        service: &'static str,
        peer: SocketAddr,
    },
    /// `accept` said `WouldBlock`: the listen backlog is empty.
    AcceptDrained,
    /// The peer is a `--proxy-from` balancer: its connection starts with a PROXY header.
    Balancer { peer: SocketAddr },
    /// A peer turned away (access lists, per-source limit).
    Refused {
        peer: SocketAddr,
        why: &'a dyn Display,
    },
    /// `read` returned this many bytes.
    Read(usize),
    /// That read was shorter than asked: the receive queue is empty, no `read` to `WouldBlock`.
    ShortRead,
    /// `read` said `WouldBlock`: drained until the next edge.
    ReadDrained,
    /// `read` returned 0: the peer's FIN.
    ReadEof,
    /// The service has no room: the bytes stay in the kernel (backpressure).
    NoRoom,
    /// `write` took this many bytes.
    Wrote(usize),
    /// `write` said `WouldBlock`: this many bytes wait in the output buffer.
    WriteBlocked { pending: usize },
    /// Output queued behind output already waiting (no `write` tried).
    Queued { bytes: usize, pending: usize },
    /// Output started (true) or stopped waiting for a writable edge. No syscall: `WRITABLE`
    /// is registered once, at the accept (`connection.rs`).
    Writable(bool),
    /// `shutdown(SHUT_WR)`: FIN after the last byte.
    Fin,
    /// Deregistered (`epoll_ctl(DEL)`) and dropped (`close`).
    Closed,
    /// `recv_from` returned a datagram.
    Received { bytes: usize, from: SocketAddr },
    /// `recv_from` said `WouldBlock`: drained.
    RecvDrained,
    /// `send_to` sent a datagram.
    Sent { bytes: usize, to: SocketAddr },
    /// `send_to` said `WouldBlock`: the datagram waits in the send queue.
    SendBlocked { to: SocketAddr },
    /// Not sent: the destination had its share this second.
    NotSent { to: SocketAddr },
}

impl Act<'_> {
    /// A short fixed name for programs (the JSON `what`).
    pub fn name(&self) -> &'static str {
        match self {
            Act::Accepted { .. } => "accepted",
            Act::AcceptDrained => "accept_drained",
            Act::Balancer { .. } => "balancer",
            Act::Refused { .. } => "refused",
            Act::Read(_) => "read",
            Act::ShortRead => "short_read",
            Act::ReadDrained => "read_drained",
            Act::ReadEof => "eof",
            Act::NoRoom => "no_room",
            Act::Wrote(_) => "wrote",
            Act::WriteBlocked { .. } => "write_blocked",
            Act::Queued { .. } => "queued",
            Act::Writable(true) => "writable_on",
            Act::Writable(false) => "writable_off",
            Act::Fin => "fin",
            Act::Closed => "closed",
            Act::Received { .. } => "received",
            Act::RecvDrained => "recv_drained",
            Act::Sent { .. } => "sent",
            Act::SendBlocked { .. } => "send_blocked",
            Act::NotSent { .. } => "not_sent",
        }
    }

    fn bytes(&self) -> Option<usize> {
        match *self {
            Act::Read(n) | Act::Wrote(n) => Some(n),
            Act::Queued { bytes, .. } | Act::Received { bytes, .. } | Act::Sent { bytes, .. } => {
                Some(bytes)
            }
            _ => None,
        }
    }

    fn pending(&self) -> Option<usize> {
        match *self {
            Act::WriteBlocked { pending } | Act::Queued { pending, .. } => Some(pending),
            _ => None,
        }
    }

    fn peer(&self) -> Option<SocketAddr> {
        match *self {
            Act::Accepted { peer, .. } | Act::Balancer { peer } | Act::Refused { peer, .. } => {
                Some(peer)
            }
            Act::Received { from, .. } => Some(from),
            Act::Sent { to, .. } | Act::SendBlocked { to } | Act::NotSent { to } => Some(to),
            _ => None,
        }
    }
}

impl Display for Act<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::Accepted { service, peer } => write!(f, "accepted {service} tcp {peer}"),
            Act::AcceptDrained => f.write_str("accept → WouldBlock: backlog drained"),
            Act::Balancer { peer } => {
                write!(
                    f,
                    "{peer} is a --proxy-from balancer: PROXY header required"
                )
            }
            Act::Refused { peer, why } => write!(f, "refused {peer} ({why})"),
            Act::Read(n) => write!(f, "read {n} bytes"),
            Act::ShortRead => f.write_str("short read: drained"),
            Act::ReadDrained => f.write_str("read → WouldBlock: drained"),
            Act::ReadEof => f.write_str("read → 0: end of input (the peer's FIN)"),
            Act::NoRoom => f.write_str("no room for input: not reading (backpressure)"),
            Act::Wrote(n) => write!(f, "wrote {n} bytes"),
            Act::WriteBlocked { pending } => {
                write!(f, "write → WouldBlock: {pending} bytes pending")
            }
            Act::Queued { bytes, pending } => {
                write!(
                    f,
                    "queued {bytes} bytes behind pending output ({pending} bytes pending)"
                )
            }
            Act::Writable(true) => f.write_str("output waits for WRITABLE"),
            Act::Writable(false) => f.write_str("output drained: no longer waiting for WRITABLE"),
            Act::Fin => f.write_str("sent FIN"),
            Act::Closed => f.write_str("deregistered and closed"),
            Act::Received { bytes, from } => write!(f, "received {bytes} bytes from {from}"),
            Act::RecvDrained => f.write_str("recv → WouldBlock: drained"),
            Act::Sent { bytes, to } => write!(f, "sent {bytes} bytes to {to}"),
            Act::SendBlocked { to } => write!(f, "send to {to} → WouldBlock: queued"),
            Act::NotSent { to } => write!(f, "not sent to {to}: over its budget"),
        }
    }
}

/// The trace of one loop: its form, its clock, its wakeup count. `Copy`, so a handler can
/// carry it next to a borrowed socket; only the loop changes it (one wakeup at a time).
#[derive(Clone, Copy, Debug)]
pub struct Tracer {
    mode: TraceMode,
    /// Times are counted from here: when the loop was made.
    start: Instant,
    /// Wakeups so far; the current one's number.
    wakeups: u64,
    /// Which loop (`--threads`), when there are several.
    loop_number: Option<usize>,
}

impl Tracer {
    pub fn new(mode: TraceMode, start: Instant) -> Self {
        Tracer {
            mode,
            start,
            wakeups: 0,
            loop_number: None,
        }
    }

    /// Whether anything is traced: the one branch every trace point costs when it is not.
    #[inline]
    pub fn on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Names the loop in every line, when there are several (`--threads`).
    pub fn set_loop(&mut self, number: usize, count: usize) {
        self.loop_number = (count > 1).then_some(number);
    }

    /// `epoll_wait` returned: counts the wakeup and records it.
    pub fn wakeup(&mut self, wakeup: &Wakeup) {
        self.wakeups += 1;
        if self.mode != TraceMode::Compact {
            self.emit(Record::Wakeup(wakeup));
        }
    }

    /// An event for the entry `desc` (`None`: its token's owner is gone).
    pub fn event(&self, token: Token, desc: Option<&str>, ready: Readiness, cause: Cause) {
        self.emit(Record::Event {
            token,
            desc,
            ready,
            cause,
        });
    }

    /// Something the plumbing did for `token`.
    pub fn action(&self, token: Token, act: Act) {
        self.emit(Record::Action { token, act: &act });
    }

    /// A due timer of `token`'s, by the name its owner gave it.
    pub fn timer(&self, token: Token, desc: Option<&str>, name: &str, fate: Fate) {
        self.emit(Record::Timer {
            token,
            desc,
            name,
            fate,
        });
    }

    fn emit(&self, record: Record) {
        let line = Line {
            tracer: self,
            at: self.start.elapsed(),
            record,
        };
        log::info!(target: TARGET, "{line}");
    }
}

/// What one line says.
enum Record<'a> {
    Wakeup(&'a Wakeup<'a>),
    Event {
        token: Token,
        desc: Option<&'a str>,
        ready: Readiness,
        cause: Cause,
    },
    Action {
        token: Token,
        act: &'a Act<'a>,
    },
    Timer {
        token: Token,
        desc: Option<&'a str>,
        name: &'a str,
        fate: Fate,
    },
}

/// One record, formatted when the logger writes it (never when tracing is off).
struct Line<'a> {
    tracer: &'a Tracer,
    /// Since the loop started.
    at: Duration,
    record: Record<'a>,
}

impl Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tracer.mode {
            TraceMode::Json => self.json(f),
            TraceMode::Compact => {
                write!(f, "{} ", Seconds(self.at))?;
                if let Some(number) = self.tracer.loop_number {
                    write!(f, "[loop {number}] ")?;
                }
                self.compact(f)
            }
            TraceMode::Words | TraceMode::Off => {
                write!(f, "{} ", Seconds(self.at))?;
                if let Some(number) = self.tracer.loop_number {
                    write!(f, "[loop {number}] ")?;
                }
                self.words(f)
            }
        }
    }
}

impl Line<'_> {
    /// The sentence a learner reads, indented under its wakeup.
    fn words(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Record::Wakeup(wakeup) => {
                let number = self.tracer.wakeups;
                write!(f, "wakeup #{number} ")?;
                wakeup_text(wakeup, f)
            }
            Record::Event { .. } => {
                f.write_str("  ")?;
                event_text(&self.record, f)
            }
            Record::Action { token, act } => write!(f, "    {}: {act}", KeyLabel(token.0)),
            Record::Timer { .. } => {
                f.write_str("  ")?;
                timer_text(&self.record, f)
            }
        }
    }

    /// The terse form of old: `#4.5: R-C-- echo tcp …`, `#4.5: read 6 bytes`.
    fn compact(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Record::Wakeup(_) => Ok(()),
            Record::Event {
                token,
                desc,
                ready,
                cause,
            } => {
                let label = KeyLabel(token.0);
                let replayed = if *cause == Cause::Replay {
                    " (replay)"
                } else {
                    ""
                };
                match desc {
                    Some(desc) => write!(f, "{label}: {ready} {desc}{replayed}"),
                    None => write!(f, "{label}: {ready} for a closed token, ignored"),
                }
            }
            Record::Action { token, act } => write!(f, "{}: {act}", KeyLabel(token.0)),
            Record::Timer {
                token, name, fate, ..
            } => {
                let label = KeyLabel(token.0);
                match fate {
                    Fate::Fired => write!(f, "{label}: {name} fired"),
                    Fate::Stale => write!(f, "{label}: {name} stale, dropped"),
                    Fate::OwnerGone => write!(f, "{label}: {name} for a closed token, dropped"),
                }
            }
        }
    }

    /// One JSON object: `t_us`, `wakeup`, `kind`, then what the kind has, and `text` (the
    /// words, without time and indent). Strings are escaped (`JsonText`).
    fn json(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.record {
            Record::Wakeup(_) => "wakeup",
            Record::Event { .. } => "event",
            Record::Action { .. } => "action",
            Record::Timer { .. } => "timer",
        };
        write!(
            f,
            "{{\"t_us\":{},\"wakeup\":{},\"kind\":\"{kind}\"",
            self.at.as_micros(),
            self.tracer.wakeups
        )?;
        if let Some(number) = self.tracer.loop_number {
            write!(f, ",\"loop\":{number}")?;
        }
        match &self.record {
            Record::Wakeup(wakeup) => {
                write!(
                    f,
                    ",\"slept_us\":{},\"events\":{},\"interrupted\":{}",
                    wakeup.slept.as_micros(),
                    wakeup.events,
                    wakeup.interrupted
                )?;
                match wakeup.timeout {
                    Some(timeout) => write!(f, ",\"timeout_us\":{}", timeout.as_micros())?,
                    None => f.write_str(",\"timeout_us\":null")?,
                }
                write!(f, ",\"timerfd\":{}", wakeup.timerfd)?;
                let why = match wakeup.why {
                    Why::Replay(_) => "replay",
                    Why::Timer { .. } => "timer",
                    Why::AcceptRetry => "accept_retry",
                    Why::Shutdown => "shutdown",
                    Why::Event => "none",
                };
                write!(f, ",\"why\":\"{why}\"")?;
                if let Why::Timer { name, owner } = wakeup.why {
                    write!(
                        f,
                        ",\"timer\":{},\"timer_token\":\"{}\"",
                        JsonText(&name),
                        KeyLabel(owner.0)
                    )?;
                }
                write!(
                    f,
                    ",\"text\":{}}}",
                    JsonText(&format_args!(
                        "wakeup #{} {}",
                        self.tracer.wakeups,
                        adapter(|f| wakeup_text(wakeup, f))
                    ))
                )
            }
            Record::Event {
                token,
                desc,
                ready,
                cause,
            } => {
                write!(f, ",\"token\":\"{}\"", KeyLabel(token.0))?;
                if let Some(desc) = desc {
                    write!(f, ",\"desc\":{}", JsonText(desc))?;
                }
                let what = match cause {
                    Cause::Replay => "replay",
                    Cause::Kernel => event_name(ready),
                };
                write!(
                    f,
                    ",\"what\":\"{what}\",\"flags\":\"{ready}\",\"text\":{}}}",
                    JsonText(&adapter(|f| event_text(&self.record, f)))
                )
            }
            Record::Action { token, act } => {
                write!(
                    f,
                    ",\"token\":\"{}\",\"what\":\"{}\"",
                    KeyLabel(token.0),
                    act.name()
                )?;
                if let Act::Accepted { service, peer } = act {
                    write!(
                        f,
                        ",\"desc\":{}",
                        JsonText(&format_args!("{service} tcp {peer}"))
                    )?;
                }
                if let Some(bytes) = act.bytes() {
                    write!(f, ",\"bytes\":{bytes}")?;
                }
                if let Some(pending) = act.pending() {
                    write!(f, ",\"pending\":{pending}")?;
                }
                if let Some(peer) = act.peer() {
                    write!(f, ",\"peer\":\"{peer}\"")?;
                }
                write!(f, ",\"text\":{}}}", JsonText(act))
            }
            Record::Timer {
                token,
                desc,
                name,
                fate,
            } => {
                write!(f, ",\"token\":\"{}\"", KeyLabel(token.0))?;
                if let Some(desc) = desc {
                    write!(f, ",\"desc\":{}", JsonText(desc))?;
                }
                let what = match fate {
                    Fate::Fired => "fired",
                    Fate::Stale => "stale",
                    Fate::OwnerGone => "owner_gone",
                };
                write!(
                    f,
                    ",\"what\":\"{what}\",\"name\":{},\"text\":{}}}",
                    JsonText(name),
                    JsonText(&adapter(|f| timer_text(&self.record, f)))
                )
            }
        }
    }
}

/// `after 49.98 ms: 1 event, timeout was 49.97 ms (next timer: tick 2/2 of #5.6)`.
fn wakeup_text(wakeup: &Wakeup, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let events = match wakeup.events {
        0 => String::from("no events"),
        1 => String::from("1 event"),
        n => format!("{n} events"),
    };
    write!(f, "after {}: {events}, ", Millis(wakeup.slept))?;
    if wakeup.interrupted {
        f.write_str("interrupted by a signal (EINTR), ")?;
    }
    let Some(timeout) = wakeup.timeout else {
        return f.write_str("no timeout (nothing due: sleep until an event)");
    };
    write!(f, "timeout was {}", Millis(timeout))?;
    f.write_str(if wakeup.timerfd {
        " on the timerfd ("
    } else {
        " ("
    })?;
    match wakeup.why {
        Why::Replay(1) => f.write_str("1 socket to replay: no sleep")?,
        Why::Replay(n) => write!(f, "{n} sockets to replay: no sleep")?,
        Why::Timer { name, owner } => write!(f, "next timer: {name} of {}", KeyLabel(owner.0))?,
        Why::AcceptRetry => f.write_str("retry accepting, paused for lack of descriptors")?,
        Why::Shutdown => f.write_str("end of the shutdown's grace period")?,
        Why::Event => f.write_str("no deadline")?,
    }
    f.write_str(")")
}

/// `#4.9 time tcp 127.0.0.1:5123: readable, peer closed its write side`.
fn event_text(record: &Record, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Record::Event {
        token,
        desc,
        ready,
        cause,
    } = record
    else {
        return Ok(());
    };
    let label = KeyLabel(token.0);
    match (desc, cause) {
        (Some(desc), Cause::Kernel) => write!(f, "{label} {desc}: {}", Words(ready)),
        (Some(desc), Cause::Replay) => write!(
            f,
            "{label} {desc}: replayed as readable (left unfinished last turn; no new edge will come)"
        ),
        (None, _) => write!(
            f,
            "{label}: {}, for a token closed earlier: ignored",
            Words(ready)
        ),
    }
}

/// `timer fired: tick 2/2 of #5.6 (time tcp 127.0.0.1:40312)`.
fn timer_text(record: &Record, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Record::Timer {
        token,
        desc,
        name,
        fate,
    } = record
    else {
        return Ok(());
    };
    let label = KeyLabel(token.0);
    match fate {
        Fate::Fired => write!(f, "timer fired: {name} of {label}")?,
        Fate::Stale => write!(f, "timer dropped: {name} of {label} no longer matters")?,
        Fate::OwnerGone => write!(f, "timer dropped: {name} of {label}, whose owner is gone")?,
    }
    match desc {
        Some(desc) => write!(f, " ({desc})"),
        None => Ok(()),
    }
}

/// The JSON `what` of a kernel event: the mark the timeline draws for it.
fn event_name(ready: &Readiness) -> &'static str {
    match (ready.readable, ready.writable) {
        (true, true) => "readable_writable",
        (true, false) => "readable",
        (false, true) => "writable",
        (false, false) if ready.error => "error",
        (false, false) => "hangup",
    }
}

/// An event's flags in words: `readable, peer closed its write side`.
struct Words<'a>(&'a Readiness);

impl Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = self.0;
        let words = [
            (ready.readable, "readable"),
            (ready.writable, "writable"),
            (ready.read_closed, "peer closed its write side"),
            (ready.write_closed, "hang-up: no more writing"),
            (ready.error, "error pending"),
        ];
        let mut first = true;
        for (_, word) in words.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(", ")?;
            }
            f.write_str(word)?;
            first = false;
        }
        if first {
            f.write_str("no flags")?;
        }
        Ok(())
    }
}

/// `+1.234567 s`: microseconds since the loop started.
struct Seconds(Duration);

impl Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}.{:06} s", self.0.as_secs(), self.0.subsec_micros())
    }
}

/// `0.98 ms`, or `1.234 s` from a second on.
struct Millis(Duration);

impl Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= Duration::from_secs(1) {
            write!(f, "{:.3} s", self.0.as_secs_f64())
        } else {
            write!(f, "{:.2} ms", self.0.as_secs_f64() * 1000.0)
        }
    }
}

/// A closure as a `Display`.
struct Adapter<F>(F);

fn adapter<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(write: F) -> Adapter<F> {
    Adapter(write)
}

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> Display for Adapter<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// Anything displayable as a JSON string: quoted, with `"`, `\` and every control character
/// escaped (and `<`, `>`, `&` too, so a line pasted into an HTML page cannot close its script).
struct JsonText<'a, T: ?Sized>(&'a T);

impl<T: Display + ?Sized> Display for JsonText<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write!(Escaper(f), "{}", self.0)?;
        f.write_char('"')
    }
}

/// Escapes what is written through it for a JSON string.
struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_control() || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        write!(self.0, "\\u{unit:04x}")?;
                    }
                }
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        JsonText(text).to_string()
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_controls_and_html() {
        assert_eq!(json("plain"), "\"plain\"");
        assert_eq!(json("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(json("\n\r\t\u{1b}\u{7f}"), "\"\\n\\r\\t\\u001b\\u007f\"");
        assert_eq!(json("</script>"), "\"\\u003c/script\\u003e\"");
        assert_eq!(json("é → ok"), "\"é → ok\"");
        assert_eq!(json("\u{9b}"), "\"\\u009b\"", "C1 controls too");
    }

    #[test]
    fn trace_forms_are_parsed_from_the_flag() {
        assert_eq!(TraceMode::parse(None), Ok(TraceMode::Words));
        assert_eq!(TraceMode::parse(Some("json")), Ok(TraceMode::Json));
        assert_eq!(TraceMode::parse(Some("compact")), Ok(TraceMode::Compact));
        assert!(TraceMode::parse(Some("xml")).is_err());
    }

    fn line(mode: TraceMode, record: Record) -> String {
        let mut tracer = Tracer::new(mode, Instant::now());
        tracer.wakeups = 12;
        Line {
            tracer: &tracer,
            at: Duration::from_micros(1_234_567),
            record,
        }
        .to_string()
    }

    const TOKEN: Token = Token((9 << (usize::BITS / 2)) | 4);

    #[test]
    fn a_wakeup_says_how_long_it_slept_what_it_brought_and_why_that_timeout() {
        let wakeup = Wakeup {
            slept: Duration::from_micros(980),
            events: 3,
            interrupted: false,
            timeout: Some(Duration::from_millis(1)),
            timerfd: false,
            why: Why::Timer {
                name: "tick 2/5",
                owner: TOKEN,
            },
        };
        assert_eq!(
            line(TraceMode::Words, Record::Wakeup(&wakeup)),
            "+1.234567 s wakeup #12 after 0.98 ms: 3 events, timeout was 1.00 ms (next timer: tick 2/5 of #4.9)"
        );
        let by_timerfd = Wakeup {
            timerfd: true,
            ..wakeup
        };
        assert_eq!(
            line(TraceMode::Words, Record::Wakeup(&by_timerfd)),
            "+1.234567 s wakeup #12 after 0.98 ms: 3 events, timeout was 1.00 ms on the timerfd (next timer: tick 2/5 of #4.9)"
        );
        let idle = Wakeup {
            slept: Duration::from_secs(12),
            events: 1,
            interrupted: false,
            timeout: None,
            timerfd: false,
            why: Why::Event,
        };
        assert_eq!(
            line(TraceMode::Json, Record::Wakeup(&idle)),
            "{\"t_us\":1234567,\"wakeup\":12,\"kind\":\"wakeup\",\"slept_us\":12000000,\"events\":1,\"interrupted\":false,\
             \"timeout_us\":null,\"timerfd\":false,\"why\":\"none\",\"text\":\"wakeup #12 after 12.000 s: 1 event, \
             no timeout (nothing due: sleep until an event)\"}"
        );
    }

    #[test]
    fn events_actions_and_timers_in_words_compact_and_json() {
        let ready = Readiness {
            readable: true,
            read_closed: true,
            ..Readiness::default()
        };
        let event = || Record::Event {
            token: TOKEN,
            desc: Some("time tcp 127.0.0.1:5123"),
            ready,
            cause: Cause::Kernel,
        };
        assert_eq!(
            line(TraceMode::Words, event()),
            "+1.234567 s   #4.9 time tcp 127.0.0.1:5123: readable, peer closed its write side"
        );
        assert_eq!(
            line(TraceMode::Compact, event()),
            "+1.234567 s #4.9: R-C-- time tcp 127.0.0.1:5123"
        );
        assert_eq!(
            line(TraceMode::Json, event()),
            "{\"t_us\":1234567,\"wakeup\":12,\"kind\":\"event\",\"token\":\"#4.9\",\
             \"desc\":\"time tcp 127.0.0.1:5123\",\"what\":\"readable\",\"flags\":\"R-C--\",\
             \"text\":\"#4.9 time tcp 127.0.0.1:5123: readable, peer closed its write side\"}"
        );

        let act = Act::WriteBlocked { pending: 1234 };
        let action = || Record::Action {
            token: TOKEN,
            act: &act,
        };
        assert_eq!(
            line(TraceMode::Words, action()),
            "+1.234567 s     #4.9: write → WouldBlock: 1234 bytes pending"
        );
        assert_eq!(
            line(TraceMode::Json, action()),
            "{\"t_us\":1234567,\"wakeup\":12,\"kind\":\"action\",\"token\":\"#4.9\",\
             \"what\":\"write_blocked\",\"pending\":1234,\
             \"text\":\"write → WouldBlock: 1234 bytes pending\"}"
        );

        let timer = || Record::Timer {
            token: TOKEN,
            desc: Some("time tcp 127.0.0.1:5123"),
            name: "tick 3/5",
            fate: Fate::Fired,
        };
        assert_eq!(
            line(TraceMode::Words, timer()),
            "+1.234567 s   timer fired: tick 3/5 of #4.9 (time tcp 127.0.0.1:5123)"
        );
        assert_eq!(
            line(TraceMode::Compact, timer()),
            "+1.234567 s #4.9: tick 3/5 fired"
        );
    }
}
