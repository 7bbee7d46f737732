//! The timer heap: every deadline of every session, earliest first.
//!
//! The loop never sleeps on its own: the earliest deadline here becomes the timeout of
//! `epoll_wait`, which returns either with readiness events or when that deadline has come.
//! A timer names its owner (the token of a connection or of a UDP socket) and a [`Tag`] the
//! owner interprets. Each owner has two tag spaces that cannot collide: its service's
//! ([`Tag::Service`], all of `u64`, set through the contract's `Env::set_timer`) and the
//! plumbing's own housekeeping ([`Tag::Plumbing`]: idle timeout, linger). Timers are never removed when their owner goes away: a closed connection's
//! timers stay until they reach the top, where the loop sees that their token no longer resolves
//! and drops them before it computes the next timeout — so a stale timer costs one heap pop and
//! never wakes an idle loop (the way redis's `ae.c` marks deleted timers instead of unlinking).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

use crate::services::contract::TimerTag;

/// Whose timer it is, for its owner: the service's or the plumbing's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    /// Set by the service through `Env::set_timer`; handed back to it as is.
    Service(TimerTag),
    /// The plumbing's own: a connection's housekeeping timer, numbered so that only the latest
    /// one counts (re-arming makes the earlier ones stale).
    Plumbing(u64),
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::Service(tag) => write!(f, "{tag}"),
            Tag::Plumbing(n) => write!(f, "housekeeping timer {n}"),
        }
    }
}

/// One deadline and whom to tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    /// Field order matters: the derived ordering sorts by deadline first.
    pub deadline: Instant,
    pub token: Token,
    /// Meaning is up to the owner (which session, which kind of timer).
    pub tag: Tag,
}

/// A min-heap of timers. O(log n) to schedule and to pop, O(1) to read the next deadline.
#[derive(Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl TimerHeap {
    pub fn schedule(&mut self, deadline: Instant, token: Token, tag: Tag) {
        self.heap.push(Reverse(Timer {
            deadline,
            token,
            tag,
        }));
    }

    /// The earliest timer, due or not.
    pub fn peek(&self) -> Option<&Timer> {
        self.heap.peek().map(|Reverse(timer)| timer)
    }

    /// Removes and returns the earliest timer.
    pub fn pop(&mut self) -> Option<Timer> {
        self.heap.pop().map(|Reverse(timer)| timer)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.peek()?.deadline <= now {
            self.pop()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = TimerHeap::default();
        let tag = |n| Tag::Service(TimerTag(n));
        timers.schedule(at(30), Token(3), tag(0));
        timers.schedule(at(10), Token(1), tag(0));
        timers.schedule(at(20), Token(2), Tag::Plumbing(7));

        assert_eq!(timers.peek().map(|t| t.deadline), Some(at(10)));
        assert_eq!(timers.pop_due(at(5)), None);
        let due: Vec<_> = std::iter::from_fn(|| timers.pop_due(at(25)))
            .map(|t| (t.token, t.tag))
            .collect();
        assert_eq!(due, vec![(Token(1), tag(0)), (Token(2), Tag::Plumbing(7))]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.pop().map(|t| t.token), Some(Token(3)));
        assert!(timers.is_empty());
    }
}
