//! The time stream (docs/PROTOCOLS.md §2): greet, then receive the local time `--ticks` times, one
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
//! are capped in total and per source, and a full table still admits new networks
//! (`sessions.rs`), since a forged source address costs an attacker one datagram and us a whole
//! session. What a session sends is budgeted per destination by the plumbing, so no victim gets
//! more than `--udp-rate-per-ip` datagrams a second however many sessions name it.
//!
//! Logs: a TCP session logs its greeting (the plumbing logs the connection's close). A UDP
//! session logs its greeting and how it ended — `session over after 60 ticks, …`, `session
//! ended early to make room for …`, `said Au Revoir at shutdown …` — through the outbox, which
//! rations lines about UDP peers (a forged-source flood must not become a log flood).

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use log::{info, warn};

use super::contract::{
    Env, Next, Observation, Outbox, Output, Rejection, TcpService, TimerTag, UdpService,
};
use super::line::LineReader;
use super::sessions::{Admission, Caps, Refusal, Sessions};

/// Longest greeting line accepted, in bytes (not counting `\r\n`).
pub const GREETING_MAX: usize = 1024;
/// The last message of a session.
pub const AU_REVOIR: &str = "Au Revoir";
/// Sent to a TCP client whose greeting exceeds [`GREETING_MAX`], before closing.
pub const LINE_TOO_LONG: &str = "error: line too long\n";
/// Sent to a TCP client that has not finished its greeting within `--greeting-timeout-ms`.
pub const GREETING_TIMEOUT: &str = "error: greeting timeout\n";
/// A TCP session's timers: the next tick is due; the greeting is overdue.
const NEXT_TICK: TimerTag = TimerTag(0);
const GREETING_DEADLINE: TimerTag = TimerTag(1);

/// Where a session is in its schedule; the same for TCP and UDP.
struct Schedule {
    start: Instant,
    sent: u32,
    /// Ticks in the whole session (`--ticks`).
    ticks: u32,
}

/// What a session sends at one step.
enum Message<'a> {
    Tick(&'a str),
    AuRevoir,
}

impl Schedule {
    fn new(start: Instant, ticks: u32) -> Self {
        Schedule {
            start,
            sent: 0,
            ticks,
        }
    }

    /// The name of the timer for the next tick, in `--trace-events`: `tick 2/5`.
    fn next_tick(&self) -> String {
        format!("tick {}/{}", self.sent + 1, self.ticks)
    }

