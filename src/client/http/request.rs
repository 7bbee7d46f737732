//! Building the bytes of an HTTP/1.x request.
//!
//! A request is text: a request line (`GET /path HTTP/1.1`), header lines (`Name: value`),
//! each ending in CRLF, and an empty line. It goes out in one `write`. Because the framing is
//! CRLF, anything the user supplies is checked here: a CR or LF inside a header value would
//! end the line early and let the rest pass for headers of its own ("header injection").

use std::fmt;
use std::str::FromStr;

use super::{HttpError, Url};

/// The protocol version written in the request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// Accepts `HTTP/1.1` or `1.1`, `HTTP/1.0` or `1.0` (any case), as a person would type them.
impl FromStr for Version {
    type Err = HttpError;

    fn from_str(text: &str) -> Result<Self, HttpError> {
        let number = text
            .split_at_checked(5)
            .filter(|(prefix, _)| prefix.eq_ignore_ascii_case("HTTP/"))
            .map_or(text, |(_, number)| number);
        match number {
            "1.1" => Ok(Version::Http11),
            "1.0" => Ok(Version::Http10),
            _ => Err(HttpError::InvalidRequest(format!(
                "unsupported HTTP version {text:?} (expected HTTP/1.1 or HTTP/1.0)"
            ))),
        }
    }
}

/// One request, checked as it is built so that [`Request::encode`] cannot fail.
#[derive(Clone, Debug)]
pub struct Request {
    url: Url,
    /// Case matters: methods are case-sensitive tokens (`GET`, not `get`).
    method: String,
    version: Version,
    /// Headers the user added, in order. One named `Host` or `Connection` replaces ours, as
    /// with curl's `-H`.
    headers: Vec<(String, String)>,
}

impl Request {
    /// A `GET` for `url` over HTTP/1.1.
    pub fn new(url: Url) -> Self {
        Request {
            url,
            method: "GET".to_owned(),
            version: Version::Http11,
            headers: Vec::new(),
        }
    }

    /// Uses `method` (e.g. `HEAD`, `POST`); it must be an HTTP token.
    pub fn with_method(mut self, method: &str) -> Result<Self, HttpError> {
        if !is_token(method) {
            return Err(HttpError::InvalidRequest(format!(
                "invalid method {method:?}: letters, digits and !#$%&'*+-.^_`|~ only"
            )));
        }
        self.method = method.to_owned();
        Ok(self)
    }

    pub fn with_version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Adds a header written as `Name: value` (the form of curl's `-H`).
    pub fn with_header_line(mut self, line: &str) -> Result<Self, HttpError> {
        let invalid =
            |why: &str| HttpError::InvalidRequest(format!("invalid header {line:?}: {why}"));
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("expected 'Name: value'"))?;
        if !is_token(name) {
            return Err(invalid("the name must be a token (no spaces)"));
        }
        // Tab is the only control character a field value may hold (RFC 9110 §5.5); CR and LF
        // would end the line early.
        if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
            return Err(invalid(
                "the value contains CR, LF or another control character",
            ));
        }
        self.headers
            .push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        Ok(self)
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// The method, which decides whether the response can have a body (not for `HEAD`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request as it goes on the wire: request line, `Host`, `Connection: close`, the
    /// user's headers, blank line. No body: the client has no option that sends one.
    pub fn encode(&self) -> Vec<u8> {
        let host = self.url.host_header();
        let defaults = [("Host", host.as_str()), ("Connection", "close")];
        let replaced = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut text = format!("{} {} {}\r\n", self.method, self.url.target, self.version);
        let headers = defaults
            .into_iter()
            .filter(|(name, _)| !replaced(name))
            .chain(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// An RFC 9110 token: what methods and header names are made of.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request {
        Request::new(Url::parse(url).unwrap())
    }

    fn text(request: &Request) -> String {
        String::from_utf8(request.encode()).unwrap()
    }

    #[test]
    fn default_request_is_get_with_host_and_close() {
        assert_eq!(
            text(&request("http://example.org/a?b=c")),
            "GET /a?b=c HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn host_carries_a_port_other_than_80_and_brackets_ipv6() {
        assert!(text(&request("http://h:8080/")).contains("\r\nHost: h:8080\r\n"));
        assert!(text(&request("http://[::1]/")).contains("\r\nHost: [::1]\r\n"));
        assert!(text(&request("http://[::1]:81/")).contains("\r\nHost: [::1]:81\r\n"));
    }

    #[test]
    fn method_version_and_headers() {
        let r = request("http://h/")
            .with_method("HEAD")
            .unwrap()
            .with_version(Version::Http10)
            .with_header_line("Accept:  text/plain ")
            .unwrap()
            .with_header_line("X-Empty:")
            .unwrap();
        assert_eq!(
            text(&r),
            "HEAD / HTTP/1.0\r\nHost: h\r\nConnection: close\r\nAccept: text/plain\r\nX-Empty: \r\n\r\n"
        );
    }

    #[test]
    fn user_host_and_connection_replace_ours() {
        let r = request("http://h/")
            .with_header_line("host: other")
            .unwrap()
            .with_header_line("Connection: keep-alive")
            .unwrap();
        assert_eq!(
            text(&r),
            "GET / HTTP/1.1\r\nhost: other\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn rejects_header_injection_and_bad_tokens() {
        let error = |line: &str| {
            request("http://h/")
                .with_header_line(line)
                .unwrap_err()
                .to_string()
        };
        assert!(error("X: a\r\nEvil: yes").contains("contains CR, LF"));
        assert!(error("X: a\nb").contains("contains CR, LF"));
        assert!(error("X: a\0b").contains("contains CR, LF"));
        assert!(error("no colon").contains("expected 'Name: value'"));
        assert!(error("Bad Name: v").contains("must be a token"));
        assert!(error(": v").contains("must be a token"));
        assert!(request("http://h/").with_method("GET /x").is_err());
        assert!(request("http://h/").with_method("").is_err());
        assert!(request("http://h/").with_method("G\r\nET").is_err());
    }

    #[test]
    fn parses_versions_as_typed() {
        assert_eq!("HTTP/1.1".parse::<Version>().unwrap(), Version::Http11);
        assert_eq!("http/1.0".parse::<Version>().unwrap(), Version::Http10);
        assert_eq!("1.0".parse::<Version>().unwrap(), Version::Http10);
        assert!("HTTP/2".parse::<Version>().is_err());
        assert!("HTTP/".parse::<Version>().is_err());
        assert!("é".parse::<Version>().is_err());
    }
}
