//! Framing and buffering shared by every TCP service, written once.
//!
//! - [`LineReader`] collects one line of input up to a length cap. Like mini-redis's
//!   `Frame::check`/`Frame::parse`, it first looks for the newline within the cap and only then
//!   takes the line, so a peer that never sends a newline costs at most the cap, never more.
//! - [`OutBuf`] holds output the socket would not take yet. It has a hard limit; the owner asks
//!   for `WRITABLE` interest only while it is non-empty, and writes until it is empty or the
//!   kernel says `WouldBlock` (`write_all` cannot work on a non-blocking socket, mio #1854).

use std::io::{self, Write};

use crate::readiness::{interrupted, would_block};

/// The line is longer than the reader's cap (the cap counts the text, not the `\r\n`).
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// Accumulates bytes until a `\n`, refusing lines longer than `max_len` bytes.
#[derive(Debug)]
pub struct LineReader {
    partial: Vec<u8>,
    max_len: usize,
}

impl LineReader {
    pub fn new(max_len: usize) -> Self {
        LineReader {
            partial: Vec::new(),
            max_len,
        }
    }

    /// Feeds `input`. Returns the first complete line (without its `\n` or `\r\n`) and how many
    /// bytes of `input` it used, or `None` when more input is needed, or [`LineTooLong`] as soon
    /// as the line cannot fit — without buffering more than `max_len + 1` bytes.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, LineTooLong> {
        // One extra byte may be a '\r' whose '\n' has not arrived yet.
        let limit = self.max_len + 1;
        let mut pieces = input.splitn(2, |&b| b == b'\n');
        let before_newline = pieces.next().unwrap_or_default();
        match pieces.next() {
            Some(_after_newline) => {
                if self.partial.len() + before_newline.len() > limit {
                    return Err(LineTooLong);
                }
                self.partial.extend_from_slice(before_newline);
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max_len {
                    return Err(LineTooLong);
                }
                Ok(Some((line, before_newline.len() + 1)))
            }
            None => {
                if self.partial.len() + input.len() > limit {
                    return Err(LineTooLong);
                }
                self.partial.extend_from_slice(input);
                Ok(None)
            }
        }
    }
}

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
        let mut written = 0;
        while !self.is_empty() {
            match writer.write(self.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    self.sent += n;
                }
                // The send buffer is full: the rest waits for the next writable event.
                Err(e) if would_block(&e) => return Ok((Flushed::Blocked, written)),
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.data.clear();
        self.sent = 0;
        Ok((Flushed::All, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reader_takes_first_line_and_strips_crlf() {
        let mut lines = LineReader::new(16);
        assert_eq!(lines.feed(b"Bon"), Ok(None));
        assert_eq!(
            lines.feed(b"jour\r\nrest"),
            Ok(Some((b"Bonjour".to_vec(), 6)))
        );
        assert_eq!(lines.feed(b"\n"), Ok(Some((Vec::new(), 1))));
    }

    #[test]
    fn line_reader_cap_is_exact() {
        let fits = [b'a'; 8];
        assert_eq!(
            LineReader::new(8).feed(&[&fits[..], b"\r\n"].concat()),
            Ok(Some((fits.to_vec(), 10)))
        );
        assert_eq!(
            LineReader::new(8).feed(&[&fits[..], b"a\n"].concat()),
            Err(LineTooLong)
        );
        // Without a newline the verdict comes as soon as the cap (plus a possible '\r') is passed.
        let mut lines = LineReader::new(8);
        assert_eq!(lines.feed(&fits), Ok(None));
        assert_eq!(lines.feed(b"\r"), Ok(None));
        assert_eq!(lines.feed(b"x"), Err(LineTooLong));
    }

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
