//! The numbers every loop keeps, drawn as pages: `/metrics` for Prometheus, `/` for people.
//!
//! A [`Board`] holds each loop's [`Totals`] (one `Arc` per loop, shared with the loop that
//! writes it; see `totals.rs` for why plain Relaxed atomics) and implements the contract's
//! `Pages`, which the metrics endpoint (`services/metrics.rs`, a TCP service like the others)
//! calls through `Env::render`. With `--threads N` the endpoint is served by loop 1 alone, and
//! it reads every loop's counters straight from their atomics, each series labelled with its
//! `loop`: no message between threads, no lock, nothing the other loops must do.
//!
//! Reading for a scrape costs the scraping loop a few microseconds per loop served (a few
//! hundred Relaxed loads and the text), plus, for the process figures, reading `/proc/self/stat`,
//! `/proc/stat` and the entries of `/proc/self/fd` — done only when asked, never on a timer.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::descriptors;
use super::exposition::{Exposition, Kind, Label, Value};
use super::listen::Proto;
use super::totals::{CloseReason, Dropped, Histogram, Refused, ServiceTotals, Totals, Uptime};
use crate::services::ServiceKind;
use crate::services::contract::{Page, Pages, Rejection};

/// The `Content-Type` of [`Page::Metrics`].
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every loop's counters, for the pages.
#[derive(Debug)]
pub struct Board {
    loops: Vec<Arc<Totals>>,
    /// When the board was made (at start), in case `/proc` cannot say when the process began.
    made: SystemTime,
}

impl Board {
    /// A board for `loops` event loops (at least one), each with fresh counters.
    pub fn new(loops: usize) -> Arc<Board> {
        Arc::new(Board {
            loops: (0..loops.max(1))
                .map(|_| Arc::new(Totals::default()))
                .collect(),
            made: SystemTime::now(),
        })
    }

    /// The counters of loop `number` (from 1).
    pub fn totals(&self, number: usize) -> Option<Arc<Totals>> {
        self.loops.get(number.checked_sub(1)?).cloned()
    }

    /// How many loops there are.
    pub fn loops(&self) -> usize {
        self.loops.len()
    }

    /// Each loop's number (from 1, as text for the `loop` label) and counters.
    fn numbered(&self) -> impl Iterator<Item = (String, &Totals)> {
        self.loops
            .iter()
            .enumerate()
            .map(|(i, totals)| ((i + 1).to_string(), totals.as_ref()))
    }

    /// The Prometheus text exposition of every loop and of the process.
    pub fn write_metrics(&self, out: &mut String) {
        let mut x = Exposition::new(out);
        self.services(&mut x);
        self.turns(&mut x);
        process(&mut x, self.made);
        x.family(
            "inetloop_build_info",
            Kind::Gauge,
            "Always 1; the version of the server that is running.",
        );
        x.sample(
            "inetloop_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            Value::Int(1),
        );
    }

    /// Every (loop, service, transport) this server serves, with its counters.
    fn served(&self, proto: Proto) -> Vec<(String, ServiceKind, &ServiceTotals)> {
        let mut cells = Vec::new();
        for (number, totals) in self.numbered() {
            for kind in ServiceKind::EVERY {
                let service = totals.of(kind);
                let served = match proto {
                    Proto::Tcp => service.tcp.served.is_up(),
                    Proto::Udp => service.udp.served.is_up(),
                };
                if served {
                    cells.push((number.clone(), kind, service));
                }
            }
        }
        cells
    }

