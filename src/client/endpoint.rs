//! Blocking sockets with timeouts, and errors that say what failed and where.
//!
//! This is the Rust successor of the C lab's `Endpoint` wrapper. The C version kept a
//! descriptor and a `struct sockaddr` and called `getaddrinfo`, `socket`, `connect`, `bind`,
//! `listen`, `accept`, `send`, `recv` and `close` itself. Here `std::net` makes those calls, and
//! this module adds what the lab had to remember by hand:
//!
//! - **Name resolution.** A host name is resolved with `getaddrinfo` (through
//!   [`ToSocketAddrs`]); it may give several addresses (`localhost` is often `::1` and
//!   `127.0.0.1`), so a TCP connect tries each in turn until one answers.
//! - **A bound on every wait.** A TCP connect is a non-blocking `connect` followed by `poll`
//!   with the timeout (that is what [`TcpStream::connect_timeout`] does). Every socket gets
//!   `SO_RCVTIMEO` and `SO_SNDTIMEO`, so a silent peer makes `recv` fail with "timed out"
//!   instead of blocking forever.
//! - **Connected UDP.** `connect` on a UDP socket sends nothing: it records the peer, so the
//!   kernel drops datagrams from anyone else, and an ICMP "port unreachable" for an earlier
//!   datagram comes back as "connection refused" on the next `recv`.
//! - **Errors with context.** [`EndpointError`] reads like `connect to example.org:80:
//!   connection refused` or `read from 127.0.0.1:8080: timed out`. Library code never exits the
//!   process: the binaries decide what to print and which status to return.
//! - **`close`** happens when the [`Endpoint`] is dropped.
//!
//! The clients (`time-client`, `echo-client`, `http-client`) connect with it; the server side
//! ([`Endpoint::bind`], [`Endpoint::accept`], [`Endpoint::recv_from`], [`Endpoint::send_to`])
//! is what the lab's blocking servers were written on, and so are the blocking examples:
//! steps 1 and 3 (TCP) and step 2 (UDP, both sides) in `examples/`.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket,
};
use std::time::Duration;

/// The transport an endpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A byte stream: connect, then read and write until one side closes.
    Tcp,
    /// Datagrams: each `send` is one datagram, each `recv` returns one.
    Udp,
}

/// A failed socket operation: what was attempted, on which address, and why.
#[derive(Debug)]
pub struct EndpointError {
    /// What was attempted and on what, e.g. `connect to example.org:80`.
    context: String,
    /// Why it failed, as the OS (or one of our checks) reported it.
    source: io::Error,
}

impl EndpointError {
    fn new(context: impl Into<String>, source: io::Error) -> Self {
        // A blocking socket reports an expired SO_RCVTIMEO/SO_SNDTIMEO as EAGAIN, which Rust
        // calls WouldBlock. On these sockets it can only mean the timeout, so say that.
        let source = if source.kind() == io::ErrorKind::WouldBlock {
            io::Error::from(io::ErrorKind::TimedOut)
        } else {
            source
        };
        EndpointError {
            context: context.into(),
            source,
        }
    }

    fn invalid(context: impl Into<String>, why: &str) -> Self {
        Self::new(
            context,
            io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
        )
    }

    /// The kind of the underlying error, so a caller can tell a timeout from a refusal.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, describe(&self.source))
    }
}

impl Error for EndpointError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Lets an endpoint error travel through `io::Read`/`io::Write` with its context intact.
impl From<EndpointError> for io::Error {
    fn from(err: EndpointError) -> Self {
        io::Error::new(err.kind(), err)
    }
}

/// An OS error's `Display` reads "Connection refused (os error 111)"; in a one-line message
/// the errno number helps nobody, so this gives "connection refused".
pub(crate) fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let Some(code) = err.raw_os_error() else {
        return text;
    };
    let text = text.trim_end_matches(&format!(" (os error {code})"));
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Writes `host` as URLs and `Host` headers do: an IPv6 address in brackets, so its own colons
/// are not mistaken for a port separator.
pub fn bracketed(host: &str) -> Cow<'_, str> {
    if host.contains(':') {
        Cow::Owned(format!("[{host}]"))
    } else {
        Cow::Borrowed(host)
    }
}

