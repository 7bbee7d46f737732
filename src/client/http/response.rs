//! Reading an HTTP/1.x response from any `std::io::Read`: the head through `httparse`, then
//! the body streamed to a writer.
//!
//! A response arrives in pieces of whatever size the kernel hands to each `read` (one byte, or
//! many responses' worth). The reader keeps one fixed buffer of [`MAX_HEAD`] bytes:
//!
//! - **Head.** Read, and whenever a newline arrived ask `httparse` whether the head is complete
//!   (a head ends in an empty line, so nothing can complete without one; this keeps a server
//!   that dribbles bytes from making us re-parse 64 KiB after each). Interim `1xx` responses
//!   (`100 Continue`) are skipped: the real response follows on the same connection.
//! - **Body.** Its end is known from, in order (RFC 9112 §6.3): the request method and status
//!   (`HEAD`, `1xx`, `204` and `304` have none), `Transfer-Encoding` (chunked: decoded by
//!   [`ChunkedDecoder`]), `Content-Length`, or else the server closing the connection. Bytes
//!   go to the writer as they come, so a body of any size passes through the same buffer.

use std::io::{self, Read, Write};

use super::{ChunkedDecoder, HttpError, escape_text};

/// The most bytes a response head (status line, headers, blank line) may take; beyond it the
/// response is refused. Real heads are a few hundred bytes to a few KiB (cookies make the big
/// ones); 64 KiB is generous for them, and it is all the memory a hostile server can make the
/// reader hold, since the same buffer then carries the body.
pub const MAX_HEAD: usize = 64 * 1024;

/// Interim `1xx` responses skipped before giving up: a server sends one or two (`100 Continue`,
/// `103 Early Hints`); one that keeps sending them would otherwise hold the client forever.
const MAX_INTERIM: usize = 16;

/// Header slots `httparse` is first given. It reports `TooManyHeaders` when they run out; the
/// slots are then doubled and the head parsed again. 32 fits ordinary responses in one pass;
/// the growth is bounded because every header line takes at least 3 of the `MAX_HEAD` bytes.
const INITIAL_HEADERS: usize = 32;

/// The head of a response.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header fields in order received; values as raw bytes, since HTTP allows non-UTF-8 ones.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The head exactly as received, from the status line through the blank line. Show it
    /// through [`super::escape_head`]: it is the server's text and may hold control bytes.
    pub raw: Vec<u8>,
}

