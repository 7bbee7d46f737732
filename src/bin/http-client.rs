//! `http-client`: one HTTP/1.x request over plain TCP, response to stdout.
//!
//! With a URL it behaves like a small `curl`: the body (de-chunked) goes to stdout, `-i` puts
//! the status line and headers first. Without one it is the original lab's interactive client:
//! it asks for method, target, version and host on stderr, reads one stdin line for each, and
//! prints the whole response. Either way the work is [`inetloop::client::http::fetch`]: resolve and
//! connect with a timeout, one `write` of the request, reads with `SO_RCVTIMEO` until the
//! response is complete, all of it within `--max-time` (300 s unless told otherwise). The
//! status line and headers are printed with control characters escaped; the body as received.
//!
//! Exit status: 0 when a response arrived (whatever its code), 1 when the exchange failed or
//! ran out of time, 2 for a usage error. Failures are one line on stderr, `http-client: <what
//! failed>`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use inetloop::client::http::{self, HttpError, Request, Timeouts, Url, Version};

const USAGE: &str = "\
usage: http-client [OPTIONS] URL
       http-client [OPTIONS]        interactive: asks for method, target, version and host

Sends one request (with Host and Connection: close) to an http:// URL and prints the response
body to stdout, de-chunked. https:// is not supported.

options:
  -i, --include          print the status line and headers before the body (escaped, see
                         below)
  -X, --request METHOD   request method (default GET; the answer to HEAD has no body)
  -H, --header 'N: V'    add a request header (repeatable; a Host or Connection header
                         replaces the client's own)
      --http1.0          send HTTP/1.0 instead of HTTP/1.1
  -m, --max-time SECS    limit for the whole exchange: resolving, connecting, sending and
                         reading the whole response (default 300). Past it the client stops
                         with exit status 1; body bytes already printed stay printed. Raise
                         it for long downloads
      --timeout SECS     limit for connecting and for each read (default 30)
  -h, --help             print this help

SECS is a number of seconds, fractions allowed (0.5), more than 0 and at most 86400 (a day).

Output: the body goes to stdout byte for byte, as received (it is your download, as with
curl; mind what you send to a terminal). The status line and headers are the server's text,
so in them everything but printable ASCII is escaped: an ASCII control or DEL, or a byte that
is not UTF-8, as \\xHH (ESC is \\x1b, a raw byte 0x9b is \\x9b); a non-ASCII character, the
C1 controls U+0080-U+009F included, as \\u{H..} (\\u{9b}, \\u{e9}). Line ends stay as received;
a CR, LF or tab inside a line is escaped. Error messages escape what they quote of the server.

Interactive mode (no URL) prompts on stderr and reads one line each from stdin: method,
target (path), version, and host as HOST or HOST:PORT (port 80 by default). An empty answer
takes the default shown; -X and --http1.0 change those defaults. It prints the whole response
like -i: status line and headers (escaped), then the body (de-chunked). --max-time counts from
the last answer, not while you type.

exit status: 0 when a response was received, whatever its status code: a 404 is a valid
answer (as with curl without --fail); 1 when connecting, sending or reading failed, the
response was malformed, or --max-time passed first; 2 for a usage error or an invalid URL,
method or header.
";

/// How long connecting, and then each read, may wait unless `--timeout` says otherwise: long
/// enough for a slow server, short enough that a dead one is reported rather than waited on.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the whole exchange may take unless `--max-time` says otherwise. curl has no such
/// default; here a user who sets nothing is still protected from a server that sends a byte
/// now and then forever, and five minutes is ample for a page or a modest download.
const DEFAULT_MAX_TIME: Duration = Duration::from_secs(300);

/// The longest `--timeout` or `--max-time`, in seconds: a day. More means nothing for one
/// exchange, and the cap keeps the deadline (`now + max_time`) far from overflowing.
const MAX_SECS: f64 = 86_400.0;

/// What the command line asked for.
struct Options {
    include: bool,
    /// `-X`; in interactive mode, the default offered at the method prompt.
    method: Option<String>,
    /// `-H` lines, checked when the request is built.
    headers: Vec<String>,
    version: Version,
    timeouts: Timeouts,
    /// `None`: interactive mode.
    url: Option<String>,
}

/// Why the program stops unsuccessfully; decides the exit status.
enum Failure {
    Usage(String),
    Http(HttpError),
}

impl From<HttpError> for Failure {
    fn from(err: HttpError) -> Self {
        Failure::Http(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => write!(f, "{message} (see --help)"),
            Failure::Http(err @ HttpError::TimeLimit(_)) => write!(f, "{err} (--max-time)"),
            Failure::Http(err) => write!(f, "{err}"),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("http-client: {failure}");
            match failure {
                Failure::Usage(_) | Failure::Http(HttpError::InvalidRequest(_)) => {
                    ExitCode::from(2)
                }
                Failure::Http(_) => ExitCode::FAILURE,
            }
        }
    }
}

fn run() -> Result<(), Failure> {
    let Some(options) = parse_args(pico_args::Arguments::from_env())? else {
        print!("{USAGE}");
        return Ok(());
    };
    let default_method = options.method.as_deref().unwrap_or("GET");
    let (url, method, version, include) = match &options.url {
        Some(text) => (
            Url::parse(text)?,
            default_method.to_owned(),
            options.version,
            options.include,
        ),
        None => {
            let (url, method, version) = ask(default_method, options.version)?;
            (url, method, version, true)
        }
    };
    let mut request = Request::new(url)
        .with_method(&method)?
        .with_version(version);
    for line in &options.headers {
        request = request.with_header_line(line)?;
    }
    // Interactive answers are in by now: the --max-time clock starts inside fetch.
    http::fetch(
        &request,
        options.timeouts,
        include,
        &mut io::stdout().lock(),
    )?;
    Ok(())
}

/// Reads the options; `None` means `--help` was asked for.
fn parse_args(mut args: pico_args::Arguments) -> Result<Option<Options>, Failure> {
    let usage = |err: pico_args::Error| Failure::Usage(err.to_string());
    if args.contains(["-h", "--help"]) {
        return Ok(None);
    }
    let include = args.contains(["-i", "--include"]);
    let version = if args.contains("--http1.0") {
        Version::Http10
    } else {
        Version::Http11
    };
    let method = args
        .opt_value_from_str(["-X", "--request"])
        .map_err(usage)?;
    let headers = args.values_from_str(["-H", "--header"]).map_err(usage)?;
    let timeouts = Timeouts {
        io: seconds(&mut args, "--timeout", "--timeout", DEFAULT_TIMEOUT)?,
        total: seconds(
            &mut args,
            ["-m", "--max-time"],
            "--max-time",
            DEFAULT_MAX_TIME,
        )?,
    };
    let mut rest = args.finish().into_iter().map(OsString::into_string);
    let url = match rest.next() {
        None => None,
        Some(Err(_)) => return Err(Failure::Usage("the URL is not valid UTF-8".to_owned())),
        Some(Ok(arg)) if arg.starts_with('-') && arg.len() > 1 => {
            return Err(Failure::Usage(format!("unknown option {arg}")));
        }
        Some(Ok(url)) => Some(url),
    };
    if let Some(extra) = rest.next() {
        let extra = extra.unwrap_or_else(|os| os.to_string_lossy().into_owned());
        return Err(Failure::Usage(format!(
            "unexpected argument {extra:?} after the URL"
        )));
    }
    Ok(Some(Options {
        include,
        method,
        headers,
        version,
        timeouts,
        url,
    }))
}

/// The `SECS` option `flag` (`keys`: its names), or `default` if absent: a number of
/// seconds, fractions allowed, more than 0 and at most [`MAX_SECS`]. NaN, infinity and a value
/// that rounds to zero nanoseconds are refused too.
fn seconds(
    args: &mut pico_args::Arguments,
    keys: impl Into<pico_args::Keys>,
    flag: &str,
    default: Duration,
) -> Result<Duration, Failure> {
    let text: Option<String> = args
        .opt_value_from_str(keys)
        .map_err(|err| Failure::Usage(err.to_string()))?;
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0 && *secs <= MAX_SECS)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{flag} {text:?}: expected more than 0 and at most {MAX_SECS} seconds"
            ))
        })
}

