//! `time-client`: the time stream's blocking counterpart (docs/PROTOCOLS.md §5).
//!
//! The lab's client, over [`Endpoint`]: TCP is `connect`, one `write` of the greeting line, then
//! `read`s until `Au Revoir`; UDP is a connected socket, one datagram as the greeting, then one
//! `recv` per tick. Every read has a timeout derived from the expected interval, so a lost
//! datagram or a dead server is reported instead of waited on forever.
//!
//! Exit status: 0 after `Au Revoir`; 1 with one line on stderr if anything went wrong (refused,
//! timeout, unknown host, a reply that is not a tick); 2 for a usage error.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use inetloop::client::cli::{client_main, target};
use inetloop::client::endpoint::{Endpoint, EndpointError, join_host_port};
use inetloop::services::clock::TICK_FORMAT;
use inetloop::services::time_stream::{AU_REVOIR, GREETING_MAX};

const USAGE: &str = "\
usage: time-client [--udp] [--greeting TEXT] [--interval-ms MS] [HOST:PORT]

Greets the time-stream service and prints each tick as it arrives, one per line, until
'Au Revoir' (exit 0). Default HOST:PORT 127.0.0.1:8080, greeting Bonjour.

  --udp              use the UDP variant (one datagram per tick)
  --greeting TEXT    the greeting line (at most 1024 bytes)
  --interval-ms MS   the interval the server ticks at (default 1000); a read that waits
                     longer than 2 intervals + 2 s fails with a clear error
  -h, --help         print this help
";

/// Longest reply line accepted: a tick is 19 bytes; the server's own lines are far below this.
const MAX_REPLY: usize = GREETING_MAX;

struct Options {
    udp: bool,
    greeting: String,
    host: String,
    port: u16,
    interval: Duration,
}

fn main() -> ExitCode {
    client_main("time-client", USAGE, parse_args, |options| run(&options))
}

fn parse_args(mut args: pico_args::Arguments) -> Result<Options, String> {
    let udp = args.contains("--udp");
    let greeting: String = args
        .opt_value_from_str("--greeting")
        .map_err(|e| format!("--greeting: {e}"))?
        .unwrap_or_else(|| "Bonjour".to_string());
    if greeting.contains(['\n', '\r']) || greeting.len() > GREETING_MAX {
        return Err(format!(
            "--greeting: one line of at most {GREETING_MAX} bytes"
        ));
    }
    let interval_ms: u64 = args
        .opt_value_from_str("--interval-ms")
        .map_err(|e| format!("--interval-ms: {e}"))?
        .unwrap_or(1000);
    let (host, port) = target(args, "127.0.0.1:8080")?;
    Ok(Options {
        udp,
        greeting,
        host,
        port,
        interval: Duration::from_millis(interval_ms),
    })
}

fn run(options: &Options) -> Result<(), String> {
    // Ticks come one interval apart; two intervals plus slack is "late", not "slow".
    let timeout = options
        .interval
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(2));
    let target = join_host_port(&options.host, options.port);
    let explain = |err: &EndpointError| {
        if err.kind() == std::io::ErrorKind::TimedOut {
            format!(
                "{err}: nothing for {timeout:?} while ticks were expected every {:?} \
                 (a datagram was lost, or the server is gone)",
                options.interval
            )
        } else {
            err.to_string()
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut show = |line: &str| -> Result<bool, String> {
        check_reply(line)?;
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("write output: {e}"))?;
        Ok(line == AU_REVOIR)
    };

    if options.udp {
        let mut endpoint = Endpoint::udp_connected(&options.host, options.port, timeout)
            .map_err(|e| e.to_string())?;
        endpoint
            .send(options.greeting.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut datagram = [0u8; MAX_REPLY];
        loop {
            let n = endpoint.recv(&mut datagram).map_err(|e| explain(&e))?;
            let text = std::str::from_utf8(datagram.get(..n).unwrap_or_default())
                .map_err(|_| format!("malformed reply from {target}: not UTF-8"))?;
            if show(text)? {
                return Ok(());
            }
        }
    }

    let mut endpoint =
        Endpoint::connect_tcp(&options.host, options.port, timeout).map_err(|e| e.to_string())?;
    endpoint
        .send(format!("{}\n", options.greeting).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(endpoint);
    loop {
        let mut line = Vec::new();
        // `take` bounds the line, so a server that never sends '\n' cannot grow it forever.
        let n = (&mut reader)
            .take(MAX_REPLY as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<EndpointError>()) {
                    Some(err) => explain(err),
                    None => format!("read from {target}: {e}"),
                },
            )?;
        if n == 0 {
            return Err(format!("{target} closed the connection before {AU_REVOIR}"));
        }
        let Some(line) = line.strip_suffix(b"\n") else {
            return Err(if line.len() > MAX_REPLY {
                format!("malformed reply from {target}: a line longer than {MAX_REPLY} bytes")
            } else {
                format!("{target} closed the connection in the middle of a line")
            });
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line)
            .map_err(|_| format!("malformed reply from {target}: not UTF-8"))?;
        if show(text)? {
            return Ok(());
        }
    }
}

/// A reply must be a tick or `Au Revoir`; the server's `error: …` line is passed on as is.
fn check_reply(line: &str) -> Result<(), String> {
    if line == AU_REVOIR || chrono::NaiveDateTime::parse_from_str(line, TICK_FORMAT).is_ok() {
        Ok(())
    } else if line.starts_with("error:") {
        Err(format!("the server said: {line}"))
    } else {
        Err(format!(
            "malformed reply {line:?}: not a time in {TICK_FORMAT} format"
        ))
    }
}
