//! `reactor`: every service of docs/PROTOCOLS.md from one thread and one `mio::Poll`.
//!
//! `main` only wires things up: parse the command line, send logs to stderr, raise the
//! descriptor limit and check `--max-conns` against it, bind every socket, announce each on
//! stdout (`listening <service> <tcp|udp> <ip:port>`), then hand the thread to the loop until
//! SIGINT/SIGTERM. Errors are one line on stderr: status 2 for a bad command line (a
//! `--max-conns` the descriptor limit cannot hold included), 1 for anything that fails at run
//! time.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use std::net::{IpAddr, ToSocketAddrs};

use inetloop::server::activation::{self, Listen, PassedSocket};
use inetloop::server::config::{BindTarget, Command, Config, LogTime, USAGE, parse_args};
use inetloop::server::descriptors::{self, Fit, Needs, Raise};
use inetloop::server::listen::{self, Proto};
use inetloop::server::metrics::Board;
use inetloop::server::privileges;
use inetloop::server::reactor::Reactor;
use inetloop::server::trace;
use log::{LevelFilter, info, warn};
use mio::net::{TcpListener, UdpSocket};
use simplelog::{ColorChoice, CombinedLogger, ConfigBuilder, TermLogger, TerminalMode};
use std::sync::Arc;
use time::UtcOffset;
use time::macros::format_description;

fn main() -> ExitCode {
    // The supervisor's variables are read (and removed, so no child inherits them) while this
    // is the only thread.
    let listen = Listen::take_from_env();
    let config = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("reactor {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("reactor: {e}");
            return ExitCode::from(2);
        }
    };
    if config.services.is_empty() && config.metrics.is_none() && listen.fds.is_none() {
        eprintln!("reactor: every service is off; nothing to serve (see --help)");
        return ExitCode::from(2);
    }
    init_logging(&config);
    match serve(*config, &listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, message }) => {
            eprintln!("reactor: {message}");
            ExitCode::from(status)
        }
    }
}

/// Why `serve` ended early: one line for stderr and the exit status (PROTOCOLS.md §1.5).
struct Failure {
    status: u8,
    message: String,
}

/// A failure at run time (status 1): most of what `serve` calls says only what went wrong.
impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { status: 1, message }
    }
}