    fn services(&self, x: &mut Exposition) {
        let tcp = self.served(Proto::Tcp);
        let udp = self.served(Proto::Udp);

        counters(
            x,
            "inetloop_tcp_connections_accepted_total",
            "TCP connections accepted and served (those refused at once are not).",
            tcp.iter()
                .map(|(n, kind, s)| (labels(n, *kind), s.tcp.accepted.get())),
        );
        gauges(
            x,
            "inetloop_tcp_connections_open",
            "TCP connections open now (accepted minus closed).",
            tcp.iter()
                .map(|(n, kind, s)| (labels(n, *kind), s.tcp.open())),
        );
        counters(
            x,
            "inetloop_tcp_connections_closed_total",
            "TCP connections closed, by why they ended: service_done, peer_closed, shutdown, \
             idle_timeout, send_timeout, linger_expired, peer_reset, io_error, and behind a \
             --proxy-from balancer proxy_header (no valid header) and refused (its client).",
            tcp.iter().flat_map(|(n, kind, s)| {
                CloseReason::ALL.iter().map(move |&why| {
                    let mut l = labels(n, *kind);
                    l.push(("reason", why.name()));
                    (l, s.tcp.closed(why))
                })
            }),
        );
        counters(
            x,
            "inetloop_tcp_connections_refused_total",
            "TCP connections turned away: by the plumbing right after accept, before any \
             byte (access_list, max_conns_per_ip, register_failed; never counted as accepted, \
             except behind a --proxy-from balancer, where the PROXY header names the client \
             first, and proxy_header: no valid header), or by the service (greeting_timeout, \
             line_too_long, request_timeout, head_too_large, bad_request). Those counted as \
             accepted are counted as closed too.",
            tcp.iter().flat_map(|(n, kind, s)| {
                let plumbing = Refused::ALL
                    .iter()
                    .map(move |&why| (why.name(), s.tcp.refused(why)));
                let service = kind
                    .tcp_rejections()
                    .iter()
                    .map(move |&why| (why.name(), s.tcp.rejected(why)));
                plumbing.chain(service).map(move |(why, count)| {
                    let mut l = labels(n, *kind);
                    l.push(("reason", why));
                    (l, count)
                })
            }),
        );
        let bytes = |x: &mut Exposition,
                     name: &str,
                     help: &str,
                     tcp_of: fn(&ServiceTotals) -> u64,
                     udp_of: fn(&ServiceTotals) -> u64| {
            let tcp_side = tcp.iter().map(|(n, kind, s)| {
                let mut l = labels(n, *kind);
                l.push(("proto", "tcp"));
                (l, tcp_of(s))
            });
            let udp_side = udp.iter().map(|(n, kind, s)| {
                let mut l = labels(n, *kind);
                l.push(("proto", "udp"));
                (l, udp_of(s))
            });
            counters(x, name, help, tcp_side.chain(udp_side));
        };
        bytes(
            x,
            "inetloop_received_bytes_total",
            "Bytes read from TCP connections (discarded input included) and UDP datagrams received.",
            |s| s.tcp.bytes_in.get(),
            |s| s.udp.bytes_in.get(),
        );
        bytes(
            x,
            "inetloop_sent_bytes_total",
            "Bytes written to TCP connections and sent in UDP datagrams.",
            |s| s.tcp.bytes_out.get(),
            |s| s.udp.bytes_out.get(),
        );
        counters(
            x,
            "inetloop_udp_datagrams_received_total",
            "UDP datagrams received (those then dropped included).",
            udp.iter()
                .map(|(n, kind, s)| (labels(n, *kind), s.udp.datagrams_in.get())),
        );
        counters(
            x,
            "inetloop_udp_datagrams_sent_total",
            "UDP datagrams sent.",
            udp.iter()
                .map(|(n, kind, s)| (labels(n, *kind), s.udp.datagrams_out.get())),
        );
        counters(
            x,
            "inetloop_udp_datagrams_dropped_total",
            "UDP datagrams dropped: received and not served (access_list, rate_in, shutdown, \
             and the service's max_udp_sessions, max_udp_sessions_per_ip, \
             privileged_source_port), or replies not sent (rate_out, queue_full, send_failed).",
            udp.iter().flat_map(|(n, kind, s)| {
                let plumbing = Dropped::ALL
                    .iter()
                    .map(move |&why| (why.name(), s.udp.dropped(why)));
                let service = kind
                    .udp_rejections()
                    .iter()
                    .map(move |&why| (why.name(), s.udp.rejected(why)));
                plumbing.chain(service).map(move |(why, count)| {
                    let mut l = labels(n, *kind);
                    l.push(("reason", why));
                    (l, count)
                })
            }),
        );
        gauges(
            x,
            "inetloop_udp_sessions",
            "Live UDP sessions (the UDP time stream's table).",
            udp.iter()
                .filter(|(_, kind, _)| kind.keeps_udp_sessions())
                .map(|(n, kind, s)| (labels(n, *kind), s.udp.sessions.get())),
        );
        x.family(
            "inetloop_tick_lateness_seconds",
            Kind::Histogram,
            "How late time-stream ticks went out: from each tick's deadline to the loop turn \
             that wrote it (every tick after a session's first, which answers the greeting).",
        );
        for (proto, cells) in [(Proto::Tcp, &tcp), (Proto::Udp, &udp)] {
            for (n, kind, s) in cells.iter().filter(|(_, kind, _)| kind.sends_on_schedule()) {
                let h = match proto {
                    Proto::Tcp => &s.tcp.lateness,
                    Proto::Udp => &s.udp.lateness,
                };
                let l = [
                    ("loop", n.as_str()),
                    ("service", kind.name()),
                    ("proto", proto.name()),
                ];
                histogram(x, "inetloop_tick_lateness_seconds", &l, h, 1e9);
            }
        }
    }

