//! Step 6: timers in the loop — the time stream from one thread, with no `sleep`.
//!
//! **What it teaches.** Step 1 served the time stream with `sleep`, which froze everyone;
//! step 3 gave each client a thread to sleep in. Here one thread serves every session, and
//! nobody sleeps but `epoll_wait` itself: each session's next tick is a deadline in a
//! `BinaryHeap` (earliest on top), and the poll timeout is *the time until the earliest
//! deadline*. `epoll_wait` then returns either because a socket is ready (a new client, a
//! greeting) or because that deadline has come, and the loop does both kinds of work the same
//! way: events first, then every timer that is due. This is redis's `aeProcessEvents` and the
//! core of `src/server/reactor.rs`. Ticks are scheduled at `start + k × interval` (not "now +
//! interval"), so a late wakeup never delays the rest of the session. A session that ends
//! leaves its timer in the heap; the timer carries the session's id and is dropped when it
//! comes up (lazy cancelling — the slab slot may belong to another session by then).
//!
//! Each wakeup is logged on stderr with its reason: `wakeup: 1 event(s) after 99.6ms (timeout
//! Some(198.9ms))`, or `wakeup: timeout after 100.2ms (timeout Some(99.6ms))`. The full
//! reactor says the same with each timer's name: `reactor --trace-events` prints `wakeup #3
//! after 100.01 ms: 1 event, timeout was 99.84 ms on the timerfd (next timer: tick 2/2 of
//! #2.3)` — the one event being its timerfd (below).
//!
//! **Why the ticks here are late, and what the reactor does about it.** `epoll_wait` takes
//! its timeout in whole milliseconds, and mio rounds up so the loop never wakes early: a tick
//! due in 0.2 ms sleeps 1 ms, and the kernel adds slack (0.1 % of the timeout). So every tick
//! of this example is up to a millisecond late, plus scheduling — see the wakeups above, 100.2
//! ms for a 99.6 ms wait. On Linux the reactor sleeps with no timeout at all and arms a
//! `timerfd` (`timerfd_settime(CLOCK_MONOTONIC, TFD_TIMER_ABSTIME)`, nanoseconds) registered in
//! the same `Poll`; it re-arms it only when the earliest deadline changes, and rounds deadlines
//! up to a 50 µs grid so the sessions due within one cell share one wakeup. The price: one
//! `timerfd_settime` per timer wakeup, and more wakeups (about 5,000 a second for 20,000
//! sessions ticking each second, against about 2,700 with the millisecond steps, measured).
//! The gain: ticks late by tenths of a millisecond, not by one (`scripts/bench.sh`,
//! time-stream scale; the code and its arithmetic are in `src/server/reactor/alarm.rs`). On
//! BSD/macOS nothing of this is needed: `kevent` takes a `timespec`.
//!
//! **Syscalls** (seen with `strace -f -e trace=network,epoll_wait,epoll_ctl`):
//! - start: `epoll_create1`, `socket(…SOCK_NONBLOCK)`, `setsockopt(SO_REUSEADDR)`, `bind`,
//!   `listen`, `epoll_ctl(ADD)`.
//! - idle: `epoll_wait(…, -1)`: no session, no deadline, no timeout.
//! - a client: `accept4` until `EAGAIN`, `epoll_ctl(ADD)`; its greeting: `recvfrom` until
//!   `EAGAIN`, then tick 0 at once (`sendto`).
//! - between ticks: `epoll_wait(…, 199)` returning `0` (no event: the deadline came), one
//!   `sendto` per due session, `epoll_wait(…, 100)` again… The timeout is in whole
//!   milliseconds (mio rounds up, so the loop never wakes before the deadline). With two
//!   sessions 100 ms apart, the timeouts alternate between their deadlines.
//! - end: `sendto` of `Au Revoir`, `epoll_ctl(DEL)`, `close`.
//! - BSD/macOS: the same with `kqueue` and `kevent`, whose timeout is a `timespec`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 06_timers_in_the_loop -- --port 8080 --ticks 10
//! ```
//! It prints `listening time tcp 127.0.0.1:8080` (port 0 lets the OS choose); logs go to
//! stderr. Options: `--port PORT` (8080), `--ticks N` (60), `--interval-ms MS` (1000).
//!
//! **Try.**
//! - `nc 127.0.0.1 8080` in two terminals, greeting in each half a second apart: both stream
//!   at once, each on its own schedule, and the log shows the timeouts alternating.
//! - Compare with step 3 while 50 clients are connected: `grep Threads /proc/$PID/status`
//!   stays at 1.
//! - `strace -f -e trace=epoll_wait,sendto -p $PID`: every `epoll_wait` timeout is the gap to
//!   the next tick of some session.
mod common;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use inetloop::services::clock::TICK_FORMAT;
use inetloop::services::time_stream::{AU_REVOIR, GREETING_MAX, LINE_TOO_LONG};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

