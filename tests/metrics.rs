//! The metrics endpoint (`--metrics`) against the real binary: checked by the real `promtool`,
//! scraped by a real Prometheus server started from `contrib/prometheus/prometheus.yml`,
//! counting known traffic exactly, standing up to hostile HTTP while the other services keep
//! serving, and reporting every loop of `--threads` from one endpoint.
//!
//! Scrapes come from 127.0.0.9 where a test also exercises per-source limits from 127.0.0.1 or
//! 127.0.0.2, so the scraper never spends those sources' share. Every wait is on a condition
//! (bytes on a socket, a value in a scrape, an answer of Prometheus's API), with a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    IO_TIMEOUT, Reactor, assert_daytime_line, free_port, need, poll_for, read_to_end, recv_text,
    tcp_from, udp,
};

/// What `/metrics` must be served as.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, d))
}

/// The source every scrape comes from.
fn scraper() -> IpAddr {
    v4(9)
}

/// A UDP socket bound to `source`, connected to `server`.
fn udp_from(source: IpAddr, server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    socket
}

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a text body")
    }
}

/// Reads one response; its body by `Content-Length` (none if `head_only`). `None` at EOF
/// before any byte.
fn read_response(reader: &mut BufReader<TcpStream>, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line).expect("read a status line") == 0 {
        return None;
    }
    let status: u16 = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header");
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("name: value");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let length: usize = response
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        response.body = vec![0; length];
        reader.read_exact(&mut response.body).expect("read a body");
    }
    Some(response)
}

/// `GET path` with `Connection: close` from `source`; the server must close after answering.
fn get_from(source: IpAddr, addr: SocketAddr, path: &str) -> Response {
    let mut stream = tcp_from(source, addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, false).expect("a response");
    assert_eq!(read_to_end(&mut reader), b"", "closed after the answer");
    response
}

/// A sample of a scrape: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape, its samples parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("series value");
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
                };
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                (name.to_string(), labels, value)
            })
            .collect();
        Scrape { text, samples }
    }

    /// The sum of the samples of `name` whose labels include all of `labels` (so a service's
    /// figure summed over loops, or one loop's).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Like [`Scrape::sum`], as an integer.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.sum(name, labels) as u64
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }
}

/// `a="1",b="x\"y"` → pairs, unescaping `\\`, `\"` and `\n`.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((name.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    labels
}

/// `GET /metrics` from the scraper's source.
fn scrape(reactor: &Reactor) -> Scrape {
    let response = get_from(scraper(), reactor.addr("metrics", "tcp"), "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some(METRICS_TYPE));
    Scrape::parse(response.text().to_string())
}

/// Scrapes until `done` holds (bounded); returns that scrape.
fn scrape_until(reactor: &Reactor, what: &str, mut done: impl FnMut(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    poll_for(IO_TIMEOUT, || {
        let s = scrape(reactor);
        if done(&s) {
            return Some(s);
        }
        last = Some(s.text);
        None
    })
    .unwrap_or_else(|| panic!("timed out waiting for: {what}; last scrape:\n{last:?}"))
}

/// One echo exchange of `text` from `source`, closed by the client.
fn echo_from(source: IpAddr, reactor: &Reactor, text: &[u8]) {
    let mut stream = tcp_from(source, reactor.addr("echo", "tcp"));
    stream.write_all(text).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut stream), text);
}

