//! The command line of the `reactor` binary (docs/PROTOCOLS.md §1), parsed into a [`Config`].
//!
//! Parsing is separate from running so that a bad option is reported as one clear line before a
//! single socket exists, and so tests can parse argument lists directly.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use super::access::{AccessList, Action, Cidr, parse_cidr, parse_rule};
use super::trace::TraceMode;
use crate::services::ServiceKind;
use crate::services::contract::ServiceSettings;

pub const USAGE: &str = "\
reactor: one thread, one mio::Poll, several small network services

Usage: reactor [OPTIONS]

Services (each on TCP and UDP, same port number; PORT 0 lets the OS choose):
  --time PORT|off          time stream: greet with a line, get the time every
                           interval, then 'Au Revoir'                (default 8080)
  --echo PORT|off          echo, RFC 862                             (default 8081)
  --daytime PORT|off       daytime, RFC 867: one line of local time  (default 8013)
  --rfc868 PORT|off        time, RFC 868: 4-byte seconds since 1900  (default 8037)
  --metrics ADDR:PORT|off  an HTTP/1.1 endpoint on this one address, TCP only,
                           served by the same loop (loop 1 with --threads): GET
                           /metrics for Prometheus (every loop, labelled), GET /
                           for a status page; e.g. 127.0.0.1:9100      (default off)

