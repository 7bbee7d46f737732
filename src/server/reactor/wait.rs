//! How long the loop may sleep in `epoll_wait`, and why: the earliest live timer, the accept
//! retry, the end of the shutdown grace, a replay (not at all), or nothing (until an event).
//! Stale timers are dropped here first, so they never wake an idle loop.

use super::*;

impl Reactor {
    /// Drops timers whose owner is gone (or says they no longer matter) from the top of the
    /// heap, so they never set a timeout.
    fn drop_stale_timers(&mut self) {
        let trace = self.shared.trace;
        while let Some(&Timer { token, tag, .. }) = self.shared.timers.peek() {
            let owner = self.entries.get_mut(token.0).map(Entry::handler);
            let live = owner.as_ref().is_some_and(|owner| owner.timer_is_live(tag));
            if live {
                break;
            }
            if trace.on() {
                match owner {
                    Some(owner) => {
                        let (desc, name) = (owner.describe(), owner.describe_timer(tag));
                        trace.timer(token, Some(&desc), &name, Fate::Stale);
                    }
                    None => trace.timer(token, None, &tag.to_string(), Fate::OwnerGone),
                }
            }
            self.shared.timers.pop();
        }
    }

    /// What the next `epoll_wait` may sleep until: the next live timer, the accept retry or the
    /// end of the shutdown grace, whichever comes first — or not at all if sockets wait for a
    /// replay; or, with none of these, until an event.
    pub(super) fn next_wait(&mut self) -> Wait {
        if !self.replay.is_empty() {
            return Wait::Replay(self.replay.len());
        }
        self.drop_stale_timers();
        let gate = &self.shared.accept;
        let retry = gate.retry_at.filter(|_| gate.backlog_waiting);
        [
            self.shared.timers.peek().map(|&timer| Wait::Timer(timer)),
            retry.map(Wait::AcceptRetry),
            self.shutdown_deadline.map(Wait::Shutdown),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|wait| wait.deadline())
        .unwrap_or(Wait::Event)
    }
}

/// What the loop's next `epoll_wait` waits for at most, and so how long it may sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Sockets wait for a replay: no sleep at all.
    Replay(usize),
    /// The earliest live timer.
    Timer(Timer),
    /// Accepting, paused for lack of descriptors, is retried then.
    AcceptRetry(Instant),
    /// The shutdown's grace period ends then.
    Shutdown(Instant),
    /// Nothing is due: sleep until an event.
    Event,
}

impl Wait {
    /// When the wait ends at the latest; `None` = never (or now, for a replay).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match *self {
            Wait::Timer(Timer { deadline, .. })
            | Wait::AcceptRetry(deadline)
            | Wait::Shutdown(deadline) => Some(deadline),
            Wait::Replay(_) | Wait::Event => None,
        }
    }
}