    fn turns(&self, x: &mut Exposition) {
        let loops: Vec<(String, &Totals)> = self.numbered().collect();
        let each = |value: fn(&Totals) -> u64| {
            loops
                .iter()
                .map(move |(n, t)| (vec![("loop", n.as_str())], value(t)))
        };
        counters(
            x,
            "inetloop_loop_wakeups_total",
            "Returns from epoll_wait (kevent on BSD and macOS).",
            each(|t| t.turns.events_per_wakeup.count()),
        );
        counters(
            x,
            "inetloop_loop_events_total",
            "Readiness events handled.",
            each(|t| t.turns.events_per_wakeup.sum()),
        );
        x.family(
            "inetloop_loop_events_per_wakeup",
            Kind::Histogram,
            "Readiness events returned by one epoll_wait (0: a timer was due).",
        );
        for (n, t) in &loops {
            histogram(
                x,
                "inetloop_loop_events_per_wakeup",
                &[("loop", n.as_str())],
                &t.turns.events_per_wakeup,
                1.0,
            );
        }
        counters(
            x,
            "inetloop_loop_replays_total",
            "Sockets served again next turn after spending a per-turn budget.",
            each(|t| t.turns.replays.get()),
        );
        counters(
            x,
            "inetloop_loop_timers_fired_total",
            "Timers that came due and were handed to their owner.",
            each(|t| t.turns.timers_fired.get()),
        );
        gauges(
            x,
            "inetloop_loop_timers_pending",
            "Timers in the heap at the end of the last turn (cancelled ones included until \
             they reach the top).",
            each(|t| t.turns.timers_pending.get()),
        );
        counters(
            x,
            "inetloop_loop_accept_pauses_total",
            "Times accepting paused on an accept error such as EMFILE.",
            each(|t| t.turns.accept_pauses.get()),
        );
        let seconds = |nanos: u64| Value::Float(nanos as f64 / 1e9);
        x.family(
            "inetloop_loop_poll_seconds_total",
            Kind::Counter,
            "Time spent blocked in epoll_wait.",
        );
        for (n, t) in &loops {
            let value = seconds(t.turns.poll_nanos.get());
            x.sample("inetloop_loop_poll_seconds_total", &[("loop", n)], value);
        }
        x.family(
            "inetloop_loop_work_seconds_total",
            Kind::Counter,
            "Time spent working between two epoll_wait calls.",
        );
        for (n, t) in &loops {
            let value = seconds(t.turns.work_nanos.get());
            x.sample("inetloop_loop_work_seconds_total", &[("loop", n)], value);
        }
    }

    /// The status page: a line about the process, then each loop's status line (the SIGUSR1
    /// line, from the same counters), then a table of every service.
    pub fn write_status(&self, out: &mut String) {
        let now = Instant::now();
        let figures = ProcessFigures::read();
        let up = self
            .loops
            .first()
            .map(|t| now.saturating_duration_since(t.started()))
            .unwrap_or_default();
        let _ = write!(
            out,
            "inetloop {}: up {}, {} event loop(s), pid {}",
            env!("CARGO_PKG_VERSION"),
            Uptime(up),
            self.loops(),
            std::process::id()
        );
        if let Some(fds) = figures.open_fds {
            let _ = write!(out, ", {fds} open descriptors");
        }
        if let Some(rss) = figures.resident_bytes {
            let _ = write!(out, ", {:.1} MiB resident", rss as f64 / 1_048_576.0);
        }
        out.push_str("\n\n");
        let count = self.loops();
        for (i, totals) in self.loops.iter().enumerate() {
            out.push_str(&totals.status_line((i + 1, count), now, None));
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "\n{:<5} {:<8} {:<5} {:>10} {:>6} {:>10} {:>8} {:>14} {:>14} {:>12} {:>12} {:>8}",
            "loop",
            "service",
            "proto",
            "accepted",
            "open",
            "closed",
            "refused",
            "bytes_in",
            "bytes_out",
            "datagrams_in",
            "datagrams_out",
            "dropped"
        );
        for (proto, cells) in [
            (Proto::Tcp, self.served(Proto::Tcp)),
            (Proto::Udp, self.served(Proto::Udp)),
        ] {
            for (n, kind, s) in cells {
                let dash = || String::from("-");
                let (
                    accepted,
                    open,
                    closed,
                    refused,
                    bytes_in,
                    bytes_out,
                    dgram_in,
                    dgram_out,
                    dropped,
                ) = match proto {
                    Proto::Tcp => {
                        let t = &s.tcp;
                        let refused = Refused::ALL.iter().map(|&w| t.refused(w)).sum::<u64>()
                            + Rejection::ALL.iter().map(|&w| t.rejected(w)).sum::<u64>();
                        (
                            t.accepted.get().to_string(),
                            t.open().to_string(),
                            t.closed_total().to_string(),
                            refused.to_string(),
                            t.bytes_in.get(),
                            t.bytes_out.get(),
                            dash(),
                            dash(),
                            dash(),
                        )
                    }
                    Proto::Udp => {
                        let u = &s.udp;
                        let dropped = Dropped::ALL.iter().map(|&w| u.dropped(w)).sum::<u64>()
                            + Rejection::ALL.iter().map(|&w| u.rejected(w)).sum::<u64>();
                        (
                            dash(),
                            dash(),
                            dash(),
                            dash(),
                            u.bytes_in.get(),
                            u.bytes_out.get(),
                            u.datagrams_in.get().to_string(),
                            u.datagrams_out.get().to_string(),
                            dropped.to_string(),
                        )
                    }
                };
                let _ = writeln!(
                    out,
                    "{n:<5} {:<8} {:<5} {accepted:>10} {open:>6} {closed:>10} {refused:>8} {bytes_in:>14} {bytes_out:>14} {dgram_in:>12} {dgram_out:>12} {dropped:>8}",
                    kind.name(),
                    proto.name(),
                );
            }
        }
    }
}

