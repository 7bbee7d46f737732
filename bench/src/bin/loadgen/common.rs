//! What every scenario shares: the one-line report, histograms, descriptor and CPU accounting.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hdrhistogram::Histogram;

/// One line of `key=value` pairs, in insertion order.
#[derive(Default)]
pub struct Report(Vec<(String, String)>);

impl Report {
    pub fn new(scenario: &str) -> Self {
        let mut report = Report::default();
        report.put("scenario", scenario);
        report
    }

    /// Adds a pair; spaces in the value become `_`, so the line splits on spaces.
    pub fn put(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        self.0
            .push((key.to_owned(), value.to_string().replace(' ', "_")));
        self
    }

    /// Adds a float with a fixed number of decimals.
    pub fn num(&mut self, key: &str, value: f64, decimals: usize) -> &mut Self {
        self.put(key, format!("{value:.decimals$}"))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// A histogram of nanoseconds, 1 ns to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Cannot fail: the bounds and precision are constants within hdrhistogram's limits.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records a duration in nanoseconds, clamped into the histogram's range.
pub fn record(hist: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    hist.saturating_record(ns.max(1));
}

/// A percentile of a nanosecond histogram, in the given unit (1e3 = µs, 1e6 = ms).
pub fn percentile(hist: &Histogram<u64>, q: f64, unit: f64) -> f64 {
    if hist.is_empty() {
        return f64::NAN;
    }
    hist.value_at_quantile(q) as f64 / unit
}

/// A histogram as text, `value:count` pairs joined by `,` (for a worker process to hand its
/// figures to the coordinator).
pub fn encode(hist: &Histogram<u64>) -> String {
    let pairs: Vec<String> = hist
        .iter_recorded()
        .map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value()))
        .collect();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(",")
    }
}

/// Adds the pairs of [`encode`] to a histogram.
pub fn decode_into(hist: &mut Histogram<u64>, text: &str) -> Result<(), String> {
    if text == "-" {
        return Ok(());
    }
    for pair in text.split(',') {
        let (value, count) = pair
            .split_once(':')
            .ok_or_else(|| format!("bad histogram pair '{pair}'"))?;
        let value: u64 = value.parse().map_err(|_| format!("bad value '{value}'"))?;
        let count: u64 = count.parse().map_err(|_| format!("bad count '{count}'"))?;
        hist.saturating_record_n(value.max(1), count);
    }
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// The hard `RLIMIT_NOFILE`: the most descriptors one process can ever have.
pub fn nofile_hard() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_max
}

/// Source addresses from 127.0.0.1 up to 127.255.255.254: all of 127.0.0.0/8 but its network
/// and broadcast addresses.
pub const MAX_SRC_IPS: u32 = (1 << 24) - 2;

/// The source address of the `i`-th client of a set spread over `src_ips` loopback addresses
/// (127.0.0.1, 127.0.0.2, …, round robin, on through 127.0.0.0/8, which Linux routes to `lo`
/// whole; IPv6 has only `::1`), port 0 for the kernel to choose. The reactor limits what one
/// source IP holds (connections, UDP sessions, datagrams a second): one address for every
/// client would measure those limits, not the server.
pub fn source_addr(server: SocketAddr, src_ips: u32, i: usize) -> SocketAddr {
    let ip: IpAddr = match server.ip() {
        IpAddr::V4(_) => {
            let nth = i % src_ips.clamp(1, MAX_SRC_IPS) as usize;
            // Below MAX_SRC_IPS, so within 127.0.0.0/8.
            Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + nth as u32).into()
        }
        IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, 0)
}

/// A UDP socket connected to `server` from [`source_addr`]. Connected, so `send`/`recv` need no
/// address and only the server's datagrams arrive.
pub fn udp_socket(server: SocketAddr, src_ips: u32, i: usize) -> io::Result<mio::net::UdpSocket> {
    let socket = mio::net::UdpSocket::bind(source_addr(server, src_ips, i))?;
    socket.connect(server)?;
    Ok(socket)
}

/// User + system CPU time of this process so far (all threads).
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `--flag VALUE` with a default.
pub fn opt<T: FromStr>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: T,
) -> Result<T, String> {
    let text: Option<String> = args.opt_value_from_str(flag).map_err(|e| e.to_string())?;
    match text {
        None => Ok(default),
        Some(text) => T::from_str(&text).map_err(|_| format!("{flag}: bad value '{text}'")),
    }
}

/// `--flag ADDR` (required) as a socket address.
pub fn addr(args: &mut pico_args::Arguments, flag: &'static str) -> Result<SocketAddr, String> {
    optional_addr(args, flag)?.ok_or_else(|| format!("{flag} ADDR is required"))
}

/// `--flag ADDR|off`: `None` when absent or `off`.
pub fn optional_addr(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<SocketAddr>, String> {
    let text: Option<String> = args.opt_value_from_str(flag).map_err(|e| e.to_string())?;
    match text.as_deref() {
        None | Some("off") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{flag}: '{text}' is not an ip:port address")),
    }
}

/// Fails on arguments nobody took.
pub fn finish(args: pico_args::Arguments) -> Result<(), String> {
    match args.finish().first() {
        Some(extra) => Err(format!("unexpected argument '{}'", extra.to_string_lossy())),
        None => Ok(()),
    }
}

/// Counts failures by reason, for the report (`reason:count,...`).
#[derive(Default)]
pub struct Failures(std::collections::BTreeMap<String, u64>);

impl Failures {
    pub fn add(&mut self, reason: impl Into<String>) {
        *self.0.entry(reason.into()).or_insert(0) += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Merges `reason:count,...` text as written by [`fmt::Display`].
    pub fn merge_text(&mut self, text: &str) {
        if text == "-" {
            return;
        }
        for pair in text.split(',') {
            if let Some((reason, count)) = pair.rsplit_once(':') {
                *self.0.entry(reason.to_owned()).or_insert(0) += count.parse().unwrap_or(1);
            }
        }
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(reason, count)| format!("{}:{count}", reason.replace([' ', ',', ':'], "_")))
            .collect();
        f.write_str(&parts.join(","))
    }
}