Options:
  --bind ADDRESS           an address every service listens on: IPv4, IPv6 or a
                           host name (resolved once, at start; every address it
                           has is bound); repeat for several. IPv6 sockets are
                           IPv6-only, so 0.0.0.0 and :: can both be given
                                                                     (default 127.0.0.1)
  --user NAME              after binding, drop root and run as this user (needs
                           root to start; e.g. for ports 7, 13, 37)
  --group NAME             the group to run as with --user           (default: the
                                                                      user's group)
  --ticks N                ticks per time-stream session, 0 to 1000000 (default 60)
  --interval-ms MS         interval between ticks, 1 to 86400000     (default 1000)
  --greeting-timeout-ms MS a time-stream client must finish its greeting line
                           this long after connecting, however slowly it
                           sends; then 'error: greeting timeout' and close.
                           Also the deadline of each request head on the
                           metrics endpoint (from the accept or the previous
                           response; then 408, or a silent close)    (default 5000)
  --threads N              independent event loops, each with its own sockets on the
                           same ports (SO_REUSEPORT); the limits below are shared
                           out equally among them, 1 to 256          (default 1)
  --coarse-timers          wake for timers with epoll_wait's own timeout, in whole
                           milliseconds, instead of a timerfd: fewer wakeups, but
                           ticks up to about a millisecond late (default: the
                           timerfd on Linux, deadlines to 50 µs)
  -h, --help               print this help
  -V, --version            print the version

Logs (stderr; one line per TCP connection and per UDP exchange at the default
level; UDP lines at most 50 a second per socket, then one line with the count):
  -v, -vv                  more logging (debug, trace)
  -q, -qq                  less logging (warnings, errors only)
  --log-time local|rfc3339 timestamps: 'local' is local time with milliseconds,
                           2026-11-25 23:55:01.123; 'rfc3339' is UTC with its
                           offset, 2026-11-25T23:55:01.123+00:00     (default local)
  --log-deps               also log the lines of the libraries this server uses
                           (mio, ...); by default only its own lines are logged
  --trace-events[=compact|json]
                           narrate the loop on stderr: each wakeup (how long it
                           slept, why that timeout), each event in words, each
                           read/write/FIN/close, each timer by name; 'compact':
                           one terse line per event; 'json': one JSON object
                           per line, for scripts/timeline.sh         (default off)

Limits (counts up to 10000000; durations up to 86400000 ms, a day):
  --max-conns N            open TCP connections, all services; when full, new
                           connections wait in the listen backlog    (default 10000)
  --max-conns-per-ip N     open TCP connections per source (IPv4 address, IPv6
                           /64); over it a connection is closed at once
                                                                     (default 100)
  --idle-timeout-ms MS     close a TCP connection that has neither sent nor been
                           sent anything this long; 0 = never       (default 60000)
  --send-timeout-ms MS     close a TCP connection whose peer has not taken a byte
                           of pending output this long; 0 = never   (default 30000)
  --sndbuf BYTES           SO_SNDBUF of accepted connections, 4096 to 16777216;
                           0 = the kernel's autotuning (MiBs per peer)
                                                                     (default 131072)
  --rcvbuf BYTES           SO_RCVBUF of accepted connections, same range
                                                                     (default 262144)
  --max-udp-sessions N     live UDP time-stream sessions in total; when full, a
                           new network (/24, /48) takes the place of the oldest
                           session of the network holding the most  (default 10000)
  --max-udp-sessions-per-ip N
                           live UDP time-stream sessions per source  (default 100)
  --udp-rate-per-ip N      UDP datagrams served per source per second, and sent
                           per destination per second (ticks included), all
                           services together; over it, dropped; 0 = no limit
                                                                     (default 100)

Access (IP addresses only, never names; CIDR = ADDRESS[/PREFIX], e.g. 10.0.0.0/8,
2001:db8::/32, [::1]; a bare address is a /32 or a /128):
  --allow [SERVICE=]CIDR   let these peers in; once an --allow applies to a
                           service, peers that no rule matches are refused
  --deny [SERVICE=]CIDR    refuse these peers     (default: no rules, all allowed)
Both flags repeat, in any order; SERVICE (time, echo, daytime, rfc868, metrics)
limits a rule to one service. Of the rules that match a peer, the longest prefix decides;
at equal length --deny wins. ::ffff:a.b.c.d peers count as IPv4. A refused TCP
connection is closed before any byte, a refused datagram dropped unanswered; the
first refusal of each peer is logged, the others summed at most once a second.

Behind a load balancer (haproxy, nginx stream; TCP only):
  --proxy-from CIDR        a TCP connection from these addresses (the balancer's,
                           and nobody else's) must start with a PROXY protocol
                           header, v1 or v2; its client becomes the peer for
                           logs, --allow/--deny and --max-conns-per-ip. No header
                           within --greeting-timeout-ms, or a malformed one: closed.
                           Repeatable; off by default (no PROXY header is read)

stdout carries only one 'listening <service> <tcp|udp> <ip:port>' line per bound
socket (best effort: a closed stdout does not stop the server); logs go to stderr.
SIGINT, SIGTERM or SIGHUP: stop accepting, send 'Au Revoir' to every time-stream
session, flush, exit 0 within a second. SIGUSR1: each event loop logs a status
line: uptime, what it holds now (connections, timers, queued replies), its totals
since start (TCP connections and bytes, UDP datagrams and bytes) and the access
list refusals — the same counters as --metrics serves.
";

/// `SO_SNDBUF` and `SO_RCVBUF` of accepted connections unless told otherwise. Linux doubles what
/// it is given for its bookkeeping and stops autotuning a socket whose size was set, so a client
/// that writes and never reads pins about 2 × (send + receive) in the kernel — 743 to 777 KiB measured
/// with `ss -tmn` — instead of several MiB (4,490 KiB with autotuning). The sizes were measured
/// with `scripts/bench.sh`'s streaming echo: 64 KiB each cost about 20 % of loopback throughput,
/// 128 KiB each about 10 %; a 256 KiB receive buffer with a 128 KiB send buffer matched
/// autotuning (the receive side sets the window the peer may fill).
pub const DEFAULT_SEND_BUFFER: usize = 128 * 1024;
pub const DEFAULT_RECEIVE_BUFFER: usize = 256 * 1024;

/// What the loop and its plumbing need to know at run time.
#[derive(Clone, Debug)]
pub struct Settings {
    /// What the protocols need (ticks, interval, UDP session caps); lent to every entry point.
    pub service: ServiceSettings,
    /// Open TCP connections across all services; past it, accepting pauses.
    pub max_conns: usize,
    /// Open TCP connections per source (IPv4 address, IPv6 /64); past it, a new connection is
    /// accepted and closed at once.
    pub max_conns_per_ip: usize,
    /// Silence after which a TCP connection is closed; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// How long pending output may wait without the peer taking a byte; `None` = forever.
    pub send_timeout: Option<Duration>,
    /// `SO_SNDBUF` of accepted connections; `None` = the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` of accepted connections; `None` = the kernel's autotuning.
    pub receive_buffer: Option<usize>,
    /// UDP datagrams served per source IP per second, all services together; 0 = no limit.
    pub udp_rate_per_ip: u32,
    /// Who may use which service (`--allow`, `--deny`); empty = everyone.
    pub access: AccessList,
    /// The load balancers (`--proxy-from`): a TCP connection from one of these blocks must
    /// start with a PROXY protocol header, whose client is then the connection's peer. Empty =
    /// no PROXY header is ever read.
    pub proxy_from: Vec<Cidr>,
    /// Narrate each wakeup, event, action and timer (`--trace-events[=compact|json]`).
    pub trace: TraceMode,
    /// Wake for timers by `epoll_wait`'s millisecond timeout, not a timerfd
    /// (`--coarse-timers`; see `reactor/alarm.rs`).
    pub coarse_timers: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service: ServiceSettings::default(),
            max_conns: 10_000,
            max_conns_per_ip: 100,
            idle_timeout: Some(Duration::from_millis(60_000)),
            send_timeout: Some(Duration::from_millis(30_000)),
            send_buffer: Some(DEFAULT_SEND_BUFFER),
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
            udp_rate_per_ip: 100,
            access: AccessList::default(),
            proxy_from: Vec::new(),
            trace: TraceMode::Off,
            coarse_timers: false,
        }
    }
}

