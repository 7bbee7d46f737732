//! A small blocking HTTP/1.1 client: one request per connection, response parsed by `httparse`.
//!
//! What happens on the wire, in order:
//!
//! 1. [`Url`] splits `http://host[:port][/path][?query]`; only plain `http` is spoken.
//! 2. [`crate::client::endpoint::Endpoint`] resolves the host and connects (`getaddrinfo`, `connect`
//!    with a timeout), and sets `SO_RCVTIMEO` so no read waits forever.
//! 3. [`Request`] is written in one `write_all`: request line, `Host`, `Connection: close`,
//!    extra headers, blank line. `Connection: close` asks the server to close after the
//!    response, so a body without a length ends at EOF and nothing is left half-read.
//! 4. [`ResponseReader`] reads until `httparse` finds a whole head (status line, headers,
//!    blank line), skipping interim `1xx` responses, then streams the body to a writer,
//!    framed by `Content-Length`, by `Transfer-Encoding: chunked` ([`ChunkedDecoder`]), or by
//!    the end of the connection. Every buffer has a fixed size, so a hostile server costs
//!    at most [`MAX_HEAD`] bytes of memory.
//!
//! All of it happens within one deadline ([`Timeouts::total`], the `deadline` module): a server
//! that keeps sending a byte now and then cannot keep the client forever. A head that is
//! printed goes through [`escape_head`] (the `escape` module), so a server cannot send
//! terminal control sequences through it; the body is passed on unchanged.
//!
//! The reader works over any `std::io::Read`, so the tests feed it byte slices as well as
//! sockets.

mod chunked;
mod deadline;
mod escape;
mod request;
mod response;
mod url;

pub use chunked::ChunkedDecoder;
pub use deadline::Timeouts;
pub use escape::{escape_head, escape_text};
pub use request::{Request, Version};
pub use response::{MAX_HEAD, ResponseHead, ResponseReader};
pub use url::Url;

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use crate::client::endpoint::{EndpointError, describe};
use deadline::{Deadline, DeadlineReader};

/// Why a request could not be made or its response could not be read.
#[derive(Debug)]
pub enum HttpError {
    /// The URL, method, target or a header given by the user cannot make a valid request.
    InvalidRequest(String),
    /// Resolving, connecting, sending or receiving failed; the message names the address.
    Io(io::Error),
    /// The server's reply is not valid HTTP/1.x, or it ended early.
    BadResponse(String),
    /// Writing the response to our own output failed (e.g. stdout was closed).
    Output(io::Error),
    /// The whole exchange took longer than this ([`Timeouts::total`]).
    TimeLimit(Duration),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidRequest(message) | HttpError::BadResponse(message) => {
                f.write_str(message)
            }
            HttpError::Io(err) => write!(f, "{err}"),
            HttpError::Output(err) => write!(f, "write output: {}", describe(err)),
            HttpError::TimeLimit(limit) => {
                write!(f, "no complete response within {} s", limit.as_secs_f64())
            }
        }
    }
}

impl std::error::Error for HttpError {}

impl From<EndpointError> for HttpError {
    fn from(err: EndpointError) -> Self {
        HttpError::Io(err.into())
    }
}

/// Sends `request` on a new connection and streams the response to `out`: the head when
/// `include_head` is set (`curl -i`), its control characters escaped by [`escape_head`], then
/// the body, de-chunked and otherwise unchanged.
///
/// `timeouts.io` bounds each wait (a connect, a read, a write) and `timeouts.total` the whole
/// exchange, from resolving the host to the end of the body; past it the result is
/// [`HttpError::TimeLimit`], and what was already written to `out` stays written.
///
/// Any status code is a successful exchange: a 404 is a valid answer, and what to make of it
/// is the caller's business.
pub fn fetch(
    request: &Request,
    timeouts: Timeouts,
    include_head: bool,
    out: &mut impl Write,
) -> Result<(), HttpError> {
    let result = exchange(request, timeouts, include_head, out);
    // Flushed on failure too: what was written of the body stays written. The exchange's
    // own error, if any, is the one worth reporting.
    let flushed = out.flush().map_err(HttpError::Output);
    result.and(flushed)
}

fn exchange(
    request: &Request,
    timeouts: Timeouts,
    include_head: bool,
    out: &mut impl Write,
) -> Result<(), HttpError> {
    let deadline = Deadline::start(timeouts)?;
    let connection = deadline.connect_and_send(request)?;
    let mut response = ResponseReader::new(DeadlineReader::new(connection, deadline));
    let head = response.read_head().map_err(|err| deadline.classify(err))?;
    if include_head {
        out.write_all(escape_head(&head.raw).as_bytes())
            .map_err(HttpError::Output)?;
    }
    response
        .copy_body(&head, request.method(), out)
        .map_err(|err| deadline.classify(err))
}
