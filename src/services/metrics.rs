//! The metrics endpoint (`--metrics`, docs/PROTOCOLS.md §8): HTTP/1.1 served by the same loop
//! as every other service, as one more TCP service.
//!
//! `GET /metrics` answers with the Prometheus text exposition format, `GET /` with a status
//! page for people; the plumbing draws both ([`Env::render`]), since it owns the numbers. This
//! file only speaks HTTP, the way the time stream speaks its greeting protocol: a state machine
//! fed bytes, that writes to an [`Output`] and sets timers, with time passed in.
//!
//! - **Requests** are parsed with `httparse` once a whole head is in ([`parse_request`], a pure
//!   function: incomplete, complete, too large, or bad). The head is capped at
//!   [`REQUEST_HEAD_MAX`] bytes and [`MAX_HEADERS`] headers: more is `431` and a close;
//!   anything that is not an HTTP/1.x request is `400` and a close. Request bodies are never
//!   read: a request that announces one is answered, then the connection is closed.
//! - **Answers**: `GET` and `HEAD` on `/metrics` and `/`; `404` for any other path, `405` with
//!   `Allow: GET, HEAD` for any other method; `HEAD` gets the headers of the `GET` and no body.
//! - **Connections**: HTTP/1.1 keeps the connection open unless the client says
//!   `Connection: close`; HTTP/1.0 closes unless it says `Connection: keep-alive`. Pipelined
//!   requests are answered one after the other, in order: while a response is being written
//!   the service takes no input ([`TcpService::input_room`] is 0), so a client that sends
//!   requests faster than it reads responses is held back by TCP, not by memory.
//! - **Deadlines**: a request head must be complete within `--greeting-timeout-ms` of the
//!   accept, and of the previous response being handed to the socket — however slowly its
//!   bytes drip in (the time stream's greeting rule). Past it, a client that sent part of a
//!   head gets `408`, a silent one is closed. The plumbing's idle and send timeouts apply as to
//!   every connection.
//! - **Large pages** (with `--threads`, `/metrics` can outgrow the 64 KiB output buffer) are
//!   pushed a buffer's worth at a time, the rest when the output has drained
//!   ([`TcpService::on_output_drained`]).
//!
//! What it turns away is reported with [`Env::observe`]: `request_timeout`, `head_too_large`,
//! `bad_request`.

use std::net::SocketAddr;

use log::debug;

use super::contract::{
    Env, Next, Observation, OutBuf, Output, Page, Rejection, TcpService, TimerTag,
};

/// The largest request head read, in bytes (request line and headers, blank line included).
/// Prometheus sends about 300; a longer head is answered `431` and the connection closed.
pub const REQUEST_HEAD_MAX: usize = 8 * 1024;
/// The most header lines a request may have (httparse needs a fixed array); more is `431`.
pub const MAX_HEADERS: usize = 32;
/// What a `405` says is allowed.
const ALLOWED: &str = "GET, HEAD";

