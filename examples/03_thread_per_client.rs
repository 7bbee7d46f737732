//! Step 3: the lab's "mono-service" concurrency — one thread per client.
//!
//! **What it teaches.** The quickest cure for step 1: keep every blocking call, but give each
//! accepted connection a thread of its own, so a sleeping or slow client stops only itself.
//! Two services run side by side — the time stream and echo (RFC 862: every byte back) — each
//! with its own listener and acceptor thread. The code stays simple and straight-line; the
//! price is paid in threads. The sockets are the lab's `Endpoint` (`src/client/endpoint.rs`):
//! `Endpoint::bind`, `accept`, `recv`, `send`, each client with an idle timeout.
//!
//! **Syscalls** (seen with `strace -f`, Linux):
//! - start: per listener `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen(fd, 128)`,
//!   `getsockname`; then one acceptor thread each (`mmap` of a 2 MiB + 4 KiB stack with
//!   `MAP_STACK`, `mprotect`, `clone3`).
//! - per client, on the acceptor: `accept4` returns, `setsockopt(SO_RCVTIMEO)`,
//!   `setsockopt(SO_SNDTIMEO)` and `getsockname` (the `Endpoint`'s idle timeout and address),
//!   then `clone3` for the client's thread (glibc reuses the stack of a thread that has
//!   ended, so `mmap` only when none is cached).
//! - on the client's thread: `mmap` + `mprotect` of a 12 KiB signal stack (Rust's guard
//!   against stack overflow), `setsockopt(TCP_NODELAY)`; time: `recvfrom` (greeting),
//!   `sendto` + `clock_nanosleep` per tick, `shutdown(SHUT_WR)`, `close`; echo: `recvfrom`
//!   (16 KiB) / `sendto` pairs until `recvfrom` returns 0, `shutdown(SHUT_WR)`, `close`; then
//!   the thread's `exit`.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 03_thread_per_client -- --time 8080 --echo 8081
//! ```
//! Usage: `03_thread_per_client --time PORT|off --echo PORT|off --ticks N --interval-ms MS
//! [--bind IP]` (defaults 8080, 8081, 60, 1000, 127.0.0.1; port 0 lets the OS choose). It
//! prints `listening time tcp …` and `listening echo tcp …` on stdout; logs go to stderr.
//!
//! **Try.**
//! - `nc 127.0.0.1 8080` in two terminals at once: both get their ticks now.
//! - `echo hello | nc -N 127.0.0.1 8081` (`-N`: send FIN at end of input, so we finish).
//! - Measure the cost. With the server's pid in `$PID`:
//!   `grep -E 'VmRSS|VmSize|Threads' /proc/$PID/status` (and `ls /proc/$PID/task` lists the
//!   threads). Then connect 1000 clients that greet and stay, e.g.
//!   `python3 -c "import socket,time; s=[socket.create_connection(('127.0.0.1',8080)) for _ in
//!   range(1000)]; [x.sendall(b'hi\n') for x in s]; time.sleep(60)"`, and read the status
//!   again. Measured on the project's machine (Linux, glibc, 2 cores; three runs, debug build
//!   as above): `Threads` 3 → 1003 (main, two acceptors, a thread per client), `VmRSS`
//!   2.5 MiB → 28.3 MiB (about 26 KiB per client: the stack pages it touched and its share of
//!   the heap; the kernel's own stack and task struct per thread come on top and are not in
//!   `VmRSS`), `VmSize` 136 MiB → 2.9 GiB of address space (`/proc/$PID/maps`: a 2 MiB stack
//!   per thread, 2 GiB in all, and 0.9 GiB for glibc's malloc arenas, 64 MiB reserved each,
//!   one per thread up to 8 per core). A release build is within 0.5 MiB of these. The
//!   `reactor` (release) serving the same 1000 clients: one thread, `VmRSS` 2.7–2.9 MiB. Each
//!   echo client adds its 16 KiB buffer to the touched stack.
//!
//! **Where it breaks.** Every client is a thread, so the limits are the system's thread
//! limits, well before the network's: `ulimit -u` (RLIMIT_NPROC), `/proc/sys/kernel/threads-max`,
//! `/proc/sys/kernel/pid_max` (32768 here: threads take pids), `/proc/sys/vm/max_map_count`
//! (65530 here, and each thread takes four mappings — its stack, the stack's guard page,
//! Rust's signal stack and its guard — so about 16,000 threads); past them `clone3` fails with
//! `EAGAIN` and that client is dropped. `ulimit -n` (descriptors) caps clients too: `accept4`
//! fails with `EMFILE`, which here is logged and retried 100 ms later — it must not end the
//! acceptor, since the server recovers as soon as a client leaves. Long before any limit, a
//! thread per client means a context switch per tick or per read, and a stack to spawn and
//! tear down per connection. Steps 4–6 serve everyone from one thread instead.
mod common;