impl Settings {
    /// One loop's share when `loops` loops serve together: each limit divided, rounded up
    /// (0, "no limit", stays 0). Each loop enforces its share on the clients the kernel gives it.
    pub fn share(&self, loops: usize) -> Settings {
        let part = |total: usize| total.div_ceil(loops.max(1));
        Settings {
            service: ServiceSettings {
                max_udp_sessions: part(self.service.max_udp_sessions),
                max_udp_sessions_per_ip: part(self.service.max_udp_sessions_per_ip),
                ..self.service.clone()
            },
            max_conns: part(self.max_conns),
            max_conns_per_ip: part(self.max_conns_per_ip),
            udp_rate_per_ip: self.udp_rate_per_ip.div_ceil(loops.max(1) as u32),
            ..self.clone()
        }
    }
}

/// The command-line flag that sets a service's port.
pub fn flag(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::TimeStream => "--time",
        ServiceKind::Echo => "--echo",
        ServiceKind::Daytime => "--daytime",
        ServiceKind::Rfc868 => "--rfc868",
        ServiceKind::Metrics => "--metrics",
    }
}

/// A service's port when its flag is not given: unprivileged stand-ins for the well-known
/// ports (13 for daytime, 37 for time, 7 for echo), so no root is needed.
pub fn default_port(kind: ServiceKind) -> u16 {
    match kind {
        ServiceKind::TimeStream => 8080,
        ServiceKind::Echo => 8081,
        ServiceKind::Daytime => 8013,
        ServiceKind::Rfc868 => 8037,
        // Off unless `--metrics ADDR:PORT` names its own address.
        ServiceKind::Metrics => 0,
    }
}

/// Where the services listen: an address, or a host name to resolve at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindTarget {
    Ip(IpAddr),
    Host(String),
}

/// How log lines are timestamped (`--log-time`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogTime {
    /// Local time with milliseconds and no offset: `2026-11-25 23:55:01.123`.
    #[default]
    Local,
    /// RFC 3339 in UTC: `2026-11-25T23:55:01.123+00:00`, for logs gathered from many hosts.
    Rfc3339,
}

/// Everything `reactor` was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    /// Every address each service listens on, in the order given.
    pub bind: Vec<BindTarget>,
    /// `--user`/`--group`: whom to become once the sockets are bound.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Event loops (`--threads`), each a `Reactor` on its own thread.
    pub threads: usize,
    /// The services that are on, with their port (0 = OS's choice).
    pub services: Vec<(ServiceKind, u16)>,
    /// `--metrics`: where the metrics endpoint listens (TCP only, loop 1), if anywhere.
    pub metrics: Option<SocketAddr>,
    pub settings: Settings,
    /// Whether `--max-conns` was on the command line. A value the user chose that the
    /// descriptor limit cannot hold is refused; the default is lowered to what fits instead
    /// (a server should not refuse to start on its own default; see `descriptors.rs`).
    pub max_conns_given: bool,
    pub log_level: LevelFilter,
    pub log_time: LogTime,
    /// Log the lines of dependencies (mio's registrations at trace level…), not only ours.
    pub log_deps: bool,
}