/// Writes `host` and `port` as URLs and messages do: `example.org:80`, `[::1]:80`.
pub fn join_host_port(host: &str, port: u16) -> String {
    format!("{}:{port}", bracketed(host))
}

/// Splits `HOST:PORT`, `[IPv6]:PORT`, or (with a `default_port`) a bare `HOST` or `[IPv6]`.
///
/// The host comes back without brackets, ready for [`Endpoint::connect`]. A bare IPv6 address
/// (`::1`) is taken whole, as there is no telling its last group from a port; write `[::1]:80`.
/// Host names are limited to letters, digits, `-`, `.` and `_`, so nothing that could break a
/// request line or a `Host` header gets through.
pub fn parse_host_port(
    text: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), EndpointError> {
    let fail = |why: &str| EndpointError::invalid(format!("invalid address {text:?}"), why);
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| fail("missing ']' after the IPv6 address"))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(fail("invalid IPv6 address in brackets"));
        }
        match after {
            "" => (inside, None),
            _ => (
                inside,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| fail("expected ':' after ']'"))?,
                ),
            ),
        }
    } else if text.parse::<Ipv6Addr>().is_ok() {
        (text, None)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(fail("missing host"));
    }
    let plain_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.contains(':') && !host.chars().all(plain_name) {
        return Err(fail("invalid character in host name"));
    }
    let port = match port {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
            .parse()
            .map_err(|_| fail("port must be a number from 0 to 65535"))?,
        Some(_) => return Err(fail("port must be a number from 0 to 65535")),
        None => default_port.ok_or_else(|| fail("missing port (expected HOST:PORT)"))?,
    };
    Ok((host.to_owned(), port))
}

/// The socket inside an [`Endpoint`].
#[derive(Debug)]
enum Socket {
    Stream(TcpStream),
    Datagram(UdpSocket),
    /// A listener keeps the timeout it gives to the connections it accepts.
    Listener(TcpListener, Duration),
}

/// One socket: a TCP connection, a UDP socket, or a TCP listener.
#[derive(Debug)]
pub struct Endpoint {
    socket: Socket,
    /// Our own address: tells the port the OS chose for port 0, and names a bound socket in
    /// error messages.
    local: SocketAddr,
    /// The other side of a connected socket, named in error messages; `None` for a listener or
    /// an unconnected UDP socket.
    peer: Option<SocketAddr>,
}