    /// Sends what is due now (the next tick, and `Au Revoir` after the last one) and returns
    /// when the next tick is due, or `None` when the session is over. Each tick after the
    /// first (which answers the greeting at once) reports how late it went out: from its
    /// deadline to this turn of the loop.
    fn step(&mut self, env: &mut Env, mut send: impl FnMut(Message<'_>)) -> Option<Instant> {
        let total = self.ticks;
        if self.sent < total {
            if self.sent > 0 {
                let deadline = self.start + env.settings.interval * self.sent;
                let late = env.now.saturating_duration_since(deadline);
                env.observe(Observation::Lateness(late));
            }
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
                env.set_timer(deadline, NEXT_TICK);
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
    /// Starts the greeting's clock. Activity is not progress: a client dripping one byte at a
    /// time would otherwise hold its connection as long as it likes (slowloris), so the
    /// deadline counts from the accept, not from the last byte.
    fn on_open(&mut self, env: &mut Env, _out: &mut Output) -> Next {
        let deadline = env.now + env.settings.greeting_timeout;
        env.set_timer(deadline, GREETING_DEADLINE);
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
                self.state = TcpState::Streaming(Schedule::new(env.now, env.settings.ticks));
                self.step(env, out)
            }
            Err(_) => {
                info!("time tcp {}: greeting too long, closing", self.peer);
                env.observe(Observation::Rejected(Rejection::LineTooLong));
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

    fn on_timer(&mut self, tag: TimerTag, env: &mut Env, out: &mut Output) -> Next {
        match (tag, &self.state) {
            (GREETING_DEADLINE, TcpState::AwaitingGreeting(_)) => {
                info!("time tcp {}: no greeting in time, closing", self.peer);
                env.observe(Observation::Rejected(Rejection::GreetingTimeout));
                self.state = TcpState::Finished;
                let _ = out.push(GREETING_TIMEOUT.as_bytes());
                Next::Close
            }
            (NEXT_TICK, _) => self.step(env, out),
            _ => Next::Continue,
        }
    }

    /// The greeting deadline matters only while the greeting is awaited, so once the client
    /// has greeted it never wakes the loop.
    fn timer_is_live(&self, tag: TimerTag) -> bool {
        tag != GREETING_DEADLINE || matches!(self.state, TcpState::AwaitingGreeting(_))
    }

    fn describe_timer(&self, tag: TimerTag) -> String {
        match (tag, &self.state) {
            (GREETING_DEADLINE, _) => String::from("greeting deadline"),
            (NEXT_TICK, TcpState::Streaming(schedule)) => schedule.next_tick(),
            (NEXT_TICK, _) => String::from("tick (session over)"),
            _ => tag.to_string(),
        }
    }

    fn on_shutdown(&mut self, _env: &mut Env, out: &mut Output) -> Next {
        if !matches!(self.state, TcpState::Finished) {
            let _ = out.push(format!("{AU_REVOIR}\n").as_bytes());
            self.state = TcpState::Finished;
        }
        Next::Close
    }
}

/// One UDP session: its schedule, and what it cost, for its last log line.
struct UdpSession {
    schedule: Schedule,
    /// The greeting's length.
    bytes_in: usize,
    /// Bytes of the ticks (and goodbye) the outbox took.
    bytes_out: u64,
}

/// Sends `payload` to `peer`, adding to `bytes_out` what the outbox took.
fn send_counted(out: &mut dyn Outbox, payload: &[u8], peer: SocketAddr, bytes_out: &mut u64) {
    if out.send_to(payload, peer) {
        *bytes_out += payload.len() as u64;
    }
}

impl UdpSession {
    /// The tail of a session's last log line: `after 60 ticks, 59.000 s, 7 bytes in, …`.
    fn summary(&self, now: Instant) -> SessionSummary<'_> {
        SessionSummary { session: self, now }
    }
}

/// A UDP session's ticks, duration and bytes, as its last log line shows them.
struct SessionSummary<'a> {
    session: &'a UdpSession,
    now: Instant,
}

impl fmt::Display for SessionSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let UdpSession {
            schedule,
            bytes_in,
            bytes_out,
        } = self.session;
        let lasted = self.now.saturating_duration_since(schedule.start);
        let ticks = schedule.sent;
        let plural = if ticks == 1 { "" } else { "s" };
        write!(
            f,
            "after {ticks} tick{plural}, {:.3} s, {bytes_in} bytes in, {bytes_out} bytes out",
            lasted.as_secs_f64(),
        )
    }
}

/// The time stream's UDP socket: one session per peer address, in a table that no source or
/// network can monopolise (see `sessions.rs`).
#[derive(Default)]
pub struct UdpTimeStream {
    sessions: Sessions<UdpSession>,
    /// Whether a refusal was logged since the last admission (log once per episode).
    refusal_logged: bool,
}

/// A UDP session's timer is named by the session's generation-tagged key, so the timer of an
/// ended session finds nothing, even if a new session took its slot.
fn session_timer(key: usize) -> TimerTag {
    TimerTag(key as u64)
}

fn session_of(tag: TimerTag) -> usize {
    tag.0 as usize
}

