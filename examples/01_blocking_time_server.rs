//! Step 1: the lab's first server — a blocking, iterative TCP time-stream server.
//!
//! **What it teaches.** The shape every server starts from: `bind`, `listen`, then a loop of
//! `accept` → serve the client → close → next. Each call blocks the one thread until the
//! kernel has something for it. It works, for one client at a time — and that is the problem.
//! A session lasts `--ticks` × `--interval-ms` (a minute by default), and during that minute
//! the server is asleep in `sleep` or `write` on behalf of one client, while everybody else
//! waits.
//!
//! **Syscalls, in order** (seen with `strace -f`, Linux):
//! - `TcpListener::bind`: `socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC)`,
//!   `setsockopt(SO_REUSEADDR)` (std sets it, so a restart can rebind at once), `bind`,
//!   `listen(fd, 128)`; then `getsockname` to learn the port the OS chose for `--port 0`.
//! - per client: `accept4(…, SOCK_CLOEXEC)` (blocks), `setsockopt(SO_RCVTIMEO)` for the
//!   greeting timeout, `recvfrom` (std's `read` on a socket is `recv`, which is `recvfrom`),
//!   then per tick `sendto(…, MSG_NOSIGNAL)` (std's `write`) and `clock_nanosleep` between
//!   ticks, `shutdown(SHUT_WR)` after `Au Revoir`, `close`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 01_blocking_time_server -- --port 8080 --ticks 10
//! ```
//! It prints `listening time tcp 127.0.0.1:8080` on stdout (logs go to stderr); `--port 0`
//! lets the OS choose. Options: `--ticks N` (60), `--interval-ms MS` (1000).
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
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use inetloop::services::clock::TICK_FORMAT;

/// Longest greeting line accepted, not counting its `\r\n` (docs/PROTOCOLS.md §2).
const GREETING_MAX: usize = 1024;
/// How long a connected client may take to greet. Without it one silent client would hold
/// the whole server forever; with it, "only" this long.
const GREETING_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    port: u16,
    ticks: u32,
    interval: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("01_blocking_time_server: {message}");
            return ExitCode::from(2);
        }
    };
    // socket(AF_INET, SOCK_STREAM) + setsockopt(SO_REUSEADDR) + bind + listen, all in here.
    // From `listen` on, the kernel completes handshakes by itself and queues the new
    // connections in the listen backlog, whether or not we ever call `accept`.
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "01_blocking_time_server: cannot bind port {}: {e}",
                args.port
            );
            return ExitCode::from(1);
        }
    };
    if let Err(e) = announce(&listener) {
        eprintln!("01_blocking_time_server: {e}");
        return ExitCode::from(1);
    }
    loop {
        // accept4: blocks until the backlog holds a connection, then hands us its own socket.
        // While we are inside `serve` below, nobody calls accept: the next clients wait in
        // the backlog (their connect() already succeeded) and hear nothing.
        match listener.accept() {
            Ok((stream, peer)) => match serve(&stream, peer, &args) {
                Ok(()) => eprintln!("{peer}: session over"),
                // EPIPE / ECONNRESET: the client left. std writes with MSG_NOSIGNAL, so this is
                // an error value, not a SIGPIPE that kills us; that session ends, nothing else.
                Err(e) => eprintln!("{peer}: {e}"),
            },
            // EMFILE (out of descriptors) and friends: the listener is still fine. Wait a
            // little instead of retrying at once, which would fail again at full speed.
            Err(e) => {
                eprintln!("accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
        // `stream` was dropped at the end of the match arm: close(2).
    }
}

/// The stdout contract: one `listening …` line per socket, flushed before serving.
fn announce(listener: &TcpListener) -> io::Result<()> {
    let addr = listener.local_addr()?; // getsockname: the port the OS chose for port 0
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening time tcp {addr}")?;
    stdout.flush()
}

/// One whole session. Every call in here blocks, so the server does nothing else until it
/// returns: that is the problem this file exists to show.
fn serve(mut stream: &TcpStream, peer: SocketAddr, args: &Args) -> io::Result<()> {
    let Some(greeting) = read_greeting(stream)? else {
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
        stream.write_all(format!("{tick}\n").as_bytes())?;
    }
    stream.write_all(b"Au Revoir\n")?;
    // shutdown(SHUT_WR): FIN after the last byte. (Bytes the client sent after its greeting
    // are never read here; closing a socket with unread input makes Linux send RST instead,
    // which the reactor avoids by lingering — see src/connection.rs.)
    stream.shutdown(Shutdown::Write)
}

/// Reads the greeting line: `None` if the client left first, or sent a line longer than
/// [`GREETING_MAX`] (it is told so).
fn read_greeting(stream: &TcpStream) -> io::Result<Option<String>> {
    // SO_RCVTIMEO: a blocking read gives up after this long (EAGAIN, as `WouldBlock`).
    stream.set_read_timeout(Some(GREETING_TIMEOUT))?;
    let cap = GREETING_MAX + 2; // the line and its "\r\n"
    let mut line = Vec::new();
    // recv returns whatever has arrived (maybe half a line, maybe more than one):
    // BufReader keeps reading until the newline, but never more than the cap allows.
    BufReader::new(stream)
        .take(cap as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") && line.len() < cap {
        return Ok(None); // read returned 0 (EOF) before a whole line: the client left
    }
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() > GREETING_MAX {
        (&*stream).write_all(b"error: line too long\n")?;
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(text).into_owned()))
}

fn parse_args() -> Result<Args, String> {
    let mut args = pico_args::Arguments::from_env();
    let parsed = Args {
        port: flag(&mut args, "--port", 8080)?,
        ticks: flag(&mut args, "--ticks", 60)?,
        interval: Duration::from_millis(flag(&mut args, "--interval-ms", 1000)?),
    };
    match args.finish().first() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(parsed),
    }
}

/// `--name VALUE` parsed as `T`, or `default`; an error names the flag.
fn flag<T: FromStr>(
    args: &mut pico_args::Arguments,
    name: &'static str,
    default: T,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    args.opt_value_from_str(name)
        .map(|value| value.unwrap_or(default))
        .map_err(|e| format!("{name}: {e}"))
}