/// The outcome of parsing the command line.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A bad command line, as one line for stderr.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after the program name.
pub fn parse_args(mut args: Vec<OsString>) -> Result<Command, UsageError> {
    // Taken out first: pico-args does not read `--flag=value`. Its error waits for --help.
    let trace = trace_mode(&mut args);
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let trace = trace?;
    let defaults = Settings::default();
    let mut bind = repeated(&mut args, "--bind", parse_bind_target)?;
    if bind.is_empty() {
        bind.push(BindTarget::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
    let user = option(&mut args, "--user", parse_name)?;
    let group = option(&mut args, "--group", parse_name)?;
    if group.is_some() && user.is_none() {
        return Err(UsageError("--group: only with --user".into()));
    }
    let threads = count(&mut args, "--threads", 1..=MAX_THREADS, 1)?;
    let coarse_timers = args.contains("--coarse-timers");

    let mut services = Vec::new();
    for kind in ServiceKind::ALL {
        if let Some(port) =
            option(&mut args, flag(kind), parse_port)?.unwrap_or(Some(default_port(kind)))
        {
            services.push((kind, port));
        }
    }
    let metrics = option(&mut args, "--metrics", parse_metrics_addr)?.flatten();

    let service = ServiceSettings {
        ticks: count(&mut args, "--ticks", 0..=MAX_TICKS, defaults.service.ticks)?,
        interval: millis(&mut args, "--interval-ms", 1)?.unwrap_or(defaults.service.interval),
        greeting_timeout: millis(&mut args, "--greeting-timeout-ms", 1)?
            .unwrap_or(defaults.service.greeting_timeout),
        max_udp_sessions: count(
            &mut args,
            "--max-udp-sessions",
            0..=MAX_COUNT,
            defaults.service.max_udp_sessions,
        )?,
        max_udp_sessions_per_ip: count(
            &mut args,
            "--max-udp-sessions-per-ip",
            0..=MAX_COUNT,
            defaults.service.max_udp_sessions_per_ip,
        )?,
    };
    let max_conns = optional_count(&mut args, "--max-conns", 1..=MAX_COUNT)?;
    let settings = Settings {
        service,
        max_conns: max_conns.unwrap_or(defaults.max_conns),
        max_conns_per_ip: count(
            &mut args,
            "--max-conns-per-ip",
            1..=MAX_COUNT,
            defaults.max_conns_per_ip,
        )?,
        idle_timeout: never_or_millis(&mut args, "--idle-timeout-ms", defaults.idle_timeout)?,
        send_timeout: never_or_millis(&mut args, "--send-timeout-ms", defaults.send_timeout)?,
        send_buffer: buffer_size(&mut args, "--sndbuf", defaults.send_buffer)?,
        receive_buffer: buffer_size(&mut args, "--rcvbuf", defaults.receive_buffer)?,
        udp_rate_per_ip: count(
            &mut args,
            "--udp-rate-per-ip",
            0..=MAX_COUNT,
            defaults.udp_rate_per_ip,
        )?,
        access: access_list(&mut args)?,
        proxy_from: repeated(&mut args, "--proxy-from", parse_cidr)?,
        trace,
        coarse_timers,
    };

    let mut verbosity = 0i32;
    for (flag, step) in [("-vv", 2), ("-v", 1), ("-qq", -2), ("-q", -1)] {
        while args.contains(flag) {
            verbosity += step;
        }
    }
    let log_level = match verbosity {
        i32::MIN..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    let log_time = option(&mut args, "--log-time", parse_log_time)?.unwrap_or_default();
    let log_deps = args.contains("--log-deps");

    if let Some(extra) = args.finish().first() {
        return Err(UsageError(format!(
            "unexpected argument '{}' (see --help)",
            extra.to_string_lossy()
        )));
    }
    Ok(Command::Run(Box::new(Config {
        bind,
        user,
        group,
        threads,
        services,
        metrics,
        settings,
        max_conns_given: max_conns.is_some(),
        log_level,
        log_time,
        log_deps,
    })))
}

/// `--trace-events`, `--trace-events=compact` or `--trace-events=json`, removed from `args`
/// (once: a second one is left for the "unexpected argument" check).
fn trace_mode(args: &mut Vec<OsString>) -> Result<TraceMode, UsageError> {
    const FLAG: &str = "--trace-events";
    let found = args.iter().position(|arg| {
        arg.to_str()
            .is_some_and(|arg| arg == FLAG || arg.starts_with("--trace-events="))
    });
    let Some(index) = found else {
        return Ok(TraceMode::Off);
    };
    let arg = args.remove(index);
    let value = arg
        .to_str()
        .and_then(|arg| arg.strip_prefix(FLAG))
        .and_then(|rest| rest.strip_prefix('='));
    TraceMode::parse(value).map_err(|e| UsageError(format!("{FLAG}: {e}")))
}

/// An optional `--flag VALUE`, with the flag named in any error.
fn option<T>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, UsageError> {
    args.opt_value_from_fn(flag, parse)
        .map_err(|err| flag_error(flag, err))
}

/// A flag's error as one line that names the flag.
fn flag_error(flag: &str, err: pico_args::Error) -> UsageError {
    UsageError(match err {
        pico_args::Error::Utf8ArgumentParsingFailed { cause, .. } => format!("{flag}: {cause}"),
        pico_args::Error::OptionWithoutAValue(_) => format!("{flag}: missing value"),
        other => format!("{flag}: {other}"),
    })
}

/// Every `--flag VALUE` of a repeatable flag, in order.
fn repeated<T>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, UsageError> {
    let mut values = Vec::new();
    while let Some(value) = option(args, flag, parse)? {
        values.push(value);
    }
    Ok(values)
}

/// An IP address (bracketed IPv6 accepted), or something that can be a host name.
fn parse_bind_target(text: &str) -> Result<BindTarget, String> {
    if let Ok(ip) = parse_ip(text) {
        return Ok(BindTarget::Ip(ip));
    }
    let is_host = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_host {
        Ok(BindTarget::Host(text.to_owned()))
    } else {
        Err(format!("'{text}' is neither an IP address nor a host name"))
    }
}

/// A user or group name (or number): printable, no spaces, not too long.
fn parse_name(text: &str) -> Result<String, String> {
    let fine = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if fine {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a user or group name"))
    }
}

/// Every `--allow` and `--deny`, each repeatable (their order does not matter).
fn access_list(args: &mut pico_args::Arguments) -> Result<AccessList, UsageError> {
    let mut rules = args
        .values_from_fn("--allow", |text| parse_rule(Action::Allow, text))
        .map_err(|err| flag_error("--allow", err))?;
    let denies = args
        .values_from_fn("--deny", |text| parse_rule(Action::Deny, text))
        .map_err(|err| flag_error("--deny", err))?;
    rules.extend(denies);
    Ok(AccessList::new(rules))
}

/// The largest count any flag takes (connections, sessions, datagrams per second): far above
/// what one process can hold, far below any overflow in the arithmetic done with it.
const MAX_COUNT: u64 = 10_000_000;
/// Ticks per session; with the interval capped at a day, no deadline can overflow.
const MAX_TICKS: u64 = 1_000_000;
/// Event loops; more than the cores of any machine this runs on.
const MAX_THREADS: u64 = 256;
/// Durations are capped at a day: longer ones mean nothing for these services, and the cap keeps
/// every deadline computed from them (`start + interval × ticks`) far from overflowing.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Socket buffer sizes a user may ask for (the kernel doubles what it is given, and caps it at
/// `net.core.wmem_max`/`rmem_max`).
const BUFFER_RANGE: std::ops::RangeInclusive<u64> = 4096..=16 * 1024 * 1024;

/// An optional numeric `--flag VALUE` that must lie in `range`.
fn ranged(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, UsageError> {
    let Some(n) = option(args, flag, parse_number::<u64>)? else {
        return Ok(None);
    };
    if n < *range.start() {
        return Err(UsageError(format!(
            "{flag}: must be at least {}",
            range.start()
        )));
    }
    if n > *range.end() {
        let day = if *range.end() == DAY_MS {
            " (one day)"
        } else {
            ""
        };
        return Err(UsageError(format!("{flag}: at most {}{day}", range.end())));
    }
    Ok(Some(n))
}

/// A count in `range` (which fits `T`), or `default`.
fn count<T: TryFrom<u64>>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: T,
) -> Result<T, UsageError> {
    Ok(optional_count(args, flag, range)?.unwrap_or(default))
}

/// A count in `range` (which fits `T`), if the flag is given.
fn optional_count<T: TryFrom<u64>>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<T>, UsageError> {
    ranged(args, flag, range)?
        .map(|n| T::try_from(n).map_err(|_| UsageError(format!("{flag}: {n} is too large"))))
        .transpose()
}

/// A duration in milliseconds, from `min` to a day.
fn millis(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    min: u64,
) -> Result<Option<Duration>, UsageError> {
    Ok(ranged(args, flag, min..=DAY_MS)?.map(Duration::from_millis))
}

/// A duration in milliseconds up to a day, where 0 means "never".
fn never_or_millis(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: Option<Duration>,
) -> Result<Option<Duration>, UsageError> {
    Ok(match millis(args, flag, 0)? {
        Some(Duration::ZERO) => None,
        Some(duration) => Some(duration),
        None => default,
    })
}

/// A socket buffer size in bytes, or 0 to leave the size to the kernel's autotuning.
fn buffer_size(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: Option<usize>,
) -> Result<Option<usize>, UsageError> {
    match option(args, flag, parse_number::<u64>)? {
        Some(0) => Ok(None),
        Some(n) if BUFFER_RANGE.contains(&n) => Ok(usize::try_from(n).ok()),
        Some(_) => Err(UsageError(format!(
            "{flag}: 0 (the kernel's choice) or {} to {} bytes",
            BUFFER_RANGE.start(),
            BUFFER_RANGE.end()
        ))),
        None => Ok(default),
    }
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    // Accept the bracketed form people copy from URLs, e.g. [::1].
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    IpAddr::from_str(bare).map_err(|_| format!("'{text}' is not an IP address"))
}

/// `off` → `None`; otherwise a port number, 0 meaning "let the OS choose".
fn parse_port(text: &str) -> Result<Option<u16>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    u16::from_str(text)
        .map(Some)
        .map_err(|_| format!("'{text}' is not a port number (0-65535) or 'off'"))
}

/// `off` → `None`; otherwise `IP:PORT` (`[IPv6]:PORT`), port 0 letting the OS choose.
fn parse_metrics_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    SocketAddr::from_str(text)
        .map(Some)
        .map_err(|_| format!("'{text}' is not ADDR:PORT (e.g. 127.0.0.1:9100, [::1]:0) or 'off'"))
}

fn parse_log_time(text: &str) -> Result<LogTime, String> {
    match text {
        "local" => Ok(LogTime::Local),
        "rfc3339" => Ok(LogTime::Rfc3339),
        _ => Err(format!("'{text}' is not one of: local, rfc3339")),
    }
}

fn parse_number<T: FromStr>(text: &str) -> Result<T, String> {
    T::from_str(text).map_err(|_| format!("'{text}' is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    fn run_config(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Command::Run(config)) => *config,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn trace_events_takes_an_optional_form_after_an_equals_sign() {
        assert_eq!(run_config(&[]).settings.trace, TraceMode::Off);
        for (arg, mode) in [
            ("--trace-events", TraceMode::Words),
            ("--trace-events=words", TraceMode::Words),
            ("--trace-events=compact", TraceMode::Compact),
            ("--trace-events=json", TraceMode::Json),
        ] {
            assert_eq!(run_config(&["--ticks", "2", arg]).settings.trace, mode);
        }
        let error = |args: &[&str]| match parse(args) {
            Err(UsageError(message)) => message,
            other => panic!("{args:?} gave {other:?}"),
        };
        assert_eq!(
            error(&["--trace-events=xml"]),
            "--trace-events: 'xml' is not a trace form (words, compact or json)"
        );
        assert_eq!(
            error(&["--trace-events", "--trace-events=json"]),
            "unexpected argument '--trace-events=json' (see --help)"
        );
        // The form is joined by `=`: a separate word is an argument of its own.
        assert_eq!(
            error(&["--trace-events", "json"]),
            "unexpected argument 'json' (see --help)"
        );
        assert!(matches!(
            parse(&["--trace-events=xml", "--help"]),
            Ok(Command::Help)
        ));
    }

    #[test]
    fn defaults_follow_the_protocol_document() {
        let config = run_config(&[]);
        assert_eq!(
            config.bind,
            vec![BindTarget::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))]
        );
        assert_eq!((config.user, config.group), (None, None));
        assert_eq!(
            config.services,
            vec![
                (ServiceKind::TimeStream, 8080),
                (ServiceKind::Echo, 8081),
                (ServiceKind::Daytime, 8013),
                (ServiceKind::Rfc868, 8037),
            ]
        );
        assert_eq!(config.settings.service.ticks, 60);
        assert_eq!(config.settings.service.interval, Duration::from_secs(1));
        assert_eq!(config.log_level, LevelFilter::Info);
        assert_eq!(config.metrics, None, "no metrics endpoint unless asked");
        assert_eq!(
            run_config(&["--metrics", "[::1]:9100"]).metrics,
            Some("[::1]:9100".parse().unwrap())
        );
        assert_eq!(run_config(&["--metrics", "OFF"]).metrics, None);
        assert_eq!(config.log_time, LogTime::Local);
        assert!(!config.log_deps);
        let config = run_config(&["--log-time", "rfc3339", "--log-deps"]);
        assert_eq!(config.log_time, LogTime::Rfc3339);
        assert!(config.log_deps);
    }

    #[test]
    fn ports_off_ipv6_and_verbosity() {
        let config = run_config(&[
            "--bind",
            "::1",
            "--time",
            "0",
            "--echo",
            "off",
            "--daytime",
            "OFF",
            "--rfc868",
            "9037",
            "-q",
            "--idle-timeout-ms",
            "0",
        ]);
        assert_eq!(config.bind, vec![BindTarget::Ip("::1".parse().unwrap())]);
        assert_eq!(
            config.services,
            vec![(ServiceKind::TimeStream, 0), (ServiceKind::Rfc868, 9037)]
        );
        assert_eq!(config.log_level, LevelFilter::Warn);
        assert_eq!(config.settings.idle_timeout, None);
        assert_eq!(run_config(&["-v", "-v"]).log_level, LevelFilter::Trace);
        assert_eq!(run_config(&["-vv"]).log_level, LevelFilter::Trace);
        assert_eq!(run_config(&[]).threads, 1);
        assert_eq!(run_config(&["--threads", "2"]).threads, 2);
    }

    #[test]
    fn each_loop_gets_an_equal_share_of_every_limit() {
        let settings = Settings {
            max_conns: 10_001,
            udp_rate_per_ip: 0,
            ..Settings::default()
        };
        let share = settings.share(2);
        assert_eq!(share.max_conns, 5001);
        assert_eq!(share.service.max_udp_sessions, 5000);
        assert_eq!(share.service.max_udp_sessions_per_ip, 50);
        assert_eq!(share.udp_rate_per_ip, 0, "no limit stays no limit");
        assert_eq!(share.service.ticks, settings.service.ticks);
    }

    #[test]
    fn access_rules_are_repeatable_and_per_service() {
        use crate::server::access::Decision;
        let config = run_config(&[
            "--allow",
            "127.0.0.0/24",
            "--deny",
            "127.0.0.8/29",
            "--allow",
            "127.0.0.9",
            "--deny",
            "echo=[::1]",
        ]);
        let access = &config.settings.access;
        assert_eq!(access.rules().len(), 4);
        let decide = |ip: &str, kind| access.decide(ip.parse().unwrap(), kind);
        assert_eq!(decide("127.0.0.9", ServiceKind::Daytime), Decision::Allowed);
        assert_ne!(
            decide("127.0.0.10", ServiceKind::Daytime),
            Decision::Allowed
        );
        assert!(run_config(&[]).settings.access.rules().is_empty());
        let share = config.settings.share(2);
        assert_eq!(&share.access, access, "every loop applies the whole list");
    }

    #[test]
    fn bad_access_rules_name_the_flag() {
        let err = |args: &[&str]| parse(args).unwrap_err().0;
        assert_eq!(
            err(&["--allow", "10.0.0.0/33"]),
            "--allow: '10.0.0.0/33': an IPv4 prefix is at most /32"
        );
        assert!(err(&["--deny", "localhost"]).starts_with("--deny: 'localhost' is not an IP"));
        assert_eq!(
            err(&["--deny", "smtp=10.0.0.0/8"]),
            "--deny: 'smtp' is not a service (time, echo, daytime, rfc868 or metrics)"
        );
        assert_eq!(err(&["--allow"]), "--allow: missing value");
        assert!(!err(&["--allow", "1.2.3.4/8"]).contains('\n'), "one line");
    }

    #[test]
    fn proxy_from_is_repeatable_off_by_default_and_names_itself_in_errors() {
        assert!(run_config(&[]).settings.proxy_from.is_empty());
        let config = run_config(&["--proxy-from", "10.0.0.0/8", "--proxy-from", "[::1]"]);
        assert_eq!(
            config.settings.proxy_from,
            vec![
                parse_cidr("10.0.0.0/8").unwrap(),
                parse_cidr("::1/128").unwrap()
            ]
        );
        assert_eq!(
            config.settings.share(2).proxy_from,
            config.settings.proxy_from,
            "every loop trusts the same balancers"
        );
        let err = |args: &[&str]| parse(args).unwrap_err().0;
        assert!(
            err(&["--proxy-from", "haproxy"]).starts_with("--proxy-from: 'haproxy' is not an IP")
        );
        assert_eq!(
            err(&["--proxy-from", "10.0.0.1/8"]),
            "--proxy-from: '10.0.0.1/8' has address bits set past its prefix (the network is 10.0.0.0/8)"
        );
        assert_eq!(err(&["--proxy-from"]), "--proxy-from: missing value");
    }

    #[test]
    fn bad_input_names_the_flag() {
        let err = |args: &[&str]| parse(args).unwrap_err().0;
        assert!(err(&["--time", "99999"]).starts_with("--time: '99999' is not a port"));
        assert!(err(&["--bind", "local host"]).contains("neither an IP address nor a host name"));
        assert!(err(&["--bind", "a..b"]).contains("neither"));
        assert_eq!(err(&["--group", "daemon"]), "--group: only with --user");
        assert!(err(&["--user", "a b"]).contains("not a user or group name"));
        assert_eq!(err(&["--ticks"]), "--ticks: missing value");
        assert_eq!(
            err(&["--interval-ms", "0"]),
            "--interval-ms: must be at least 1"
        );
        assert_eq!(
            err(&["--max-conns", "0"]),
            "--max-conns: must be at least 1"
        );
        assert_eq!(err(&["--threads", "0"]), "--threads: must be at least 1");
        assert!(err(&["--interval-ms", "18446744073709551615"]).contains("one day"));
        assert!(err(&["--idle-timeout-ms", "86400001"]).contains("one day"));
        assert!(err(&["--frobnicate"]).contains("unexpected argument '--frobnicate'"));
        assert_eq!(
            err(&["--metrics", "9100"]),
            "--metrics: '9100' is not ADDR:PORT (e.g. 127.0.0.1:9100, [::1]:0) or 'off'"
        );
        assert_eq!(err(&["--metrics"]), "--metrics: missing value");
        assert_eq!(
            err(&["--log-time", "utc"]),
            "--log-time: 'utc' is not one of: local, rfc3339"
        );
        assert_eq!(err(&["--log-time"]), "--log-time: missing value");
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Command::Version)));
    }

    #[test]
    fn bind_repeats_and_takes_host_names() {
        let config = run_config(&[
            "--bind",
            "127.0.0.1",
            "--bind",
            "[::1]",
            "--bind",
            "localhost",
        ]);
        assert_eq!(
            config.bind,
            vec![
                BindTarget::Ip("127.0.0.1".parse().unwrap()),
                BindTarget::Ip("::1".parse().unwrap()),
                BindTarget::Host("localhost".into()),
            ]
        );
        let config = run_config(&["--user", "nobody", "--group", "nogroup"]);
        assert_eq!(config.user.as_deref(), Some("nobody"));
        assert_eq!(config.group.as_deref(), Some("nogroup"));
    }
}
