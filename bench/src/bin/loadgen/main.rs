//! `loadgen`: the load generator of inetloop's benchmarks.
//!
//! ```text
//! loadgen pingpong   --addr A [--conns 100] [--size 64] [--secs 10] [--threads 1]
//! loadgen stream     --addr A [--conns 50] [--write 16384] [--secs 10]
//! loadgen time-scale --tcp A|off --udp B|off [--sessions-tcp 10000] [--sessions-udp 10000]
//!                    [--ticks 10] [--interval-ms 1000] [--src-ips 100] [--window 100] [--ramp-ms MS]
//! loadgen udp-echo   --addr A [--peers 100] [--inflight 4] [--size 64] [--secs 10] [--src-ips 100]
//! ```
//!
//! Every subcommand prints exactly one line of `key=value` pairs on stdout (no spaces inside a
//! value), so `scripts/bench.sh` can tabulate it; progress and problems go to stderr. Every
//! wait is bounded: a server that stops answering makes the run report failures, never hang.
//! Exit status 0 when the run completed (even with failed sessions, which are reported), 1 when
//! it could not run at all, 2 for a bad command line.
//!
//! All clients are non-blocking sockets on mio (epoll) loops — one thread for ping-pong (unless
//! `--threads` says otherwise), streaming and UDP echo, one process per few thousand sessions
//! for the time stream (a process may only have `RLIMIT_NOFILE` descriptors) — never a thread
//! per connection or peer, so the client costs about what the server does per message.

mod common;
mod pingpong;
mod stream;
mod time_scale;
mod udp_echo;

use std::process::ExitCode;

const USAGE: &str = "\
usage: loadgen pingpong   --addr A [--conns 100] [--size 64] [--secs 10] [--threads 1]
       loadgen stream     --addr A [--conns 50] [--write 16384] [--secs 10]
       loadgen time-scale --tcp A|off --udp B|off [--sessions-tcp 10000] [--sessions-udp 10000]
                          [--ticks 10] [--interval-ms 1000] [--src-ips 100] [--window 100] [--ramp-ms MS]
       loadgen udp-echo   --addr A [--peers 100] [--inflight 4] [--size 64] [--secs 10] [--src-ips 100]
Prints one line of key=value pairs on stdout.";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let Some(sub) = args.subcommand().ok().flatten() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let outcome = match sub.as_str() {
        "pingpong" => pingpong::Args::parse(args).map(pingpong::run),
        "stream" => stream::Args::parse(args).map(stream::run),
        "time-scale" => time_scale::Args::parse(args).map(time_scale::run),
        "udp-echo" => udp_echo::Args::parse(args).map(udp_echo::run),
        "time-scale-worker" => time_scale::WorkerArgs::parse(args).map(time_scale::run_worker),
        "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown subcommand '{other}'")),
    };
    match outcome {
        Ok(Ok(report)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("loadgen {sub}: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen {sub}: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