impl ResponseHead {
    /// The values of every header called `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// How the end of a body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

impl Framing {
    /// Applies RFC 9112 §6.3 to the head of the response to a `method` request.
    fn of(head: &ResponseHead, method: &str) -> Result<Framing, HttpError> {
        if method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304 {
            return Ok(Framing::Empty);
        }
        // Transfer-Encoding wins over Content-Length. Chunked must be the last coding; any
        // other last coding means the body runs until the server closes.
        let last_coding = head
            .values("transfer-encoding")
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|coding| !coding.is_empty())
            .last();
        if let Some(coding) = last_coding {
            return Ok(if coding.eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        // Several Content-Length fields (or a list in one) are allowed only if they agree;
        // otherwise two parties could disagree on where the body ends.
        let mut length = None;
        for value in head
            .values("content-length")
            .flat_map(|value| value.split(|&b| b == b','))
        {
            let value = value.trim_ascii();
            let parsed = parse_decimal(value).ok_or_else(|| {
                HttpError::BadResponse(format!("invalid Content-Length \"{}\"", escape_text(value)))
            })?;
            match length {
                Some(earlier) if earlier != parsed => {
                    return Err(HttpError::BadResponse(format!(
                        "conflicting Content-Length values {earlier} and {parsed}"
                    )));
                }
                _ => length = Some(parsed),
            }
        }
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }
}

/// Digits only: `u64::from_str` would also take a sign, which no length may have.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads one response from `source`.
pub struct ResponseReader<R> {
    source: R,
    /// Bytes read from `source`; `start..end` are the ones not used yet. Its fixed size is the
    /// head limit and the unit of every body read.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: Read> ResponseReader<R> {
    pub fn new(source: R) -> Self {
        ResponseReader {
            source,
            buf: vec![0; MAX_HEAD].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Reads up to the end of the final response's head, skipping interim `1xx` responses
    /// (all but `101 Switching Protocols`, which is final).
    pub fn read_head(&mut self) -> Result<ResponseHead, HttpError> {
        for _ in 0..=MAX_INTERIM {
            let head = self.read_one_head()?;
            if !(100..200).contains(&head.status) || head.status == 101 {
                return Ok(head);
            }
        }
        Err(HttpError::BadResponse(format!(
            "more than {MAX_INTERIM} interim (1xx) responses and no final one"
        )))
    }

    /// Streams the body that follows `head` to `out`, unchanged except for removing chunked
    /// framing. `method` is the request's: the answer to `HEAD` has no body.
    pub fn copy_body(
        &mut self,
        head: &ResponseHead,
        method: &str,
        out: &mut impl Write,
    ) -> Result<(), HttpError> {
        match Framing::of(head, method)? {
            Framing::Empty => Ok(()),
            Framing::Length(length) => self.copy_length(length, out),
            Framing::Chunked => self.copy_chunked(out),
            Framing::UntilClose => self.copy_until_close(out),
        }
    }

    fn read_one_head(&mut self) -> Result<ResponseHead, HttpError> {
        let mut slots = INITIAL_HEADERS;
        // Bytes left over from an interim response may already hold this head.
        let mut may_be_complete = self.start < self.end;
        loop {
            if may_be_complete && let Some(head) = parse_head(self.unread(), &mut slots)? {
                self.start += head.raw.len();
                return Ok(head);
            }
            if self.end - self.start == MAX_HEAD {
                return Err(HttpError::BadResponse(format!(
                    "response head exceeds {} KiB",
                    MAX_HEAD / 1024
                )));
            }
            let before = self.end - self.start;
            if self.fill()? == 0 {
                // A last look: a garbled head deserves "malformed", not "closed".
                parse_head(self.unread(), &mut slots)?;
                return Err(HttpError::BadResponse(match before {
                    0 => "connection closed before any response".to_owned(),
                    _ => "connection closed in the middle of the response head".to_owned(),
                }));
            }
            may_be_complete = self
                .unread()
                .get(before..)
                .unwrap_or_default()
                .contains(&b'\n');
        }
    }

    fn copy_length(&mut self, length: u64, out: &mut impl Write) -> Result<(), HttpError> {
        let mut copied = 0;
        while copied < length {
            if self.start == self.end && self.fill()? == 0 {
                return Err(HttpError::BadResponse(format!(
                    "connection closed after {copied} of {length} body bytes"
                )));
            }
            let unread = self.unread();
            // `unread.len()` fits in u64, and the minimum of the two fits in usize.
            let take = (length - copied).min(unread.len() as u64) as usize;
            out.write_all(unread.get(..take).unwrap_or_default())
                .map_err(HttpError::Output)?;
            self.start += take;
            copied += take as u64;
        }
        Ok(())
    }

    fn copy_chunked(&mut self, out: &mut impl Write) -> Result<(), HttpError> {
        let mut decoder = ChunkedDecoder::new();
        while !decoder.is_done() {
            if self.start == self.end && self.fill()? == 0 {
                return Err(decoder.truncated());
            }
            let (used, data) = decoder.decode(self.unread())?;
            out.write_all(data).map_err(HttpError::Output)?;
            self.start += used;
        }
        Ok(())
    }

    fn copy_until_close(&mut self, out: &mut impl Write) -> Result<(), HttpError> {
        while self.start < self.end || self.fill()? > 0 {
            out.write_all(self.unread()).map_err(HttpError::Output)?;
            self.start = self.end;
        }
        Ok(())
    }

    fn unread(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Moves the unread bytes to the front of the buffer and reads more after them; returns
    /// how many arrived (0: the peer closed). Callers make sure the buffer is not full.
    fn fill(&mut self) -> Result<usize, HttpError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let room = self.buf.get_mut(self.end..).unwrap_or_default();
        let n = loop {
            match self.source.read(room) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => break result.map_err(HttpError::Io)?,
            }
        };
        self.end += n;
        Ok(n)
    }
}

/// Parses a complete head at the start of `bytes`, or says (`None`) that more bytes are needed.
/// Grows `slots` when the head has more headers than that.
fn parse_head(bytes: &[u8], slots: &mut usize) -> Result<Option<ResponseHead>, HttpError> {
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; *slots];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                *slots *= 2;
                continue;
            }
            Err(err) => {
                return Err(HttpError::BadResponse(format!(
                    "malformed response head: {err}"
                )));
            }
        };
        let status = response.code.ok_or_else(|| {
            HttpError::BadResponse("malformed response head: no status code".to_owned())
        })?;
        return Ok(Some(ResponseHead {
            status,
            headers: response
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            raw: bytes.get(..len).unwrap_or_default().to_vec(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole response from `source` as the answer to `method`: (head, body).
    fn read_from(source: impl Read, method: &str) -> Result<(ResponseHead, Vec<u8>), HttpError> {
        let mut reader = ResponseReader::new(source);
        let head = reader.read_head()?;
        let mut body = Vec::new();
        reader.copy_body(&head, method, &mut body)?;
        Ok((head, body))
    }

    fn read(input: &[u8], method: &str) -> Result<(ResponseHead, Vec<u8>), HttpError> {
        read_from(input, method)
    }

    fn body(input: &[u8]) -> Vec<u8> {
        read(input, "GET").unwrap().1
    }

    fn error(input: &[u8]) -> String {
        read(input, "GET").unwrap_err().to_string()
    }

    /// A reader that hands out one byte per `read`, like a server writing byte by byte.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn content_length_body_and_raw_head() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloEXTRA";
        let (head, body) = read(input, "GET").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(
            head.raw,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n"
        );
        assert_eq!(head.values("x").collect::<Vec<_>>(), [b"y"]);
        assert_eq!(body, b"hello");
    }

    #[test]
    fn chunked_body_is_decoded() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 99\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(body(input), b"abc");
    }

    #[test]
    fn body_until_close_when_no_length() {
        assert_eq!(
            body(b"HTTP/1.0 200 OK\r\n\r\nall\r\nof it"),
            b"all\r\nof it"
        );
        let not_chunked_last = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw";
        assert_eq!(body(not_chunked_last), b"raw");
    }

    #[test]
    fn no_body_for_head_204_304() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(read(input, "HEAD").unwrap().1, b"");
        assert_eq!(body(b"HTTP/1.1 204 No Content\r\n\r\nignored"), b"");
        assert_eq!(
            body(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
            b""
        );
    }

    #[test]
    fn endless_interim_responses_are_an_error() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        let err = read(&input, "GET").unwrap_err().to_string();
        assert!(err.contains("interim"), "{err}");
    }

    #[test]
    fn interim_responses_are_skipped_but_101_is_final() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (head, body) = read(input, "GET").unwrap();
        assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));
        assert!(head.raw.starts_with(b"HTTP/1.1 200 OK"));
        let (head, body) = read_from(OneByte(input), "GET").unwrap();
        assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));

        let upgrade = b"HTTP/1.1 101 Switching Protocols\r\n\r\nother protocol";
        assert_eq!(read(upgrade, "GET").unwrap().0.status, 101);
    }

    #[test]
    fn one_byte_reads_give_the_same_result() {
        let input =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        let (head, body) = read_from(OneByte(input), "GET").unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(body, b"abc");
    }

    #[test]
    fn many_headers_grow_the_header_array() {
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            input.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b"Content-Length: 1\r\n\r\n!");
        let (head, body) = read(&input, "GET").unwrap();
        assert_eq!((head.headers.len(), body.as_slice()), (501, &b"!"[..]));
    }

    #[test]
    fn head_limit_is_exact() {
        let head_of_size = |size: usize| {
            let start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ";
            let filler = vec![b'a'; size - start.len() - 4];
            [&start[..], &filler, b"\r\n\r\n"].concat()
        };
        assert_eq!(
            read(&head_of_size(MAX_HEAD), "GET").unwrap().0.raw.len(),
            MAX_HEAD
        );
        assert_eq!(
            read(&head_of_size(MAX_HEAD + 1), "GET")
                .unwrap_err()
                .to_string(),
            "response head exceeds 64 KiB"
        );
    }

    #[test]
    fn truncation_and_garbage_are_named() {
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
            "connection closed after 5 of 10 body bytes"
        );
        assert_eq!(error(b""), "connection closed before any response");
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nContent-"),
            "connection closed in the middle of the response head"
        );
        assert_eq!(
            error(b"SSH-2.0-OpenSSH\r\n"),
            "malformed response head: invalid HTTP version"
        );
        assert_eq!(
            error(b"garbage"),
            "malformed response head: invalid HTTP version"
        );
        assert_eq!(
            error(b"HTTP/1.1 2000 OK\r\n\r\n"),
            "malformed response head: invalid response status"
        );
        assert!(
            error(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .starts_with("connection closed before the end of the chunked body")
        );
    }

    #[test]
    fn content_length_must_be_valid_and_agree() {
        let with = |value: &str| format!("HTTP/1.1 200 OK\r\n{value}\r\n\r\n12345");
        assert_eq!(body(with("Content-Length: 3, 3").as_bytes()), b"123");
        assert_eq!(
            body(with("Content-Length: 2\r\nContent-Length: 2").as_bytes()),
            b"12"
        );
        assert_eq!(
            error(with("Content-Length: 2\r\nContent-Length: 3").as_bytes()),
            "conflicting Content-Length values 2 and 3"
        );
        assert_eq!(
            error(with("Content-Length: -1").as_bytes()),
            "invalid Content-Length \"-1\""
        );
        assert_eq!(
            error(with("Content-Length: +1").as_bytes()),
            "invalid Content-Length \"+1\""
        );
        assert_eq!(
            error(with("Content-Length: 99999999999999999999").as_bytes()),
            "invalid Content-Length \"99999999999999999999\""
        );
        assert_eq!(
            error(with("Content-Length:").as_bytes()),
            "invalid Content-Length \"\""
        );
        // The server's bytes are quoted escaped: no control byte reaches the terminal. (C1
        // bytes are all httparse lets through; it refuses C0 controls and DEL in a value.)
        assert_eq!(
            error(b"HTTP/1.1 200 OK\r\nContent-Length: 1\x9b2J\xc2\x9b\t2\r\n\r\n"),
            r#"invalid Content-Length "1\x9b2J\u{9b}\x092""#
        );
    }

    #[test]
    fn output_errors_are_told_apart() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut reader = ResponseReader::new(&b"HTTP/1.1 200 OK\r\n\r\nbody"[..]);
        let head = reader.read_head().unwrap();
        let err = reader.copy_body(&head, "GET", &mut Closed).unwrap_err();
        assert_eq!(err.to_string(), "write output: broken pipe");
    }
}
