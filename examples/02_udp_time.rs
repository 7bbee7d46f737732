//! Step 2: the time stream over UDP — server and client in one file.
//!
//! **What it teaches.** UDP is connectionless: there is no `listen`, no `accept`, no
//! per-client socket. The server has one socket; `recv_from` hands it a datagram *and the
//! address it came from*, and `send_to` answers that address. A "session" exists only in the
//! server's head. Each datagram is a whole message (no newlines needed, none split or merged),
//! but any of them may be lost, so the client must never wait without a timeout. The server
//! is still iterative like step 1: one session at a time, everyone else queued in the socket's
//! receive buffer. Both sides use the lab's `Endpoint` (`src/client/endpoint.rs`):
//! `Endpoint::bind`, `recv_from`, `send_to`.
//!
//! **Syscalls** (seen with `strace -f -e trace=network,clock_nanosleep`, Linux):
//! - server: `socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC)`, `bind`, `setsockopt(SO_RCVTIMEO)`,
//!   `setsockopt(SO_SNDTIMEO)`, `getsockname`; then `recvfrom` (blocks; returns the greeting
//!   and the peer's address — after a minute without one it fails with `EAGAIN`, the
//!   `SO_RCVTIMEO` the `Endpoint` puts on every socket, and is simply called again), and per
//!   tick `sendto(…, peer)` followed by `clock_nanosleep`; a last `sendto` with `Au Revoir`.
//! - client: the same `socket`, `bind` to port 0 (the OS picks our port), `setsockopt`s and
//!   `getsockname`; `sendto` the greeting, then `recvfrom` until `Au Revoir`. With no server
//!   there, `recvfrom` just fails with `EAGAIN` when the timeout expires: an unconnected UDP
//!   socket is not told about the ICMP "port unreachable" that came back.
//!
//! **Run it.**
//! ```sh
//! cargo run --example 02_udp_time -- server --port 8080 --ticks 5
//! cargo run --example 02_udp_time -- client 127.0.0.1:8080      # in a second terminal
//! ```
//! The server prints `listening time udp 127.0.0.1:8080` (logs on stderr); `--port 0` lets the
//! OS choose. Server options: `--port PORT` (8080), `--ticks N` (60), `--interval-ms MS`
//! (1000). Client options: `--greeting TEXT` (Bonjour), `--interval-ms MS` (the server's
//! interval: the client waits at most 2 × interval + 500 ms for each datagram), then
//! `HOST:PORT` (127.0.0.1:8080). The client prints one line per datagram and exits 0 after
//! `Au Revoir`, 1 on a timeout.
//!
//! **Try.**
//! - `echo hi | nc -u -w1 127.0.0.1 8080`: the ticks come back run together, since a
//!   datagram carries no newline: the message boundary *is* the datagram.
//! - Start two clients at once: the second hears nothing while the first is served, and gives
//!   up after its timeout. Its greeting sits in the server's receive buffer meanwhile
//!   (`ss -uan '( sport = :8080 )'` shows a non-zero `Recv-Q`), and the server answers it
//!   later anyway — to a port nobody reads any more.
//! - Client against a port where nothing listens: `… client 127.0.0.1:9` times out.
mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use inetloop::client::endpoint::{Endpoint, EndpointError, Protocol};
use inetloop::services::clock::TICK_FORMAT;
use inetloop::services::time_stream::AU_REVOIR;

/// Room for one datagram: a greeting, a tick or `Au Revoir`. The kernel silently cuts a longer
/// datagram to fit (the rest is lost: UDP keeps message boundaries, it never splits one).
const DATAGRAM_MAX: usize = 1024;
/// How long the server's `recv_from` waits before the `Endpoint` reports "timed out" (it puts
/// a bound on every wait). For a server with nobody to serve that only means: wait again.
const SERVER_WAIT: Duration = Duration::from_secs(60);
/// The client's extra patience on top of two intervals (one lost tick, a slow machine).
const CLIENT_MARGIN: Duration = Duration::from_millis(500);

enum Command {
    Server {
        port: u16,
        ticks: u32,
        interval: Duration,
    },
    Client {
        server: String,
        greeting: String,
        interval: Duration,
    },
}

fn main() -> ExitCode {
    common::run(common::lesson!(), parse_args, |command| match command {
        Command::Server {
            port,
            ticks,
            interval,
        } => server(port, ticks, interval),
        Command::Client {
            server,
            greeting,
            interval,
        } => client(&server, &greeting, interval),
    })
}

