//! Building a loop: the poller, its share of the counters, and every socket it serves — bound
//! here, or passed by a supervisor — each filed under a token of its own.

use super::*;

impl Reactor {
    /// A loop on its own (a board of one).
    pub fn new(settings: Settings) -> io::Result<Self> {
        Self::on_board(settings, Board::new(1), 1)
    }

    /// Loop `number` (from 1) of those whose counters `board` holds (`--threads`).
    pub fn on_board(settings: Settings, board: Arc<Board>, number: usize) -> io::Result<Self> {
        let totals = board.totals(number).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no loop {number} on a board of {}", board.loops()),
            )
        })?;
        let loops = board.loops();
        let mut shared = Shared::new(settings, board, totals);
        // Numbered in the trace (and the status line) only when there are several.
        shared.trace.set_loop(number, loops);
        let poll = Poll::new()?;
        let alarm = Alarm::new(poll.registry(), !shared.settings.coarse_timers);
        Ok(Reactor {
            poll,
            entries: Slots::default(),
            shared,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            listeners: Vec::new(),
            bound: Vec::new(),
            replay: Vec::new(),
            signals: None,
            shutdown_deadline: None,
            shutdown_began: None,
            number,
            woke: None,
            alarm,
        })
    }

    /// What the loop has done since it started.
    pub fn totals(&self) -> &Totals {
        &self.shared.totals
    }

    /// Binds a service on TCP and UDP with the same port number and registers both sockets.
    /// Port 0 lets the OS choose a port that is free for both. `reuse_port` lets other loops
    /// (`--threads`) bind the same port (see [`bind_pair`]).
    pub fn bind_service(
        &mut self,
        ip: IpAddr,
        kind: ServiceKind,
        port: u16,
        reuse_port: bool,
    ) -> Result<(), BindError> {
        let settings = &self.shared.settings;
        let options = ListenOptions {
            reuse_port,
            send_buffer: settings.send_buffer,
            receive_buffer: settings.receive_buffer,
        };
        let (listener, udp) = bind_pair(ip, kind, port, &options)?;
        self.serve_listener(kind, listener)?;
        self.serve_udp(kind, udp)
    }

    /// Serves `kind` on a TCP listener that is already listening (bound here, or passed by a
    /// supervisor).
    pub fn serve_listener(
        &mut self,
        kind: ServiceKind,
        listener: TcpListener,
    ) -> Result<(), BindError> {
        let addr = listener.local_addr().map_err(|source| BindError {
            what: format!("{} tcp listener", kind.name()),
            source,
        })?;
        let mut listener = Listener::new(listener, kind);
        let token = self.register(addr, kind, |registry, token| {
            registry
                .register(listener.socket_mut(), token, Interest::READABLE)
                .map(|()| Entry::Listener(listener))
        })?;
        self.listeners.push(token);
        self.bound.push(BoundSocket {
            kind,
            proto: Proto::Tcp,
            addr,
        });
        self.shared.totals.serving(kind, Proto::Tcp);
        Ok(())
    }

    /// Serves the metrics endpoint (`--metrics`) on `addr`: a TCP listener like any other
    /// service's, and no UDP socket. Its pages show every loop on this loop's board.
    pub fn serve_metrics(&mut self, addr: SocketAddr) -> Result<(), BindError> {
        let settings = &self.shared.settings;
        let options = ListenOptions {
            reuse_port: false,
            send_buffer: settings.send_buffer,
            receive_buffer: settings.receive_buffer,
        };
        let listener = bind_tcp(addr, ServiceKind::Metrics, &options)?;
        self.serve_listener(ServiceKind::Metrics, listener)
    }

    /// Serves `kind` on a bound UDP socket.
    pub fn serve_udp(&mut self, kind: ServiceKind, socket: UdpSocket) -> Result<(), BindError> {
        let addr = socket.local_addr().map_err(|source| BindError {
            what: format!("{} udp socket", kind.name()),
            source,
        })?;
        let Some(mut port) = UdpPort::new(socket, kind) else {
            return Err(BindError {
                what: format!("{} udp {addr}", kind.name()),
                source: io::Error::new(io::ErrorKind::Unsupported, "the service has no UDP side"),
            });
        };
        self.register(addr, kind, |registry, token| {
            registry
                .register(port.socket_mut(), token, Interest::READABLE)
                .map(|()| Entry::Udp(port))
        })?;
        self.bound.push(BoundSocket {
            kind,
            proto: Proto::Udp,
            addr,
        });
        self.shared.totals.serving(kind, Proto::Udp);
        Ok(())
    }

    /// Files a new bound socket under a fresh token.
    fn register(
        &mut self,
        addr: SocketAddr,
        kind: ServiceKind,
        make: impl FnOnce(&Registry, Token) -> io::Result<Entry>,
    ) -> Result<Token, BindError> {
        let registry = self.poll.registry();
        let error = |source| BindError {
            what: format!("{} {addr}", kind.name()),
            source,
        };
        match self.entries.insert_with(|key| make(registry, Token(key))) {
            Ok(Some(key)) => Ok(Token(key)),
            Ok(None) => Err(error(io::ErrorKind::OutOfMemory.into())),
            Err(e) => Err(error(e)),
        }
    }

    /// Every socket bound so far, in bind order.
    pub fn bound(&self) -> &[BoundSocket] {
        &self.bound
    }

    /// Open TCP connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections
    }

    /// Makes SIGINT, SIGTERM, SIGHUP (graceful shutdown) and SIGUSR1 (log a status line) events
    /// of this loop: signal-hook's handler writes to a self-pipe registered under [`SIGNALS`].
    /// SIGHUP arrives when the terminal or ssh session that started the server goes away; its
    /// default action would kill the process without a goodbye, so it stops gracefully like
    /// SIGTERM (there is no configuration file to reload).
    pub fn watch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }
}
