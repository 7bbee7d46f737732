//! The output side of the TCP contract, written once for every service.
//!
//! - [`OutBuf`] holds output the socket would not take yet. It has a hard limit; the owner asks
//!   for `WRITABLE` interest only while it is non-empty, and writes until it is empty or the
//!   kernel says `WouldBlock` (`write_all` cannot work on a non-blocking socket, mio #1854).
//! - [`Output`] is what a service writes to: straight to the socket while nothing is queued
//!   (no copy: echo writes back from the very buffer it read into), into the [`OutBuf`] for
//!   whatever the socket does not take.

use std::io::{self, Write};

use crate::nonblocking::{interrupted, would_block};

/// The output buffer is at its limit; the bytes were not added.
#[derive(Debug, PartialEq, Eq)]
pub struct OutputFull;

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The kernel's send buffer is full; wait for a writable event.
    Blocked,
}

/// Output waiting for the socket, bounded by `limit` bytes.
#[derive(Debug)]
pub struct OutBuf {
    data: Vec<u8>,
    /// How much of `data` is already written; the pending bytes are `data[sent..]`.
    sent: usize,
    limit: usize,
}

impl OutBuf {
    /// An empty buffer; no memory is taken until the first byte waits.
    pub fn new(limit: usize) -> Self {
        OutBuf {
            data: Vec::new(),
            sent: 0,
            limit,
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.data.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        self.data.get(self.sent..).unwrap_or_default()
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        self.limit - self.len()
    }

    /// Appends all of `bytes`, or nothing if they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), OutputFull> {
        if bytes.len() > self.room() {
            return Err(OutputFull);
        }
        if self.sent > 0 && self.data.len() + bytes.len() > self.data.capacity() {
            // Reclaim the written prefix before the Vec would grow.
            self.data.drain(..self.sent);
            self.sent = 0;
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes until the buffer is empty or the writer would block. Returns how it ended and how
    /// many bytes were written. `Interrupted` is retried; other errors are the caller's.
    pub fn write_to(&mut self, writer: &mut impl Write) -> io::Result<(Flushed, usize)> {
        let written = write_until_blocked(writer, self.pending())?;
        self.sent += written;
        if !self.is_empty() {
            return Ok((Flushed::Blocked, written));
        }
        self.data.clear();
        self.sent = 0;
        Ok((Flushed::All, written))
    }
}

/// Writes `bytes` until they are all written or the writer would block; returns how many were.
fn write_until_blocked(writer: &mut (impl Write + ?Sized), bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while let Some(rest) = bytes.get(written..).filter(|rest| !rest.is_empty()) {
        match writer.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            // The send buffer is full: the rest waits for the next writable event.
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Where a TCP service's output goes: straight to the socket while nothing is queued ahead of
/// it, into the bounded [`OutBuf`] for what the socket does not take — so order is kept, and
/// the common case (the socket has room) costs one `write` and no copy.
pub struct Output<'a> {
    queue: &'a mut OutBuf,
    /// The socket; `None` queues everything (a unit test, for one).
    socket: Option<&'a mut dyn Write>,
    /// Bytes written straight to the socket.
    written: usize,
    /// The error a direct write met; the plumbing closes the connection for it afterwards.
    error: Option<io::Error>,
}

impl<'a> Output<'a> {
    pub fn new(queue: &'a mut OutBuf, socket: Option<&'a mut dyn Write>) -> Self {
        Output {
            queue,
            socket,
            written: 0,
            error: None,
        }
    }

    /// Sends all of `bytes`, or none of them if what the socket might not take would not fit
    /// in the queue.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), OutputFull> {
        if bytes.len() > self.queue.room() {
            return Err(OutputFull);
        }
        let mut rest = bytes;
        if let (true, None, Some(socket)) =
            (self.queue.is_empty(), &self.error, self.socket.as_mut())
        {
            match write_until_blocked(socket, rest) {
                Ok(n) => {
                    self.written += n;
                    rest = rest.get(n..).unwrap_or_default();
                }
                Err(e) => {
                    self.error = Some(e);
                    return Ok(()); // the connection is closing: nothing more will be sent
                }
            }
        }
        self.queue.push(rest)
    }

    /// How many more bytes `push` accepts for sure.
    pub fn room(&self) -> usize {
        self.queue.room()
    }

    /// What happened on the socket: bytes written directly, and the error that stopped it.
    pub fn finish(self) -> (usize, Option<io::Error>) {
        (self.written, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `chunk` bytes per call, then blocks after `budget` bytes.
    struct Trickle {
        taken: Vec<u8>,
        chunk: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.chunk).min(self.budget);
            self.taken.extend_from_slice(&buf[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_writes_through_while_nothing_is_queued_and_keeps_order_after() {
        let mut queue = OutBuf::new(10);
        let mut sock = Trickle {
            taken: Vec::new(),
            chunk: 100,
            budget: 4,
        };
        let mut out = Output::new(&mut queue, Some(&mut sock));
        out.push(b"abcdef").unwrap(); // 4 go straight out, 2 wait
        out.push(b"gh").unwrap(); // queued behind them, never written ahead
        assert_eq!(
            out.push(b"too long!"),
            Err(OutputFull),
            "7 bytes of room left"
        );
        let (written, error) = out.finish();
        assert_eq!(written, 4);
        assert!(error.is_none());
        assert_eq!(sock.taken, b"abcd");
        assert_eq!(queue.pending(), b"efgh");
    }

    #[test]
    fn out_buf_keeps_what_the_socket_refused_and_respects_its_limit() {
        let mut out = OutBuf::new(10);
        out.push(b"hello").unwrap();
        assert_eq!(out.push(b"world!"), Err(OutputFull));
        out.push(b"world").unwrap();
        assert_eq!(out.room(), 0);

        let mut sock = Trickle {
            taken: Vec::new(),
            chunk: 3,
            budget: 7,
        };
        assert_eq!(out.write_to(&mut sock).unwrap(), (Flushed::Blocked, 7));
        assert_eq!(out.len(), 3);
        out.push(b"!!").unwrap();
        sock.budget = 100;
        assert_eq!(out.write_to(&mut sock).unwrap(), (Flushed::All, 5));
        assert_eq!(sock.taken, b"helloworld!!");
        assert!(out.is_empty());
    }
}