impl UdpTimeStream {
    /// Runs one step of session `key`; ends the session when its schedule is over.
    fn step(&mut self, key: usize, env: &mut Env, out: &mut dyn Outbox) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let peer = session.peer;
        let UdpSession {
            schedule,
            bytes_out,
            ..
        } = &mut session.state;
        let next = schedule.step(env, |message| {
            let payload = match message {
                Message::Tick(text) => text.as_bytes(),
                Message::AuRevoir => AU_REVOIR.as_bytes(),
            };
            send_counted(out, payload, peer, bytes_out);
        });
        match next {
            Some(deadline) => env.set_timer(deadline, session_timer(key)),
            None => {
                if let Some(over) = self.sessions.remove(key) {
                    let summary = over.state.summary(env.now);
                    out.log(peer, format_args!("session over {summary}"));
                }
                env.observe(Observation::LiveSessions(self.sessions.len()));
            }
        }
    }
}

impl UdpService for UdpTimeStream {
    fn on_datagram(
        &mut self,
        payload: &[u8],
        peer: SocketAddr,
        env: &mut Env,
        out: &mut dyn Outbox,
    ) {
        if self.sessions.has_peer(peer) {
            return; // a live session ignores further datagrams from its peer
        }
        let caps = Caps {
            total: env.settings.max_udp_sessions,
            per_source: env.settings.max_udp_sessions_per_ip,
        };
        let session = UdpSession {
            schedule: Schedule::new(env.now, env.settings.ticks),
            bytes_in: payload.len(),
            bytes_out: 0,
        };
        let key = match self.sessions.admit(peer, session, caps) {
            Admission::Admitted { key, evicted } => {
                if let Some(evicted) = evicted {
                    let summary = evicted.state.summary(env.now);
                    out.log(
                        evicted.peer,
                        format_args!("session ended early to make room for {peer} {summary}"),
                    );
                }
                self.refusal_logged = false;
                key
            }
            Admission::Refused(why) => {
                env.observe(Observation::Rejected(match why {
                    Refusal::SourceFull => Rejection::SourceSessionsFull,
                    Refusal::TableFull => Rejection::SessionTableFull,
                }));
                if !self.refusal_logged {
                    let why = match why {
                        Refusal::SourceFull => "its source holds --max-udp-sessions-per-ip",
                        Refusal::TableFull => "the table is full (--max-udp-sessions)",
                    };
                    warn!(
                        "time udp {peer}: session cap reached ({why}); {} live, ignoring such peers",
                        self.sessions.len()
                    );
                    self.refusal_logged = true;
                }
                return;
            }
        };
        out.log(peer, format_args!("greeting {}", printable(payload)));
        env.observe(Observation::LiveSessions(self.sessions.len()));
        self.step(key, env, out);
    }

    fn on_timer(&mut self, tag: TimerTag, env: &mut Env, out: &mut dyn Outbox) {
        self.step(session_of(tag), env, out);
    }

    fn timer_is_live(&self, tag: TimerTag) -> bool {
        self.sessions.contains(session_of(tag))
    }

    /// `tick 2/3 to 192.0.2.7:4000`: each session's timer is its next tick.
    fn describe_timer(&self, tag: TimerTag) -> String {
        match self.sessions.get(session_of(tag)) {
            Some(session) => format!("{} to {}", session.state.schedule.next_tick(), session.peer),
            None => String::from("tick of an ended session"),
        }
    }

    fn on_shutdown(&mut self, env: &mut Env, out: &mut dyn Outbox) {
        for key in self.sessions.keys() {
            if let Some(mut session) = self.sessions.remove(key) {
                let peer = session.peer;
                send_counted(
                    out,
                    AU_REVOIR.as_bytes(),
                    peer,
                    &mut session.state.bytes_out,
                );
                let summary = session.state.summary(env.now);
                out.log(peer, format_args!("said Au Revoir at shutdown {summary}"));
            }
        }
        env.observe(Observation::LiveSessions(self.sessions.len()));
    }

