//! Waking the loop at a timer's deadline to the tenth of a millisecond, not the millisecond.
//!
//! `epoll_wait` takes its timeout in whole milliseconds and mio rounds it *up*, so a tick due
//! in 0.2 ms sleeps 1 ms; the kernel then adds its own slack (0.1 % of the timeout). Every tick
//! was late by up to a millisecond plus scheduling. On Linux the loop therefore sleeps without
//! a timeout and lets a `timerfd` wake it instead:
//!
//! - one `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)` per loop, registered in
//!   the loop's own `Poll` under [`ALARM`] (edge-triggered, like every mio source);
//! - `timerfd_settime(TFD_TIMER_ABSTIME)` with the earliest deadline in nanoseconds, called only
//!   when that deadline changes: a wakeup that fires no timer (a packet, a replay) re-arms
//!   nothing, and an idle loop has nothing armed — no timer, no wakeup, no syscall;
//! - the descriptor is never `read`: each expiry wakes epoll's wait queue and so is a new edge,
//!   and the expiry count is of no use. The saved `read` is one syscall per timer wakeup.
//!
//! **Coalescing.** Deadlines are rounded up to a [`GRID`] of 50 µs on the monotonic clock, so
//! all the timers due within one cell fire in one wakeup, and no tick is more than 50 µs later
//! than it was asked for. 20,000 sessions ticking once a second could cost 12,600 wakeups a
//! second (the cells that hold a deadline); `scripts/bench.sh` measures about 5,000, since the
//! timers that fall due while the loop works fire in the same turn — against about 2,700 with
//! the millisecond timeout (`--coarse-timers`). The cost is those wakeups, one
//! `timerfd_settime` each, and 1.07–1.15× the CPU; most of that is not the syscalls but waking
//! the (loopback) clients tick by tick instead of in millisecond batches. Measured alongside:
//! a 100 µs grid saved about 4 % CPU for as much later ticks; 200 µs, no more; arming for the
//! earliest deadline but at most once per 50 µs (no grid), nothing clear. So 50 µs it is.
//!
//! **Elsewhere.** Where the timerfd is missing (other systems, or `timerfd_create` failed, e.g.
//! under a seccomp filter) the loop falls back to the poll timeout, computed from the same
//! grid: on kqueue (BSD, macOS) mio hands `kevent` a `timespec`, which is already exact to the
//! nanosecond, so nothing is lost there; on epoll it is the millisecond timeout of old.
//!
//! Mapping an `Instant` to the timerfd's absolute time: std's `Instant` is `CLOCK_MONOTONIC` on
//! Linux, but opaque, so the alarm reads both clocks once, side by side ([`Grid::new`]), and
//! every deadline is that reading plus its distance from the `Instant` read with it.

use std::time::{Duration, Instant};

use mio::{Registry, Token};

/// The alarm's token. Slab tokens are never this small (see `Slots`); the signals have 0.
pub const ALARM: Token = Token(1);

/// Deadlines within this span of each other fire in the same wakeup.
pub const GRID: Duration = Duration::from_micros(50);

/// The coalescing grid: deadlines rounded up to a multiple of [`GRID`] from a fixed origin, and
/// where that origin is on `CLOCK_MONOTONIC` (for the timerfd's absolute time).
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    origin: Instant,
    /// `CLOCK_MONOTONIC` at `origin`, since the clock's own zero (boot).
    origin_monotonic: Duration,
}

impl Grid {
    /// A grid whose origin is `origin`, which `CLOCK_MONOTONIC` read as `origin_monotonic`.
    pub fn new(origin: Instant, origin_monotonic: Duration) -> Self {
        Grid {
            origin,
            origin_monotonic,
        }
    }

    /// The first grid point at or after `deadline` (a deadline before the origin is due anyway:
    /// it stays as it is).
    pub fn round_up(&self, deadline: Instant) -> Instant {
        let Some(since) = deadline.checked_duration_since(self.origin) else {
            return deadline;
        };
        let step = GRID.as_nanos();
        let cells = since.as_nanos().div_ceil(step);
        // Saturates after 584 years of uptime; the deadline itself is then as good.
        u64::try_from(cells * step)
            .ok()
            .and_then(|nanos| self.origin.checked_add(Duration::from_nanos(nanos)))
            .unwrap_or(deadline)
    }