fn parse_args(flags: &mut common::Flags) -> Result<Command, String> {
    match flags.subcommand()?.as_deref() {
        Some("server") => Ok(Command::Server {
            port: flags.value("--port", 8080)?,
            ticks: flags.value("--ticks", 60)?,
            interval: Duration::from_millis(flags.value("--interval-ms", 1000)?),
        }),
        Some("client") => Ok(Command::Client {
            greeting: flags.value("--greeting", "Bonjour".to_string())?,
            interval: Duration::from_millis(flags.value("--interval-ms", 1000)?),
            server: flags.free("HOST:PORT", "127.0.0.1:8080")?,
        }),
        Some(other) => Err(format!("unknown subcommand {other:?} (server or client)")),
        None => Err("missing subcommand: server or client".to_string()),
    }
}

/// Serves one session at a time, like step 1 — only there is no connection to accept.
fn server(port: u16, ticks: u32, interval: Duration) -> Result<(), String> {
    // socket(AF_INET, SOCK_DGRAM) + bind. No listen, no accept: a UDP socket has no
    // connections, only datagrams, each stamped with the address it came from.
    let socket =
        Endpoint::bind(Protocol::Udp, "127.0.0.1", port, SERVER_WAIT).map_err(|e| e.to_string())?;
    common::announce([format!("listening time udp {}", socket.local())])?;

    let mut buf = [0u8; DATAGRAM_MAX];
    loop {
        // recvfrom: blocks until a datagram arrives from anyone; `peer` is the only thing
        // that tells this client apart from the next.
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if is_timeout(&e) => continue, // a quiet minute: wait again
            Err(e) => {
                eprintln!("{e}");
                continue;
            }
        };
        let greeting = String::from_utf8_lossy(&buf[..len]);
        eprintln!("{peer}: greeting {greeting:?}");
        // While this session runs, datagrams from other peers queue in the socket's receive
        // buffer (`ss -uan` shows its Recv-Q grow); once it is full the kernel drops them.
        // A second datagram from the same peer starts a second session afterwards.
        match session(&socket, peer, ticks, interval) {
            Ok(()) => eprintln!("{peer}: session over"),
            Err(e) => eprintln!("{e}"),
        }
    }
}

fn session(
    socket: &Endpoint,
    peer: SocketAddr,
    ticks: u32,
    interval: Duration,
) -> Result<(), EndpointError> {
    for k in 0..ticks {
        if k > 0 {
            thread::sleep(interval);
        }
        // sendto: one datagram per tick, just the time text (no newline: a datagram is already
        // a message). It "succeeds" once the datagram is queued; whether it ever arrives, and
        // whether anybody is listening there, UDP never says.
        let tick = chrono::Local::now().format(TICK_FORMAT).to_string();
        socket.send_to(tick.as_bytes(), peer)?;
    }
    socket.send_to(AU_REVOIR.as_bytes(), peer)
}

/// Greets `server` and prints each datagram until `Au Revoir`.
fn client(server: &str, greeting: &str, interval: Duration) -> Result<(), String> {
    // getaddrinfo, for a name like localhost:8080.
    let server = server
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve {server:?}"))?;
    // Port 0 on the wildcard address of the server's family: the OS picks our port, and
    // that (ip, port) is how the server will address its answers.
    let wildcard = if server.is_ipv4() { "0.0.0.0" } else { "::" };
    // The longest a healthy session stays silent is one interval; allow one lost tick and a
    // margin. Without a timeout a lost `Au Revoir` (UDP may drop any datagram) or a server
    // that is not there would leave us blocked in recvfrom forever.
    let patience = interval * 2 + CLIENT_MARGIN;
    let socket = Endpoint::bind(Protocol::Udp, wildcard, 0, patience).map_err(|e| e.to_string())?;
    socket
        .send_to(greeting.as_bytes(), server)
        .map_err(|e| e.to_string())?;

    let mut buf = [0u8; DATAGRAM_MAX];
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // EAGAIN after SO_RCVTIMEO. On this unconnected socket an ICMP "port unreachable"
            // is not reported either (a connect()ed UDP socket would get ECONNREFUSED), so a
            // missing server looks exactly like silence.
            Err(e) if is_timeout(&e) => {
                return Err(format!("no datagram from {server} within {patience:?}"));
            }
            Err(e) => return Err(e.to_string()),
        };
        // Anyone can send to our port; only the server's datagrams belong to this session.
        if from != server {
            eprintln!("ignoring a datagram from {from}");
            continue;
        }
        let text = String::from_utf8_lossy(&buf[..len]);
        writeln!(io::stdout(), "{text}").map_err(|e| format!("stdout: {e}"))?;
        if text == AU_REVOIR {
            return Ok(());
        }
    }
}

/// The `Endpoint` reports an expired `SO_RCVTIMEO` (`EAGAIN`) as "timed out".
fn is_timeout(error: &EndpointError) -> bool {
    error.kind() == io::ErrorKind::TimedOut
}
