//! Step 4: the lab's `select`/`poll` multi-service server, done with readiness.
//!
//! **What it teaches.** One thread serves two services and any number of clients, because it
//! never calls anything that could block except the one call made for blocking: `epoll_wait`
//! (through `mio::Poll::poll`). Every socket is non-blocking and registered with the poller
//! under a *token*; the poller answers "these tokens are ready", and a `match` on the token
//! says what to do. Two listeners: echo (RFC 862: every byte back) and a one-shot daytime
//! service (one line of local time, RFC 867 style, then close). Since mio registers sockets
//! edge-triggered, a ready listener is accepted from until `WouldBlock`, and a ready echo
//! client is read until `WouldBlock`: the event will not be repeated for what is left.
//!
//! **Syscalls** (seen with `strace -f -e trace=network,epoll_create1,epoll_wait,epoll_ctl`):
//! - start: `epoll_create1(EPOLL_CLOEXEC)`; per listener
//!   `socket(…, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK)`, `setsockopt(SO_REUSEADDR)`, `bind`,
//!   `listen(fd, 128)`, `epoll_ctl(ADD, fd, EPOLLIN|EPOLLRDHUP|EPOLLET)` with the token as the
//!   event's data; `getsockname`.
//! - loop: `epoll_wait(…, -1)` (no timeout: nothing to do until a socket is ready), then for
//!   a listener `accept4(…, SOCK_CLOEXEC|SOCK_NONBLOCK)` repeated until it fails with
//!   `EAGAIN`; daytime: one `sendto`, `close`; echo: `epoll_ctl(ADD, EPOLLIN|EPOLLOUT|…|EPOLLET)`
//!   for the new connection, then on its events `recvfrom` / `sendto` pairs until `recvfrom`
//!   fails with `EAGAIN`; at the client's FIN (`recvfrom` returns 0) `epoll_ctl(DEL)` and
//!   `close`.
//! - BSD/macOS: mio uses `kqueue` instead of `epoll_create1` and `kevent` both to register
//!   (`EV_ADD|EV_CLEAR` — `EV_CLEAR` is kqueue's edge-triggering) and to wait.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 04_poll_two_listeners -- --echo 8081 --daytime 8013
//! ```
//! It prints `listening echo tcp …` and `listening daytime tcp …` (port 0 lets the OS choose);
//! logs go to stderr. Options: `--echo PORT` (8081), `--daytime PORT` (8013).
//!
//! **Try.**
//! - `nc 127.0.0.1 8081` in two terminals and type in both, while `nc 127.0.0.1 8013` in a
//!   third gets its line at once: one thread, no waiting.
//! - The strace above: each event carries the socket's *whole* readiness at that moment, e.g.
//!   `EPOLLIN|EPOLLOUT` for an echo client when only input arrived, and `EPOLLIN|EPOLLRDHUP`
//!   when the last bytes came together with the client's FIN (`nc -N`).
//! - `ss -tan '( sport = :8081 )'` while clients are connected: every connection is its own
//!   socket (and descriptor), but none of them has a thread.
mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use inetloop::services::clock::daytime_text;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

// Every registered socket has a token: the number epoll hands back to say *which* socket is
// ready. The two listeners have fixed ones…
const ECHO: Token = Token(0);
const DAYTIME: Token = Token(1);
/// …and echo connection number `key` in the slab gets `Token(FIRST_CONNECTION + key)`, so no
/// connection can ever carry a listener's token.
const FIRST_CONNECTION: usize = 2;
/// Bytes read from an echo client per `read`.
const ECHO_BUFFER: usize = 16 * 1024;

/// An accepted echo connection.
struct EchoClient {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read but not yet written back. Never more than one read's worth: we read again
    /// only once it is empty.
    pending: Vec<u8>,
}

fn main() -> ExitCode {
    common::run(
        common::lesson!(),
        |flags| {
            Ok((
                flags.value("--echo", 8081)?,
                flags.value("--daytime", 8013)?,
            ))
        },
        |(echo_port, daytime_port)| serve(echo_port, daytime_port),
    )
}