impl Endpoint {
    /// Resolves `host`, connects to `port` there, and gives every later read and write
    /// `timeout`.
    ///
    /// For TCP each resolved address is tried in turn, each with the whole `timeout` (a name
    /// rarely has more than two); the error reports the last address's failure. For UDP the
    /// socket is bound to an ephemeral port of the first address's family and connected.
    pub fn connect(
        protocol: Protocol,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, EndpointError> {
        let target = join_host_port(host, port);
        let context = format!("connect to {target}");
        let mut last_error = None;
        for addr in resolve(host, port)? {
            let attempt = match protocol {
                Protocol::Tcp => TcpStream::connect_timeout(&addr, timeout).map(Socket::Stream),
                Protocol::Udp => connect_udp(addr).map(Socket::Datagram),
            }
            .and_then(|socket| Self::from_socket(socket, Some(addr), timeout));
            match attempt {
                Ok(endpoint) => return Ok(endpoint),
                Err(err) => last_error = Some(err),
            }
        }
        let err = last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound));
        Err(EndpointError::new(context, err))
    }

    /// [`Endpoint::connect`] over TCP.
    pub fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<Self, EndpointError> {
        Self::connect(Protocol::Tcp, host, port, timeout)
    }

    /// [`Endpoint::connect`] over UDP: a socket that sends to and hears from one peer only.
    pub fn udp_connected(host: &str, port: u16, timeout: Duration) -> Result<Self, EndpointError> {
        Self::connect(Protocol::Udp, host, port, timeout)
    }

    /// Binds `host:port` (port 0: the OS chooses; see [`Endpoint::local`]). TCP also listens,
    /// and the connections [`Endpoint::accept`] returns get `timeout`; a UDP socket gets it
    /// itself, for [`Endpoint::recv_from`].
    pub fn bind(
        protocol: Protocol,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, EndpointError> {
        let context = format!("bind {}", join_host_port(host, port));
        let addr = resolve(host, port)?
            .into_iter()
            .next()
            .ok_or_else(|| EndpointError::invalid(&context, "no address"))?;
        match protocol {
            // std's `bind` for TCP is `socket` + `SO_REUSEADDR` + `bind` + `listen(128)`.
            Protocol::Tcp => TcpListener::bind(addr).map(|l| Socket::Listener(l, timeout)),
            Protocol::Udp => UdpSocket::bind(addr).map(Socket::Datagram),
        }
        .and_then(|socket| Self::from_socket(socket, None, timeout))
        .map_err(|err| EndpointError::new(context, err))
    }

    /// Waits for the next connection on a listener, as long as it takes (waiting for clients
    /// is what a listener is for), and returns it with the listener's timeout, and the
    /// client's address (as `accept(2)` fills it in).
    pub fn accept(&self) -> Result<(Endpoint, SocketAddr), EndpointError> {
        let context = format!("accept on {}", self.local);
        let Socket::Listener(listener, timeout) = &self.socket else {
            return Err(EndpointError::invalid(context, "not a TCP listener"));
        };
        listener
            .accept()
            .and_then(|(stream, peer)| {
                let endpoint = Self::from_socket(Socket::Stream(stream), Some(peer), *timeout)?;
                Ok((endpoint, peer))
            })
            .map_err(|err| EndpointError::new(context, err))
    }

    /// Sends all of `data`: on TCP, as many `write` calls as it takes; on connected UDP, one
    /// datagram.
    pub fn send(&mut self, data: &[u8]) -> Result<(), EndpointError> {
        let result = match &mut self.socket {
            Socket::Stream(stream) => stream.write_all(data),
            Socket::Datagram(socket) => socket.send(data).map(drop),
            Socket::Listener(..) => Err(not_connected()),
        };
        result.map_err(|err| EndpointError::new(format!("write to {}", self.name()), err))
    }

    /// Receives into `buf`: on TCP, what has arrived (0 means the peer closed its side); on
    /// UDP, one datagram (0 is a valid empty datagram). Fails with "timed out" when nothing
    /// comes within the read timeout.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, EndpointError> {
        let result = loop {
            let result = match &mut self.socket {
                Socket::Stream(stream) => stream.read(buf),
                Socket::Datagram(socket) => socket.recv(buf),
                Socket::Listener(..) => Err(not_connected()),
            };
            // A signal handler interrupted the call before anything arrived: just retry.
            match result {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        result.map_err(|err| EndpointError::new(format!("read from {}", self.name()), err))
    }

    /// Receives one datagram on a UDP socket and says who sent it.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), EndpointError> {
        let context = format!("receive on {}", self.local);
        match &self.socket {
            Socket::Datagram(socket) => socket.recv_from(buf),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a UDP socket",
            )),
        }
        .map_err(|err| EndpointError::new(context, err))
    }

    /// Sends one datagram to `to` from a UDP socket.
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), EndpointError> {
        let context = format!("send to {to}");
        match &self.socket {
            Socket::Datagram(socket) => socket.send_to(data, to).map(drop),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a UDP socket",
            )),
        }
        .map_err(|err| EndpointError::new(context, err))
    }

    /// Changes how long a read may wait (e.g. a client that waits longer for the first reply).
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), EndpointError> {
        let context = format!("set read timeout on {}", self.name());
        match &self.socket {
            Socket::Stream(stream) => stream.set_read_timeout(Some(timeout)),
            Socket::Datagram(socket) => socket.set_read_timeout(Some(timeout)),
            Socket::Listener(..) => Err(not_connected()),
        }
        .map_err(|err| EndpointError::new(context, err))
    }

    /// Sends every write at once (`setsockopt(TCP_NODELAY)`) instead of letting Nagle's
    /// algorithm hold a small segment back until the previous one is acknowledged: for a
    /// server whose small replies must not wait. TCP connections only.
    pub fn set_nodelay(&self, on: bool) -> Result<(), EndpointError> {
        match &self.socket {
            Socket::Stream(stream) => stream.set_nodelay(on),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a TCP connection",
            )),
        }
        .map_err(|err| EndpointError::new(format!("set TCP_NODELAY on {}", self.name()), err))
    }

    /// Tells a TCP peer we will send nothing more (`shutdown(SHUT_WR)`, a FIN) while still
    /// reading its replies: how an echo client says "that was all". UDP has no such signal, so
    /// for UDP this does nothing.
    pub fn shutdown_write(&self) -> Result<(), EndpointError> {
        match &self.socket {
            Socket::Stream(stream) => stream.shutdown(Shutdown::Write).map_err(|err| {
                EndpointError::new(format!("shut down writing to {}", self.name()), err)
            }),
            Socket::Datagram(_) => Ok(()),
            Socket::Listener(..) => Err(EndpointError::new(
                format!("shut down {}", self.local),
                not_connected(),
            )),
        }
    }

    /// A second handle on the same socket (`dup(2)`), e.g. so one thread can write while
    /// another reads — what a TCP echo client needs to avoid deadlocking against backpressure.
    pub fn try_clone(&self) -> Result<Endpoint, EndpointError> {
        let socket = match &self.socket {
            Socket::Stream(stream) => stream.try_clone().map(Socket::Stream),
            Socket::Datagram(socket) => socket.try_clone().map(Socket::Datagram),
            Socket::Listener(listener, timeout) => listener
                .try_clone()
                .map(|listener| Socket::Listener(listener, *timeout)),
        }
        .map_err(|err| EndpointError::new(format!("duplicate socket of {}", self.name()), err))?;
        Ok(Endpoint {
            socket,
            local: self.local,
            peer: self.peer,
        })
    }

    /// Our own address (after binding port 0, the port the OS chose).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Applies the timeouts and records the addresses: one place for what every socket needs.
    fn from_socket(
        socket: Socket,
        peer: Option<SocketAddr>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let local = match &socket {
            Socket::Stream(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                stream.local_addr()?
            }
            Socket::Datagram(socket) => {
                socket.set_read_timeout(Some(timeout))?;
                socket.set_write_timeout(Some(timeout))?;
                socket.local_addr()?
            }
            Socket::Listener(listener, _) => listener.local_addr()?,
        };
        Ok(Endpoint {
            socket,
            local,
            peer,
        })
    }

    /// The address named in read and write errors: the peer if there is one.
    fn name(&self) -> SocketAddr {
        self.peer.unwrap_or(self.local)
    }
}