/// A request's method, as far as the endpoint cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Anything else (answered `405`).
    Other,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/metrics` (a query string is ignored).
    Metrics,
    /// `/`.
    Status,
    /// Any other path (answered `404`).
    Unknown,
}

/// One request, once its head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub target: Target,
    /// HTTP/1.0 (else 1.1).
    pub http10: bool,
    /// Whether the connection stays open after the answer, as the client asked.
    pub keep_alive: bool,
    /// The request announces a body (`Content-Length` other than 0, or `Transfer-Encoding`),
    /// which the endpoint does not read: the connection closes after the answer.
    pub has_body: bool,
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet, and room for more.
    Incomplete,
    /// A whole request head of `len` bytes.
    Complete { request: Request, len: usize },
    /// The head is over [`REQUEST_HEAD_MAX`] bytes or [`MAX_HEADERS`] headers.
    TooLarge,
    /// Not an HTTP/1.x request.
    Bad,
}

/// Looks for a whole request head at the start of `input` (check, then take: the caller
/// removes `len` bytes).
pub fn parse_request(input: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(input) {
        Ok(httparse::Status::Complete(len)) if len <= REQUEST_HEAD_MAX => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::TooLarge;
        }
        Ok(httparse::Status::Partial) if input.len() >= REQUEST_HEAD_MAX => {
            return Parsed::TooLarge;
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return Parsed::Bad,
    };
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let path = request.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let target = match path {
        "/metrics" => Target::Metrics,
        "/" => Target::Status,
        _ => Target::Unknown,
    };
    let http10 = request.version == Some(0);
    let mut close = false;
    let mut keep_alive = false;
    let mut has_body = false;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default();
        if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse::<u64>() {
                Ok(length) => has_body |= length > 0,
                Err(_) => return Parsed::Bad,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let keep_alive = if http10 { keep_alive && !close } else { !close };
    Parsed::Complete {
        request: Request {
            method,
            target,
            http10,
            keep_alive,
            has_body,
        },
        len,
    }
}

/// A status code and its reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

pub const OK: Status = Status(200, "OK");
pub const BAD_REQUEST: Status = Status(400, "Bad Request");
pub const NOT_FOUND: Status = Status(404, "Not Found");
pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
pub const HEAD_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");

/// The `Content-Type` of the metrics page (the Prometheus text format, version 0.0.4).
pub const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `Content-Type` of everything else.
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// Writes a whole response: status line, headers, and the body unless `head_only`.
fn response(
    status: Status,
    content_type: &str,
    body: &str,
    head_only: bool,
    connection: Option<&str>,
) -> Vec<u8> {
    let Status(code, reason) = status;
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status == METHOD_NOT_ALLOWED {
        head.push_str(&format!("Allow: {ALLOWED}\r\n"));
    }
    if let Some(connection) = connection {
        head.push_str(&format!("Connection: {connection}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// A short plain-text body for an error status.
fn error_body(status: Status) -> String {
    let Status(code, reason) = status;
    let hint = match status {
        NOT_FOUND => " (try /metrics or /)",
        METHOD_NOT_ALLOWED => " (GET or HEAD)",
        _ => "",
    };
    format!("{code} {reason}{hint}\n")
}

/// One connection to the metrics endpoint.
pub struct HttpSession {
    peer: SocketAddr,
    /// Request bytes read and not answered yet: at most [`REQUEST_HEAD_MAX`].
    input: Vec<u8>,
    /// The response being written; empty when none is.
    response: Vec<u8>,
    /// How much of `response` the output has taken.
    sent: usize,
    /// Close once the response is out.
    close_after: bool,
    /// The peer sent FIN: answer what it asked, then close.
    peer_done: bool,
    /// Responses written so far; the head deadline's timer carries this number, so only the
    /// deadline armed after the latest response counts.
    answered: u64,
    /// The service said `Close`.
    finished: bool,
}

impl HttpSession {
    pub fn new(peer: SocketAddr) -> Self {
        HttpSession {
            peer,
            input: Vec::new(),
            response: Vec::new(),
            sent: 0,
            close_after: false,
            peer_done: false,
            answered: 0,
            finished: false,
        }
    }

    /// The deadline for the next request head, from now.
    fn arm_deadline(&self, env: &mut Env) {
        let deadline = env.now + env.settings.greeting_timeout;
        env.set_timer(deadline, TimerTag(self.answered));
    }

    /// Answers `request`: draws the page, frames the response.
    fn answer(&mut self, request: Request, env: &mut Env) {
        let head_only = request.method == Method::Head;
        let status = match (request.target, request.method) {
            (Target::Unknown, _) => NOT_FOUND,
            (_, Method::Other) => METHOD_NOT_ALLOWED,
            _ => OK,
        };
        let mut body = String::new();
        let content_type = match (status, request.target) {
            (OK, Target::Metrics) => {
                env.render(Page::Metrics, &mut body);
                METRICS_TYPE
            }
            (OK, _) => {
                env.render(Page::Status, &mut body);
                TEXT_TYPE
            }
            _ => {
                body = error_body(status);
                TEXT_TYPE
            }
        };
        self.close_after = !request.keep_alive || request.has_body;
        let connection = match (self.close_after, request.http10) {
            (true, _) => Some("close"),
            (false, true) => Some("keep-alive"),
            (false, false) => None,
        };
        debug!(
            "metrics tcp {}: {:?} {:?} answered {}",
            self.peer, request.method, request.target, status.0
        );
        self.response = response(status, content_type, &body, head_only, connection);
        self.sent = 0;
    }

    /// Turns the client away with `status` (then closes), counting why.
    fn refuse(&mut self, status: Status, why: Rejection, env: &mut Env) {
        env.observe(Observation::Rejected(why));
        debug!("metrics tcp {}: {} ({})", self.peer, status.0, why.name());
        self.response = response(status, TEXT_TYPE, &error_body(status), false, Some("close"));
        self.sent = 0;
        self.close_after = true;
        self.input.clear();
    }

    /// Pushes as much of the response as the output takes. Returns whether it is all out; once
    /// it is, the next request's deadline starts.
    fn push_response(&mut self, env: &mut Env, out: &mut Output) -> bool {
        if self.response.is_empty() {
            return true;
        }
        while self.sent < self.response.len() {
            let room = out.room();
            if room == 0 {
                return false; // the rest when the output drains
            }
            let end = self.response.len().min(self.sent + room);
            let chunk = self.response.get(self.sent..end).unwrap_or_default();
            if out.push(chunk).is_err() {
                return false; // cannot happen: the chunk fits the room
            }
            self.sent = end;
        }
        // A large page's memory goes back now, not when the connection closes.
        self.response = Vec::new();
        self.sent = 0;
        self.answered += 1;
        self.arm_deadline(env);
        true
    }

    /// Writes what is pending, then answers every whole request waiting, in order, until one
    /// waits for the output, input runs out, or the connection must close.
    fn serve(&mut self, env: &mut Env, out: &mut Output) -> Next {
        loop {
            if !self.push_response(env, out) {
                return Next::Continue;
            }
            if self.close_after {
                return self.finish();
            }
            match parse_request(&self.input) {
                Parsed::Incomplete if self.peer_done => return self.finish(),
                Parsed::Incomplete => return Next::Continue,
                Parsed::Complete { request, len } => {
                    self.input.drain(..len.min(self.input.len()));
                    self.answer(request, env);
                }
                Parsed::TooLarge => self.refuse(HEAD_TOO_LARGE, Rejection::HeadTooLarge, env),
                Parsed::Bad => self.refuse(BAD_REQUEST, Rejection::BadRequest, env),
            }
        }
    }

    fn finish(&mut self) -> Next {
        self.finished = true;
        Next::Close
    }
}

impl TcpService for HttpSession {
    /// Starts the first request's deadline.
    fn on_open(&mut self, env: &mut Env, _out: &mut Output) -> Next {
        self.arm_deadline(env);
        Next::Continue
    }

    fn on_input(&mut self, input: &[u8], env: &mut Env, out: &mut Output) -> Next {
        self.input.extend_from_slice(input);
        self.serve(env, out)
    }

    /// No more requests will come: answer those already in, then close.
    fn on_input_closed(&mut self, env: &mut Env, out: &mut Output) -> Next {
        self.peer_done = true;
        self.serve(env, out)
    }

    /// The request head is overdue.
    fn on_timer(&mut self, _tag: TimerTag, env: &mut Env, out: &mut Output) -> Next {
        if !self.input.is_empty() {
            self.refuse(REQUEST_TIMEOUT, Rejection::RequestTimeout, env);
            return self.serve(env, out);
        }
        if self.answered == 0 {
            // Connected and said nothing: slowloris' first move, counted, closed without a word.
            env.observe(Observation::Rejected(Rejection::RequestTimeout));
        }
        // Else a kept-alive connection with no next request: its natural end.
        self.finish()
    }

    /// Only the deadline armed after the latest response counts, and only while no response is
    /// being written (then the send timeout watches the client).
    fn timer_is_live(&self, tag: TimerTag) -> bool {
        !self.finished && tag == TimerTag(self.answered) && self.response.is_empty()
    }

    /// `request 3 head deadline` in `--trace-events`.
    fn describe_timer(&self, tag: TimerTag) -> String {
        format!("request {} head deadline", tag.0 + 1)
    }

    /// Input waits in the kernel while a response is being written (pipelining in order, and
    /// backpressure); otherwise up to the head cap.
    fn input_room(&self, _out: &OutBuf) -> usize {
        if self.response.is_empty() {
            REQUEST_HEAD_MAX.saturating_sub(self.input.len())
        } else {
            0
        }
    }

    fn on_output_drained(&mut self, env: &mut Env, out: &mut Output) -> Next {
        self.serve(env, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::contract::{ServiceSettings, TestEnv};
    use std::time::Duration;

    const GET_METRICS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

    fn harness() -> TestEnv {
        let mut h = TestEnv::new(ServiceSettings {
            greeting_timeout: Duration::from_millis(500),
            ..ServiceSettings::default()
        });
        h.pages.metrics = "# metrics page\n".into();
        h.pages.status = "status page\n".into();
        h
    }

    fn peer() -> SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    /// Feeds `input` to a fresh session through an output that queues everything (up to
    /// `limit` bytes); returns what was written, the verdict and the session.
    fn feed(h: &mut TestEnv, chunks: &[&[u8]]) -> (HttpSession, String, Next) {
        let mut session = HttpSession::new(peer());
        let mut queue = OutBuf::new(64 * 1024);
        let mut next = session.on_open(&mut h.env(), &mut Output::new(&mut queue, None));
        for chunk in chunks {
            next = session.on_input(chunk, &mut h.env(), &mut Output::new(&mut queue, None));
        }
        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        (session, text, next)
    }

    #[test]
    fn a_head_fed_byte_by_byte_is_answered_once_when_its_blank_line_arrives() {
        let mut h = harness();
        let bytes: Vec<&[u8]> = GET_METRICS.chunks(1).collect();
        let (_, text, next) = feed(&mut h, &bytes[..bytes.len() - 1]);
        assert_eq!((text.as_str(), next), ("", Next::Continue));
        let (_, text, next) = feed(&mut h, &bytes);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 15\r\n\r\n# metrics page\n"
        );
        assert_eq!(next, Next::Continue, "HTTP/1.1 keeps the connection");
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_and_head_gets_no_body() {
        let mut h = harness();
        let (_, text, next) = feed(
            &mut h,
            &[b"GET /metrics HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET /nope?x=1 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"],
        );
        let statuses: Vec<&str> = text
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.split("\r\n").next().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["200 OK", "200 OK", "404 Not Found", "200 OK"],
            "{text}"
        );
        assert!(text.contains(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\r\nHTTP/1.1 404"
        ), "HEAD: the GET's length, no body: {text}");
        assert!(text.contains("Connection: close\r\n\r\nstatus page\n"));
        assert!(
            text.ends_with("status page\n"),
            "nothing after the close: {text}"
        );
        assert_eq!(next, Next::Close);
    }

    #[test]
    fn other_methods_get_405_with_allow_and_the_connection_stays() {
        let mut h = harness();
        let (_, text, next) = feed(&mut h, &[b"DELETE /metrics HTTP/1.1\r\n\r\n"]);
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert_eq!(next, Next::Continue);
        // A request with a body is answered, then closed: its body is never read.
        let (_, text, next) = feed(
            &mut h,
            &[b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"],
        );
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert_eq!(next, Next::Close);
        assert!(h.observed.is_empty(), "a 405 is no rejection");
    }

    #[test]
    fn garbage_is_400_and_closes_and_is_counted() {
        let mut h = harness();
        let (session, text, next) = feed(&mut h, &[b"\x16\x03\x01\x02\x00 hello\r\n\r\n"]);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Connection: close"));
        assert_eq!(next, Next::Close);
        assert_eq!(h.observed, [Observation::Rejected(Rejection::BadRequest)]);
        assert_eq!(session.input_room(&OutBuf::new(1)), REQUEST_HEAD_MAX);
        let (_, text, _) = feed(
            &mut h,
            &[b"GET / HTTP/1.1\r\nContent-Length: twelve\r\n\r\n"],
        );
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }

    #[test]
    fn a_head_over_the_cap_is_431_and_the_session_never_takes_more_than_the_cap() {
        let mut h = harness();
        let mut session = HttpSession::new(peer());
        let mut queue = OutBuf::new(64 * 1024);
        let mut out = Output::new(&mut queue, None);
        let mut env = h.env();
        session.on_open(&mut env, &mut out);
        // Long header lines, so the byte cap comes before the header count's.
        let line = format!("X-Filler: {}\r\n", "a".repeat(500)).into_bytes();
        let mut next = session.on_input(b"GET /metrics HTTP/1.1\r\n", &mut env, &mut out);
        let mut fed = 23;
        while next == Next::Continue {
            let room = session.input_room(out_buf_probe());
            assert!(fed + room <= REQUEST_HEAD_MAX, "room {room} after {fed}");
            assert!(room > 0, "stuck: no answer and no room after {fed} bytes");
            let take = &line[..line.len().min(room)];
            next = session.on_input(take, &mut env, &mut out);
            fed += take.len();
        }
        assert_eq!(fed, REQUEST_HEAD_MAX, "answered exactly at the cap");
        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert_eq!(h.observed, [Observation::Rejected(Rejection::HeadTooLarge)]);
        // Too many header lines, however short, are 431 too.
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let (_, text, _) = feed(
            &mut h,
            &[format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()],
        );
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    }

    /// `input_room` ignores the output buffer; any will do.
    fn out_buf_probe() -> &'static OutBuf {
        static PROBE: std::sync::OnceLock<OutBuf> = std::sync::OnceLock::new();
        PROBE.get_or_init(|| OutBuf::new(0))
    }

    #[test]
    fn http_1_0_closes_unless_it_asks_to_keep_alive() {
        let mut h = harness();
        let (_, text, next) = feed(&mut h, &[b"GET / HTTP/1.0\r\n\r\n"]);
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert_eq!(next, Next::Close);
        let (_, text, next) = feed(
            &mut h,
            &[b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"],
        );
        assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
        assert_eq!(next, Next::Continue);
    }

    #[test]
    fn the_head_deadline_counts_from_the_accept_then_from_each_response() {
        let mut h = harness();
        let start = h.now;
        let (mut session, _, _) = feed(&mut h, &[]);
        assert_eq!(
            h.timers,
            [(start + Duration::from_millis(500), TimerTag(0))]
        );
        let mut queue = OutBuf::new(64 * 1024);
        h.now = start + Duration::from_millis(300);
        session.on_input(
            GET_METRICS,
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert!(
            !session.timer_is_live(TimerTag(0)),
            "answered: the old deadline is stale"
        );
        assert_eq!(
            h.timers.last(),
            Some(&(start + Duration::from_millis(800), TimerTag(1)))
        );
        // Part of a head, then the deadline: 408 and close.
        session.on_input(
            b"GET /met",
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert!(session.timer_is_live(TimerTag(1)));
        h.now = start + Duration::from_millis(800);
        let next = session.on_timer(
            TimerTag(1),
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert_eq!(next, Next::Close);
        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
        assert_eq!(
            h.observed,
            [Observation::Rejected(Rejection::RequestTimeout)]
        );
    }

    #[test]
    fn a_silent_client_is_closed_without_a_word_and_an_idle_kept_alive_one_is_not_counted() {
        let mut h = harness();
        let (mut session, _, _) = feed(&mut h, &[]);
        let mut queue = OutBuf::new(1024);
        let next = session.on_timer(
            TimerTag(0),
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert_eq!((next, queue.len()), (Next::Close, 0));
        assert_eq!(h.observed.len(), 1);

        let (mut session, _, _) = feed(&mut h, &[GET_METRICS]);
        let mut queue = OutBuf::new(1024);
        let next = session.on_timer(
            TimerTag(1),
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        assert_eq!((next, queue.len()), (Next::Close, 0));
        assert_eq!(
            h.observed.len(),
            1,
            "a kept-alive connection's end is no rejection"
        );
    }

    #[test]
    fn a_page_larger_than_the_output_goes_out_a_buffer_at_a_time_and_input_waits_meanwhile() {
        let mut h = harness();
        h.pages.metrics = "x".repeat(1000);
        let mut session = HttpSession::new(peer());
        let mut queue = OutBuf::new(100);
        let mut wire = Vec::new();
        session.on_open(&mut h.env(), &mut Output::new(&mut queue, None));
        let mut next = session.on_input(
            b"GET /metrics HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n",
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        let mut rounds = 0;
        while session.input_room(&queue) == 0 {
            assert_eq!(next, Next::Continue);
            assert_eq!(queue.len(), 100, "the output is kept full");
            queue.write_to(&mut wire).unwrap();
            next = session.on_output_drained(&mut h.env(), &mut Output::new(&mut queue, None));
            rounds += 1;
        }
        queue.write_to(&mut wire).unwrap();
        let text = String::from_utf8(wire).unwrap();
        assert!(rounds >= 10, "{rounds} rounds");
        let body_at = text.find("\r\n\r\n").unwrap() + 4;
        assert_eq!(&text[body_at..body_at + 1000], "x".repeat(1000));
        assert!(
            text[body_at + 1000..].starts_with("HTTP/1.1 404 Not Found\r\n"),
            "the pipelined request after the page: {}",
            &text[body_at + 1000..]
        );
    }

    #[test]
    fn after_the_peers_fin_waiting_requests_are_answered_then_the_connection_closes() {
        let mut h = harness();
        let (mut session, _, _) = feed(&mut h, &[]);
        let mut queue = OutBuf::new(64 * 1024);
        session.on_input(
            b"GET / HTTP/1.1\r\n\r\nGET /me",
            &mut h.env(),
            &mut Output::new(&mut queue, None),
        );
        let next = session.on_input_closed(&mut h.env(), &mut Output::new(&mut queue, None));
        assert_eq!(next, Next::Close);
        let text = String::from_utf8(queue.pending().to_vec()).unwrap();
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    }
}