fn serve(echo_port: u16, daytime_port: u16) -> Result<(), String> {
    // epoll_create1: the kernel object that will watch all our sockets at once.
    let mut poll = Poll::new().map_err(|e| format!("cannot create poller: {e}"))?;
    let mut echo = listen(&poll, "echo", echo_port, ECHO)?;
    let mut daytime = listen(&poll, "daytime", daytime_port, DAYTIME)?;
    // getsockname: the ports the OS chose for port 0.
    let echo_addr = echo.local_addr().map_err(|e| e.to_string())?;
    let daytime_addr = daytime.local_addr().map_err(|e| e.to_string())?;
    common::announce([
        format!("listening echo tcp {echo_addr}"),
        format!("listening daytime tcp {daytime_addr}"),
    ])?;

    let mut events = Events::with_capacity(128);
    let mut clients: Slab<EchoClient> = Slab::new();
    let mut buf = vec![0u8; ECHO_BUFFER];
    loop {
        // epoll_wait: the only place this thread ever blocks. It returns when at least one
        // registered socket is ready, with one event per ready socket.
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue; // a signal arrived while we slept: just wait again
            }
            return Err(format!("poll: {e}"));
        }
        for event in events.iter() {
            match event.token() {
                ECHO => accept_all(&mut echo, "echo", |stream, peer| {
                    let entry = clients.vacant_entry();
                    let token = Token(FIRST_CONNECTION + entry.key());
                    // epoll_ctl(ADD): tell us when it has input or has room for output.
                    // mio registers edge-triggered: an event per *change*, not per state.
                    let mut client = EchoClient {
                        stream,
                        peer,
                        pending: Vec::new(),
                    };
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match poll
                        .registry()
                        .register(&mut client.stream, token, interest)
                    {
                        Ok(()) => {
                            eprintln!("echo {peer}: connected, {token:?}");
                            entry.insert(client);
                        }
                        Err(e) => eprintln!("echo {peer}: register: {e}"),
                    }
                }),
                DAYTIME => accept_all(&mut daytime, "daytime", send_daytime),
                token => {
                    let key = token.0 - FIRST_CONNECTION;
                    let Some(client) = clients.get_mut(key) else {
                        continue;
                    };
                    let done = match echo_what_we_can(client, &mut buf) {
                        Ok(done) => done,
                        Err(e) => {
                            eprintln!("echo {}: {e}", client.peer);
                            true
                        }
                    };
                    if done {
                        let mut client = clients.remove(key);
                        // epoll_ctl(DEL), then close(2) when `client` is dropped.
                        let _ = poll.registry().deregister(&mut client.stream);
                        eprintln!("echo {}: closed", client.peer);
                    }
                }
            }
        }
    }
}

/// socket + bind + listen (non-blocking), then epoll_ctl(ADD) for "a connection is waiting".
fn listen(poll: &Poll, name: &str, port: u16, token: Token) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot bind {name} {addr}: {e}"))?;
    poll.registry()
        .register(&mut listener, token, Interest::READABLE)
        .map_err(|e| format!("cannot register {name}: {e}"))?;
    Ok(listener)
}

/// Accepts every connection waiting in the listener's backlog. The event said "the backlog
/// became non-empty", once: a connection left in it would never be reported again.
fn accept_all(listener: &mut TcpListener, name: &str, mut take: impl FnMut(TcpStream, SocketAddr)) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => take(stream, peer),
            // The backlog is empty: the next connection raises a new event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // A signal, or a client that gave up before we got to it: go on accepting.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            // EMFILE and friends: stop for now. The connections still queued are served when
            // the next one arrives; the reactor instead retries on a timer (src/server/reactor.rs).
            Err(e) => {
                eprintln!("{name} accept: {e}");
                return;
            }
        }
    }
}

/// The one-shot service: a line of local time, then close. Never registered with the poller.
fn send_daytime(mut stream: TcpStream, peer: SocketAddr) {
    // A non-blocking write can take less than we give it, but a new connection's send buffer
    // is empty, and one short line always fits.
    let line = daytime_text(&chrono::Local::now());
    match stream.write(line.as_bytes()) {
        Ok(n) if n == line.len() => eprintln!("daytime {peer}: sent"),
        Ok(n) => eprintln!("daytime {peer}: only {n} bytes sent"),
        Err(e) => eprintln!("daytime {peer}: {e}"),
    }
    // `stream` is dropped here: close(2), and the kernel sends FIN after the line.
}

/// Moves bytes from the client back to it until one side would block. `Ok(true)`: the client
/// sent FIN and has everything back, close it.
fn echo_what_we_can(client: &mut EchoClient, buf: &mut [u8]) -> io::Result<bool> {
    loop {
        // Hand back what we owe first. WouldBlock: the client is not reading fast enough;
        // stop here (and stop reading it: backpressure). The WRITABLE event that comes when
        // there is room again brings us back to this loop.
        while !client.pending.is_empty() {
            match client.stream.write(&client.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    client.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match client.stream.read(buf) {
            Ok(0) => return Ok(true), // FIN, and nothing pending
            Ok(n) => client.pending.extend_from_slice(&buf[..n]),
            // Nothing more to read: the next bytes raise a new READABLE event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