use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use inetloop::client::endpoint::{Endpoint, Protocol};
use inetloop::services::clock::TICK_FORMAT;
use inetloop::services::time_stream::{AU_REVOIR, GREETING_MAX, LINE_TOO_LONG};

/// Echo's read buffer. It lives on the connection's thread stack, so it is part of the
/// per-thread memory cost; 16 KiB moves bulk data in few system calls.
const ECHO_BUFFER: usize = 16 * 1024;
/// A client that neither sends nor reads for this long is closed (the reactor's default
/// `--idle-timeout-ms`): every accepted `Endpoint` gets it as its read and write timeout.
/// Without it a silent client would hold a thread forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a failed `accept` (typically `EMFILE`: out of descriptors), wait this long before
/// trying again: retrying at once would fail again at full speed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum Service {
    Time { ticks: u32, interval: Duration },
    Echo,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Time { .. } => "time",
            Service::Echo => "echo",
        }
    }
}

struct Args {
    bind: IpAddr,
    /// The services that are on, with their port (0: the OS chooses).
    services: Vec<(Service, u16)>,
}

fn main() -> ExitCode {
    common::run(common::lesson!(), parse_args, serve)
}

fn serve(args: Args) -> Result<(), String> {
    let mut listeners = Vec::new();
    for &(service, port) in &args.services {
        // socket + SO_REUSEADDR + bind + listen, as in step 1.
        let listener = Endpoint::bind(Protocol::Tcp, &args.bind.to_string(), port, IDLE_TIMEOUT)
            .map_err(|e| format!("{}: {e}", service.name()))?;
        listeners.push((service, listener));
    }
    common::announce(listeners.iter().map(|(service, listener)| {
        format!("listening {} tcp {}", service.name(), listener.local())
    }))?;
    // One acceptor thread per listener; each accepted client gets a thread of its own.
    thread::scope(|scope| {
        for (service, listener) in &listeners {
            scope.spawn(move || accept_forever(listener, *service));
        }
    });
    Ok(()) // not reached: the acceptors never return
}

