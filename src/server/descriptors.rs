//! The descriptor budget: how many descriptors the process may hold (`RLIMIT_NOFILE`), raised at
//! start as far as the system allows, and checked once against what the configuration will hold.
//!
//! Every TCP connection is a descriptor, and so are the listeners, the UDP sockets, each loop's
//! poller, timerfd and signal pipe, and stdio. A limit that is too small shows only under load,
//! as `EMFILE` from `accept`: the loop survives that (it pauses accepting, `listener.rs`), but a
//! `--max-conns` the limit cannot hold is a promise the server cannot keep, so [`fit`] compares
//! the two before any socket is bound. A UDP session costs no descriptor: all of a service's
//! peers share its one socket.
//!
//! **Why raise the soft limit.** The soft limit is 1024 on most systems for the sake of
//! `select(2)`, whose `fd_set` only holds descriptors below `FD_SETSIZE` (1024); the hard limit is
//! what the administrator allows (systemd gives services 524288 unless `LimitNOFILE=` says
//! otherwise; a shell has `ulimit -Hn`). A program that never calls `select` — this one waits in
//! epoll or kqueue — may raise its soft limit to the hard one itself, as nginx does with
//! `worker_rlimit_nofile` and as systemd's documentation asks of such programs.
//!
//! System calls: `getrlimit` and `setrlimit(RLIMIT_NOFILE)` once at start; reading
//! `/proc/sys/fs/nr_open` (Linux: the most any process may have, which `setrlimit` enforces even
//! below an unlimited hard limit) and listing `/proc/self/fd` (or `/dev/fd`) to count the
//! descriptors already open.

use std::fmt;
use std::io;

/// Descriptors each loop holds besides its sockets: its poller (the epoll or kqueue descriptor),
/// its alarm's timerfd (`reactor/alarm.rs`; counted with `--coarse-timers` too, which has none)
/// and the two ends of signal-hook's self-pipe (`Reactor::watch_signals`).
pub const DESCRIPTORS_PER_LOOP: u64 = 4;

/// Descriptors kept free for what opens one for a moment at run time: the metrics endpoint
/// reading `/proc/self/…` (one file at a time), `sd_notify`'s datagram socket, `getpwnam` for
/// `--user`. Without them, a server at `--max-conns` would meet `EMFILE` in those places.
pub const SPARE_DESCRIPTORS: u64 = 16;

/// Counted when the open descriptors cannot be listed: stdin, stdout, stderr.
const STDIO: u64 = 3;

/// `RLIMIT_NOFILE`; `u64::MAX` stands for unlimited (`RLIM_INFINITY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
}

/// The process's `RLIMIT_NOFILE` now (`getrlimit`).
pub fn limits() -> io::Result<Limits> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Limits {
        soft: from_rlim(limit.rlim_cur),
        hard: from_rlim(limit.rlim_max),
    })
}

// `rlim_t` is a `u64` on 64-bit targets, a `u32` on some 32-bit ones: the conversion is real there.
#[allow(clippy::useless_conversion)]
fn from_rlim(value: libc::rlim_t) -> u64 {
    if value == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(value)
    }
}

fn to_rlim(value: u64) -> libc::rlim_t {
    libc::rlim_t::try_from(value).unwrap_or(libc::RLIM_INFINITY)
}

/// What [`raise_soft_limit`] did.
#[derive(Debug)]
pub enum Raise {
    /// The soft limit was below what the hard limit allows, and now is not: `to` is the hard
    /// limit, or the kernel's ceiling `nr_open` when that is lower.
    Raised { from: u64, to: u64, hard: u64 },
    /// Already as high as it may go.
    AtCeiling(Limits),
    /// `setrlimit` refused; the soft limit is unchanged.
    Failed {
        limits: Limits,
        wanted: u64,
        error: io::Error,
    },
}

impl Raise {
    /// The soft limit after the attempt: the most descriptors this process may hold.
    pub fn soft(&self) -> u64 {
        match self {
            Raise::Raised { to, .. } => *to,
            Raise::AtCeiling(limits) | Raise::Failed { limits, .. } => limits.soft,
        }
    }

    /// The hard limit, which no unprivileged process can raise.
    pub fn hard(&self) -> u64 {
        match self {
            Raise::Raised { hard, .. } => *hard,
            Raise::AtCeiling(limits) | Raise::Failed { limits, .. } => limits.hard,
        }
    }
}

