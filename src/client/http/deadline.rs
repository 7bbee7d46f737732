//! One deadline for a whole exchange, on top of the per-operation socket timeouts.
//!
//! A timeout per read does not bound an exchange: a server that sends one byte every half
//! second never lets a read time out, and would keep the client forever. So [`fetch`] takes
//! [`Timeouts`]: `io` for each wait, `total` for everything, and enforces `total` like this:
//!
//! - **Resolve, connect, send.** `getaddrinfo` takes no timeout, so these run on a helper
//!   thread while the caller waits for its answer at most until the deadline. A helper
//!   still busy then is left to finish on its own (its socket waits are bounded by the
//!   connect timeout it was given) and its connection is dropped unused.
//! - **Reads.** Before each read the socket's `SO_RCVTIMEO` becomes the smaller of `io` and the
//!   time left, so the deadline is kept within a read, not only between reads.
//!
//! [`fetch`]: super::fetch

use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::{HttpError, Request};
use crate::client::endpoint::Endpoint;

/// How long an exchange may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The longest wait for any one step: connecting to one address, one read, one write.
    pub io: Duration,
    /// The whole exchange: resolving, connecting, sending, and reading the whole response.
    pub total: Duration,
}

/// The instant an exchange must be over by.
#[derive(Clone, Copy, Debug)]
pub(super) struct Deadline {
    at: Instant,
    timeouts: Timeouts,
}

/// Marks the `io::Error` a [`DeadlineReader`] returns when time ran out, so it can be told
/// apart from a read timing out after `io` and turned into [`HttpError::TimeLimit`].
#[derive(Debug)]
struct Expired;

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the time limit for the exchange passed")
    }
}

impl Error for Expired {}

impl Deadline {
    /// Starts the clock: the exchange must end within `timeouts.total` from now.
    pub(super) fn start(timeouts: Timeouts) -> Result<Self, HttpError> {
        let at = Instant::now().checked_add(timeouts.total).ok_or_else(|| {
            HttpError::InvalidRequest(format!("time limit {:?} is too long", timeouts.total))
        })?;
        Ok(Deadline { at, timeouts })
    }

    /// The error for an exchange that did not finish in time.
    pub(super) fn expired(&self) -> HttpError {
        HttpError::TimeLimit(self.timeouts.total)
    }

    /// Turns the marker error of an expired read back into [`HttpError::TimeLimit`].
    pub(super) fn classify(&self, err: HttpError) -> HttpError {
        match err {
            HttpError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<Expired>()) => {
                self.expired()
            }
            other => other,
        }
    }

    /// How long the next wait may take, and whether that is cut short by the deadline
    /// (rather than being the whole `io` timeout); `None` once the deadline has passed.
    fn next_wait(&self) -> Option<(Duration, bool)> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            None
        } else if left < self.timeouts.io {
            Some((left, true))
        } else {
            Some((self.timeouts.io, false))
        }
    }

    /// Resolves the request's host, connects, and sends the request, all before the
    /// deadline; see the [module documentation](self).
    pub(super) fn connect_and_send(&self, request: &Request) -> Result<Endpoint, HttpError> {
        let (wait, capped) = self.next_wait().ok_or_else(|| self.expired())?;
        let url = request.url();
        let (host, port) = (url.host.clone(), url.port);
        let bytes = request.encode();
        let (answer, answered) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("http-connect".to_owned())
            .spawn(move || {
                let result = Endpoint::connect_tcp(&host, port, wait).and_then(|mut connection| {
                    connection.send(&bytes)?;
                    Ok(connection)
                });
                // Nobody listens any more if the deadline passed first: nothing to do then.
                let _ = answer.send(result);
            })
            .map_err(HttpError::Io)?;
        let left = self.at.saturating_duration_since(Instant::now());
        match answered.recv_timeout(left) {
            Ok(Ok(connection)) => Ok(connection),
            // A connect or write that ran out of a wait the deadline had shortened.
            Ok(Err(err)) if capped && err.kind() == io::ErrorKind::TimedOut => Err(self.expired()),
            Ok(Err(err)) => Err(err.into()),
            Err(RecvTimeoutError::Timeout) => Err(self.expired()),
            Err(RecvTimeoutError::Disconnected) => Err(HttpError::Io(io::Error::other(
                "the connecting thread ended without an answer",
            ))),
        }
    }
}

/// Reads from a connection, each read waiting at most until the deadline.
pub(super) struct DeadlineReader {
    connection: Endpoint,
    deadline: Deadline,
    /// The read timeout last given to the socket, so it is set only when it changes.
    current: Option<Duration>,
}

impl DeadlineReader {
    pub(super) fn new(connection: Endpoint, deadline: Deadline) -> Self {
        DeadlineReader {
            connection,
            deadline,
            current: None,
        }
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let expired = || io::Error::new(io::ErrorKind::TimedOut, Expired);
        let (wait, capped) = self.deadline.next_wait().ok_or_else(expired)?;
        if self.current != Some(wait) {
            self.connection.set_read_timeout(wait)?;
            self.current = Some(wait);
        }
        match self.connection.recv(buf) {
            Err(err) if capped && err.kind() == io::ErrorKind::TimedOut => Err(expired()),
            result => Ok(result?),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::client::http::{ResponseReader, Url};

    fn timeouts(io_ms: u64, total_ms: u64) -> Timeouts {
        Timeouts {
            io: Duration::from_millis(io_ms),
            total: Duration::from_millis(total_ms),
        }
    }

    #[test]
    fn next_wait_is_capped_by_the_time_left() {
        let deadline = Deadline::start(timeouts(60_000, 1_000)).unwrap();
        let (wait, capped) = deadline.next_wait().unwrap();
        assert!(capped && wait <= Duration::from_secs(1), "{wait:?}");

        let deadline = Deadline::start(timeouts(1_000, 60_000)).unwrap();
        assert_eq!(deadline.next_wait(), Some((Duration::from_secs(1), false)));
    }

    #[test]
    fn silent_server_hits_the_deadline_not_the_read_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let deadline = Deadline::start(timeouts(60_000, 200)).unwrap();
        let started = Instant::now();
        // The listen backlog completes the connection; nobody ever answers.
        let connection = deadline.connect_and_send(&Request::new(url)).unwrap();
        let mut reader = ResponseReader::new(DeadlineReader::new(connection, deadline));
        let err = deadline.classify(reader.read_head().unwrap_err());
        assert_eq!(err.to_string(), "no complete response within 0.2 s");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    /// A writer that keeps what was written apart from what was flushed.
    #[derive(Default)]
    struct Staged {
        pending: Vec<u8>,
        flushed: Vec<u8>,
    }

    impl io::Write for Staged {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushed.append(&mut self.pending);
            Ok(())
        }
    }

    #[test]
    fn body_written_before_the_deadline_is_flushed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nsome",
            )
            .unwrap();
            // Holds the connection until the client gives up and closes it.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let mut out = Staged::default();
        let err =
            crate::client::http::fetch(&Request::new(url), timeouts(60_000, 300), false, &mut out)
                .unwrap_err();
        assert!(matches!(err, HttpError::TimeLimit(_)), "{err}");
        assert_eq!(out.flushed, b"some");
        server.join().unwrap();
    }

    #[test]
    fn a_passed_deadline_fails_before_connecting() {
        let deadline = Deadline::start(timeouts(1_000, 0)).unwrap();
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let err = deadline.connect_and_send(&Request::new(url)).unwrap_err();
        assert!(matches!(err, HttpError::TimeLimit(_)), "{err}");
    }
}
