//! `echo-client`: the echo service's blocking counterpart (docs/PROTOCOLS.md §5).
//!
//! TCP: one thread copies stdin to the socket and then half-closes it (`shutdown(SHUT_WR)`,
//! "that was all"); the main thread copies the socket to stdout until the server's FIN. Two
//! threads, because one thread that writes everything before reading would deadlock against the
//! server's backpressure as soon as both sides' buffers fill. A read waits as long as nothing is
//! outstanding (a person may take a while to type), but at most the timeout once bytes were sent
//! and not yet echoed.
//!
//! UDP: each stdin line is one datagram (without its newline); its echo is printed as a line.
//! A reply that does not come within the timeout is reported as lost.
//!
//! Exit status: 0 at end of input once every reply arrived; 1 with one line on stderr on any
//! failure; 2 for a usage error.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use inetloop::client::cli::{client_main, target};
use inetloop::client::endpoint::{Endpoint, join_host_port};

const USAGE: &str = "\
usage: echo-client [--udp] [--timeout SECS] [HOST:PORT]

Sends each line of stdin to the echo service and prints each reply line; exits at the end of
input once every reply has arrived. Default HOST:PORT 127.0.0.1:8081.

  --udp             one datagram per line
  --timeout SECS    how long a reply may take (default 5)
  -h, --help        print this help
";

/// The largest UDP payload over IPv4 (65535 − 8 bytes UDP header − 20 bytes IP header).
const MAX_DATAGRAM: usize = 65_507;

struct Options {
    udp: bool,
    host: String,
    port: u16,
    timeout: Duration,
}

fn main() -> ExitCode {
    client_main("echo-client", USAGE, parse_args, |options| {
        if options.udp {
            run_udp(&options)
        } else {
            run_tcp(&options)
        }
    })
}

fn parse_args(mut args: pico_args::Arguments) -> Result<Options, String> {
    let udp = args.contains("--udp");
    let timeout_secs: f64 = args
        .opt_value_from_str("--timeout")
        .map_err(|e| format!("--timeout: {e}"))?
        .unwrap_or(5.0);
    let timeout = Duration::try_from_secs_f64(timeout_secs)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or("--timeout: a positive number of seconds")?;
    let (host, port) = target(args, "127.0.0.1:8081")?;
    Ok(Options {
        udp,
        host,
        port,
        timeout,
    })
}

fn run_tcp(options: &Options) -> Result<(), String> {
    let target = join_host_port(&options.host, options.port);
    let mut reader = Endpoint::connect_tcp(&options.host, options.port, options.timeout)
        .map_err(|e| e.to_string())?;
    let mut writer = reader.try_clone().map_err(|e| e.to_string())?;
    let sent = Arc::new(AtomicU64::new(0));

    let sent_by_writer = Arc::clone(&sent);
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let mut stdin = io::stdin().lock();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match stdin.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read standard input: {e}")),
            };
            // Count before sending, so the reader never sees an echo it did not expect.
            sent_by_writer.fetch_add(n as u64, Ordering::SeqCst);
            let read = chunk.get(..n).unwrap_or_default();
            writer.send(read).map_err(|e| e.to_string())?;
        }
        writer.shutdown_write().map_err(|e| e.to_string())
    });

    let mut stdout = io::stdout().lock();
    let mut received = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received += n as u64;
                stdout
                    .write_all(buf.get(..n).unwrap_or_default())
                    .and_then(|()| stdout.flush())
                    .map_err(|e| format!("write output: {e}"))?;
            }
            // Nothing outstanding: the user has not typed anything yet; keep waiting.
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut
                    && received == sent.load(Ordering::SeqCst) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    sender
        .join()
        .map_err(|_| "the sending thread panicked".to_string())??;
    let sent = sent.load(Ordering::SeqCst);
    if received != sent {
        return Err(format!(
            "{target} closed the connection after echoing {received} of {sent} bytes"
        ));
    }
    Ok(())
}

fn run_udp(options: &Options) -> Result<(), String> {
    let target = join_host_port(&options.host, options.port);
    let mut endpoint = Endpoint::udp_connected(&options.host, options.port, options.timeout)
        .map_err(|e| e.to_string())?;
    let mut stdout = io::stdout().lock();
    let mut reply = vec![0u8; MAX_DATAGRAM + 1];
    for line in io::stdin().lock().split(b'\n') {
        let line = line.map_err(|e| format!("read standard input: {e}"))?;
        if line.len() > MAX_DATAGRAM {
            return Err(format!(
                "a line of {} bytes does not fit in a datagram",
                line.len()
            ));
        }
        endpoint.send(&line).map_err(|e| e.to_string())?;
        let n = endpoint.recv(&mut reply).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                format!(
                    "no reply from {target} within {:?}: the datagram or its echo was lost",
                    options.timeout
                )
            } else {
                e.to_string()
            }
        })?;
        let reply = reply.get(..n).unwrap_or_default();
        if reply != line {
            return Err(format!(
                "malformed reply from {target}: it differs from what was sent"
            ));
        }
        stdout
            .write_all(reply)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("write output: {e}"))?;
    }
    Ok(())
}