    fn keeps_sessions(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::clock::TICK_FORMAT;
    use crate::services::contract::{OutBuf, Sent, ServiceSettings, TestEnv};
    use std::time::Duration;

    type Harness = TestEnv;

    /// Removes and returns the earliest timer.
    fn take_timer(h: &mut Harness) -> (Instant, TimerTag) {
        h.timers.sort();
        h.timers.remove(0)
    }

    fn settings(ticks: u32) -> ServiceSettings {
        ServiceSettings {
            ticks,
            interval: Duration::from_secs(1),
            ..ServiceSettings::default()
        }
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn is_tick(payload: &[u8]) -> bool {
        let text = std::str::from_utf8(payload).unwrap();
        chrono::NaiveDateTime::parse_from_str(text, TICK_FORMAT).is_ok()
    }

    #[test]
    fn ticks_are_scheduled_from_the_start_so_late_wakeups_never_add_up() {
        let mut h = Harness::new(settings(4));
        let start = h.now;
        let at = |ms| start + Duration::from_millis(ms);
        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let mut queue = OutBuf::new(1024);

        let next = session.on_input(
            b"Bonjour\r\n",
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert_eq!(next, Next::Continue);
        // The loop wakes up late every time; each deadline still counts from the greeting.
        for (woke_at, expected) in [(1300, 2000), (2950, 3000)] {
            let (deadline, tag) = take_timer(&mut h);
            assert_eq!(tag, NEXT_TICK);
            assert!(u128::from(woke_at) >= (deadline - start).as_millis());
            h.now = at(woke_at);
            let mut out = Output::new(&mut queue, None);
            let next = session.on_timer(tag, &mut h.env(), &mut out);
            assert_eq!(next, Next::Continue);
            assert_eq!(h.timers, vec![(at(expected), NEXT_TICK)]);
        }
        h.now = at(3001);
        let (_, tag) = take_timer(&mut h);
        let mut out = Output::new(&mut queue, None);
        let next = session.on_timer(tag, &mut h.env(), &mut out);
        assert_eq!(next, Next::Close, "4 ticks, then the session ends");
        assert!(h.timers.is_empty());

        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text:?}");
        assert!(lines[..4].iter().all(|line| is_tick(line.as_bytes())));
        assert_eq!(lines[4], AU_REVOIR);
    }

    #[test]
    fn zero_ticks_is_just_au_revoir_and_shutdown_says_goodbye_once() {
        let mut h = Harness::new(settings(0));
        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let mut queue = OutBuf::new(1024);
        let mut env = h.env();
        let mut out = Output::new(&mut queue, None);
        assert_eq!(session.on_input(b"hi\n", &mut env, &mut out), Next::Close);
        assert_eq!(session.on_shutdown(&mut env, &mut out), Next::Close);
        assert_eq!(queue.pending(), b"Au Revoir\n", "one goodbye, not two");
    }

    #[test]
    fn a_tcp_greeting_over_the_cap_is_refused_and_a_closed_input_before_it_ends_the_session() {
        let mut h = Harness::new(settings(3));
        let mut queue = OutBuf::new(4096);
        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let long = vec![b'a'; GREETING_MAX + 2];
        let mut out = Output::new(&mut queue, None);
        assert_eq!(session.on_input(&long, &mut h.env(), &mut out), Next::Close);
        assert_eq!(queue.pending(), LINE_TOO_LONG.as_bytes());

        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let mut out = Output::new(&mut queue, None);
        assert_eq!(
            session.on_input(b"Bon", &mut h.env(), &mut out),
            Next::Continue
        );
        assert_eq!(session.on_input_closed(&mut h.env(), &mut out), Next::Close);
        assert!(h.timers.is_empty(), "no session, no tick");
    }

    #[test]
    fn a_greeting_dripped_byte_by_byte_is_cut_off_at_the_deadline_counted_from_the_accept() {
        let mut h = Harness::new(ServiceSettings {
            greeting_timeout: Duration::from_secs(5),
            ..settings(3)
        });
        let start = h.now;
        let mut queue = OutBuf::new(4096);
        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let mut out = Output::new(&mut queue, None);
        assert_eq!(session.on_open(&mut h.env(), &mut out), Next::Continue);
        assert_eq!(
            h.timers,
            vec![(start + Duration::from_secs(5), GREETING_DEADLINE)]
        );
        // One byte a second: every byte is activity, none is progress.
        for (second, byte) in b"Bonj".iter().enumerate() {
            h.now = start + Duration::from_secs(second as u64);
            let mut out = Output::new(&mut queue, None);
            let next = session.on_input(&[*byte], &mut h.env(), &mut out);
            assert_eq!(next, Next::Continue);
        }
        let (deadline, tag) = take_timer(&mut h);
        assert!(session.timer_is_live(tag));
        h.now = deadline;
        let mut out = Output::new(&mut queue, None);
        assert_eq!(session.on_timer(tag, &mut h.env(), &mut out), Next::Close);
        assert_eq!(queue.pending(), GREETING_TIMEOUT.as_bytes());
    }

    #[test]
    fn after_the_greeting_its_deadline_is_stale_and_does_nothing() {
        let mut h = Harness::new(settings(3));
        let mut queue = OutBuf::new(4096);
        let mut session = TcpTimeStream::new(peer("127.0.0.1:9"));
        let mut out = Output::new(&mut queue, None);
        session.on_open(&mut h.env(), &mut out);
        session.on_input(b"hi\n", &mut h.env(), &mut out);
        assert!(!session.timer_is_live(GREETING_DEADLINE));
        assert!(session.timer_is_live(NEXT_TICK));
        let mut out = Output::new(&mut queue, None);
        assert_eq!(
            session.on_timer(GREETING_DEADLINE, &mut h.env(), &mut out),
            Next::Continue
        );
        assert!(!String::from_utf8_lossy(queue.pending()).contains("error"));
    }

    /// Fires every timer due at or before `until`, in deadline order, as the loop would.
    fn run_until(h: &mut Harness, udp: &mut UdpTimeStream, out: &mut dyn Outbox, until: Instant) {
        loop {
            h.timers.sort();
            match h.timers.first() {
                Some(&(deadline, _)) if deadline <= until => {
                    let (deadline, tag) = h.timers.remove(0);
                    h.now = deadline;
                    if udp.timer_is_live(tag) {
                        udp.on_timer(tag, &mut h.env(), out);
                    }
                }
                _ => break,
            }
        }
        h.now = until;
    }

    #[test]
    fn a_udp_session_starts_with_a_datagram_ticks_on_schedule_then_says_au_revoir_and_expires() {
        let mut h = Harness::new(settings(3));
        let start = h.now;
        let mut udp = UdpTimeStream::default();
        let mut out = Sent::new();
        let alice = peer("192.0.2.1:4000");

        udp.on_datagram(b"Bonjour", alice, &mut h.env(), &mut out);
        assert_eq!(out.len(), 1, "the first tick goes out at once");
        assert!(out.iter().all(|(to, tick)| *to == alice && is_tick(tick)));
        assert_eq!(h.timers.len(), 1);
        assert_eq!(h.timers[0].0, start + Duration::from_secs(1));

        // A second datagram from the same peer during its session is ignored.
        udp.on_datagram(b"again", alice, &mut h.env(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(h.timers.len(), 1);

        run_until(
            &mut h,
            &mut udp,
            &mut out,
            start + Duration::from_millis(2500),
        );
        let payloads: Vec<&[u8]> = out.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads.len(), 4, "ticks at 0 s, 1 s, 2 s, then Au Revoir");
        assert!(payloads[..3].iter().all(|p| is_tick(p)));
        assert_eq!(payloads[3], AU_REVOIR.as_bytes());
        assert!(h.timers.is_empty(), "the schedule is over");

        // The session has expired: the same peer may start a new one.
        udp.on_datagram(b"encore", alice, &mut h.env(), &mut out);
        assert_eq!(out.len(), 5);
        assert!(is_tick(&out[4].1));
    }

    #[test]
    fn udp_sessions_are_capped_in_total_and_per_source_ip() {
        let mut h = Harness::new(ServiceSettings {
            max_udp_sessions: 3,
            max_udp_sessions_per_ip: 2,
            ..settings(5)
        });
        let mut udp = UdpTimeStream::default();
        let mut out = Sent::new();
        for port in 1..=3 {
            udp.on_datagram(
                b"",
                peer(&format!("192.0.2.1:{port}")),
                &mut h.env(),
                &mut out,
            );
        }
        assert_eq!(out.len(), 2, "the third session from one IP is refused");
        udp.on_datagram(b"", peer("192.0.2.2:1"), &mut h.env(), &mut out);
        assert_eq!(out.len(), 3, "another IP still gets one");
        udp.on_datagram(b"", peer("192.0.2.3:1"), &mut h.env(), &mut out);
        assert_eq!(out.len(), 3, "the table is full");
        assert_eq!(udp.sessions.len(), 3);
    }

    /// An outbox whose destination takes only `room` datagrams, and that keeps the log lines.
    #[derive(Default)]
    struct Cramped {
        room: usize,
        sent: Sent,
        lines: Vec<String>,
    }

    impl Outbox for Cramped {
        fn send_to(&mut self, payload: &[u8], peer: SocketAddr) -> bool {
            if self.sent.len() == self.room {
                return false;
            }
            self.sent.push((peer, payload.to_vec()));
            true
        }

        fn log(&mut self, peer: SocketAddr, line: fmt::Arguments<'_>) {
            self.lines.push(format!("{peer}: {line}"));
        }
    }

    #[test]
    fn a_udp_sessions_last_line_counts_only_what_the_outbox_took() {
        let mut h = Harness::new(settings(2));
        let start = h.now;
        let mut udp = UdpTimeStream::default();
        let mut out = Cramped {
            room: 1,
            ..Cramped::default()
        };
        let alice = peer("192.0.2.1:4000");
        udp.on_datagram(b"Bonjour\x1b", alice, &mut h.env(), &mut out);
        let tick = out.sent[0].1.len();
        run_until(&mut h, &mut udp, &mut out, start + Duration::from_secs(1));
        assert_eq!(
            out.sent.len(),
            1,
            "the second tick and the goodbye were dropped"
        );
        assert_eq!(
            out.lines,
            [
                "192.0.2.1:4000: greeting \"Bonjour\\u{1b}\"".to_string(),
                format!(
                    "192.0.2.1:4000: session over after 2 ticks, 1.000 s, 8 bytes in, {tick} bytes out"
                ),
            ]
        );
    }

    #[test]
    fn shutdown_says_au_revoir_to_every_session_and_their_timers_go_stale() {
        let mut h = Harness::new(settings(5));
        let mut udp = UdpTimeStream::default();
        let mut out = Sent::new();
        let peers = [peer("192.0.2.1:1"), peer("[2001:db8::1]:2")];
        for p in peers {
            udp.on_datagram(b"hi", p, &mut h.env(), &mut out);
        }
        out.clear();
        udp.on_shutdown(&mut h.env(), &mut out);
        let mut goodbyes: Vec<SocketAddr> = out
            .iter()
            .filter(|(_, payload)| payload == AU_REVOIR.as_bytes())
            .map(|(to, _)| *to)
            .collect();
        goodbyes.sort();
        assert_eq!(goodbyes, peers.to_vec());
        assert_eq!(out.len(), 2, "nothing but the goodbyes");
        assert!(h.timers.iter().all(|&(_, tag)| !udp.timer_is_live(tag)));
    }
}
