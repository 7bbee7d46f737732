//! Step 3: the lab's "mono-service" concurrency — one thread per client.
//!
//! **What it teaches.** The quickest cure for step 1: keep every blocking call, but give each
//! accepted connection a thread of its own, so a sleeping or slow client stops only itself.
//! Two services run side by side — the time stream and echo (RFC 862: every byte back) — each
//! with its own listener and acceptor thread. The code stays simple and straight-line; the
//! price is paid in threads.
//!
//! **Syscalls** (seen with `strace -f`, Linux):
//! - start: per listener `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen(fd, 128)`,
//!   `getsockname`; then one acceptor thread each (`mmap` of a 2 MiB + 4 KiB stack with
//!   `MAP_STACK`, `mprotect`, `clone3`).
//! - per client, on the acceptor: `accept4` returns, then `clone3` for the client's thread
//!   (glibc reuses the stack of a thread that has ended, so `mmap` only when none is cached).
//! - on the client's thread: `setsockopt(TCP_NODELAY)`, `setsockopt(SO_RCVTIMEO)`,
//!   `setsockopt(SO_SNDTIMEO)`; time: `recvfrom` (greeting), `sendto` + `clock_nanosleep` per
//!   tick, `shutdown(SHUT_WR)`, `close`; echo: `recvfrom` (16 KiB) / `sendto` pairs until
//!   `recvfrom` returns 0, `shutdown(SHUT_WR)`, `close`; then the thread's `exit`.
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
//!   threads). Then connect many idle clients, e.g. in Python:
//!   `import socket; s=[socket.create_connection(('127.0.0.1',8080)) for _ in range(1000)]`
//!   and greet each with `x.sendall(b'hi\n')`, and read the status again. Measured on the
//!   project's machine with 1000 time clients: `Threads` 2 → 1002, `VmRSS` 2.5 MiB → 25 MiB
//!   (about 23 KiB per client: the stack pages it touched and its share of the heap; the
//!   kernel's own stack and task struct per thread come on top and are not in `VmRSS`),
//!   `VmSize` 70 MiB → 3 GiB of address space (2 MiB of stack reserved per thread). The `reactor` serving the same 1000 clients: one
//!   thread, `VmRSS` 2.6 MiB. Each echo client adds its 16 KiB buffer to the touched stack.
//!
//! **Where it breaks.** Every client is a thread, so the limits are the system's thread
//! limits, well before the network's: `ulimit -u` (RLIMIT_NPROC), `/proc/sys/kernel/threads-max`,
//! `/proc/sys/kernel/pid_max` (32768 here: threads take pids), `/proc/sys/vm/max_map_count`
//! (65530: each stack is two mappings, stack and guard page); past them `clone3` fails with
//! `EAGAIN` and that client is dropped. `ulimit -n` (descriptors) caps clients too: `accept4`
//! fails with `EMFILE`, which here is logged and retried 100 ms later — it must not end the
//! acceptor, since the server recovers as soon as a client leaves. Long before any limit, a
//! thread per client means a context switch per tick or per read, and a stack to spawn and
//! tear down per connection. Steps 4–6 serve everyone from one thread instead.
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use inetloop::services::clock::TICK_FORMAT;

/// Longest greeting line accepted, not counting its `\r\n` (docs/PROTOCOLS.md §2).
const GREETING_MAX: usize = 1024;
/// Echo's read buffer. It lives on the connection's thread stack, so it is part of the
/// per-thread memory cost; 16 KiB moves bulk data in few system calls.
const ECHO_BUFFER: usize = 16 * 1024;
/// A client that neither sends nor reads for this long is closed (the reactor's default
/// `--idle-timeout-ms`). Without it a silent client would hold a thread forever.
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("03_thread_per_client: {message}");
            return ExitCode::from(2);
        }
    };
    let mut listeners = Vec::new();
    for &(service, port) in &args.services {
        match TcpListener::bind((args.bind, port)) {
            Ok(listener) => listeners.push((service, listener)),
            Err(e) => {
                eprintln!(
                    "03_thread_per_client: cannot bind {} {}: {e}",
                    service.name(),
                    SocketAddr::new(args.bind, port)
                );
                return ExitCode::from(1);
            }
        }
    }
    if let Err(e) = announce(&listeners) {
        eprintln!("03_thread_per_client: stdout: {e}");
        return ExitCode::from(1);
    }
    // One acceptor thread per listener; each accepted client gets a thread of its own.
    thread::scope(|scope| {
        for (service, listener) in &listeners {
            scope.spawn(move || accept_forever(listener, *service));
        }
    });
    ExitCode::SUCCESS // not reached: the acceptors never return
}