/// The interactive questions, each answered by one line of stdin. End of input counts as an
/// empty answer, so the defaults apply; only the host has none.
fn ask(default_method: &str, default_version: Version) -> Result<(Url, String, Version), Failure> {
    let mut lines = io::stdin().lock().lines();
    let mut answer = |question: &str| -> Result<String, Failure> {
        eprint!("{question}: ");
        match lines.next() {
            None => Ok(String::new()),
            Some(line) => line.map(|l| l.trim().to_owned()).map_err(|err| {
                Failure::Http(HttpError::Io(io::Error::new(
                    err.kind(),
                    format!("read stdin: {err}"),
                )))
            }),
        }
    };
    let method = answer(&format!("method [{default_method}]"))?;
    let target = answer("target [/]")?;
    let version = answer(&format!("version [{default_version}]"))?;
    let host = answer("host (HOST or HOST:PORT)")?;
    if !io::stdin().is_terminal() {
        // Typed answers end the prompt lines; piped ones do not, so end the last one here.
        eprintln!();
    }

    let method = if method.is_empty() {
        default_method.to_owned()
    } else {
        method
    };
    let version = match version.as_str() {
        "" => default_version,
        typed => typed.parse()?,
    };
    if host.is_empty() {
        return Err(Failure::Usage("no host given".to_owned()));
    }
    Ok((Url::from_parts(&host, &target)?, method, version))
}
