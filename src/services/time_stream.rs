//! The time stream (PROTOCOLS.md §2): greet, then receive the local time `--ticks` times, one
//! every `--interval-ms`, then `Au Revoir`.
//!
//! This is the lab's first server turned inside out. The lab's version was a loop with
//! `sleep(interval)` in it, one process or thread per client. Here a session is a few bytes of
//! state and a deadline in the loop's timer heap: `epoll_wait` sleeps until the earliest
//! deadline of all sessions, so one thread serves thousands of them. Tick `k` is scheduled at
//! `start + k × interval`, not "now + interval", so a late wakeup never pushes the rest late.
//!
//! TCP: the greeting is one line (at most [`GREETING_MAX`] bytes, checked by the shared
//! [`LineReader`]); ticks end in `\n`; input after the greeting is discarded. UDP: a datagram
//! from a new peer is its greeting; each tick is one datagram holding only the time; sessions
//! are capped in total and per source IP, since a forged source address costs an attacker one
//! datagram and us a whole session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::{debug, info, warn};

use super::{Env, Next, TcpService, UdpService};
use crate::server::config::Settings;
use crate::server::udp::Outbox;
use crate::services::line::LineReader;
use crate::services::output::Output;
use crate::slots::Slots;

/// Longest greeting line accepted, in bytes (not counting `\r\n`).
pub const GREETING_MAX: usize = 1024;
/// The last message of a session.
pub const AU_REVOIR: &str = "Au Revoir";
/// Sent to a TCP client whose greeting exceeds [`GREETING_MAX`], before closing.
pub const LINE_TOO_LONG: &str = "error: line too long\n";

/// Where a session is in its schedule; the same for TCP and UDP.
struct Schedule {
    start: Instant,
    sent: u32,
}

/// What a session sends at one step.
enum Message<'a> {
    Tick(&'a str),
    AuRevoir,
}

impl Schedule {
    fn new(start: Instant) -> Self {
        Schedule { start, sent: 0 }
    }

    /// Sends what is due now (the next tick, and `Au Revoir` after the last one) and returns
    /// when the next tick is due, or `None` when the session is over.
    fn step(&mut self, env: &mut Env, mut send: impl FnMut(Message<'_>)) -> Option<Instant> {
        let total = env.settings.ticks;
        if self.sent < total {
            send(Message::Tick(env.clock.tick_text()));
            self.sent += 1;
        }
        if self.sent < total {
            // Cannot overflow: the interval is at most a day and `sent` a u32 (config.rs).
            Some(self.start + env.settings.interval * self.sent)
        } else {
            send(Message::AuRevoir);
            None
        }
    }
}

fn printable(greeting: &[u8]) -> String {
    // Debug formatting escapes control characters, so a greeting cannot forge log lines.
    format!("{:?}", String::from_utf8_lossy(greeting))
}

/// One TCP time-stream connection.
pub struct TcpTimeStream {
    peer: SocketAddr,
    state: TcpState,
}

enum TcpState {
    AwaitingGreeting(LineReader),
    Streaming(Schedule),
    Finished,
}

impl TcpTimeStream {
    pub fn new(peer: SocketAddr) -> Self {
        TcpTimeStream {
            peer,
            state: TcpState::AwaitingGreeting(LineReader::new(GREETING_MAX)),
        }
    }

    /// Sends what is due and arms the timer for the next tick, or ends the session.
    fn step(&mut self, env: &mut Env, out: &mut Output) -> Next {
        let TcpState::Streaming(schedule) = &mut self.state else {
            return Next::Continue;
        };
        // The last tick and `Au Revoir` go out together, in one write.
        let mut lines = String::new();
        let next = schedule.step(env, |message| {
            match message {
                Message::Tick(text) => lines.push_str(text),
                Message::AuRevoir => lines.push_str(AU_REVOIR),
            }
            lines.push('\n');
        });
        if out.push(lines.as_bytes()).is_err() {
            // Full means the client has not read for a long while: give up on it.
            self.state = TcpState::Finished;
            return Next::Close;
        }
        match next {
            Some(deadline) => {
                env.set_timer(deadline, 0);
                Next::Continue
            }
            None => {
                self.state = TcpState::Finished;
                Next::Close
            }
        }
    }
}

impl TcpService for TcpTimeStream {
    fn on_open(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        Next::Continue
    }

    fn on_input(&mut self, input: &[u8], env: &mut Env, out: &mut Output) -> Next {
        let TcpState::AwaitingGreeting(lines) = &mut self.state else {
            return Next::Continue; // input after the greeting is read and discarded
        };
        match lines.feed(input) {
            Ok(None) => Next::Continue,
            Ok(Some((greeting, _))) => {
                info!("time tcp {}: greeting {}", self.peer, printable(&greeting));
                self.state = TcpState::Streaming(Schedule::new(env.now));
                self.step(env, out)
            }
            Err(_) => {
                info!("time tcp {}: greeting too long, closing", self.peer);
                self.state = TcpState::Finished;
                let _ = out.push(LINE_TOO_LONG.as_bytes());
                Next::Close
            }
        }
    }

    fn on_input_closed(&mut self, _env: &mut Env, _out: &mut Output) -> Next {
        match self.state {
            // It can never greet now.
            TcpState::AwaitingGreeting(_) => Next::Close,
            // A half-close after the greeting: the client still reads its ticks.
            TcpState::Streaming(_) | TcpState::Finished => Next::Continue,
        }
    }

    fn on_timer(&mut self, _tag: u64, env: &mut Env, out: &mut Output) -> Next {
        self.step(env, out)
    }