/// `promtool check metrics` on `text`: its status and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(need("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn promtool_accepts_the_metrics_page_of_two_loops_after_traffic_on_every_service() {
    need("promtool", "prometheus");
    let reactor = Reactor::start(&[
        "--threads",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--ticks",
        "2",
        "--interval-ms",
        "20",
    ]);
    for _ in 0..4 {
        echo_from(v4(1), &reactor, b"hello\n");
        let mut daytime = common::tcp(reactor.addr("daytime", "tcp"));
        assert_daytime_line(&read_to_end(&mut daytime));
        let socket = udp(reactor.addr("time", "udp"));
        socket.send(b"Bonjour").unwrap();
        while recv_text(&socket) != "Au Revoir" {}
    }
    let s = scrape_until(&reactor, "every tick of the UDP sessions counted", |s| {
        s.count(
            "inetloop_tick_lateness_seconds_count",
            &[("service", "time"), ("proto", "udp")],
        ) == 4
    });
    let (ok, said) = promtool_check(&s.text);
    assert!(
        ok && said.is_empty(),
        "promtool check metrics: {said}\n{}",
        s.text
    );
    assert!(s.text.ends_with('\n'));
    for number in ["1", "2"] {
        assert!(
            s.has("inetloop_loop_wakeups_total", &[("loop", number)]),
            "loop {number} is reported"
        );
    }
    // The process, named as Prometheus's client libraries name it.
    let fds = s.count("process_open_fds", &[]);
    assert!((10..200).contains(&fds), "{fds} descriptors");
    let rss = s.count("process_resident_memory_bytes", &[]);
    let vm_rss = reactor.rss_kib() * 1024;
    assert!(
        rss > 0 && rss.abs_diff(vm_rss) < vm_rss / 2,
        "{rss} bytes resident, /proc/PID/status says {vm_rss}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = s.sum("process_start_time_seconds", &[]);
    assert!(
        (now - 60.0..=now + 1.0).contains(&started),
        "started at {started}, now {now}"
    );
}