/// The log line: `descriptors: soft limit raised 1024 → 20000 (the hard limit)`.
impl fmt::Display for Raise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raise::Raised { from, to, hard } if to == hard => write!(
                f,
                "descriptors: soft limit raised {} → {} (the hard limit)",
                figure(*from),
                figure(*to)
            ),
            Raise::Raised { from, to, hard } => write!(
                f,
                "descriptors: soft limit raised {} → {} (the kernel's fs.nr_open; hard limit {})",
                figure(*from),
                figure(*to),
                figure(*hard)
            ),
            Raise::AtCeiling(limits) => write!(
                f,
                "descriptors: soft limit {} (hard limit {}): nothing to raise",
                figure(limits.soft),
                figure(limits.hard)
            ),
            Raise::Failed {
                limits,
                wanted,
                error,
            } => write!(
                f,
                "descriptors: cannot raise the soft limit {} → {} (hard limit {}): {error}; keeping {}",
                figure(limits.soft),
                figure(*wanted),
                figure(limits.hard),
                figure(limits.soft)
            ),
        }
    }
}

/// A limit as people read it.
fn figure(value: u64) -> String {
    if value == u64::MAX {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (`setrlimit`), or to the kernel's ceiling
/// `nr_open` when that is lower (an unlimited hard limit, `RLIM_INFINITY`, is always higher):
/// Linux refuses any soft limit above `nr_open`. Errors only when the limit cannot even be read.
pub fn raise_soft_limit() -> io::Result<Raise> {
    let limits = limits()?;
    let wanted = limits.hard.min(nr_open().unwrap_or(u64::MAX));
    if wanted <= limits.soft {
        return Ok(Raise::AtCeiling(limits));
    }
    let raised = libc::rlimit {
        rlim_cur: to_rlim(wanted),
        rlim_max: to_rlim(limits.hard),
    };
    // SAFETY: setrlimit reads one rlimit struct, which `raised` is.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok(Raise::Failed {
            limits,
            wanted,
            error: io::Error::last_os_error(),
        });
    }
    Ok(Raise::Raised {
        from: limits.soft,
        to: wanted,
        hard: limits.hard,
    })
}

/// `fs.nr_open`: the most descriptors the kernel gives any process (Linux only).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The descriptors this process has open, listed from `/proc/self/fd` (Linux) or `/dev/fd`
/// (macOS, the BSDs); `None` if neither can be read.
pub fn open_count() -> Option<u64> {
    ["/proc/self/fd", "/dev/fd"].iter().find_map(|dir| {
        // read_dir holds a descriptor of its own while listing: not one of ours.
        std::fs::read_dir(dir)
            .ok()
            .map(|entries| (entries.count() as u64).saturating_sub(1))
    })
}

/// What the configuration holds besides its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Open before any loop exists: stdio, the sockets a supervisor passed, anything the
    /// parent left open.
    pub open: u64,
    /// Event loops (`--threads`).
    pub loops: u64,
    /// Sockets each loop binds or is given: a TCP listener and a UDP socket per service and
    /// address.
    pub sockets_per_loop: u64,
    /// `--metrics`: one more listener, on loop 1.
    pub metrics: bool,
}

impl Needs {
    /// The configuration as it stands now: [`open_count`] descriptors open (3 if they cannot be
    /// listed).
    pub fn now(loops: usize, sockets_per_loop: usize, metrics: bool) -> Self {
        Needs {
            open: open_count().unwrap_or(STDIO),
            loops: loops as u64,
            sockets_per_loop: sockets_per_loop as u64,
            metrics,
        }
    }

    /// Descriptors held before the first connection, spares included.
    pub fn fixed(&self) -> u64 {
        self.open
            + self.loops * (DESCRIPTORS_PER_LOOP + self.sockets_per_loop)
            + u64::from(self.metrics)
            + SPARE_DESCRIPTORS
    }

    /// Connections `--max-conns` lets the loops hold together: each loop's share is rounded up
    /// (`Settings::share`).
    pub fn connections(&self, max_conns: u64) -> u64 {
        let loops = self.loops.max(1);
        max_conns.div_ceil(loops) * loops
    }

    /// The largest `--max-conns` whose connections fit under `limit` with everything else; 0 if
    /// not even one does.
    pub fn largest_fit(&self, limit: u64) -> u64 {
        let loops = self.loops.max(1);
        limit.saturating_sub(self.fixed()) / loops * loops
    }
}

/// How `--max-conns` fits the limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Fit {
    /// As asked.
    Fits,
    /// The default did not fit and was lowered to `to`; the warning to log.
    Lowered { to: usize, warning: String },
}