impl Pages for Board {
    fn render(&self, page: Page, out: &mut String) {
        match page {
            Page::Metrics => self.write_metrics(out),
            Page::Status => self.write_status(out),
        }
    }
}

/// The labels of a service's series in one loop.
fn labels(number: &str, kind: ServiceKind) -> Vec<Label<'_>> {
    vec![("loop", number), ("service", kind.name())]
}

/// A counter family and its samples.
fn counters<'l>(
    x: &mut Exposition,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Vec<Label<'l>>, u64)>,
) {
    x.family(name, Kind::Counter, help);
    for (labels, value) in samples {
        x.sample(name, &labels, Value::Int(value));
    }
}

/// A gauge family and its samples.
fn gauges<'l>(
    x: &mut Exposition,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Vec<Label<'l>>, u64)>,
) {
    x.family(name, Kind::Gauge, help);
    for (labels, value) in samples {
        x.sample(name, &labels, Value::Int(value));
    }
}

/// One histogram's samples; observations and bounds are divided by `scale` (ns → s).
fn histogram<const N: usize>(
    x: &mut Exposition,
    name: &str,
    labels: &[Label],
    h: &Histogram<N>,
    scale: f64,
) {
    let bounds = h.bounds().map(|b| b as f64 / scale);
    let (counts, over) = h.counts();
    x.histogram(name, labels, &bounds, &counts, over, h.sum() as f64 / scale);
}

/// What `/proc` says about this process (Linux); `None` where it cannot be read.
#[derive(Debug, Default)]
struct ProcessFigures {
    start_time: Option<f64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
}

impl ProcessFigures {
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The command name (field 2) is in parentheses and may hold spaces: count from the last
        // ')'. Field n of proc(5) is then at index n - 3.
        let fields: Vec<&str> = stat
            .rfind(')')
            .and_then(|at| stat.get(at + 1..))
            .map(|rest| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let ticks = sysconf(libc::_SC_CLK_TCK).map(|t| t as f64);
        let page = sysconf(libc::_SC_PAGESIZE);
        ProcessFigures {
            start_time: boot_time()
                .zip(field(22))
                .zip(ticks)
                .map(|((boot, start), ticks)| boot as f64 + start as f64 / ticks),
            cpu_seconds: field(14)
                .zip(field(15))
                .zip(ticks)
                .map(|((user, system), ticks)| (user + system) as f64 / ticks),
            open_fds: descriptors::open_count(),
            max_fds: descriptors::limits().ok().map(|limits| limits.soft),
            resident_bytes: field(24).zip(page).map(|(pages, size)| pages * size),
            virtual_bytes: field(23),
        }
    }
}

/// `sysconf(name)`, if the system answers.
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a system constant; it has no memory-safety preconditions.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
}

/// When the machine booted, in seconds since the Unix epoch (`btime` in `/proc/stat`).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|seconds| seconds.trim().parse().ok())
}

/// The `process_*` families, named as Prometheus's client libraries name them.
fn process(x: &mut Exposition, made: SystemTime) {
    let figures = ProcessFigures::read();
    let start = figures.start_time.or_else(|| {
        made.duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64())
    });
    let families = [
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            start.map(Value::Float),
        ),
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            figures.cpu_seconds.map(Value::Float),
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            figures.open_fds.map(Value::Int),
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            figures.max_fds.map(Value::Int),
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            figures.resident_bytes.map(Value::Int),
        ),
        (
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            figures.virtual_bytes.map(Value::Int),
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(value) = value {
            x.family(name, kind, help);
            x.sample(name, &[], value);
        }
    }
}
