//! `reactor`: every service of PROTOCOLS.md from one thread and one `mio::Poll`.
//!
//! `main` only wires things up: parse the command line, send logs to stderr, bind every
//! socket, announce each on stdout (`listening <service> <tcp|udp> <ip:port>`), then hand the
//! thread to the loop until SIGINT/SIGTERM. Errors are one line on stderr: status 2 for a bad
//! command line, 1 for anything that fails at run time.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use inetloop::config::{Command, Config, USAGE, parse_args};
use inetloop::reactor::Reactor;
use log::{LevelFilter, info};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

fn main() -> ExitCode {
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
    if config.services.is_empty() {
        eprintln!("reactor: every service is off; nothing to serve (see --help)");
        return ExitCode::from(2);
    }
    init_logging(config.log_level);
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("reactor: {message}");
            ExitCode::from(1)
        }
    }
}

fn serve(config: Config) -> Result<(), String> {
    let mut reactor =
        Reactor::new(config.settings).map_err(|e| format!("cannot create poller: {e}"))?;
    for &(kind, port) in &config.services {
        reactor
            .bind_service(config.bind, kind, port)
            .map_err(|e| e.to_string())?;
    }
    reactor
        .watch_signals()
        .map_err(|e| format!("cannot watch signals: {e}"))?;

    // The stdout contract: one line per bound socket, flushed before any client is served.
    let mut stdout = std::io::stdout().lock();
    for socket in reactor.bound() {
        writeln!(stdout, "{socket}").map_err(|e| format!("stdout: {e}"))?;
    }
    stdout.flush().map_err(|e| format!("stdout: {e}"))?;
    drop(stdout);

    info!(
        "serving {} sockets; SIGINT or SIGTERM stops",
        reactor.bound().len()
    );
    reactor.run().map_err(|e| format!("event loop: {e}"))?;
    info!("stopped");
    Ok(())
}

fn init_logging(level: LevelFilter) {
    let mut config = ConfigBuilder::new();
    config.set_thread_level(LevelFilter::Off);
    config.set_target_level(LevelFilter::Off);
    let _ = config.set_time_offset_to_local();
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // Only fails if a logger is already set, which cannot happen here.
    let _ = TermLogger::init(level, config.build(), TerminalMode::Stderr, color);
}
