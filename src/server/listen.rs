//! Binding a service's sockets: a TCP listener and a UDP socket on the same port number.
//!
//! `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen` for TCP; `socket`, `bind` for UDP (no
//! `listen`: there are no connections to queue). Both are made non-blocking before mio sees
//! them. Port 0 lets the OS choose; the UDP socket then takes the same number as the TCP one,
//! so a service has one port for both protocols, as docs/PROTOCOLS.md asks.

use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::{TcpListener, UdpSocket};
use socket2::{Domain, Protocol, Socket, Type};

use crate::services::ServiceKind;

/// Connections the kernel may complete and queue before we `accept` them (capped by
/// `net.core.somaxconn`). A burst of clients larger than this sees SYNs dropped and retried a
/// second later, so it is sized for bursts, not for the steady state.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Tries at finding a port free for both TCP and UDP when the OS chooses (port 0).
const BIND_ATTEMPTS: usize = 20;

/// Transport of a bound socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A socket the reactor serves on, as announced on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundSocket {
    pub kind: ServiceKind,
    pub proto: Proto,
    pub addr: SocketAddr,
}

impl std::fmt::Display for BoundSocket {
    /// The stdout contract: `listening <service> <tcp|udp> <ip:port>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listening {} {} {}",
            self.kind.name(),
            self.proto.name(),
            self.addr
        )
    }
}

/// A service's sockets could not be bound.
#[derive(Debug)]
pub struct BindError {
    pub what: String,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot bind {}: {}", self.what, self.source)
    }
}

impl std::error::Error for BindError {}

/// Binds TCP and UDP on the same port number; for port 0, retries until one is free for both.
///
/// With `reuse_port` (`SO_REUSEPORT`), several sockets — one per loop of `--threads` — may bind
/// the same address, and the kernel spreads connections and datagrams among them (by a hash
/// of the peer's address, so one UDP peer always reaches the same loop).
pub fn bind_pair(
    ip: IpAddr,
    kind: ServiceKind,
    port: u16,
    options: &ListenOptions,
) -> Result<(TcpListener, UdpSocket), BindError> {
    let reuse_port = options.reuse_port;
    let error = |proto: &str, port: u16, source| BindError {
        what: format!("{} {proto} {}", kind.name(), SocketAddr::new(ip, port)),
        source,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let listener =
            tcp_listener(SocketAddr::new(ip, port), options).map_err(|e| error("tcp", port, e))?;
        let chosen = listener
            .local_addr()
            .map_err(|e| error("tcp", port, e))?
            .port();
        match udp_socket(SocketAddr::new(ip, chosen), reuse_port) {
            Ok(udp) => return Ok((listener, udp)),
            // The OS picked a TCP port whose UDP twin is taken: pick again.
            Err(e)
                if port == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && attempts < BIND_ATTEMPTS => {}
            Err(e) => return Err(error("udp", chosen, e)),
        }
    }
}

/// Binds a TCP listener alone, for a service with no UDP side (the metrics endpoint).
pub fn bind_tcp(
    addr: SocketAddr,
    kind: ServiceKind,
    options: &ListenOptions,
) -> Result<TcpListener, BindError> {
    tcp_listener(addr, options).map_err(|source| BindError {
        what: format!("{} tcp {addr}", kind.name()),
        source,
    })
}

/// How listeners are made.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenOptions {
    /// `SO_REUSEPORT`, so other loops (`--threads`) can bind the same port.
    pub reuse_port: bool,
    /// `SO_SNDBUF` for every accepted connection (`--sndbuf`); `None` = autotuning.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` for every accepted connection (`--rcvbuf`); `None` = autotuning.
    pub receive_buffer: Option<usize>,
}

/// A non-blocking listener with a backlog of [`LISTEN_BACKLOG`] (mio's own `bind` uses 128).
///
/// The buffer sizes are set on the listener because Linux copies them, and the "size was set,
/// do not autotune" mark, into every socket `accept` returns — and because the receive buffer
/// must be known before the handshake, which advertises the window scale derived from it.
/// Without them the kernel grows each connection's buffers up to `tcp_rmem`/`tcp_wmem` max
/// (MiBs), and a peer that writes and never reads pins all of it.
fn tcp_listener(addr: SocketAddr, options: &ListenOptions) -> io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP, options.reuse_port)?;
    // Rebinding right after a restart must not wait for old connections' TIME_WAIT.
    socket.set_reuse_address(true)?;
    limit_buffers(&socket, options.send_buffer, options.receive_buffer)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Sets a listener's `SO_SNDBUF`/`SO_RCVBUF`, which its accepted sockets inherit (see
/// [`ListenOptions`]); `None` leaves the kernel's autotuning.
pub fn limit_buffers(
    socket: &Socket,
    send: Option<usize>,
    receive: Option<usize>,
) -> io::Result<()> {
    if let Some(bytes) = send {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = receive {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP, reuse_port)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// A non-blocking socket (`SOCK_CLOEXEC` too: socket2 sets it), optionally `SO_REUSEPORT`.
fn new_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    reuse_port: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        // IPv6 only: `::` must not take IPv4's port too, so `--bind 0.0.0.0 --bind ::` works
        // (and behaves the same whatever `net.ipv6.bindv6only` says).
        socket.set_only_v6(true)?;
    }
    // socket2 leaves sockets blocking; mio's `from_std` does not change that, and a blocking
    // socket would stall the whole loop in `accept` or `recv_from`.
    socket.set_nonblocking(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    Ok(socket)
}
