//! Step 5: edge-triggered readiness, and the bug it punishes — an echo server in mio.
//!
//! **What it teaches.** mio registers every socket edge-triggered (`EPOLLET`; `EV_CLEAR` on
//! kqueue): `epoll_wait` reports a socket when its readiness *changes* — new bytes arrived —
//! not for as long as it *is* readable. So one event may stand for 1 byte or 100 KiB, and
//! after it the kernel says nothing more until something new happens. A handler must
//! therefore read until the kernel answers `WouldBlock` (`EAGAIN`); whatever it leaves in the
//! socket is stranded until the client happens to send again. (Level-triggered `poll`/`select`
//! would just report the socket again; redis, which uses level-triggered epoll, can read once
//! per event — copying it onto mio is the classic bug, mio issues #845, #1611.)
//!
//! The same holds for output, in reverse: a non-blocking `write` takes what fits in the send
//! buffer and returns; the rest stays in our buffer, and we ask for `WRITABLE` — only while
//! something is pending, since an idle socket is writable all the time — to hear when there is
//! room. While that buffer is full we stop reading the client (backpressure), and when room
//! comes back we read again on our own: no new event would come for bytes already waiting.
//!
//! With `--one-read-per-event` the server makes the classic mistake: one `read` per event,
//! with a small ([`READ_BUFFER`] = 1 KiB) buffer so that it shows.
//!
//! **Syscalls** (seen with `strace -f -e trace=network,epoll_wait,epoll_ctl`):
//! - start: `epoll_create1`, `socket(…SOCK_NONBLOCK)`, `setsockopt(SO_REUSEADDR)`, `bind`,
//!   `listen`, `epoll_ctl(ADD, EPOLLIN|EPOLLRDHUP|EPOLLET)`.
//! - per client: `accept4` until `EAGAIN`, `epoll_ctl(ADD, EPOLLIN|EPOLLRDHUP|EPOLLET)`.
//! - correct mode, per event: `recvfrom(…, 1024)` / `sendto` pairs until `recvfrom` fails
//!   with `EAGAIN`. When the client does not read, `sendto` fails with `EAGAIN` and
//!   `epoll_ctl(MOD, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET)` follows; reading pauses once 64 KiB
//!   are pending; the `EPOLLOUT` event that comes when the client reads again flushes, reads
//!   on, and once nothing is pending `epoll_ctl(MOD)` drops `EPOLLOUT` again. At the client's
//!   FIN (`recvfrom` returns 0): `epoll_ctl(DEL)`, `close`.
//! - `--one-read-per-event`: exactly one `recvfrom` per `epoll_wait`, never an `EAGAIN`: one
//!   KiB per wakeup, whatever arrived. How many wakeups a 100,000-byte send makes depends on
//!   how it reaches the socket, not on the server: `nc` writes it in 16 KiB pieces, so up to
//!   seven segments, each a new event unless several land before the server wakes — between
//!   1 and 7 KiB come back (3 to 7 in ten runs on the project's machine), and `epoll_wait`
//!   sleeps on the rest. Each later byte from the client wakes it for one more KiB. Even the
//!   client's FIN (`EPOLLRDHUP`) is met with one read of old bytes and nothing else: the
//!   socket stays in `CLOSE-WAIT` with the rest unread long after the client has gone. Only
//!   a reset ends it (the client closed while echoes were still coming): `sendto` fails with
//!   `EPIPE`, then `epoll_ctl(DEL)`, `close`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 05_edge_triggered_echo -- --port 8081                        # correct
//! cargo run --example 05_edge_triggered_echo -- --port 8081 --one-read-per-event   # the bug
//! ```
//! It prints `listening echo tcp 127.0.0.1:8081` (port 0 lets the OS choose); logs go to
//! stderr. Options: `--port PORT` (8081), `--one-read-per-event` (off).
//!
//! **Try** (with the bug on):
//! - `head -c 100000 /dev/zero | timeout 10 nc 127.0.0.1 8081 | wc -c` prints a few thousand
//!   bytes once `timeout` stops `nc` (one KiB per event; 3072 to 7168 here). Meanwhile, in
//!   another terminal, `ss -tan '( sport = :8081 )'` shows the rest sitting in the server's
//!   socket: its `Recv-Q` is 100000 minus what came back. With `nc -N` (FIN after the input)
//!   the server's side stays in `CLOSE-WAIT` with that `Recv-Q` after `nc` has exited.
//! - `nc 127.0.0.1 8081`, then paste a long text (over 1 KiB) in one go: only the first KiB
//!   comes back. Press Enter: the next KiB arrives — the new byte made a new event.
//! - Without the flag, both come back whole.
mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

