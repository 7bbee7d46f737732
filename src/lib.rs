//! inetloop: a readiness-loop network server and its clients.
//!
//! One thread and one `mio::Poll` serve a time stream, echo (RFC 862), daytime (RFC 867) and
//! time (RFC 868), each on TCP and UDP, and, with `--metrics`, an HTTP endpoint for the
//! counters the loop keeps. The crate is written to be read: each module opens by saying what
//! it is for and which system calls it causes.
//!
//! # Layout
//!
//! Three wings and a door. The arrows are the only direction imports go (checked by
//! `tests/architecture.rs`):
//!
//! ```text
//!   server/  the loop and the plumbing ──► services/contract.rs ◄── services/*  the protocols
//!   client/  blocking clients (no loop)        (the door)
//! ```
//!
//! - `server/` — everything that owns a socket and knows `mio`:
//!   - `reactor` — the loop: poll, one `match` to find an entry's handler, replay, timers;
//!     `reactor/setup` builds a loop and files its sockets, `reactor/wait` chooses how long
//!     `epoll_wait` may sleep (and drops stale timers), `reactor/alarm` wakes it at that
//!     deadline (a timerfd on Linux, to a 50 µs grid; the poll timeout elsewhere).
//!   - `handler` — the one shape every slab entry answers (`Handler`), the `Context` it gets,
//!     and the loop's `Shared` state.
//!   - `totals` — `Totals`, each loop's counters since start (Relaxed atomics with one writer,
//!     readable from any thread), and the status line drawn from them.
//!   - `metrics` — the `Board` of every loop's counters, drawn as the pages of the metrics
//!     endpoint (`/metrics`, `/`); `exposition` — the Prometheus text format 0.0.4.
//!   - `listener` — accept until `WouldBlock`, a limit or a budget; pause on `EMFILE`.
//!   - `connection` — TCP plumbing: read until `WouldBlock`, bounded output, interest, FIN,
//!     linger, idle timeout; bytes counted, one log line per connection; the PROXY header
//!     phase of a `--proxy-from` connection.
//!   - `udp` — UDP plumbing: receive until `WouldBlock`, send or queue or drop; one log line
//!     per exchange within a log budget per socket.
//!   - `listen` — binding each service's TCP listener and UDP socket on one port.
//!   - `timer` — the timer heap whose earliest deadline is the poll timeout; tag spaces.
//!   - `trace` — `--trace-events`: each wakeup, event, action and timer in words or JSON.
//!   - `rate_limit` — per-source budget for UDP datagrams (no reflection).
//!   - `access` — `--allow`/`--deny` access lists: parsed and decided as pure functions (the
//!     longest matching prefix wins), and the bounded log of refusals.
//!   - `proxy_header` — the PROXY protocol header (v1 and v2) a `--proxy-from` balancer sends
//!     before its client's bytes: a pure parser, fed piece by piece (`connection` reads it).
//!   - `readiness` — the loop's copy of an event, and the `Verdict` a handler answers.
//!   - `config` — the `reactor` command line: flags, defaults, ranges.
//!   - `descriptors` — `RLIMIT_NOFILE`: the soft limit raised to the hard one at start, and
//!     `--max-conns` checked against what the limit holds.
//! - `services/` — the protocols, state machines that never touch a socket:
//!   - `contract` — the door: `TcpService`, `UdpService`, `Env`, `Next`, `Output`, `Outbox`,
//!     `TimerTag`, `ServiceSettings`, and for the metrics `Observation` (what a service reports
//!     through `Env::observe`) and `Pages` (what `Env::render` draws). Imports nothing of the
//!     loop.
//!   - `time_stream`, `echo`, `daytime`, `rfc868` — one file a protocol, TCP and UDP;
//!     `metrics` — the metrics endpoint, HTTP/1.1 over TCP (requests parsed with `httparse`).
//!   - `output` (bounded output written straight through), `line` (capped line reader),
//!     `clock` (wall-clock text, formatted once per second) — what the protocols share.
//! - `client/` — `endpoint` (the lab's blocking `Endpoint` with timeouts), `cli` (the clients'
//!   command-line conventions), `http/` (an HTTP/1.x client on `httparse`).
//! - Shared leaves: `slots` (the slab with generation-tagged keys behind every token and every
//!   UDP session), `nonblocking` (the `WouldBlock`/`Interrupted` helpers).
//! - `bin/` — `reactor` (parse, log to stderr — dated, only this crate's lines unless
//!   `--log-deps` — bind, announce on stdout, run) and the clients.

// Nothing a peer, a file or the command line sends may reach a panic: no unwrap, no expect,
// no unchecked indexing in library code (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

/// Records one action of the plumbing for `--trace-events` (`server/trace.rs`):
/// `trace_event!(tracer, token, Act::Read(n))`. Costs one branch when tracing is off — the
/// `Act` is built, and anything formatted, only inside it.
macro_rules! trace_event {
    ($tracer:expr, $token:expr, $act:expr) => {
        if $tracer.on() {
            $tracer.action($token, $act);
        }
    };
}

pub mod client;
pub mod nonblocking;
pub mod server;
pub mod services;
pub mod slots;
pub mod source;
