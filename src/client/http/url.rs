//! `http://host[:port][/path][?query]` split into what the client needs: where to connect and
//! what to ask for.
//!
//! No socket is touched here. The host part goes through
//! [`crate::client::endpoint::parse_host_port`], the same parser the other clients use for `HOST:PORT`,
//! so IPv6 literals (`http://[::1]:8080/`) and the host-name checks are written once.

use super::HttpError;
use crate::client::endpoint::{bracketed, join_host_port, parse_host_port};

/// The port an `http://` URL means when it names none.
const DEFAULT_PORT: u16 = 80;

/// A parsed `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// What goes in the request line: the path and query (`/` if the URL had none). Checked to
    /// hold no space or control character, so it cannot break the request line.
    pub(crate) target: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query][#fragment]`; the fragment is dropped, as
    /// browsers do (it never goes to the server).
    pub fn parse(text: &str) -> Result<Url, HttpError> {
        let invalid = |why: &str| {
            HttpError::InvalidRequest(format!(
                "invalid URL {text:?}: {why} (expected http://host[:port][/path])"
            ))
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(HttpError::InvalidRequest(format!(
                "https is not supported: {text} (this client speaks plain http:// only, no TLS)"
            )));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid(&format!("unsupported scheme {scheme:?}")));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid(
                "user names and passwords in URLs are not supported",
            ));
        }
        let target = match target {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Url::from_parts(authority, &target)
    }

    /// A URL from a `HOST[:PORT]` (port 80 by default) and a request target, as the
    /// interactive mode asks for them. An empty target means `/`.
    pub fn from_parts(host_port: &str, target: &str) -> Result<Url, HttpError> {
        let (host, port) = parse_host_port(host_port, Some(DEFAULT_PORT))
            .map_err(|err| HttpError::InvalidRequest(err.to_string()))?;
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HttpError::InvalidRequest(format!(
                "invalid request target {target:?}: spaces and control characters must be \
                 percent-encoded"
            )));
        }
        let target = if target.is_empty() { "/" } else { target };
        Ok(Url {
            host,
            port,
            target: target.to_owned(),
        })
    }

    /// The `Host` header value: the port only when it is not 80, IPv6 in brackets.
    pub(crate) fn host_header(&self) -> String {
        if self.port == DEFAULT_PORT {
            bracketed(&self.host).into_owned()
        } else {
            join_host_port(&self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, target: &str) -> Url {
        Url {
            host: host.into(),
            port,
            target: target.into(),
        }
    }

    fn error(text: &str) -> String {
        Url::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_usual_forms() {
        let parse = |text| Url::parse(text).unwrap();
        assert_eq!(parse("http://example.org"), url("example.org", 80, "/"));
        assert_eq!(parse("http://example.org/"), url("example.org", 80, "/"));
        assert_eq!(
            parse("http://example.org:8080/a/b.txt?x=1&y=2"),
            url("example.org", 8080, "/a/b.txt?x=1&y=2")
        );
        assert_eq!(parse("http://h?q"), url("h", 80, "/?q"));
        assert_eq!(parse("HTTP://h/p#frag"), url("h", 80, "/p"));
        assert_eq!(parse("http://[::1]:8080/"), url("::1", 8080, "/"));
        assert_eq!(parse("http://[::1]/x"), url("::1", 80, "/x"));
        assert_eq!(parse("http://127.0.0.1:1/"), url("127.0.0.1", 1, "/"));
    }

    #[test]
    fn refuses_https_and_other_schemes_clearly() {
        assert!(error("https://example.org/").starts_with("https is not supported: "));
        assert!(error("HTTPS://example.org/").starts_with("https is not supported: "));
        assert!(error("ftp://example.org/").contains("unsupported scheme \"ftp\""));
        assert!(error("example.org/index.html").contains("no scheme"));
        assert!(error("").contains("no scheme"));
    }

    #[test]
    fn refuses_bad_hosts_ports_and_targets() {
        assert!(error("http:///path").contains("missing host"));
        assert!(error("http://h:http/").contains("port must be a number"));
        assert!(error("http://h:65536/").contains("port must be a number"));
        assert!(error("http://[::1/").contains("missing ']'"));
        assert!(error("http://user:pw@h/").contains("passwords in URLs are not supported"));
        assert!(error("http://h/a b").contains("must be percent-encoded"));
        assert!(error("http://h/a\r\nX: y").contains("must be percent-encoded"));
        assert!(error("http://h\r\n/").contains("invalid character in host name"));
    }

    #[test]
    fn from_parts_defaults_port_and_target() {
        assert_eq!(Url::from_parts("h", "").unwrap(), url("h", 80, "/"));
        assert_eq!(Url::from_parts("h:81", "/x").unwrap(), url("h", 81, "/x"));
        assert!(Url::from_parts("", "/").is_err());
    }

    #[test]
    fn host_header_has_the_port_only_when_not_80() {
        assert_eq!(url("h", 80, "/").host_header(), "h");
        assert_eq!(url("h", 8080, "/").host_header(), "h:8080");
        assert_eq!(url("::1", 80, "/").host_header(), "[::1]");
        assert_eq!(url("::1", 8080, "/").host_header(), "[::1]:8080");
    }
}