/// A Prometheus server on a loopback port, its storage in a directory of its own; stopped and
/// removed when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus with `contrib/prometheus/prometheus.yml`, pointed at `target` and
    /// scraping every second.
    fn start(target: SocketAddr) -> Prometheus {
        let prometheus = need("prometheus", "prometheus");
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib/prometheus/prometheus.yml"),
        )
        .expect("read contrib/prometheus/prometheus.yml");
        for expected in [
            "127.0.0.1:9100",
            "scrape_interval: 15s",
            "job_name: inetloop",
        ] {
            assert!(
                template.contains(expected),
                "the sample config has `{expected}`, which this test replaces"
            );
        }
        let config = template
            .replace("127.0.0.1:9100", &target.to_string())
            .replace("scrape_interval: 15s", "scrape_interval: 1s");
        let dir = std::env::temp_dir().join(format!(
            "inetloop-prometheus-{}-{}",
            std::process::id(),
            target.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Asks the HTTP API for `query`; returns the JSON answer, if Prometheus answered.
    fn query(&self, query: &str) -> Option<String> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            percent_encoded(query)
        );
        let output = common::run(
            env!("CARGO_BIN_EXE_http-client"),
            &["--timeout", "5", &url],
            b"",
        );
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Queries until the first result's value satisfies `done` (bounded); returns the answer.
    fn query_until(&self, query: &str, done: impl Fn(f64) -> bool) -> String {
        let mut last = None;
        poll_for(Duration::from_secs(60), || {
            let answer = self.query(query)?;
            let value = first_value(&answer);
            last = Some(answer.clone());
            value.filter(|v| done(*v)).map(|_| answer)
        })
        .unwrap_or_else(|| {
            panic!(
                "Prometheus never answered {query} as expected; last answer: {last:?}; log:\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if poll_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every byte but the unreserved ones (RFC 3986) as `%XX`.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of the first result of an instant query: `…"value":[1795653485.87,"1"]…`.
fn first_value(answer: &str) -> Option<f64> {
    let rest = answer.split_once("\"value\":[")?.1;
    let rest = rest.split_once(",\"")?.1;
    rest.split_once('"')?.0.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_reactor_and_sees_its_counters_move() {
    need("prometheus", "prometheus");
    let reactor = Reactor::start(&["--metrics", "127.0.0.1:0"]);
    let prometheus = Prometheus::start(reactor.addr("metrics", "tcp"));

    let up = prometheus.query_until("up{job=\"inetloop\"}", |v| v == 1.0);
    println!("up{{job=\"inetloop\"}}: {up}");

    // Known traffic: 5 echo connections of 1000 bytes each.
    const SENT: usize = 5 * 1000;
    for _ in 0..5 {
        echo_from(v4(1), &reactor, &[b'x'; 1000]);
    }
    let query = "sum(inetloop_sent_bytes_total{job=\"inetloop\",service=\"echo\",proto=\"tcp\"})";
    let moved = prometheus.query_until(query, |v| v >= SENT as f64);
    println!("{query}: {moved}");
    assert_eq!(
        first_value(&moved),
        Some(SENT as f64),
        "exactly what was echoed"
    );
    let scrapes = prometheus.query_until(
        "sum(inetloop_tcp_connections_accepted_total{job=\"inetloop\",service=\"metrics\"})",
        |v| v >= 1.0,
    );
    println!("scrapes served over TCP: {scrapes}");
    assert!(
        prometheus.log().lines().all(|l| !l.contains("level=error")),
        "{}",
        prometheus.log()
    );
}

#[test]
fn counters_agree_exactly_with_known_traffic_and_with_the_status_line() {
    let reactor = Reactor::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--max-conns-per-ip",
        "2",
        "--deny",
        "echo=127.0.0.3",
        "--udp-rate-per-ip",
        "0",
    ]);
    // N echo connections of 10 bytes from 127.0.0.1.
    const N: u64 = 5;
    for i in 0..N {
        echo_from(v4(1), &reactor, format!("exchange {i}").as_bytes());
    }
    // 127.0.0.2 holds its 2 connections; K more are refused by the per-source limit.
    const K: u64 = 3;
    let held: Vec<TcpStream> = (0..2)
        .map(|_| tcp_from(v4(2), reactor.addr("echo", "tcp")))
        .collect();
    // The held ones are filed before the next connection is accepted (same listener, in order).
    for _ in 0..K {
        let mut refused = tcp_from(v4(2), reactor.addr("echo", "tcp"));
        assert_eq!(read_to_end(&mut refused), b"", "refused: EOF, no byte");
    }
    // 127.0.0.3 is denied echo: 2 TCP connections, 4 datagrams.
    for _ in 0..2 {
        let mut denied = tcp_from(v4(3), reactor.addr("echo", "tcp"));
        assert_eq!(read_to_end(&mut denied), b"");
    }
    let denied = udp_from(v4(3), reactor.addr("echo", "udp"));
    for _ in 0..4 {
        denied.send(b"nope").unwrap();
    }
    // M UDP echoes of 5 bytes from 127.0.0.1 (the last one proves the denied ones were read:
    // the socket is served in order).
    const M: u64 = 6;
    let socket = udp_from(v4(1), reactor.addr("echo", "udp"));
    for _ in 0..M {
        socket.send(b"12345").unwrap();
        assert_eq!(recv_text(&socket), "12345");
    }

    let s = scrape_until(&reactor, "every echo connection closed", |s| {
        s.count(
            "inetloop_tcp_connections_closed_total",
            &[("service", "echo")],
        ) == N
    });
    let echo = [("service", "echo")];
    let reason = |why| [("service", "echo"), ("reason", why)];
    assert_eq!(
        s.count("inetloop_tcp_connections_accepted_total", &echo),
        N + 2
    );
    assert_eq!(s.count("inetloop_tcp_connections_open", &echo), 2);
    assert_eq!(
        s.count(
            "inetloop_tcp_connections_closed_total",
            &reason("peer_closed")
        ),
        N
    );
    assert_eq!(
        s.count(
            "inetloop_tcp_connections_refused_total",
            &reason("max_conns_per_ip")
        ),
        K
    );
    assert_eq!(
        s.count(
            "inetloop_tcp_connections_refused_total",
            &reason("access_list")
        ),
        2
    );
    let tcp = [("service", "echo"), ("proto", "tcp")];
    assert_eq!(s.count("inetloop_received_bytes_total", &tcp), N * 10);
    assert_eq!(s.count("inetloop_sent_bytes_total", &tcp), N * 10);
    assert_eq!(
        s.count("inetloop_udp_datagrams_received_total", &echo),
        M + 4
    );
    assert_eq!(s.count("inetloop_udp_datagrams_sent_total", &echo), M);
    assert_eq!(
        s.count(
            "inetloop_udp_datagrams_dropped_total",
            &reason("access_list")
        ),
        4
    );
    assert_eq!(
        s.count("inetloop_udp_datagrams_dropped_total", &echo),
        4,
        "no other drop"
    );
    let udp = [("service", "echo"), ("proto", "udp")];
    assert_eq!(
        s.count("inetloop_received_bytes_total", &udp),
        M * 5 + 4 * 4
    );
    assert_eq!(s.count("inetloop_sent_bytes_total", &udp), M * 5);
    for service in ["time", "daytime", "rfc868"] {
        assert_eq!(
            s.count(
                "inetloop_tcp_connections_accepted_total",
                &[("service", service)]
            ),
            0,
            "{service}"
        );
    }
    assert!(
        !s.has(
            "inetloop_udp_datagrams_received_total",
            &[("service", "metrics")]
        ),
        "the metrics endpoint has no UDP side"
    );
    drop(held);

    // The status line reads the same counters.
    reactor.signal(libc::SIGUSR1);
    let log = reactor.log_when("a status line", |log| log.contains("] status: up "));
    let line = log
        .lines()
        .find(|l| l.contains("] status: up "))
        .unwrap()
        .to_string();
    let udp_in = s.count("inetloop_udp_datagrams_received_total", &[]);
    let udp_out = s.count("inetloop_udp_datagrams_sent_total", &[]);
    assert!(
        line.contains(&format!("UDP {udp_in} datagrams in, {udp_out} out,")),
        "{line}"
    );
    assert!(
        line.contains(&format!(", {K} refused,")),
        "refused by the per-source limit: {line}"
    );
    assert!(
        line.contains("refused by access lists: 2 tcp, 4 udp;"),
        "{line}"
    );
    // The status page says the same.
    let page = get_from(scraper(), reactor.addr("metrics", "tcp"), "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        page.text()
            .contains(&format!("UDP {udp_in} datagrams in, {udp_out} out,")),
        "{}",
        page.text()
    );
    assert!(
        page.text()
            .contains("refused by access lists: 2 tcp, 4 udp")
    );
}

/// Reads everything until the server closes, tolerating a reset after the answer.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status line of a raw answer.
fn status_of(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Echo and daytime still answer, quickly.
fn other_services_answer(reactor: &Reactor) {
    let began = Instant::now();
    echo_from(v4(1), reactor, b"still here\n");
    let mut daytime = common::tcp(reactor.addr("daytime", "tcp"));
    assert_daytime_line(&read_to_end(&mut daytime));
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn hostile_http_gets_the_right_status_or_a_close_and_the_other_services_keep_serving() {
    const DEADLINE_MS: u64 = 600;
    let reactor = Reactor::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--greeting-timeout-ms",
        &DEADLINE_MS.to_string(),
    ]);
    let endpoint = reactor.addr("metrics", "tcp");

    // A head of 20 KiB that never ends: 431 once 8 KiB are in, then the close.
    let mut huge = common::tcp(endpoint);
    huge.write_all(b"GET /metrics HTTP/1.1\r\nX-Huge: ")
        .unwrap();
    huge.write_all(&[b'a'; 20 * 1024]).unwrap();
    // Our FIN ends the server's lingering close at once (it discards what it did not read).
    huge.shutdown(Shutdown::Write).unwrap();
    let answer = read_until_closed(&mut huge);
    assert_eq!(
        status_of(&answer),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    other_services_answer(&reactor);

    // Garbage (a TLS ClientHello's first bytes): 400, then the close.
    let mut garbage = common::tcp(endpoint);
    garbage
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .unwrap();
    garbage.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        status_of(&read_until_closed(&mut garbage)),
        "HTTP/1.1 400 Bad Request"
    );

    // Bad methods: 405 with Allow, and the connection stays for the next request.
    let mut stream = common::tcp(endpoint);
    stream
        .write_all(b"DELETE /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let refused = read_response(&mut reader, false).unwrap();
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("Allow"), Some("GET, HEAD"));
    let served = read_response(&mut reader, false).unwrap();
    assert_eq!(served.status, 200);
    drop(reader);

    // Pipelined: three requests in one write, three answers in order; HEAD has no body.
    let mut stream = common::tcp(endpoint);
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader, false).unwrap();
    assert_eq!(first.status, 200);
    assert!(
        first
            .text()
            .contains("# TYPE inetloop_loop_wakeups_total counter")
    );
    let second = read_response(&mut reader, true).unwrap();
    assert_eq!(second.status, 200);
    assert!(
        second
            .header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    let third = read_response(&mut reader, false).unwrap();
    assert_eq!(
        third.status, 404,
        "HEAD sent no body, or this would be its text"
    );
    // Still open (HTTP/1.1): one more, with Connection: close.
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_response(&mut reader, false).unwrap();
    assert_eq!(
        (last.status, last.header("Connection")),
        (200, Some("close"))
    );
    assert_eq!(read_to_end(&mut reader), b"");

    // A drip of one byte every 100 ms: the deadline counts from the accept, so the answer is a
    // 408 about DEADLINE_MS after connecting, however many bytes dripped in.
    let mut drip = common::tcp(endpoint);
    let began = Instant::now();
    drip.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "no answer to the drip"
        );
        if drip.write_all(&[*byte]).is_err() {
            break;
        }
        match drip.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {} // the read timeout: drip on
        }
        if began.elapsed() > Duration::from_millis(DEADLINE_MS / 2) {
            other_services_answer(&reactor); // meanwhile, the others serve as usual
        }
    }
    let took = began.elapsed();
    let _ = drip.shutdown(Shutdown::Write);
    drip.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    answer.extend(read_until_closed(&mut drip));
    assert_eq!(status_of(&answer), "HTTP/1.1 408 Request Timeout");
    assert!(
        took >= Duration::from_millis(DEADLINE_MS - 50)
            && took < Duration::from_millis(DEADLINE_MS + 1500),
        "answered after {took:?}"
    );

    // A silent client: closed without a word at the deadline.
    let mut silent = common::tcp(endpoint);
    let began = Instant::now();
    assert_eq!(read_until_closed(&mut silent), b"");
    assert!(began.elapsed() >= Duration::from_millis(DEADLINE_MS - 50));

    other_services_answer(&reactor);
    let s = scrape(&reactor);
    let refused = |why| {
        s.count(
            "inetloop_tcp_connections_refused_total",
            &[("service", "metrics"), ("reason", why)],
        )
    };
    assert_eq!(
        [
            refused("head_too_large"),
            refused("bad_request"),
            refused("request_timeout")
        ],
        [1, 1, 2]
    );
}

#[test]
fn the_endpoint_obeys_the_access_lists_like_any_service() {
    let reactor = Reactor::start(&["--metrics", "127.0.0.1:0", "--allow", "metrics=127.0.0.9"]);
    let endpoint = reactor.addr("metrics", "tcp");
    let mut refused = tcp_from(v4(2), endpoint);
    let _ = refused.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(read_until_closed(&mut refused), b"", "refused: not a byte");
    // The rule is the endpoint's own: echo still serves 127.0.0.2.
    echo_from(v4(2), &reactor, b"echo is open\n");
    let s = scrape(&reactor);
    assert_eq!(
        s.count(
            "inetloop_tcp_connections_refused_total",
            &[("service", "metrics"), ("reason", "access_list")]
        ),
        1
    );
}

#[test]
fn one_endpoint_reports_every_loop_of_threads_with_a_loop_label() {
    let reactor = Reactor::start(&["--threads", "2", "--metrics", "127.0.0.1:0"]);
    const CONNECTIONS: u64 = 12;
    for i in 0..CONNECTIONS {
        // Different source ports: the kernel spreads them over both loops.
        echo_from(v4(1 + (i % 4) as u8), &reactor, b"abc");
    }
    let s = scrape_until(&reactor, "every echo connection closed", |s| {
        s.count(
            "inetloop_tcp_connections_closed_total",
            &[("service", "echo")],
        ) == CONNECTIONS
    });
    let per_loop: Vec<u64> = ["1", "2"]
        .iter()
        .map(|n| {
            s.count(
                "inetloop_tcp_connections_accepted_total",
                &[("service", "echo"), ("loop", n)],
            )
        })
        .collect();
    assert_eq!(per_loop.iter().sum::<u64>(), CONNECTIONS, "{per_loop:?}");
    assert_eq!(
        s.count(
            "inetloop_sent_bytes_total",
            &[("service", "echo"), ("proto", "tcp")]
        ),
        3 * CONNECTIONS
    );
    // Loop 1 serves the endpoint; loop 2 has no metrics listener.
    assert!(s.has(
        "inetloop_tcp_connections_accepted_total",
        &[("service", "metrics"), ("loop", "1")]
    ));
    assert!(!s.has(
        "inetloop_tcp_connections_accepted_total",
        &[("service", "metrics"), ("loop", "2")]
    ));
    for n in ["1", "2"] {
        assert!(s.has("inetloop_loop_poll_seconds_total", &[("loop", n)]));
    }
}

#[test]
fn the_time_stream_reports_tick_lateness_sessions_and_greeting_timeouts() {
    let reactor = Reactor::start(&[
        "--metrics",
        "127.0.0.1:0",
        "--ticks",
        "3",
        "--interval-ms",
        "50",
        "--greeting-timeout-ms",
        "300",
    ]);
    // A UDP session: live while it ticks, gone after Au Revoir.
    let socket = udp(reactor.addr("time", "udp"));
    socket.send(b"Bonjour").unwrap();
    recv_text(&socket);
    let s = scrape(&reactor);
    assert_eq!(s.count("inetloop_udp_sessions", &[("service", "time")]), 1);
    while recv_text(&socket) != "Au Revoir" {}
    // Two TCP sessions to the end.
    for _ in 0..2 {
        let mut stream = common::tcp(reactor.addr("time", "tcp"));
        stream.write_all(b"Bonjour\n").unwrap();
        let text = String::from_utf8(read_to_end(&mut stream)).unwrap();
        assert!(text.ends_with("Au Revoir\n"), "{text}");
    }
    // One that never greets.
    let mut silent = common::tcp(reactor.addr("time", "tcp"));
    assert_eq!(read_to_end(&mut silent), b"error: greeting timeout\n");

    let s = scrape_until(&reactor, "every time-stream connection closed", |s| {
        s.count(
            "inetloop_tcp_connections_closed_total",
            &[("service", "time")],
        ) == 3
    });
    let lateness = |proto| {
        s.count(
            "inetloop_tick_lateness_seconds_count",
            &[("service", "time"), ("proto", proto)],
        )
    };
    // Every tick after each session's first: 2 per session.
    assert_eq!((lateness("tcp"), lateness("udp")), (4, 2));
    let inf = s.count(
        "inetloop_tick_lateness_seconds_bucket",
        &[("service", "time"), ("proto", "tcp"), ("le", "+Inf")],
    );
    assert_eq!(inf, 4);
    assert_eq!(s.count("inetloop_udp_sessions", &[("service", "time")]), 0);
    assert_eq!(
        s.count(
            "inetloop_tcp_connections_refused_total",
            &[("service", "time"), ("reason", "greeting_timeout")]
        ),
        1
    );
    let late = s.sum("inetloop_tick_lateness_seconds_sum", &[("service", "time")]);
    assert!((0.0..1.0).contains(&late), "{late} s late in all");
}

#[test]
fn a_page_larger_than_the_output_buffer_arrives_whole_once_the_client_reads() {
    // Eight loops make a page of about 120 KB, twice the 64 KiB a connection may queue. With
    // 4 KiB socket buffers on both sides and a client that does not read yet, the kernel holds
    // a few KiB of it, the connection queues 64 KiB, and the rest must wait in the service
    // until the queue drains.
    let reactor = Reactor::start(&[
        "--threads",
        "8",
        "--metrics",
        "127.0.0.1:0",
        "--sndbuf",
        "4096",
    ]);
    let endpoint = reactor.addr("metrics", "tcp");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&endpoint.into(), IO_TIMEOUT)
        .unwrap();
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Wait until the connection's queue holds output (the status line counts such sockets).
    let mut sent = 0;
    let queued = poll_for(IO_TIMEOUT, || {
        sent += 1;
        reactor.signal(libc::SIGUSR1);
        let log = reactor.log_when("a status line per SIGUSR1", |log| {
            log.matches("status loop 1/8").count() >= sent
        });
        let line = log.lines().rfind(|l| l.contains("status loop 1/8"))?;
        line.contains(", 1 sockets with queued output,")
            .then_some(())
    });
    assert!(queued.is_some(), "the page never waited in the queue");
    let mut reader = BufReader::new(stream);
    let page = read_response(&mut reader, false).expect("a response");
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(text.len() > 100_000, "{} bytes", text.len());
    let last = format!(
        "inetloop_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.ends_with(&last), "the page ends whole");
    for n in 1..=8 {
        assert!(text.contains(&format!("inetloop_loop_wakeups_total{{loop=\"{n}\"}}")));
    }
    let (ok, said) = promtool_check(text);
    assert!(ok, "promtool: {said}");
}