/// The stdout contract: one `listening …` line per socket, flushed before serving.
fn announce(listeners: &[(Service, TcpListener)]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    for (service, listener) in listeners {
        writeln!(
            stdout,
            "listening {} tcp {}",
            service.name(),
            listener.local_addr()?
        )?;
    }
    stdout.flush()
}

fn accept_forever(listener: &TcpListener, service: Service) {
    loop {
        match listener.accept() {
            // clone3: a new thread with its own stack (mmap'd, 2 MiB of address space by
            // default, of which only the pages it touches become resident).
            Ok((stream, peer)) => {
                if let Err(e) = thread::Builder::new().spawn(move || serve(stream, peer, service)) {
                    // EAGAIN: out of threads (ulimit -u, threads-max, or memory for a stack).
                    // The closure, and with it the stream, is dropped: that client is closed.
                    eprintln!("{peer}: cannot start a thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("{} accept: {e}", service.name());
                thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// The whole life of one connection, on its own thread: blocking calls are fine here, they
/// only stop this client.
fn serve(stream: TcpStream, peer: SocketAddr, service: Service) {
    let served = configure(&stream).and_then(|()| match service {
        Service::Time { ticks, interval } => time_stream(&stream, peer, ticks, interval),
        Service::Echo => echo(&stream),
    });
    match served {
        Ok(()) => {}
        // EAGAIN after SO_RCVTIMEO / SO_SNDTIMEO: the client neither sent nor read.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            eprintln!("{peer}: idle for {IDLE_TIMEOUT:?}, closing");
        }
        // EPIPE / ECONNRESET: the client left. Only this thread ends.
        Err(e) => eprintln!("{peer}: {e}"),
    }
    // `stream` is dropped here: close(2). Then the thread exits and its stack is freed.
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // setsockopt(TCP_NODELAY): replies go out at once instead of Nagle waiting for the
    // previous segment's ACK to batch small writes.
    stream.set_nodelay(true)?;
    // setsockopt(SO_RCVTIMEO / SO_SNDTIMEO): a blocking call fails with EAGAIN after this long.
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))
}

/// RFC 862: every byte back, in order, until the client's FIN.
fn echo(mut stream: &TcpStream) -> io::Result<()> {
    let mut buf = [0u8; ECHO_BUFFER];
    loop {
        let len = match stream.read(&mut buf) {
            Ok(0) => break, // FIN: the client sends no more
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Blocks while the client is not reading (its window is full): that stalls this
        // client only, and stops us reading it: backpressure, for free.
        stream.write_all(&buf[..len])?;
    }
    // Everything read was written back: FIN after the last byte.
    stream.shutdown(Shutdown::Write)
}

/// Step 1's session, unchanged: greeting, ticks with `sleep`, `Au Revoir`.
fn time_stream(
    mut stream: &TcpStream,
    peer: SocketAddr,
    ticks: u32,
    interval: Duration,
) -> io::Result<()> {
    let Some(greeting) = read_greeting(stream)? else {
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
        stream.write_all(format!("{tick}\n").as_bytes())?;
    }
    stream.write_all(b"Au Revoir\n")?;
    stream.shutdown(Shutdown::Write)
}

/// The greeting line, or `None` if the client left first or sent a line longer than
/// [`GREETING_MAX`] (it is told so).
fn read_greeting(stream: &TcpStream) -> io::Result<Option<String>> {
    let cap = GREETING_MAX + 2; // the line and its "\r\n"
    let mut line = Vec::new();
    BufReader::new(stream)
        .take(cap as u64)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") && line.len() < cap {
        return Ok(None); // EOF before a whole line
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
    let bind = flag(&mut args, "--bind", IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let time = flag(&mut args, "--time", Port::On(8080))?;
    let echo = flag(&mut args, "--echo", Port::On(8081))?;
    let ticks = flag(&mut args, "--ticks", 60)?;
    let interval = Duration::from_millis(flag(&mut args, "--interval-ms", 1000)?);
    if let Some(extra) = args.finish().first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
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