fn serve(mut config: Config, listen: &Listen) -> Result<(), Failure> {
    // First, before any socket exists: every connection will need a descriptor.
    let raise = descriptors::raise_soft_limit()
        .map_err(|e| format!("cannot read RLIMIT_NOFILE (getrlimit): {e}"))?;
    // Looked up before any socket exists, so a typo fails at once.
    let identity = match &config.user {
        Some(user) => Some(privileges::look_up(user, config.group.as_deref())?),
        None => None,
    };
    let passed = activation::adopt(listen.descriptors(std::process::id())?, &config.services)?;
    let addresses = if passed.is_empty() {
        resolve(&config.bind)?
    } else {
        Vec::new()
    };
    // Each loop binds a TCP listener and a UDP socket per service and address, or serves its
    // own duplicate of each socket the supervisor passed.
    let sockets_per_loop = if passed.is_empty() {
        config.services.len() * addresses.len() * 2
    } else {
        passed.len()
    };
    let needs = Needs::now(config.threads, sockets_per_loop, config.metrics.is_some());
    let fit = fit_max_conns(&mut config, &needs, &raise)?;
    // Every loop's counters, which the metrics endpoint (on loop 1) reads.
    let board = Board::new(config.threads);
    let mut loops = if passed.is_empty() {
        bind_loops(&config, &board, &addresses)?
    } else {
        info!(
            "socket activation: serving the {} socket(s) the supervisor passed; binding nothing \
             but --metrics",
            passed.len()
        );
        adopt_loops(&config, &board, passed)?
    };
    // One endpoint for every loop: loop 1 serves it (its pages read every loop's counters).
    if let (Some(addr), Some(first)) = (config.metrics, loops.first_mut()) {
        first.serve_metrics(addr).map_err(|e| e.to_string())?;
    }
    if let Some(who) = identity {
        privileges::drop_to(&who)?;
        info!("running as {} (uid {}, gid {})", who.user, who.uid, who.gid);
    }
    // The stdout contract: one line per bound socket, flushed before any client is served.
    // With --threads every loop has the same sockets; they are announced once.
    announce(loops.first().map(Reactor::bound).unwrap_or_default());
    // Logged only now: a start that fails is one line on stderr (§1.5).
    match raise {
        Raise::Failed { .. } => warn!("{raise}"),
        _ => info!("{raise}"),
    }
    if let Fit::Lowered { warning, .. } = fit {
        warn!("{warning}");
    }
    match activation::notify_ready(listen) {
        Ok(true) => info!("told the supervisor we are ready (sd_notify READY=1)"),
        Ok(false) => {}
        Err(e) => warn!("{e}; serving anyway"),
    }
    info!(
        "serving with {} event loop(s); SIGINT, SIGTERM or SIGHUP stops",
        loops.len()
    );

    let mut loops = loops.into_iter();
    let mut main_loop = loops.next().ok_or_else(|| "no event loop".to_string())?;
    let others = loops
        .enumerate()
        .map(|(i, mut reactor)| {
            std::thread::Builder::new()
                .name(format!("loop-{}", i + 1))
                .spawn(move || reactor.run())
                .map_err(|e| format!("cannot start an event loop thread: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    main_loop.run().map_err(|e| format!("event loop: {e}"))?;
    for (i, handle) in others.into_iter().enumerate() {
        match handle.join() {
            Ok(result) => result.map_err(|e| format!("event loop {}: {e}", i + 1))?,
            Err(_) => return Err(format!("event loop {} panicked", i + 1).into()),
        }
    }
    match main_loop.shutdown_took() {
        Some(took) => info!("stopped: shutdown took {} ms", took.as_millis()),
        None => info!("stopped"),
    }
    Ok(())
}

/// Checks `--max-conns` against the descriptor limit as `raise` left it, before any socket is
/// bound: a value the user gave that cannot fit is a usage error (status 2, its one line on
/// stderr); the default is lowered to what fits (the caller logs the warning once the start
/// has succeeded) — a server should not refuse to start on its own default.
fn fit_max_conns(config: &mut Config, needs: &Needs, raise: &Raise) -> Result<Fit, Failure> {
    let fit = descriptors::fit(
        needs,
        config.settings.max_conns,
        config.max_conns_given,
        raise.soft(),
        raise.hard(),
    )
    .map_err(|message| Failure { status: 2, message })?;
    if let Fit::Lowered { to, .. } = fit {
        config.settings.max_conns = to;
    }
    Ok(fit)
}

/// Every address to listen on: IPs as given, host names resolved now, once (`getaddrinfo`),
/// each to all of its addresses. Duplicates are bound once.
fn resolve(targets: &[BindTarget]) -> Result<Vec<IpAddr>, String> {
    let mut addresses = Vec::new();
    for target in targets {
        let found: Vec<IpAddr> = match target {
            BindTarget::Ip(ip) => vec![*ip],
            BindTarget::Host(name) => (name.as_str(), 0)
                .to_socket_addrs()
                .map_err(|e| format!("--bind {name}: cannot resolve: {e}"))?
                .map(|addr| addr.ip())
                .collect(),
        };
        if found.is_empty() {
            return Err(format!("--bind {target:?}: resolves to no address"));
        }
        for ip in found {
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    Ok(addresses)
}

/// Prints the `listening …` lines. Best effort: a reader that went away (`reactor | head -1`)
/// must not stop a server whose sockets are bound, so a failed write is reported once on
/// stderr and the rest is skipped.
fn announce(sockets: &[inetloop::server::listen::BoundSocket]) {
    let mut stdout = std::io::stdout().lock();
    let written = sockets
        .iter()
        .try_for_each(|socket| writeln!(stdout, "{socket}"))
        .and_then(|()| stdout.flush());
    if let Err(e) = written {
        warn!("stdout: {e}; the 'listening' lines could not all be printed, serving anyway");
    }
}

/// One `Reactor` per `--threads`, each with its own sockets and signal pipe. The first binds
/// the requested ports on every address (the OS chooses for port 0, on the first address;
/// the others take the same number); the other loops bind the ports it got, with
/// `SO_REUSEPORT`, so the kernel spreads clients among the loops.
fn bind_loops(
    config: &Config,
    board: &Arc<Board>,
    addresses: &[IpAddr],
) -> Result<Vec<Reactor>, String> {
    let reuse_port = config.threads > 1;
    let mut ports = config.services.clone();
    let mut loops = Vec::with_capacity(config.threads);
    for number in 1..=config.threads {
        let mut reactor = new_loop(config, board, number)?;
        for (kind, port) in &mut ports {
            for &ip in addresses {
                reactor
                    .bind_service(ip, *kind, *port, reuse_port)
                    .map_err(|e| e.to_string())?;
                if let Some(bound) = reactor.bound().last() {
                    *port = bound.addr.port();
                }
            }
        }
        loops.push(reactor);
    }
    Ok(loops)
}

/// One `Reactor` per `--threads` on the sockets the supervisor passed: every loop serves its
/// own duplicate of each (`dup`), and the kernel wakes whichever loop is waiting.
fn adopt_loops(
    config: &Config,
    board: &Arc<Board>,
    passed: Vec<PassedSocket>,
) -> Result<Vec<Reactor>, String> {
    let settings = &config.settings;
    let mut loops = Vec::with_capacity(config.threads);
    for number in 1..=config.threads {
        let mut reactor = new_loop(config, board, number)?;
        for passed in &passed {
            let socket = passed
                .socket
                .try_clone()
                .map_err(|e| format!("passed socket {}: {e}", passed.addr))?;
            let served = match passed.proto {
                Proto::Tcp => {
                    listen::limit_buffers(&socket, settings.send_buffer, settings.receive_buffer)
                        .map_err(|e| format!("passed socket {}: {e}", passed.addr))?;
                    let listener = TcpListener::from_std(std::net::TcpListener::from(socket));
                    reactor.serve_listener(passed.kind, listener)
                }
                Proto::Udp => {
                    let udp = UdpSocket::from_std(std::net::UdpSocket::from(socket));
                    reactor.serve_udp(passed.kind, udp)
                }
            };
            served.map_err(|e| e.to_string())?;
        }
        loops.push(reactor);
    }
    Ok(loops)
}

/// Loop `number` of `--threads`, with its share of the limits and its counters on `board`,
/// watching the signals.
fn new_loop(config: &Config, board: &Arc<Board>, number: usize) -> Result<Reactor, String> {
    let settings = config.settings.share(config.threads);
    let mut reactor = Reactor::on_board(settings, Arc::clone(board), number)
        .map_err(|e| format!("cannot create poller: {e}"))?;
    reactor
        .watch_signals()
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    Ok(reactor)
}

/// Logs to stderr: `2026-11-25 23:55:01.123 [INFO] message` (see `--log-time`), only this
/// crate's lines unless `--log-deps`.
fn init_logging(config: &Config) {
    let mut logger = ConfigBuilder::new();
    logger.set_thread_level(LevelFilter::Off);
    logger.set_target_level(LevelFilter::Off);
    let mut local_offset_unknown = false;
    match config.log_time {
        LogTime::Local => {
            logger.set_time_format_custom(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
            ));
            // Read once, now, while the process has one thread (the `time` crate refuses
            // later): a change of daylight saving time shows after a restart.
            local_offset_unknown = logger.set_time_offset_to_local().is_err();
        }
        LogTime::Rfc3339 => {
            logger.set_time_format_custom(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
            ));
            logger.set_time_offset(UtcOffset::UTC);
        }
    }
    if !config.log_deps {
        // Targets are module paths: the library (`inetloop::…`) and this binary. mio's own
        // lines (registrations, at trace level) stay out.
        logger.add_filter_allow_str("inetloop");
        logger.add_filter_allow_str("reactor");
    }
    // `--trace-events` lines have a logger of their own, which prints them bare: they carry
    // their own time (since the loop started), and a JSON line must be nothing but its object.
    logger.add_filter_ignore_str(trace::TARGET);
    let mut bare = ConfigBuilder::new();
    bare.set_time_level(LevelFilter::Off)
        .set_max_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .add_filter_allow_str(trace::TARGET);
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // Only fails if a logger is already set, which cannot happen here.
    let _ = CombinedLogger::init(vec![
        TermLogger::new(
            config.log_level,
            logger.build(),
            TerminalMode::Stderr,
            color,
        ),
        TermLogger::new(
            config.log_level,
            bare.build(),
            TerminalMode::Stderr,
            ColorChoice::Never,
        ),
    ]);
    if local_offset_unknown {
        warn!("the local time offset is unknown: log times are UTC");
    }
}
