//! Step 7: the real thing — the library's reactor, in a dozen lines.
//!
//! **What it teaches.** Steps 4–6 are the reactor's ideas one at a time; `inetloop::reactor`
//! is all of them at once, plus what a server that must not fall over needs. `serve` below
//! is the whole program: make a [`Reactor`] from [`Settings`], bind each [`ServiceKind`]
//! (TCP *and* UDP on one port number), turn SIGINT/SIGTERM into events, announce the sockets,
//! run. Here it serves the time stream and echo; `src/bin/reactor.rs` is the same with every
//! service and every option.
//!
//! **Where to read what**, following the steps:
//! - `src/server/reactor.rs` — the loop (step 6's shape: timeout from the timer heap, `poll`,
//!   dispatch by token, fire due timers) and accepting (step 4's accept-until-`WouldBlock`,
//!   plus a per-turn budget, and on `EMFILE` a pause retried on a timer instead of spinning).
//! - `src/server/connection.rs` — step 5 grown up: read until `WouldBlock`, bounded output,
//!   `WRITABLE` only while output is pending, backpressure that resumes on its own, FIN after
//!   the last byte, lingering for the peer's FIN, the idle timeout.
//! - `src/server/udp.rs` — step 2 without blocking: `recv_from` until `WouldBlock`, replies
//!   through a bounded send queue.
//! - `src/services/` — the protocols as state machines that never touch a socket:
//!   `time_stream.rs` (step 6's schedule, TCP and UDP), `echo.rs`, `daytime.rs`, `rfc868.rs`;
//!   `mod.rs` lists the entry points every service implements; `line.rs` is the capped line
//!   reader and `output.rs` the bounded output buffer they share.
//! - `src/server/listen.rs` — binding each service's TCP listener and UDP socket on one port
//!   number (a backlog of 1024, `SO_REUSEPORT` for `--threads`).
//! - `src/server/timer.rs` — step 6's heap; `src/slots.rs` — the slab, with a generation in
//!   every token so a stale event or timer can never reach a connection that reused the slot.
//! - `src/server/readiness.rs` — an event's flags and the `would_block`/`interrupted` helpers.
//!
//! **Syscalls** (seen with `strace -f -e trace=network,epoll_wait,epoll_ctl,socketpair`):
//! `epoll_create1`; per service a TCP listener (`socket(…SOCK_NONBLOCK)`,
//! `setsockopt(SO_REUSEADDR)`, `bind`, `listen(1024)`) and a UDP socket (`socket(SOCK_DGRAM…)`,
//! `bind` to the same port), each `epoll_ctl(ADD, EPOLLIN|EPOLLRDHUP|EPOLLET)` with a token
//! whose high bits are the slot's generation; `socketpair` + `epoll_ctl(ADD)` for the signal
//! self-pipe. Then `epoll_wait` with the earliest deadline as timeout (`-1` when idle, the
//! 60000 ms idle timeout once a client is connected, the tick interval while streaming);
//! `accept4` until `EAGAIN`, `setsockopt(TCP_NODELAY)`, `epoll_ctl(ADD)`; `recvfrom`/`sendto`
//! until `EAGAIN`; `shutdown(SHUT_WR)` when a session ends, `epoll_ctl(DEL)` and `close` once
//! the peer's FIN arrived. SIGINT: every socket closed, `exit_group(0)`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 07_full_reactor -- --time 8080 --echo 8081 --ticks 5
//! ```
//! It prints four lines, `listening time tcp …`, `listening time udp …`, `listening echo tcp …`,
//! `listening echo udp …` (port 0 lets the OS choose); logs go to stderr. Options: `--time
//! PORT` (8080), `--echo PORT` (8081), `--ticks N` (60), `--interval-ms MS` (1000).
//!
//! **Try.** Everything from the earlier steps at once: several `nc 127.0.0.1 8080` time
//! streams, `echo hello | nc -N 127.0.0.1 8081`, `echo | nc -u -w1 127.0.0.1 8080` (UDP time
//! stream), the 100 KiB paste from step 5 — then Ctrl-C: live sessions get `Au Revoir`.
mod common;

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Duration;

use inetloop::server::config::Settings;
use inetloop::server::reactor::Reactor;
use inetloop::services::ServiceKind;
use log::LevelFilter;

const BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn main() -> ExitCode {
    common::run(common::lesson!(), parse_args, |(services, settings)| {
        // The library logs through `log`; send it to stderr.
        common::log_to_stderr(LevelFilter::Info);
        serve(&services, settings).map_err(|e| e.to_string())
    })
}

fn parse_args(flags: &mut common::Flags) -> Result<(Vec<(ServiceKind, u16)>, Settings), String> {
    let services = vec![
        (ServiceKind::TimeStream, flags.value("--time", 8080)?),
        (ServiceKind::Echo, flags.value("--echo", 8081)?),
    ];
    let mut settings = Settings::default();
    settings.service.ticks = flags.value("--ticks", 60)?;
    settings.service.interval = Duration::from_millis(flags.value("--interval-ms", 1000)?);
    Ok((services, settings))
}

/// Steps 4–6 and everything they left out, from the library.
fn serve(services: &[(ServiceKind, u16)], settings: Settings) -> Result<(), Box<dyn Error>> {
    let mut reactor = Reactor::new(settings)?; // epoll_create1
    for &(kind, port) in services {
        // A TCP listener and a UDP socket on the same port number, both registered.
        reactor.bind_service(BIND, kind, port, false)?;
    }
    // SIGINT/SIGTERM become one more event source (a self-pipe): Ctrl-C says Au Revoir.
    reactor.watch_signals()?;
    common::announce(reactor.bound())?; // listening <service> <tcp|udp> <ip:port>
    reactor.run()?; // the loop, until a signal and a graceful goodbye
    Ok(())
}