/// Reads through [`Endpoint::recv`]; errors keep their context (`read from ...: timed out`).
impl Read for Endpoint {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv(buf)?)
    }
}

/// Writes through [`Endpoint::send`]: each call sends all of `buf` (one datagram on UDP).
impl Write for Endpoint {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)?;
        Ok(buf.len())
    }

    /// Nothing to flush: `send` hands everything to the kernel before it returns.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Resolves `host` (a name or an IP literal) with `getaddrinfo`.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, EndpointError> {
    let context = format!("resolve {}", join_host_port(host, port));
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| EndpointError::new(&context, err))?
        .collect();
    if addrs.is_empty() {
        return Err(EndpointError::invalid(context, "no addresses found"));
    }
    Ok(addrs)
}

/// A UDP socket on an ephemeral port of `peer`'s address family, connected to `peer`.
fn connect_udp(peer: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(peer)?;
    Ok(socket)
}

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "not a connected socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn parses_host_and_port_forms() {
        let parse = |text| parse_host_port(text, None).map_err(|e| e.to_string());
        assert_eq!(parse("example.org:80"), Ok(("example.org".into(), 80)));
        assert_eq!(parse("127.0.0.1:8080"), Ok(("127.0.0.1".into(), 8080)));
        assert_eq!(parse("[::1]:8081"), Ok(("::1".into(), 8081)));
        assert_eq!(
            parse_host_port("[::1]", Some(80)).ok(),
            Some(("::1".into(), 80))
        );
        assert_eq!(
            parse_host_port("::1", Some(80)).ok(),
            Some(("::1".into(), 80))
        );
        assert_eq!(
            parse_host_port("localhost", Some(80)).ok(),
            Some(("localhost".into(), 80))
        );
    }

    #[test]
    fn rejects_bad_addresses_with_the_reason() {
        let error = |text| parse_host_port(text, None).unwrap_err().to_string();
        assert_eq!(
            error("localhost"),
            "invalid address \"localhost\": missing port (expected HOST:PORT)"
        );
        assert!(error("host:99999").ends_with("port must be a number from 0 to 65535"));
        assert!(error("host:+80").ends_with("port must be a number from 0 to 65535"));
        assert!(error("host:").ends_with("port must be a number from 0 to 65535"));
        assert!(error(":80").ends_with("missing host"));
        assert!(error("[::1:80").ends_with("missing ']' after the IPv6 address"));
        assert!(error("[nope]:80").ends_with("invalid IPv6 address in brackets"));
        assert!(error("[::1]x80").ends_with("expected ':' after ']'"));
        assert!(error("a b:80").ends_with("invalid character in host name"));
        assert!(error("a/b:80").ends_with("invalid character in host name"));
    }

    #[test]
    fn joins_host_and_port() {
        assert_eq!(join_host_port("example.org", 80), "example.org:80");
        assert_eq!(join_host_port("::1", 8080), "[::1]:8080");
        assert_eq!(bracketed("::1"), "[::1]");
        assert_eq!(bracketed("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn tcp_connect_send_recv_and_half_close() {
        let listener = Endpoint::bind(Protocol::Tcp, "127.0.0.1", 0, TIMEOUT).unwrap();
        let port = listener.local().port();
        let mut client = Endpoint::connect_tcp("localhost", port, TIMEOUT).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local());
        server.set_nodelay(true).unwrap();

        client.send(b"ping").unwrap();
        client.shutdown_write().unwrap();
        let mut received = Vec::new();
        server.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"ping");

        server.send(b"pong").unwrap();
        drop(server);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"pong");
    }

    #[test]
    fn refused_connect_names_the_target() {
        let port = free_port();
        let err = Endpoint::connect_tcp("127.0.0.1", port, TIMEOUT).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("connect to 127.0.0.1:{port}: connection refused")
        );
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn silent_peer_times_out_with_its_address() {
        let listener = Endpoint::bind(Protocol::Tcp, "127.0.0.1", 0, TIMEOUT).unwrap();
        let addr = listener.local();
        let mut client = Endpoint::connect_tcp("127.0.0.1", addr.port(), TIMEOUT).unwrap();
        client.set_read_timeout(Duration::from_millis(50)).unwrap();
        let err = client.recv(&mut [0; 16]).unwrap_err();
        assert_eq!(err.to_string(), format!("read from {addr}: timed out"));
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // Through io::Read the context survives.
        let io_err = client.read(&mut [0; 16]).unwrap_err();
        assert_eq!(io_err.to_string(), format!("read from {addr}: timed out"));
    }

    #[test]
    fn unresolvable_name_says_resolve() {
        let err = Endpoint::connect_tcp("nosuch.invalid", 80, TIMEOUT).unwrap_err();
        assert!(
            err.to_string().starts_with("resolve nosuch.invalid:80: "),
            "{err}"
        );
    }

    #[test]
    fn udp_connected_round_trip_and_refusal() {
        let server = Endpoint::bind(Protocol::Udp, "127.0.0.1", 0, TIMEOUT).unwrap();
        let mut client =
            Endpoint::udp_connected("127.0.0.1", server.local().port(), TIMEOUT).unwrap();
        client.send(b"").unwrap();
        client.send(b"hello").unwrap();
        let mut buf = [0; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (0, client.local()));
        let (n, _) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        server.send_to(b"world", from).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"world");

        // Nobody on that port: the ICMP error comes back on the next recv.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut lonely = Endpoint::udp_connected("127.0.0.1", port, TIMEOUT).unwrap();
        lonely.send(b"anyone?").unwrap();
        let err = lonely.recv(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("read from 127.0.0.1:{port}: connection refused")
        );
    }

    #[test]
    fn operations_on_the_wrong_kind_of_socket_fail_cleanly() {
        let mut listener = Endpoint::bind(Protocol::Tcp, "127.0.0.1", 0, TIMEOUT).unwrap();
        assert!(listener.send(b"x").is_err());
        assert!(listener.recv(&mut [0; 4]).is_err());
        assert!(listener.recv_from(&mut [0; 4]).is_err());
        assert!(listener.set_nodelay(true).is_err());
        let udp = Endpoint::bind(Protocol::Udp, "127.0.0.1", 0, TIMEOUT).unwrap();
        let err = udp.accept().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("accept on {}: not a TCP listener", udp.local())
        );
    }

    /// A port nobody listens on: bind one, note it, close it.
    fn free_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }
}