const SERVER: Token = Token(0);
/// Session `key` in the slab has `Token(key + 1)`: token 0 is the listener's.
const FIRST_SESSION: usize = 1;

/// A deadline in the heap: when, and for which session. Ordered by `deadline` first, so the
/// heap's top (under `Reverse`) is always the earliest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: Instant,
    key: usize,
    /// The session's `id`: if the session ended and a new one took its slab slot, the old
    /// timer no longer matches and is dropped when it comes up (lazy cancelling).
    id: u64,
}

struct Session {
    stream: TcpStream,
    peer: SocketAddr,
    /// Unique over the server's life, unlike the slab key, which is reused.
    id: u64,
    state: State,
}

enum State {
    /// Collecting the greeting line.
    Greeting(Vec<u8>),
    /// Greeted at `start`: tick `k` is due at `start + k × interval`, `sent` are out.
    Streaming { start: Instant, sent: u32 },
}

/// What the loop must do for a session after it was served.
enum Next {
    /// Nothing until its next event or timer.
    Wait,
    /// Put a timer in the heap for this deadline.
    TickAt(Instant),
    /// Deregister and close it.
    Close,
}

#[derive(Clone, Copy)]
struct Schedule {
    ticks: u32,
    interval: Duration,
}

fn main() -> ExitCode {
    common::run(common::lesson!(), parse_args, |(port, schedule)| {
        serve(port, schedule)
    })
}

fn parse_args(flags: &mut common::Flags) -> Result<(u16, Schedule), String> {
    let port = flags.value("--port", 8080)?;
    let schedule = Schedule {
        ticks: flags.value("--ticks", 60)?,
        interval: Duration::from_millis(flags.value("--interval-ms", 1000)?),
    };
    Ok((port, schedule))
}

fn serve(port: u16, schedule: Schedule) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("cannot create poller: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    poll.registry()
        .register(&mut listener, SERVER, Interest::READABLE)
        .map_err(|e| format!("register: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    common::announce([format!("listening time tcp {local}")])?;

    let mut events = Events::with_capacity(128);
    let mut sessions: Slab<Session> = Slab::new();
    let mut timers: BinaryHeap<Reverse<Timer>> = BinaryHeap::new();
    let mut next_id = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        // The whole idea: sleep in epoll_wait until a socket is ready *or* the earliest
        // deadline has come, whichever is first. No timer: no timeout, sleep until an event.
        let timeout = timers
            .peek()
            .map(|Reverse(timer)| timer.deadline.saturating_duration_since(Instant::now()));
        let slept_from = Instant::now();
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue; // a signal: the next turn recomputes the timeout
            }
            return Err(format!("poll: {e}"));
        }
        let now = Instant::now();
        let why = match events.iter().count() {
            0 => "timeout".to_string(),
            n => format!("{n} event(s)"),
        };
        eprintln!(
            "wakeup: {why} after {:?} (timeout {timeout:?})",
            now - slept_from
        );

        for event in events.iter() {
            if event.token() == SERVER {
                accept_all(&listener, poll.registry(), &mut sessions, &mut next_id);
                continue;
            }
            let key = event.token().0 - FIRST_SESSION;
            if let Some(session) = sessions.get_mut(key) {
                let next = session.on_readable(&mut buf, now, schedule);
                apply(next, key, &mut sessions, &mut timers, poll.registry());
            }
        }

        // Every timer that is due. epoll_wait counts in whole milliseconds and mio rounds up,
        // so we are never woken before the deadline; the kernel may still wake us early now
        // and then, and then nothing is due yet: the next turn simply sleeps again.
        while let Some(Reverse(timer)) = timers.peek()
            && timer.deadline <= now
        {
            let Some(Reverse(timer)) = timers.pop() else {
                break;
            };
            match sessions.get_mut(timer.key) {
                Some(session) if session.id == timer.id => {
                    let next = session.step(schedule);
                    apply(next, timer.key, &mut sessions, &mut timers, poll.registry());
                }
                _ => {} // its session is gone: a stale timer, dropped
            }
        }
    }
}