/// Checks `max_conns` against `soft`, the most descriptors this process may hold (the soft
/// limit after [`raise_soft_limit`]; `hard` is named in the messages). A value the user gave
/// (`given`) that does not fit is refused; the default is lowered to what fits, with a warning.
/// `Err` is the one-line refusal, which names the flag, the limit, the largest value that fits
/// and how to raise the limit — also when not even one connection fits.
pub fn fit(
    needs: &Needs,
    max_conns: usize,
    given: bool,
    soft: u64,
    hard: u64,
) -> Result<Fit, String> {
    let wanted = needs.fixed() + needs.connections(max_conns as u64);
    if wanted <= soft {
        return Ok(Fit::Fits);
    }
    let limit = if soft < hard {
        format!(
            "RLIMIT_NOFILE allows {} descriptors (the soft limit; the hard limit {} could not be reached)",
            figure(soft),
            figure(hard)
        )
    } else {
        format!(
            "RLIMIT_NOFILE allows {} descriptors (the hard limit)",
            figure(soft)
        )
    };
    const RAISE: &str = "raise the hard limit (LimitNOFILE= in the systemd unit; ulimit -Hn N as root before starting)";
    let fixed = needs.fixed();
    let largest = needs.largest_fit(soft);
    let Some(largest) = usize::try_from(largest).ok().filter(|&n| n > 0) else {
        return Err(format!(
            "not one connection fits: {limit}, and the {} event loop(s) with their sockets, stdio \
             and {SPARE_DESCRIPTORS} spares need {fixed}; {RAISE}, or serve fewer sockets \
             (--threads, --bind, services off)",
            needs.loops
        ));
    };
    if given {
        return Err(format!(
            "--max-conns {max_conns}: needs {wanted} descriptors ({fixed} for the event loops, \
             their sockets, stdio and spares), but {limit}: at most --max-conns {largest} fits; \
             {RAISE}, or give a smaller --max-conns"
        ));
    }
    Ok(Fit::Lowered {
        to: largest,
        warning: format!(
            "--max-conns lowered from its default {max_conns} to {largest}: {limit}; {RAISE} \
             to hold more connections"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(loops: u64) -> Needs {
        Needs {
            open: 3,
            loops,
            sockets_per_loop: 8,
            metrics: true,
        }
    }

    #[test]
    fn fixed_counts_every_loop_its_sockets_stdio_and_the_spares() {
        // 3 open + 2 × (4 + 8) + 1 metrics + 16 spares.
        assert_eq!(needs(2).fixed(), 3 + 24 + 1 + SPARE_DESCRIPTORS);
    }

    #[test]
    fn connections_are_each_loops_share_rounded_up() {
        assert_eq!(needs(1).connections(10_001), 10_001);
        assert_eq!(needs(2).connections(10_001), 10_002);
        assert_eq!(needs(3).connections(1), 3);
    }

    #[test]
    fn the_largest_fit_fills_the_limit_and_no_more() {
        for loops in 1..=4 {
            let n = needs(loops);
            for limit in [0, 10, 40, 64, 256, 1024, 20_000] {
                let largest = n.largest_fit(limit);
                if largest > 0 {
                    assert!(n.fixed() + n.connections(largest) <= limit);
                }
                assert!(n.fixed() + n.connections(largest + 1) > limit);
            }
        }
    }

    #[test]
    fn a_value_that_fits_is_kept() {
        let n = needs(1);
        let exact = (20_000 - n.fixed()) as usize;
        assert_eq!(fit(&n, exact, true, 20_000, 20_000), Ok(Fit::Fits));
        assert_eq!(fit(&n, 10_000, false, 20_000, 20_000), Ok(Fit::Fits));
    }

    #[test]
    fn a_given_value_over_the_limit_is_refused_with_the_largest_that_fits() {
        let n = needs(1);
        let largest = 256 - n.fixed();
        let err = fit(&n, 10_000, true, 256, 256).unwrap_err();
        assert!(err.starts_with("--max-conns 10000: needs "), "{err}");
        assert!(
            err.contains(&format!("at most --max-conns {largest} fits")),
            "{err}"
        );
        assert!(err.contains("RLIMIT_NOFILE allows 256"), "{err}");
        assert!(err.contains("LimitNOFILE=") && err.contains("ulimit -Hn"));
        assert!(!err.contains('\n'));
    }

    #[test]
    fn the_default_over_the_limit_is_lowered_to_the_largest_that_fits() {
        let n = needs(1);
        match fit(&n, 10_000, false, 1024, 1024) {
            Ok(Fit::Lowered { to, warning }) => {
                assert_eq!(to as u64, 1024 - n.fixed());
                assert!(
                    warning.contains(&format!("default 10000 to {to}")),
                    "{warning}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn when_not_one_connection_fits_even_the_default_is_refused() {
        let n = needs(4);
        for given in [true, false] {
            let err = fit(&n, 10_000, given, 40, 40).unwrap_err();
            assert!(err.starts_with("not one connection fits"), "{err}");
        }
    }

    #[test]
    fn a_soft_limit_that_could_not_be_raised_is_named_as_such() {
        let err = fit(&needs(1), 10_000, true, 1024, 4096).unwrap_err();
        assert!(
            err.contains("the hard limit 4096 could not be reached"),
            "{err}"
        );
    }

    #[test]
    fn the_raise_line_shows_both_figures() {
        let line = Raise::Raised {
            from: 1024,
            to: 20_000,
            hard: 20_000,
        }
        .to_string();
        assert_eq!(
            line,
            "descriptors: soft limit raised 1024 → 20000 (the hard limit)"
        );
        assert_eq!(figure(u64::MAX), "unlimited");
    }
}