fn accept_forever(listener: &Endpoint, service: Service) {
    loop {
        match listener.accept() {
            // clone3: a new thread with its own stack (mmap'd, 2 MiB of address space by
            // default, of which only the pages it touches become resident).
            Ok((client, peer)) => {
                if let Err(e) =
                    thread::Builder::new().spawn(move || serve_client(client, peer, service))
                {
                    // EAGAIN: out of threads (ulimit -u, threads-max, or memory for a stack).
                    // The closure, and with it the client, is dropped: that client is closed.
                    eprintln!("{peer}: cannot start a thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// The whole life of one connection, on its own thread: blocking calls are fine here, they
/// only stop this client.
fn serve_client(client: Endpoint, peer: SocketAddr, service: Service) {
    // setsockopt(TCP_NODELAY): replies go out at once instead of Nagle waiting for the
    // previous segment's ACK to batch small writes.
    let served = client
        .set_nodelay(true)
        .map_err(io::Error::from)
        .and_then(|()| match service {
            Service::Time { ticks, interval } => time_stream(client, peer, ticks, interval),
            Service::Echo => echo(client),
        });
    // "read from 127.0.0.1:41234: timed out" (IDLE_TIMEOUT), or EPIPE / ECONNRESET: the
    // client left. Only this thread ends.
    if let Err(e) = served {
        eprintln!("{e}");
    }
    // The client was dropped in `time_stream` or `echo`: close(2). Then the thread exits and
    // its stack is freed.
}

/// RFC 862: every byte back, in order, until the client's FIN.
fn echo(mut client: Endpoint) -> io::Result<()> {
    let mut buf = [0u8; ECHO_BUFFER];
    loop {
        let len = client.recv(&mut buf)?;
        if len == 0 {
            break; // FIN: the client sends no more
        }
        // Blocks while the client is not reading (its window is full): that stalls this
        // client only, and stops us reading it: backpressure, for free.
        client.send(&buf[..len])?;
    }
    // Everything read was written back: FIN after the last byte.
    Ok(client.shutdown_write()?)
}

/// Step 1's session, unchanged: greeting, ticks with `sleep`, `Au Revoir`.
fn time_stream(
    mut client: Endpoint,
    peer: SocketAddr,
    ticks: u32,
    interval: Duration,
) -> io::Result<()> {
    let Some(greeting) = read_greeting(&mut client)? else {
        return Ok(());
    };
    eprintln!("{peer}: greeting {greeting:?}");
    for k in 0..ticks {
        if k > 0 {
            thread::sleep(interval); // only this client's thread sleeps now
        }
        let tick = chrono::Local::now().format(TICK_FORMAT);
        // After a client left, the first write still succeeds (its kernel answers with
        // RST); the next fails with EPIPE or ECONNRESET, and that ends the thread.
        client.send(format!("{tick}\n").as_bytes())?;
    }
    client.send(format!("{AU_REVOIR}\n").as_bytes())?;
    Ok(client.shutdown_write()?)
}

/// The greeting line, or `None` if the client left first or sent a line longer than
/// [`GREETING_MAX`] (it is told so).
fn read_greeting(client: &mut Endpoint) -> io::Result<Option<String>> {
    let cap = GREETING_MAX + 2; // the line and its "\r\n"
    let mut line = Vec::new();
    BufReader::new(&mut *client)
        .take(cap as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") && line.len() < cap {
        return Ok(None); // EOF before a whole line
    }
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() > GREETING_MAX {
        client.send(LINE_TOO_LONG.as_bytes())?;
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(text).into_owned()))
}

fn parse_args(flags: &mut common::Flags) -> Result<Args, String> {
    let bind = flags.value("--bind", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let time = flags.value("--time", Port::On(8080))?;
    let echo = flags.value("--echo", Port::On(8081))?;
    let ticks = flags.value("--ticks", 60)?;
    let interval = Duration::from_millis(flags.value("--interval-ms", 1000)?);
    let services: Vec<(Service, u16)> = [
        (Service::Time { ticks, interval }, time),
        (Service::Echo, echo),
    ]
    .into_iter()
    .filter_map(|(service, port)| match port {
        Port::On(port) => Some((service, port)),
        Port::Off => None,
    })
    .collect();
    if services.is_empty() {
        return Err("both services are off: nothing to serve".to_string());
    }
    Ok(Args { bind, services })
}

/// A service's port on the command line: a number (0: the OS chooses) or `off`.
#[derive(Clone, Copy)]
enum Port {
    On(u16),
    Off,
}

impl FromStr for Port {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Port::Off);
        }
        text.parse()
            .map(Port::On)
            .map_err(|_| format!("{text:?} is not a port number (0-65535) or off"))
    }
}