/// Accepts until `WouldBlock` and registers each new session for READABLE.
fn accept_all(
    listener: &TcpListener,
    registry: &Registry,
    sessions: &mut Slab<Session>,
    next_id: &mut u64,
) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // EMFILE and friends: stop for now (src/server/reactor.rs retries on a timer instead).
            Err(e) => return eprintln!("accept: {e}"),
        };
        let entry = sessions.vacant_entry();
        let token = Token(entry.key() + FIRST_SESSION);
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            eprintln!("{peer}: register: {e}");
            continue;
        }
        *next_id += 1;
        entry.insert(Session {
            stream,
            peer,
            id: *next_id,
            state: State::Greeting(Vec::new()),
        });
    }
}

fn apply(
    next: Next,
    key: usize,
    sessions: &mut Slab<Session>,
    timers: &mut BinaryHeap<Reverse<Timer>>,
    registry: &Registry,
) {
    match next {
        Next::Wait => {}
        Next::TickAt(deadline) => {
            let id = sessions[key].id;
            timers.push(Reverse(Timer { deadline, key, id }));
        }
        Next::Close => {
            let mut session = sessions.remove(key);
            // epoll_ctl(DEL), then close(2) as `session` is dropped. Its timer, if any, stays
            // in the heap and is dropped when it comes up (its `id` matches nothing).
            let _ = registry.deregister(&mut session.stream);
            eprintln!("{}: closed", session.peer);
        }
    }
}

impl Session {
    /// Reads until `WouldBlock` (edge-triggered, as in step 5): the greeting, then anything
    /// else the client sends, which is discarded.
    fn on_readable(&mut self, buf: &mut [u8], now: Instant, schedule: Schedule) -> Next {
        let mut greeted = false;
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => match self.state {
                    State::Greeting(_) => return Next::Close, // left before greeting
                    // A half-close after the greeting: it still gets its ticks.
                    State::Streaming { .. } => break,
                },
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("{}: {e}", self.peer);
                    return Next::Close;
                }
            };
            let State::Greeting(line) = &mut self.state else {
                continue; // input after the greeting: read and dropped
            };
            line.extend_from_slice(&buf[..n]);
            match greeting(line) {
                Greeting::Incomplete => {}
                Greeting::TooLong => {
                    let _ = send(&mut self.stream, LINE_TOO_LONG.as_bytes());
                    return Next::Close;
                }
                Greeting::Line(text) => {
                    eprintln!("{}: greeting {text:?}", self.peer);
                    // Tick k is due at `start + k × interval`, not "previous tick + interval":
                    // a late wakeup then never makes the following ticks late.
                    self.state = State::Streaming {
                        start: now,
                        sent: 0,
                    };
                    greeted = true;
                }
            }
        }
        if greeted {
            self.step(schedule) // tick 0 goes out at once
        } else {
            Next::Wait
        }
    }

    /// Sends what is due now: the next tick, and `Au Revoir` after the last one.
    fn step(&mut self, schedule: Schedule) -> Next {
        let State::Streaming { start, sent } = &mut self.state else {
            return Next::Wait;
        };
        if *sent < schedule.ticks {
            let tick = chrono::Local::now().format(TICK_FORMAT);
            if let Err(e) = send(&mut self.stream, format!("{tick}\n").as_bytes()) {
                eprintln!("{}: {e}", self.peer);
                return Next::Close;
            }
            *sent += 1;
        }
        if *sent < schedule.ticks {
            return Next::TickAt(*start + schedule.interval * *sent);
        }
        if let Err(e) = send(&mut self.stream, format!("{AU_REVOIR}\n").as_bytes()) {
            eprintln!("{}: {e}", self.peer);
        }
        Next::Close
    }
}

/// What the bytes received before the greeting's end amount to.
enum Greeting {
    Incomplete,
    TooLong,
    Line(String),
}

fn greeting(line: &[u8]) -> Greeting {
    let Some(end) = line.iter().position(|&b| b == b'\n') else {
        return if line.len() > GREETING_MAX + 1 {
            Greeting::TooLong // no room left for the "\r\n"
        } else {
            Greeting::Incomplete
        };
    };
    let text = &line[..end];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() > GREETING_MAX {
        return Greeting::TooLong;
    }
    Greeting::Line(String::from_utf8_lossy(text).into_owned())
}

/// One non-blocking `write` of a short line. The kernel's send buffer holds thousands of
/// ticks, so if this line does not fit the client has stopped reading long ago: the session
/// ends (the reactor keeps a bounded output buffer and WRITABLE interest instead, step 5).
fn send(stream: &mut TcpStream, line: &[u8]) -> io::Result<()> {
    // `write_all` would hide how much went out before a WouldBlock (mio #1854); that is only
    // acceptable here because any failure closes the session.
    stream.write_all(line)
}