    fn on_shutdown(&mut self, _env: &mut Env, out: &mut Output) -> Next {
        if !matches!(self.state, TcpState::Finished) {
            let _ = out.push(format!("{AU_REVOIR}\n").as_bytes());
            self.state = TcpState::Finished;
        }
        Next::Close
    }
}

/// The time stream's UDP socket: one session per peer address.
#[derive(Default)]
pub struct UdpTimeStream {
    /// Keyed with generations, so the timer of an ended session finds nothing.
    sessions: Slots<UdpSession>,
    by_peer: HashMap<SocketAddr, usize>,
    per_ip: HashMap<IpAddr, usize>,
    /// Whether the cap was hit since the last time it was logged (log once per episode).
    cap_logged: bool,
}

struct UdpSession {
    peer: SocketAddr,
    schedule: Schedule,
}

impl UdpTimeStream {
    fn admits(&mut self, peer: SocketAddr, settings: &Settings) -> bool {
        let of_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        let admitted = self.sessions.len() < settings.max_udp_sessions
            && of_ip < settings.max_udp_sessions_per_ip;
        if !admitted && !self.cap_logged {
            warn!(
                "time udp: session cap reached ({} live, {of_ip} from {}); ignoring new peers",
                self.sessions.len(),
                peer.ip()
            );
        }
        self.cap_logged = !admitted;
        admitted
    }

    /// Runs one step of session `key`; ends the session when its schedule is over.
    fn step(&mut self, key: usize, env: &mut Env, out: &mut Outbox) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let peer = session.peer;
        let next = session.schedule.step(env, |message| match message {
            Message::Tick(text) => out.send_to(text.as_bytes(), peer),
            Message::AuRevoir => out.send_to(AU_REVOIR.as_bytes(), peer),
        });
        match next {
            Some(deadline) => env.set_timer(deadline, key as u64),
            None => self.end(key),
        }
    }

    fn end(&mut self, key: usize) {
        if let Some(session) = self.sessions.remove(key) {
            self.by_peer.remove(&session.peer);
            let ip = session.peer.ip();
            if let Some(count) = self.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
            }
            debug!("time udp {}: session over", session.peer);
        }
    }
}

impl UdpService for UdpTimeStream {
    fn on_datagram(&mut self, payload: &[u8], peer: SocketAddr, env: &mut Env, out: &mut Outbox) {
        if self.by_peer.contains_key(&peer) {
            return; // a live session ignores further datagrams from its peer
        }
        if !self.admits(peer, env.settings) {
            return;
        }
        let session = UdpSession {
            peer,
            schedule: Schedule::new(env.now),
        };
        let Some(key) = self.sessions.insert(session) else {
            return;
        };
        self.by_peer.insert(peer, key);
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        info!("time udp {peer}: greeting {}", printable(payload));
        self.step(key, env, out);
    }

    fn on_timer(&mut self, tag: u64, env: &mut Env, out: &mut Outbox) {
        self.step(tag as usize, env, out);
    }

    fn timer_is_live(&self, tag: u64) -> bool {
        self.sessions.contains(tag as usize)
    }

    fn on_shutdown(&mut self, _env: &mut Env, out: &mut Outbox) {
        for key in self.sessions.keys() {
            if let Some(session) = self.sessions.get(key) {
                out.send_to(AU_REVOIR.as_bytes(), session.peer);
            }
            self.end(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Shared;
    use crate::services::output::OutBuf;
    use mio::Token;
    use std::time::Duration;

    #[test]
    fn ticks_are_scheduled_from_the_start_so_late_wakeups_never_add_up() {
        let mut shared = Shared::new(Settings {
            ticks: 4,
            interval: Duration::from_secs(1),
            ..Settings::default()
        });
        let start = shared.now;
        let at = |ms| start + Duration::from_millis(ms);
        let mut session = TcpTimeStream::new("127.0.0.1:9".parse().unwrap());
        let mut queue = OutBuf::new(1024);
        let token = Token(7);

        let next = session.on_input(
            b"Bonjour\r\n",
            &mut Env::new(&mut shared, token),
            &mut Output::new(&mut queue, None),
        );
        assert_eq!(next, Next::Continue);
        // The loop wakes up late every time; each deadline still counts from the greeting.
        for (woke_at, expected) in [(1300, 2000), (2950, 3000)] {
            let timer = shared.timers.pop().unwrap();
            assert_eq!((timer.token, timer.tag), (token, 0));
            assert!(u128::from(woke_at) >= (timer.deadline - start).as_millis());
            shared.now = at(woke_at);
            let mut out = Output::new(&mut queue, None);
            let next = session.on_timer(0, &mut Env::new(&mut shared, token), &mut out);
            assert_eq!(next, Next::Continue);
            assert_eq!(shared.timers.peek().unwrap().deadline, at(expected));
        }
        shared.now = at(3001);
        shared.timers.pop();
        let mut out = Output::new(&mut queue, None);
        let next = session.on_timer(0, &mut Env::new(&mut shared, token), &mut out);
        assert_eq!(next, Next::Close, "4 ticks, then the session ends");
        assert!(shared.timers.is_empty());

        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text:?}");
        assert_eq!(lines[4], AU_REVOIR);
    }

    #[test]
    fn zero_ticks_is_just_au_revoir_and_shutdown_says_goodbye_once() {
        let mut shared = Shared::new(Settings {
            ticks: 0,
            ..Settings::default()
        });
        let mut session = TcpTimeStream::new("127.0.0.1:9".parse().unwrap());
        let mut queue = OutBuf::new(1024);
        let mut env = Env::new(&mut shared, Token(1));
        let mut out = Output::new(&mut queue, None);
        assert_eq!(session.on_input(b"hi\n", &mut env, &mut out), Next::Close);
        assert_eq!(session.on_shutdown(&mut env, &mut out), Next::Close);
        assert_eq!(queue.pending(), b"Au Revoir\n", "one goodbye, not two");
    }
}
