//! Step 1: the lab's first server — a blocking, iterative TCP time-stream server.
//!
//! **What it teaches.** The shape every server starts from: `bind`, `listen`, then a loop of
//! `accept` → serve the client → close → next. Each call blocks the one thread until the
//! kernel has something for it. It works, for one client at a time — and that is the problem.
//! A session lasts `--ticks` × `--interval-ms` (a minute by default), and during that minute
//! the server is asleep in `sleep` or `write` on behalf of one client, while everybody else
//! waits. The sockets are the lab's `Endpoint` (`src/client/endpoint.rs`): `Endpoint::bind`,
//! `accept`, `send`, with a timeout on every read and write of a client.
//!
//! **Syscalls, in order** (seen with `strace -f`, Linux):
//! - `Endpoint::bind`: `socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)`, `setsockopt(SO_REUSEADDR)`
//!   (std sets it, so a restart can rebind at once), `bind`, `listen(fd, 128)`, then
//!   `getsockname` to learn the port the OS chose for `--port 0`.
//! - per client: `accept4(…, SOCK_CLOEXEC)` (blocks), `setsockopt(SO_RCVTIMEO)` and
//!   `setsockopt(SO_SNDTIMEO)` (the client's timeout), `getsockname`; then `recvfrom` for the
//!   greeting (std's `read` on a socket is `recv`, which is `recvfrom`), per tick
//!   `sendto(…, MSG_NOSIGNAL)` (std's `write`) and `clock_nanosleep` between ticks,
//!   `shutdown(SHUT_WR)` after `Au Revoir`, `close`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 01_blocking_time_server -- --port 8080 --ticks 10
//! ```
//! It prints `listening time tcp 127.0.0.1:8080` on stdout (logs go to stderr); `--port 0`
//! lets the OS choose. Options: `--port PORT` (8080), `--ticks N` (60), `--interval-ms MS`
//! (1000).
//!
//! **Try.**
//! - Open two terminals and run `nc 127.0.0.1 8080` in both at once; type `Bonjour` and Enter
//!   in each. The first gets a tick a second. The second gets *nothing* until the first one's
//!   `Au Revoir` — yet its `connect` succeeded at once.
//! - While the second waits, `ss -tan '( sport = :8080 )'` and `ss -tln '( sport = :8080 )'`:
//!   the listener shows `Recv-Q 1` (one connection queued in the accept backlog: the kernel
//!   did the handshake without us), and the waiting connection is `ESTAB` with `Recv-Q 8` —
//!   its greeting, in the kernel, unread.
//! - `strace -f -e trace=network,clock_nanosleep` on the server: one `accept4`, then
//!   `sendto` / `clock_nanosleep` pairs, and the next `accept4` only after `shutdown`.
//!
//! The fixes, one idea each: step 3 gives every client a thread; steps 4–6 keep one thread
//! and let the kernel tell it which socket is ready, and when the next tick is due.
mod common;

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use inetloop::client::endpoint::{Endpoint, Protocol};
use inetloop::services::clock::TICK_FORMAT;
use inetloop::services::time_stream::{AU_REVOIR, GREETING_MAX, LINE_TOO_LONG};

/// How long a connected client may keep the server waiting: to greet, or to make room for a
/// tick once it stopped reading. Without it one silent client would hold the whole server
/// forever; with it, "only" this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed `accept` (typically `EMFILE`: out of descriptors), wait this long: retrying
/// at once would fail again at full speed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

struct Args {
    port: u16,
    ticks: u32,
    interval: Duration,
}

fn main() -> ExitCode {
    common::run(common::lesson!(), parse_args, serve)
}

fn parse_args(flags: &mut common::Flags) -> Result<Args, String> {
    Ok(Args {
        port: flags.value("--port", 8080)?,
        ticks: flags.value("--ticks", 60)?,
        interval: Duration::from_millis(flags.value("--interval-ms", 1000)?),
    })
}

fn serve(args: Args) -> Result<(), String> {
    // socket(AF_INET, SOCK_STREAM) + setsockopt(SO_REUSEADDR) + bind + listen, all in here.
    // From `listen` on, the kernel completes handshakes by itself and queues the new
    // connections in the listen backlog, whether or not we ever call `accept`.
    let listener = Endpoint::bind(Protocol::Tcp, "127.0.0.1", args.port, CLIENT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    common::announce([format!("listening time tcp {}", listener.local())])?;
    loop {
        // accept4: blocks until the backlog holds a connection, then hands us its own socket
        // (with CLIENT_TIMEOUT on its reads and writes). While we are inside `session` below,
        // nobody calls accept: the next clients wait in the backlog (their connect() already
        // succeeded) and hear nothing.
        match listener.accept() {
            Ok((client, peer)) => match session(client, peer, &args) {
                Ok(()) => eprintln!("{peer}: session over"),
                // EPIPE / ECONNRESET: the client left. std writes with MSG_NOSIGNAL, so this
                // is an error value, not a SIGPIPE that kills us; that session ends, nothing
                // else. (The error names the peer: `write to 127.0.0.1:41234: broken pipe`.)
                Err(e) => eprintln!("{e}"),
            },
            // EMFILE (out of descriptors) and friends: the listener is still fine.
            Err(e) => {
                eprintln!("{e}");
                thread::sleep(ACCEPT_RETRY);
            }
        }
        // `client` was dropped at the end of `session`: close(2).
    }
}

/// One whole session. Every call in here blocks, so the server does nothing else until it
/// returns: that is the problem this file exists to show.
fn session(mut client: Endpoint, peer: SocketAddr, args: &Args) -> io::Result<()> {
    let Some(greeting) = read_greeting(&mut client)? else {
        return Ok(()); // the client left, or its line was too long (answered already)
    };
    eprintln!("{peer}: greeting {greeting:?}");
    for k in 0..args.ticks {
        if k > 0 {
            // The whole thread sleeps (clock_nanosleep): every other client waits with us.
            // Writing takes time too, so the ticks slowly drift late; step 6 fixes both.
            thread::sleep(args.interval);
        }
        // One send per tick (`sendto`). It returns as soon as the bytes are in the kernel's
        // send buffer, long before the client reads them.
        let tick = chrono::Local::now().format(TICK_FORMAT);
        client.send(format!("{tick}\n").as_bytes())?;
    }
    client.send(format!("{AU_REVOIR}\n").as_bytes())?;
    // shutdown(SHUT_WR): FIN after the last byte. (Bytes the client sent after its greeting
    // are never read here; closing a socket with unread input makes Linux send RST instead,
    // which the reactor avoids by lingering — see src/server/connection.rs.)
    Ok(client.shutdown_write()?)
}

/// Reads the greeting line: `None` if the client left first, or sent a line longer than
/// [`GREETING_MAX`] (it is told so).
fn read_greeting(client: &mut Endpoint) -> io::Result<Option<String>> {
    let cap = GREETING_MAX + 2; // the line and its "\r\n"
    let mut line = Vec::new();
    // recv returns whatever has arrived (maybe half a line, maybe more than one):
    // BufReader keeps reading until the newline, but never more than the cap allows. A
    // client that sends nothing for CLIENT_TIMEOUT makes recv fail with "timed out"
    // (SO_RCVTIMEO).
    BufReader::new(&mut *client)
        .take(cap as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") && line.len() < cap {
        return Ok(None); // read returned 0 (EOF) before a whole line: the client left
    }
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() > GREETING_MAX {
        client.send(LINE_TOO_LONG.as_bytes())?;
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(text).into_owned()))
}