const SERVER: Token = Token(0);
/// Connection `key` in the slab has `Token(key + 1)`: token 0 is the listener's.
const FIRST_CONNECTION: usize = 1;
/// Small on purpose: 100 KiB from a client takes 100 reads, so stopping after one shows.
const READ_BUFFER: usize = 1024;
/// Bytes a connection may hold read but not yet written back. When full we stop reading that
/// client: its bytes wait in the kernel, TCP's window closes, its writes block (backpressure).
const OUTPUT_LIMIT: usize = 64 * 1024;

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back. Reading stops once it holds [`OUTPUT_LIMIT`] bytes.
    out: Vec<u8>,
    /// Whether WRITABLE is part of the registered interest: only while `out` is not empty.
    writable_registered: bool,
    /// The client sent FIN: nothing more will come.
    input_closed: bool,
}

struct Args {
    port: u16,
    one_read_per_event: bool,
}

fn main() -> ExitCode {
    common::run(
        common::lesson!(),
        |flags| {
            Ok(Args {
                port: flags.value("--port", 8081)?,
                one_read_per_event: flags.switch("--one-read-per-event"),
            })
        },
        |args| serve(&args),
    )
}

fn serve(args: &Args) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| format!("cannot create poller: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    poll.registry()
        .register(&mut listener, SERVER, Interest::READABLE)
        .map_err(|e| format!("register: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    common::announce([format!("listening echo tcp {local}")])?;
    if args.one_read_per_event {
        eprintln!("--one-read-per-event: one read per event (the bug), {READ_BUFFER} bytes each");
    }

    let mut events = Events::with_capacity(128);
    let mut connections: Slab<Connection> = Slab::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        for event in events.iter() {
            if event.token() == SERVER {
                accept_all(&listener, poll.registry(), &mut connections);
                continue;
            }
            let key = event.token().0 - FIRST_CONNECTION;
            let Some(conn) = connections.get_mut(key) else {
                continue;
            };
            let done = pump(conn, &mut buf, args.one_read_per_event)
                .and_then(|done| {
                    update_interest(conn, poll.registry(), event.token())?;
                    Ok(done)
                })
                .unwrap_or_else(|e| {
                    eprintln!("{}: {e}", conn.peer); // ECONNRESET and the like
                    true
                });
            if done {
                let mut conn = connections.remove(key);
                // epoll_ctl(DEL) before the descriptor is closed (when `conn` is dropped).
                let _ = poll.registry().deregister(&mut conn.stream);
                eprintln!("{}: closed", conn.peer);
            }
        }
    }
}

/// Accepts until `WouldBlock`: edge-triggered, the listener's event will not come again for
/// connections already waiting.
fn accept_all(listener: &TcpListener, registry: &Registry, connections: &mut Slab<Connection>) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // EMFILE and friends: stop for now (src/server/reactor.rs retries on a timer instead).
            Err(e) => return eprintln!("accept: {e}"),
        };
        let entry = connections.vacant_entry();
        let token = Token(entry.key() + FIRST_CONNECTION);
        // Only READABLE for now: a socket is writable nearly all the time, and an interest in
        // WRITABLE with nothing to write would only wake us for nothing.
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            eprintln!("{peer}: register: {e}");
            continue;
        }
        eprintln!("{peer}: connected, {token:?}");
        entry.insert(Connection {
            stream,
            peer,
            out: Vec::new(),
            writable_registered: false,
            input_closed: false,
        });
    }
}

/// Serves one event, whatever it says: write what we owe, then read and echo until the
/// kernel has nothing more (`WouldBlock`) or our output is full. `Ok(true)`: close it.
fn pump(conn: &mut Connection, buf: &mut [u8], one_read_per_event: bool) -> io::Result<bool> {
    // On a WRITABLE event this is why we are here; if `out` was full, this also makes room
    // to read again below (no new READABLE event would come for bytes already waiting).
    flush(conn)?;
    while !conn.input_closed && conn.out.len() < OUTPUT_LIMIT {
        match conn.stream.read(buf) {
            Ok(0) => conn.input_closed = true, // FIN
            Ok(n) => {
                conn.out.extend_from_slice(&buf[..n]);
                flush(conn)?;
                if one_read_per_event {
                    // THE BUG. The event meant "new bytes arrived", once. Whatever is left in
                    // the kernel now will not be reported again — epoll only reports a
                    // *change* — so it stays there until the client sends something else.
                    break;
                }
            }
            // Drained: the next bytes to arrive will raise a new READABLE event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(conn.input_closed && conn.out.is_empty())
}

/// Writes until `out` is empty or the kernel's send buffer is full. A short write is normal
/// for a non-blocking socket: the rest stays in `out` (this is why `write_all` is wrong here).
fn flush(conn: &mut Connection) -> io::Result<()> {
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.out.drain(..n);
            }
            // Full: the client is not reading as fast as it sends. WRITABLE will tell us when
            // there is room (see `update_interest`).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks for WRITABLE exactly while output is pending: `epoll_ctl(MOD)` when that changes.
fn update_interest(conn: &mut Connection, registry: &Registry, token: Token) -> io::Result<()> {
    let wanted = !conn.out.is_empty();
    if wanted != conn.writable_registered {
        let interest = if wanted {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        registry.reregister(&mut conn.stream, token, interest)?;
        conn.writable_registered = wanted;
    }
    Ok(())
}