    /// `at` on `CLOCK_MONOTONIC`, for `TFD_TIMER_ABSTIME`.
    pub fn monotonic(&self, at: Instant) -> Duration {
        let since = at.saturating_duration_since(self.origin);
        self.origin_monotonic.saturating_add(since)
    }
}

/// What the loop does about its alarm before it sleeps: the arithmetic, apart from the syscalls
/// (so a test can pass the time in).
#[derive(Debug, Default)]
pub struct Plan {
    /// The grid point the timerfd is armed for, until it rings or is disarmed.
    armed: Option<Instant>,
}

/// What [`Plan::next`] asks of the timerfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Leave it as it is: armed for the right instant already, or idle and unarmed.
    Keep,
    /// Arm it for this instant (replacing whatever it was armed for).
    At(Instant),
    /// Disarm it: it would ring for a deadline that is gone (a closed connection's timer).
    Off,
}

impl Plan {
    /// For the earliest deadline (`None`: nothing due), at `now`: what to do with the timerfd
    /// and how long `epoll_wait` may then sleep (`None`: until an event, the timerfd included).
    pub fn next(
        &mut self,
        grid: &Grid,
        deadline: Option<Instant>,
        now: Instant,
    ) -> (Arm, Option<Duration>) {
        // An alarm whose instant has passed has rung (or is ringing): it is no longer armed,
        // whether or not its event was seen yet.
        if self.armed.is_some_and(|at| at <= now) {
            self.armed = None;
        }
        let Some(deadline) = deadline else {
            let arm = if self.armed.take().is_some() {
                Arm::Off
            } else {
                Arm::Keep
            };
            return (arm, None);
        };
        let at = grid.round_up(deadline);
        if at <= now {
            // Due already: no sleep, nothing to arm.
            return (Arm::Keep, Some(Duration::ZERO));
        }
        if self.armed == Some(at) {
            return (Arm::Keep, None);
        }
        self.armed = Some(at);
        (Arm::At(at), None)
    }

    /// The timerfd rang: it is armed no more.
    pub fn rang(&mut self) {
        self.armed = None;
    }
}

/// The loop's alarm: a timerfd where there is one, else the poll timeout.
pub struct Alarm {
    grid: Grid,
    plan: Plan,
    #[cfg(target_os = "linux")]
    timerfd: Option<timerfd::TimerFd>,
}

