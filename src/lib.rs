//! inetloop: a readiness-loop network server and its clients.
//!
//! One thread and one `mio::Poll` serve a time stream, echo (RFC 862), daytime (RFC 867) and
//! time (RFC 868), each on TCP and UDP. The crate is written to be read: each module opens by
//! saying what it is for and which system calls it causes.
//!
//! # Layout
//!
//! - `reactor` — the loop: poll, dispatch by token, replay, timers, accept, shutdown.
//! - `connection` — TCP plumbing: read until `WouldBlock`, bounded output, interest, close.
//! - `listen` — binding each service's TCP listener and UDP socket on one port.
//! - `udp` — UDP plumbing: receive until `WouldBlock`, replies with a bounded send queue.
//! - `services/` — the protocols as state machines with the same entry points:
//!   `time_stream`, `echo`, `daytime`, `rfc868`.
//! - `buffer` — the line reader and the output buffer every TCP service shares.
//! - `timer` — the timer heap whose earliest deadline is the poll timeout.
//! - `rate_limit` — per-source budget for UDP datagrams (no reflection).
//! - `slots` — the slab with generation-tagged keys behind every token.
//! - `readiness` — the loop's copy of an event, and the `WouldBlock`/`Interrupted` helpers.
//! - `clock` — wall-clock text, formatted once per second.
//! - `cli` — the command-line conventions the blocking clients share.
//! - `config` — the `reactor` command line.
//! - `endpoint` — blocking TCP/UDP sockets with timeouts (the lab's `Endpoint`), for clients.
//! - `http/` — an HTTP/1.x client on `httparse`: URL, request, response reader, chunked.
//! - `bin/reactor.rs` — `main`: parse, log to stderr, bind, announce on stdout, run.
//! - `bin/http-client.rs` — fetch a URL, or the lab's interactive HTTP client.

// Nothing a peer, a file or the command line sends may reach a panic: no unwrap, no expect,
// no unchecked indexing in library code (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

/// Logs one line of `--trace-events` output; costs one branch when tracing is off.
macro_rules! trace_event {
    ($on:expr, $($arg:tt)+) => {
        if $on {
            log::info!(target: "trace", $($arg)+);
        }
    };
}

pub mod client;
pub mod nonblocking;
pub mod server;
pub mod services;
pub mod slots;
