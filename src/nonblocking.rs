//! What the error of a non-blocking call means. Every `read`, `write`, `accept`, `recv_from` and
//! `send_to` on a non-blocking socket can answer with one of these two instead of doing its work;
//! the helpers make each `match` on an I/O result read as prose (as in mio's examples).

use std::io;

/// The socket has nothing more for us (reading) or no room (writing) right now. With
/// edge-triggered readiness this is the signal that we are done until the next event.
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived during the system call; nothing happened, so try the same call again.
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}