impl Alarm {
    /// Creates the timerfd and registers it under [`ALARM`] if `precise` (not
    /// `--coarse-timers`); without one (not asked for, not Linux, or the kernel refused) the
    /// alarm is the poll timeout, and a refusal is said in the debug log.
    pub fn new(registry: &Registry, precise: bool) -> Self {
        #[cfg(target_os = "linux")]
        {
            let (origin, origin_monotonic) = timerfd::now_on_both_clocks();
            let timerfd = match precise.then(|| timerfd::TimerFd::new(registry)) {
                None => None,
                Some(Ok(timerfd)) => Some(timerfd),
                Some(Err(e)) => {
                    log::debug!(
                        "timerfd: {e}; timers wake the loop by the poll timeout (1 ms steps)"
                    );
                    None
                }
            };
            Alarm {
                grid: Grid::new(origin, origin_monotonic),
                plan: Plan::default(),
                timerfd,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (registry, precise);
            let origin = Instant::now();
            Alarm {
                grid: Grid::new(origin, Duration::ZERO),
                plan: Plan::default(),
            }
        }
    }

    /// Prepares the sleep until `deadline` (the earliest live timer; `None`: none): arms the
    /// timerfd if the deadline changed, and returns the `epoll_wait` timeout together with how
    /// long the loop means to sleep (the two differ when the timerfd wakes it).
    pub fn prepare(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
    ) -> (Option<Duration>, Option<Duration>) {
        #[cfg(target_os = "linux")]
        if let Some(timerfd) = &self.timerfd {
            let (arm, timeout) = self.plan.next(&self.grid, deadline, now);
            let result = match arm {
                Arm::Keep => Ok(()),
                Arm::At(at) => timerfd.set(Some(self.grid.monotonic(at))),
                Arm::Off => timerfd.set(None),
            };
            match result {
                Ok(()) => {
                    // Sleeping until the timerfd rings: for the instant it is armed for.
                    let meant = timeout
                        .or_else(|| self.plan.armed.map(|at| at.saturating_duration_since(now)));
                    return (timeout, meant);
                }
                Err(e) => {
                    // Never seen; the poll timeout still keeps every timer, only coarser.
                    log::warn!(
                        "timerfd_settime: {e}; timers wake the loop by the poll timeout from now on"
                    );
                    self.timerfd = None;
                }
            }
        }
        let timeout = self.planned(deadline, now);
        (timeout, timeout)
    }

    /// The sleep until `deadline`'s grid point.
    fn planned(&self, deadline: Option<Instant>, now: Instant) -> Option<Duration> {
        deadline.map(|deadline| self.grid.round_up(deadline).saturating_duration_since(now))
    }

    /// The timerfd's event: it rang.
    pub fn rang(&mut self) {
        self.plan.rang();
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    //! The three syscalls, wrapped.

    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use mio::unix::SourceFd;
    use mio::{Interest, Registry};

    use super::ALARM;

    pub struct TimerFd {
        fd: OwnedFd,
    }

    impl TimerFd {
        /// `timerfd_create`, then `epoll_ctl(ADD)` through mio.
        pub fn new(registry: &Registry) -> io::Result<Self> {
            // SAFETY: no pointer is passed; the result is checked before it is used.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a descriptor just created and owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            registry.register(&mut SourceFd(&fd.as_raw_fd()), ALARM, Interest::READABLE)?;
            Ok(TimerFd { fd })
        }

        /// `timerfd_settime`: one shot at `at` on `CLOCK_MONOTONIC`, or disarmed (`None`).
        pub fn set(&self, at: Option<Duration>) -> io::Result<()> {
            let value = at.map_or(
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                |at| libc::timespec {
                    tv_sec: at.as_secs() as libc::time_t,
                    tv_nsec: at.subsec_nanos() as libc::c_long,
                },
            );
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: value,
            };
            let flags = if at.is_some() {
                libc::TFD_TIMER_ABSTIME
            } else {
                0
            };
            // SAFETY: `spec` lives across the call; a null old value is allowed.
            let status = unsafe {
                libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, std::ptr::null_mut())
            };
            if status < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }

    /// `Instant::now()` and `CLOCK_MONOTONIC` read side by side (the middle of two monotonic
    /// readings around the `Instant`, so the pair is off by a few tens of nanoseconds at most).
    pub fn now_on_both_clocks() -> (Instant, Duration) {
        let before = monotonic();
        let instant = Instant::now();
        let after = monotonic();
        (instant, before + (after.saturating_sub(before)) / 2)
    }

    fn monotonic() -> Duration {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC cannot fail.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> (Grid, Instant) {
        let origin = Instant::now();
        (Grid::new(origin, Duration::from_secs(1000)), origin)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn deadlines_round_up_to_the_fifty_microsecond_grid_never_down() {
        let (grid, t0) = grid();
        assert_eq!(grid.round_up(t0), t0);
        assert_eq!(grid.round_up(t0 + Duration::from_nanos(1)), t0 + us(50));
        assert_eq!(grid.round_up(t0 + us(49)), t0 + us(50));
        assert_eq!(grid.round_up(t0 + us(50)), t0 + us(50));
        assert_eq!(grid.round_up(t0 + us(51)), t0 + us(100));
        assert_eq!(
            grid.round_up(t0 + Duration::from_millis(1000) + us(1)),
            t0 + us(1_000_050)
        );
        // Before the origin: due anyway, left alone.
        if let Some(before) = t0.checked_sub(us(7)) {
            assert_eq!(grid.round_up(before), before);
        }
        // On the monotonic clock: the origin's reading plus the distance.
        assert_eq!(
            grid.monotonic(t0 + us(150)),
            Duration::from_secs(1000) + us(150)
        );
    }

    #[test]
    fn deadlines_within_one_cell_share_one_arming_and_the_next_cell_re_arms() {
        let (grid, t0) = grid();
        let mut plan = Plan::default();
        // First deadline: arm for its grid point; the loop sleeps until the timerfd rings.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(510)), t0),
            (Arm::At(t0 + us(550)), None)
        );
        // A wakeup for a packet, same earliest deadline: nothing re-armed.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(510)), t0 + us(20)),
            (Arm::Keep, None)
        );
        // An earlier deadline in the same cell: still the same grid point, no syscall.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(501)), t0 + us(30)),
            (Arm::Keep, None)
        );
        // An earlier cell: re-armed.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(420)), t0 + us(40)),
            (Arm::At(t0 + us(450)), None)
        );
        // It rang; the next deadline is in a later cell: armed again.
        plan.rang();
        assert_eq!(
            plan.next(&grid, Some(t0 + us(1210)), t0 + us(452)),
            (Arm::At(t0 + us(1250)), None)
        );
    }

    #[test]
    fn a_passed_alarm_counts_as_rung_even_before_its_event_is_seen() {
        let (grid, t0) = grid();
        let mut plan = Plan::default();
        assert_eq!(
            plan.next(&grid, Some(t0 + us(100)), t0),
            (Arm::At(t0 + us(100)), None)
        );
        // Later than the alarm, a timer for the very same grid point (set while it rang) must
        // not be taken as already armed: it is due, so no sleep at all.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(100)), t0 + us(101)),
            (Arm::Keep, Some(Duration::ZERO))
        );
        // A deadline after `now` for the cell whose alarm passed: armed anew, not kept.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(140)), t0 + us(102)),
            (Arm::At(t0 + us(150)), None)
        );
    }

    #[test]
    fn an_idle_loop_arms_nothing_and_a_vanished_deadline_disarms_once() {
        let (grid, t0) = grid();
        let mut plan = Plan::default();
        assert_eq!(plan.next(&grid, None, t0), (Arm::Keep, None));
        assert_eq!(
            plan.next(&grid, Some(t0 + us(5000)), t0),
            (Arm::At(t0 + us(5000)), None)
        );
        // The connection whose timer it was closed: disarm, once.
        assert_eq!(plan.next(&grid, None, t0 + us(10)), (Arm::Off, None));
        assert_eq!(plan.next(&grid, None, t0 + us(20)), (Arm::Keep, None));
        // An alarm that already rang needs no disarming.
        assert_eq!(
            plan.next(&grid, Some(t0 + us(5000)), t0 + us(30)),
            (Arm::At(t0 + us(5000)), None)
        );
        assert_eq!(plan.next(&grid, None, t0 + us(5001)), (Arm::Keep, None));
    }

    #[test]
    fn a_due_deadline_means_no_sleep_and_no_arming() {
        let (grid, t0) = grid();
        let mut plan = Plan::default();
        assert_eq!(
            plan.next(&grid, Some(t0), t0 + us(3)),
            (Arm::Keep, Some(Duration::ZERO))
        );
        assert_eq!(plan.armed, None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_timerfd_wakes_a_poll_that_has_no_timeout_and_never_early() {
        use mio::{Events, Poll};
        let mut poll = Poll::new().unwrap();
        let mut alarm = Alarm::new(poll.registry(), true);
        let mut events = Events::with_capacity(8);
        for _ in 0..5 {
            let now = Instant::now();
            let deadline = now + us(1_300);
            let (timeout, meant) = alarm.prepare(Some(deadline), now);
            assert_eq!(
                timeout, None,
                "the timerfd, not the poll timeout, wakes the loop"
            );
            assert!(meant.is_some_and(|meant| meant >= us(1_300)));
            // Bounded: a missing wakeup fails here instead of hanging.
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(
                events.iter().any(|event| event.token() == ALARM),
                "woken by the timerfd"
            );
            assert!(Instant::now() >= deadline, "never early");
            alarm.rang();
        }
        // Nothing due: nothing armed, so nothing rings (a short, bounded look).
        assert_eq!(alarm.prepare(None, Instant::now()), (None, None));
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        assert!(events.is_empty(), "an idle loop is not woken");
    }

    #[test]
    fn coarse_timers_leave_the_wait_to_the_poll_timeout() {
        let poll = mio::Poll::new().unwrap();
        let mut alarm = Alarm::new(poll.registry(), false);
        let now = Instant::now();
        let (timeout, meant) = alarm.prepare(Some(now + us(1_300)), now);
        assert!(timeout.is_some_and(|timeout| timeout >= us(1_300)));
        assert_eq!(timeout, meant);
    }
}
