//! What an event says, and what a handler answers about it.
//!
//! `epoll_wait` (kqueue's `kevent` on BSD and macOS) reports that a socket *became* readable or
//! writable. mio registers sockets edge-triggered (`EPOLLET`): the kernel reports each change
//! once, so a handler must keep calling `read`/`accept`/`recv_from` until the call answers
//! `WouldBlock` (see `nonblocking.rs`), or no event will ever come for the bytes left behind.
//!
//! [`Readiness`] is the loop's own copy of an event's flags. Handlers take it instead of
//! `mio::event::Event` (which only the kernel can make), so a unit test can hand the dispatcher
//! crafted events, and the loop can replay "readable" for a socket it deliberately left unfinished.
//! [`Verdict`] is the one answer every handler gives the loop.

/// The flags of one readiness event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// `EPOLLIN`: bytes, a datagram, a pending connection or end-of-input can be read.
    pub readable: bool,
    /// `EPOLLOUT`: the send buffer has room again.
    pub writable: bool,
    /// `EPOLLRDHUP`/`EPOLLHUP`: the peer will send nothing more (FIN or reset).
    pub read_closed: bool,
    /// `EPOLLHUP`/`EPOLLERR`: writing can no longer succeed.
    pub write_closed: bool,
    /// `EPOLLERR`: an error is pending; the next read or write reports it.
    pub error: bool,
}

impl Readiness {
    /// What the loop replays for a socket whose input it left unread on purpose (a budget was
    /// spent, or room came back after backpressure).
    pub const READABLE: Readiness = Readiness {
        readable: true,
        writable: false,
        read_closed: false,
        write_closed: false,
        error: false,
    };

    /// Whether reading is worth trying: data, end of input and errors all surface through `read`.
    pub fn wants_read(&self) -> bool {
        self.readable || self.read_closed || self.error
    }
}

impl From<&mio::event::Event> for Readiness {
    fn from(event: &mio::event::Event) -> Self {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            read_closed: event.is_read_closed(),
            write_closed: event.is_write_closed(),
            error: event.is_error(),
        }
    }
}

impl std::fmt::Display for Readiness {
    /// Compact flags for `--trace-events`, e.g. `R-C--` (readable, read-closed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{}{}{}",
            flag(self.readable, 'R'),
            flag(self.writable, 'W'),
            flag(self.read_closed, 'C'),
            flag(self.write_closed, 'H'),
            flag(self.error, 'E')
        )
    }
}

/// What the loop should do with a socket after its handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more to do until the next event.
    Keep,
    /// The handler stopped early on purpose (its budget for one turn was spent) and input may be
    /// waiting: replay a readable event next turn, since the kernel will not report it again.
    Yield,
    /// Done: deregister and drop the socket.
    Close,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_each_flag() {
        let r = Readiness {
            readable: true,
            read_closed: true,
            ..Readiness::default()
        };
        assert_eq!(r.to_string(), "R-C--");
        assert!(r.wants_read());
        assert!(!Readiness::default().wants_read());
    }
}
